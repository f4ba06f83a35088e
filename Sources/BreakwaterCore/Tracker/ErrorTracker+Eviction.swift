/// Keeping the table within `max_clients`, and the read-only views for `/stats`.
///
/// Which entry goes when a shard is full, in order:
/// 1. an expired entry at the tail of either list (not counted as an eviction: it was due anyway);
/// 2. a level-0 entry (a client below the threshold loses little), the least recently seen one
///    by second chance: the idle list is in order of last error (or second chance), and a tail
///    entry that a check found since it got there (`seenFlag`) goes back to the front instead,
///    up to `scan` of them per eviction; then the tail goes, seen or not;
/// 3. among the entries with a level whose state changed least recently (an error recorded, a
///    probe handed out), one whose window has ended;
/// 4. only if every candidate is inside a window, the one whose window ends first among a few at
///    each end of the list. The recent end is where a flood of fresh keys sits, in short first
///    windows, so a flood cannot wash a long-blocked client out of the table: it displaces itself.
extension TrackerShard {
    // Candidates examined at each end of the blocked list; second chances per idle eviction.
    private static let scan = 8
    // Expired entries dropped from each tail per insertion: keeps the table tidy at O(1) cost.
    private static let tailSweep = 2

    /// Drops up to `tailSweep` expired entries from the tail of each list.
    mutating func dropExpiredTails(now: Int64) {
        for _ in 0..<TrackerShard.tailSweep {
            guard idle.tail >= 0, entries[Int(idle.tail)].expiresAt <= now else { break }
            remove(slot: Int(idle.tail))
        }
        for _ in 0..<TrackerShard.tailSweep {
            guard blocked.tail >= 0, entries[Int(blocked.tail)].expiresAt <= now else { break }
            remove(slot: Int(blocked.tail))
        }
    }

    /// Removes one entry to make room, by the order above.
    mutating func evictOne(now: Int64) {
        if idle.tail >= 0 {
            for _ in 0..<TrackerShard.scan {
                let tail = Int(idle.tail)
                guard entries[tail].flags & TrackerEntry.seenFlag != 0, entries[tail].expiresAt > now else { break }
                moveToFront(slot: tail)
            }
            let victim = Int(idle.tail)
            if entries[victim].expiresAt > now { evictions += 1 }
            remove(slot: victim)
            return
        }
        guard blocked.tail >= 0 else { return }
        var earliest = Int(blocked.tail)
        var slot = blocked.tail
        for _ in 0..<TrackerShard.scan where slot >= 0 {
            let entry = entries[Int(slot)]
            if entry.windowEnd <= now {
                if entry.expiresAt > now { evictions += 1 }
                remove(slot: Int(slot))
                return
            }
            if entry.windowEnd < entries[earliest].windowEnd { earliest = Int(slot) }
            slot = entry.prev
        }
        slot = blocked.head
        for _ in 0..<TrackerShard.scan where slot >= 0 {
            if entries[Int(slot)].windowEnd < entries[earliest].windowEnd { earliest = Int(slot) }
            slot = entries[Int(slot)].next
        }
        evictions += 1
        remove(slot: earliest)
    }

    /// Deletes every expired entry; returns how many.
    mutating func purgeExpired(now: Int64) -> Int {
        var removed = 0
        var slot = entries.count - 1
        // Walking down, the entry moved into a hole comes from a slot already examined.
        while slot >= 0 {
            if entries[slot].expiresAt <= now {
                remove(slot: slot)
                removed += 1
            }
            slot -= 1
        }
        return removed
    }

    /// Entries inside a window at `now`. Only the blocked list can hold them.
    func blockedCount(now: Int64) -> Int {
        var count = 0
        var slot = blocked.head
        while slot >= 0 {
            let entry = entries[Int(slot)]
            if entry.windowEnd > now && entry.expiresAt > now { count += 1 }
            slot = entry.next
        }
        return count
    }

    /// Merges this shard's best `n` live entries into `best`, kept sorted highest first.
    func collectTop(_ n: Int, now: Int64, into best: inout [TrackedClient]) {
        for entry in entries where entry.expiresAt > now {
            if best.count == n, let last = best.last, !TrackerShard.ranksAbove(entry, last) { continue }
            let client = entry.snapshot
            let position = best.firstIndex { TrackerShard.ranksAbove(entry, $0) } ?? best.count
            best.insert(client, at: position)
            if best.count > n { best.removeLast() }
        }
    }

    private static func ranksAbove(_ entry: TrackerEntry, _ other: TrackedClient) -> Bool {
        if Int(entry.level) != other.level { return Int(entry.level) > other.level }
        if Int(entry.consecutiveErrors) != other.consecutiveErrors {
            return Int(entry.consecutiveErrors) > other.consecutiveErrors
        }
        return entry.key < other.key.value
    }

    /// A description of the first inconsistency between the entries, the index and the two lists,
    /// or nil: the tests' proof that eviction and compaction keep the links right.
    func integrityProblem() -> String? {
        guard entries.count <= limit else { return "\(entries.count) entries over the limit \(limit)" }
        guard index.count == entries.count else { return "index has \(index.count) keys, table \(entries.count)" }
        for (slot, entry) in entries.enumerated() where find(entry.key, hash: mix64(entry.key)) != slot {
            return "slot \(slot) not found through the index"
        }
        var seen = 0
        for (list, blockedList) in [(idle, false), (blocked, true)] {
            var previous: Int32 = -1
            var slot = list.head
            while slot >= 0 {
                let entry = entries[Int(slot)]
                guard entry.prev == previous else { return "broken back link at slot \(slot)" }
                guard (entry.level > 0) == blockedList else { return "slot \(slot) in the wrong list" }
                seen += 1
                guard seen <= entries.count else { return "cycle in a list" }
                previous = slot
                slot = entry.next
            }
            guard list.tail == previous else { return "tail does not end the list" }
        }
        return seen == entries.count ? nil : "lists hold \(seen) of \(entries.count) entries"
    }

    /// Bytes held by this shard's arrays.
    var byteCount: Int {
        entries.capacity * MemoryLayout<TrackerEntry>.stride + index.byteCount
    }
}
