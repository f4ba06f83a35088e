/// One tracked client as the state file keeps it: every instant on the wall clock (Unix
/// nanoseconds), so a saved window means the same moment to the next process, whose monotonic
/// clock starts elsewhere.
public struct SavedClient: Sendable, Equatable {
    /// `ClientKey.value`: already a keyed hash, never the identity itself.
    public var key: UInt64
    /// The route of the last recorded error.
    public var routeIndex: UInt16
    /// Windows imposed in the current streak; 0 while below the threshold.
    public var level: UInt32
    /// Upstream errors since the last success.
    public var consecutiveErrors: UInt32
    /// End of the current (or last) window, Unix nanoseconds; `Int64.min` if none.
    public var windowEnd: Int64
    /// The last request seen, Unix nanoseconds.
    public var lastSeen: Int64
    /// When the entry is forgotten (`reset_after` past its last error or window end), Unix nanoseconds.
    public var expiresAt: Int64

    /// A client from its parts.
    public init(key: UInt64, routeIndex: UInt16, level: UInt32, consecutiveErrors: UInt32, windowEnd: Int64,
                lastSeen: Int64, expiresAt: Int64) {
        self.key = key
        self.routeIndex = routeIndex
        self.level = level
        self.consecutiveErrors = consecutiveErrors
        self.windowEnd = windowEnd
        self.lastSeen = lastSeen
        self.expiresAt = expiresAt
    }
}

/// Moving instants between the tracker's monotonic clock and the wall clock.
///
/// One pair of readings taken together fixes the offset: `wall = wallNow - (monoNow - mono)`.
/// `Int64.min` (no window yet) and `Int64.max` (never) stay as they are.
public struct ClockPair: Sendable, Equatable {
    /// The tracker clock's reading.
    public var monotonic: Int64
    /// The wall clock's reading at the same moment, Unix nanoseconds.
    public var wall: Int64

    /// A pair of readings taken at one moment.
    public init(monotonic: Int64, wall: Int64) {
        self.monotonic = monotonic
        self.wall = wall
    }

    /// `instant` on the tracker's clock as Unix nanoseconds.
    public func toWall(_ instant: Int64) -> Int64 {
        guard instant != .min, instant != .max else { return instant }
        return wall.addingClamped(instant.addingClamped(-monotonic))
    }

    /// Unix nanoseconds as an instant on the tracker's clock.
    public func toMonotonic(_ instant: Int64) -> Int64 {
        guard instant != .min, instant != .max else { return instant }
        return monotonic.addingClamped(instant.addingClamped(-wall))
    }
}

extension ErrorTracker {
    /// The entries worth keeping across a restart: those inside or after a window (a level) and
    /// those with errors below the threshold, not yet expired; instants converted with `clocks`.
    ///
    /// Takes each shard's lock only while copying that shard's entries, then converts them with
    /// no lock held, so a worker waits at most one shard's copy (about 16 thousand entries of a
    /// full table of a million).
    public func exportState(clocks: ClockPair) -> [SavedClient] {
        var saved: [SavedClient] = []
        // Sized once: growing to the exact need shard by shard would copy the whole array each time.
        saved.reserveCapacity(trackedCount)
        var copy: [TrackerEntry] = []
        for i in 0..<shardCount {
            copy.removeAll(keepingCapacity: true)
            withShard(index: i) { shard in
                copy.reserveCapacity(shard.entries.count)
                for entry in shard.entries where entry.expiresAt > clocks.monotonic
                    && (entry.level > 0 || entry.consecutiveErrors > 0) {
                    copy.append(entry)
                }
            }
            for entry in copy {
                saved.append(SavedClient(key: entry.key, routeIndex: entry.routeIndex, level: entry.level,
                                         consecutiveErrors: entry.consecutiveErrors,
                                         windowEnd: clocks.toWall(entry.windowEnd), lastSeen: clocks.toWall(entry.lastSeen),
                                         expiresAt: clocks.toWall(entry.expiresAt)))
            }
        }
        return saved
    }

    /// Puts saved entries back, instants converted with `clocks`; returns how many were taken.
    ///
    /// An entry whose expiry has passed by the wall clock is over (its `reset_after` ran while no
    /// process held it) and is skipped; a window that ended meanwhile is simply over, the level
    /// stays, and the next request is the probe. A key already tracked keeps its current state.
    /// No probe is in flight after a load. The table's bound applies as to any insertion.
    @discardableResult
    public func importState(_ clients: [SavedClient], clocks: ClockPair) -> Int {
        var taken = 0
        for client in clients where client.expiresAt > clocks.wall {
            let hash = mix64(client.key)
            let inserted = withShard(for: hash) { shard -> Bool in
                guard shard.find(client.key, hash: hash) == nil else { return false }
                let now = clocks.monotonic
                let slot = shard.insert(key: client.key, hash: hash, now: now)
                shard.unlink(slot: slot)
                shard.entries[slot].level = client.level
                shard.entries[slot].consecutiveErrors = client.consecutiveErrors
                shard.entries[slot].routeIndex = client.routeIndex
                shard.entries[slot].windowEnd = clocks.toMonotonic(client.windowEnd)
                shard.entries[slot].lastSeen = Swift.min(now, clocks.toMonotonic(client.lastSeen))
                shard.entries[slot].expiresAt = clocks.toMonotonic(client.expiresAt)
                shard.pushFront(slot: slot)
                return true
            }
            if inserted { taken += 1 }
        }
        return taken
    }
}

extension ErrorTracker {
    /// Decodes a state file and puts its entries back (`importState`); returns the header and
    /// how many entries were taken. A refused file leaves the tracker as it was.
    @discardableResult
    public func loadState(_ bytes: [UInt8], fingerprint: UInt64, clocks: ClockPair) throws(StateFile.Refusal)
        -> (header: StateFile.Header, taken: Int) {
        let (header, clients) = try StateFile.decode(bytes, fingerprint: fingerprint)
        return (header, importState(clients, clocks: clocks))
    }

    /// The state file's bytes for the entries worth keeping now (`exportState`), and how many.
    public func saveState(fingerprint: UInt64, clocks: ClockPair) -> (bytes: [UInt8], count: Int) {
        let clients = exportState(clocks: clocks)
        return (StateFile.encode(clients, fingerprint: fingerprint, writtenAt: clocks.wall), clients.count)
    }
}
