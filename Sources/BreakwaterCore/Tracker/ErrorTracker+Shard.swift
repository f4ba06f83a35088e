/// One client's backoff state: 64 bytes, so a million clients fit in about 75 MB with the index
/// and the presence filter.
struct TrackerEntry {
    /// `ClientKey.value`.
    var key: UInt64
    /// End of the current (or last) window; `Int64.min` before the first.
    var windowEnd: Int64
    /// The last request seen (check or record), for `/stats`.
    var lastSeen: Int64
    /// When the entry is forgotten: `reset_after` past the later of its last error and window end.
    var expiresAt: Int64
    /// While a probe is in flight: when it is presumed lost.
    var probeDeadline: Int64
    /// The neighbour put at the front of the list after this entry (a slot), -1 at the head.
    var prev: Int32
    /// The neighbour put there before it, -1 at the tail.
    var next: Int32
    /// Upstream errors since the last success, saturating.
    var consecutiveErrors: UInt32
    /// Windows imposed in this streak, saturating; 0 while below the threshold.
    var level: UInt32
    /// Route of the last error, for `/stats`.
    var routeIndex: UInt16
    /// `TrackerEntry.probeFlag`, `TrackerEntry.seenFlag`.
    var flags: UInt8

    /// Set while this window's probe is on its way to the upstream.
    static let probeFlag: UInt8 = 1
    /// Set when a check finds the entry, cleared when the entry is put at the front of its list:
    /// eviction's second chance (see `ErrorTracker+Eviction.swift`).
    static let seenFlag: UInt8 = 2

    /// Whether a probe is in flight.
    var probeInFlight: Bool { flags & TrackerEntry.probeFlag != 0 }

    /// The entry as `/stats` shows it.
    var snapshot: TrackedClient {
        TrackedClient(key: ClientKey(value: key), level: Int(level), consecutiveErrors: Int(consecutiveErrors),
                      windowEnd: windowEnd, lastSeen: lastSeen, routeIndex: Int(routeIndex),
                      probeInFlight: probeInFlight)
    }
}

/// The two ends of an intrusive list threaded through `TrackerEntry.prev/next`.
///
/// An entry goes to the front when its state changes: when it is created, when an error is
/// recorded, when it is handed a probe, and when eviction gives it a second chance. A check that
/// only reads the state (a rejection, or a level-0 entry forwarded) sets `seenFlag` instead, so
/// the hit path writes to its own entry and never to its neighbours.
struct LRUList {
    /// Most recently put at the front.
    var head: Int32 = -1
    /// Least recently put at the front: looked at first for eviction.
    var tail: Int32 = -1
}

/// One shard of the tracker: a dense array of entries, a hash index into it, and two lists.
///
/// `idle` holds entries below the threshold (level 0), `blocked` those that reached a window in
/// this streak. Membership changes only when an error is recorded, so passing time never has to
/// move entries between lists; eviction looks at window ends itself.
struct TrackerShard {
    /// The entries, dense: removal moves the last entry into the hole.
    var entries: [TrackerEntry] = []
    /// Key hash → slot.
    var index: SlotIndex
    /// Level-0 entries, most recent first.
    var idle = LRUList()
    /// Entries with a level, most recent first.
    var blocked = LRUList()
    /// This shard's share of `maxClients`.
    let limit: Int
    /// Entries evicted for room.
    var evictions = 0
    /// Jitter draws when no custom source is given.
    var rng: SplitMix64
    /// The tracker's filter, shared by all shards; this shard changes only its own keys' counters.
    let filter: PresenceFilter

    /// An empty shard that will hold at most `limit` entries.
    init(limit: Int, seed: UInt64, filter: PresenceFilter) {
        self.limit = limit
        index = SlotIndex(capacity: Swift.min(limit, 16), maxSlots: limit)
        rng = SplitMix64(seed: seed)
        self.filter = filter
    }

    /// The slot of `key`, if tracked.
    @inline(__always)
    func find(_ key: UInt64, hash: UInt64) -> Int? {
        index.find(hash) { entries[$0].key == key }
    }

    // MARK: Decisions

    /// `ErrorTracker.check` for a tracked key.
    mutating func check(slot: Int, now: Int64, probeLeaseNs: Int64) -> Verdict {
        if entries[slot].expiresAt <= now {
            remove(slot: slot)
            return .forward
        }
        let verdict: Verdict
        let entry = entries[slot]
        if now < entry.windowEnd {
            verdict = .reject(.backoff, retryAfter: .nanoseconds(entry.windowEnd - now))
        } else if entry.level == 0 {
            verdict = .forward
        } else if entry.probeInFlight && now < entry.probeDeadline {
            verdict = .reject(.probe, retryAfter: probeRetryHint)
        } else {
            entries[slot].flags |= TrackerEntry.probeFlag
            entries[slot].probeDeadline = now.addingClamped(probeLeaseNs)
            entries[slot].lastSeen = now
            moveToFront(slot: slot)
            return .probe
        }
        // State unchanged: mark the entry seen rather than relink it (see `LRUList`).
        entries[slot].lastSeen = now
        entries[slot].flags |= TrackerEntry.seenFlag
        return verdict
    }

    /// `ErrorTracker.record` for an error; returns the window imposed in nanoseconds, if any.
    mutating func recordError(key: UInt64, hash: UInt64, now: Int64, policy: BackoffPolicy, routeIndex: Int,
                              floorNs: Int64?, random: (@Sendable () -> Double)?) -> Int64? {
        var slot = find(key, hash: hash)
        if let found = slot, entries[found].expiresAt <= now {
            remove(slot: found)
            slot = nil
        }
        let s = slot ?? insert(key: key, hash: hash, now: now)
        // Out of its list while the level (which picks the list) may change.
        unlink(slot: s)
        var entry = entries[s]
        entry.consecutiveErrors = entry.consecutiveErrors == .max ? .max : entry.consecutiveErrors + 1
        entry.flags &= ~TrackerEntry.probeFlag
        entry.routeIndex = UInt16(clamping: routeIndex)
        entry.lastSeen = now

        var imposed: Int64?
        if Int(entry.consecutiveErrors) >= Swift.max(1, policy.threshold) {
            if now < entry.windowEnd {
                // Forwarded before this window began: it counts, but only the upstream's own
                // Retry-After may push the window further.
                if let floor = floorNs, now.addingClamped(floor) > entry.windowEnd {
                    entry.windowEnd = now.addingClamped(floor)
                    imposed = floor
                }
            } else {
                entry.level = entry.level == .max ? .max : entry.level + 1
                let u = random?() ?? rng.nextUnit()
                let window = Swift.max(policy.windowNanoseconds(level: Int(entry.level), u: u), floorNs ?? 0)
                entry.windowEnd = now.addingClamped(window)
                imposed = window
            }
        }
        let resetAfter = Swift.max(0, policy.resetAfter.clampedNanoseconds)
        entry.expiresAt = Swift.max(now, entry.windowEnd).addingClamped(Swift.max(1, resetAfter))
        entries[s] = entry
        pushFront(slot: s)
        return imposed
    }

    /// `ErrorTracker.abandonProbe` for a tracked key.
    mutating func clearProbe(slot: Int) {
        entries[slot].flags &= ~TrackerEntry.probeFlag
    }

    // MARK: Storage

    /// Adds a fresh level-0 entry for `key`, evicting first if the shard is full; returns its slot.
    mutating func insert(key: UInt64, hash: UInt64, now: Int64) -> Int {
        dropExpiredTails(now: now)
        if entries.count >= limit { evictOne(now: now) }
        if entries.count == entries.capacity {
            // Grow by doubling but never past the limit, so a full table holds no spare capacity.
            entries.reserveCapacity(Swift.min(limit, Swift.max(16, entries.count * 2)))
        }
        let slot = entries.count
        entries.append(TrackerEntry(key: key, windowEnd: .min, lastSeen: now, expiresAt: .max,
                                    probeDeadline: .min, prev: -1, next: -1, consecutiveErrors: 0,
                                    level: 0, routeIndex: 0, flags: 0))
        index.insert(hash, slot: slot)
        filter.add(hash)
        pushFront(slot: slot)
        return slot
    }

    /// Deletes the entry in `slot`, moving the last entry into its place.
    mutating func remove(slot: Int) {
        unlink(slot: slot)
        let hash = mix64(entries[slot].key)
        index.remove(hash, slot: slot)
        filter.remove(hash)
        let last = entries.count - 1
        if slot != last {
            let moved = entries[last]
            entries[slot] = moved
            if moved.prev >= 0 { entries[Int(moved.prev)].next = Int32(slot) } else { setHead(Int32(slot), level: moved.level) }
            if moved.next >= 0 { entries[Int(moved.next)].prev = Int32(slot) } else { setTail(Int32(slot), level: moved.level) }
            index.move(mix64(moved.key), from: last, to: slot)
        }
        entries.removeLast()
    }

    // MARK: LRU lists

    private mutating func setHead(_ slot: Int32, level: UInt32) {
        if level > 0 { blocked.head = slot } else { idle.head = slot }
    }

    private mutating func setTail(_ slot: Int32, level: UInt32) {
        if level > 0 { blocked.tail = slot } else { idle.tail = slot }
    }

    /// Takes `slot` out of its list.
    mutating func unlink(slot: Int) {
        let entry = entries[slot]
        if entry.prev >= 0 { entries[Int(entry.prev)].next = entry.next } else { setHead(entry.next, level: entry.level) }
        if entry.next >= 0 { entries[Int(entry.next)].prev = entry.prev } else { setTail(entry.prev, level: entry.level) }
        entries[slot].prev = -1
        entries[slot].next = -1
    }

    /// Puts an unlinked `slot` at the front of the list its level belongs to.
    mutating func pushFront(slot: Int) {
        let level = entries[slot].level
        let head = level > 0 ? blocked.head : idle.head
        entries[slot].flags &= ~TrackerEntry.seenFlag
        entries[slot].prev = -1
        entries[slot].next = head
        if head >= 0 { entries[Int(head)].prev = Int32(slot) } else { setTail(Int32(slot), level: level) }
        setHead(Int32(slot), level: level)
    }

    /// Puts `slot` at the front of its list.
    @inline(__always)
    mutating func moveToFront(slot: Int) {
        let head = entries[slot].level > 0 ? blocked.head : idle.head
        guard head != Int32(slot) else {
            entries[slot].flags &= ~TrackerEntry.seenFlag
            return
        }
        unlink(slot: slot)
        pushFront(slot: slot)
    }
}
