/// Why a request was answered with 429 instead of being forwarded.
public enum RejectReason: String, Sendable {
    /// The client is inside a backoff window.
    case backoff
    /// The window ended and another request of this client is the probe; wait for its outcome.
    case probe
    /// The plain request rate of the route was exceeded.
    case rate
}

/// The shield's answer for one request.
public enum Verdict: Equatable, Sendable {
    /// Forward; the client is not blocked.
    case forward
    /// Forward as this window's single probe. Its outcome must reach `record`, or, if the request
    /// never reaches the upstream (the client went away), `abandonProbe`.
    case probe
    /// Answer 429 with `Retry-After: RetryAfter.seconds(retryAfter)`; the upstream is untouched.
    case reject(RejectReason, retryAfter: Duration)
}

/// `ErrorTracker.probeRetryHint`, outside the generic type so the shard can use it.
let probeRetryHint: Duration = .seconds(1)

/// One tracked client as `/stats` shows it.
public struct TrackedClient: Sendable, Equatable {
    /// The hashed identity.
    public var key: ClientKey
    /// Windows imposed in the current streak (n of `delay(n)`); 0 while below the threshold.
    public var level: Int
    /// Upstream errors since the last success.
    public var consecutiveErrors: Int
    /// End of the current (or last) window on the tracker's clock, in nanoseconds; `Int64.min` if none.
    public var windowEnd: Int64
    /// The last request seen for this key, on the tracker's clock.
    public var lastSeen: Int64
    /// The route of the last recorded error.
    public var routeIndex: Int
    /// Whether a probe request is on its way to the upstream.
    public var probeInFlight: Bool
}

/// The backoff state of every client, shared by all worker threads.
///
/// The rules are the README's ("How a request goes through": Tracker); in short:
/// - `check` decides (forward, probe, reject) and never moves a window: refused requests never
///   extend it (haproxy #615).
/// - `record` moves the state, and only upstream answers reach it: an error counts, and once the
///   threshold is reached opens the next window of the streak; a success deletes the entry.
/// - An error that arrives while a window is still open came from a request forwarded before that
///   window began (50 parallel requests all answered 401): it counts in `consecutiveErrors` but
///   does not open a further window, so parallelism does not multiply the backoff. The next
///   level is reached only by an error after the window ended (normally the probe's).
/// - An entry is forgotten `reset_after` after its last error or its window end, whichever is
///   later, so a client at a `max` longer than `reset_after` still stays at `max` forever.
/// - At most `maxClients` entries; see `ErrorTracker+Eviction.swift` for which go first.
///
/// The table is split into shards by key, each behind its own lock, so workers rarely contend.
/// `check` (and a recorded success) for a key that is not tracked, the common case, is usually
/// answered by the `PresenceFilter` alone: one byte read, no lock, nothing written. Otherwise it
/// takes one lock and probes one bucket array. Neither allocates.
public final class ErrorTracker<Clock: TrackerClock>: Sendable {
    /// How long a `.reject(.probe, …)` tells the client to wait: the probe's outcome is usually a
    /// round trip away, so a short hint; the client is answered again by `check` when it returns.
    public static var probeRetryHint: Duration { BreakwaterCore.probeRetryHint }

    /// The longest upstream `Retry-After` honoured as a window floor: a broken upstream date must
    /// not lock a client out for years. Longer values are treated as this.
    public static var upstreamFloorLimit: Duration { .seconds(86_400) }

    private let clock: Clock
    private let shards: LockedValues<TrackerShard>
    private let shardShift: UInt64
    // Owned here, freed in deinit; the shards keep copies of the pointer.
    private let filter: PresenceFilter
    private let probeLeaseNs: Int64
    private let random: (@Sendable () -> Double)?

    /// A tracker with jitter from a per-shard SplitMix64 seeded from `seed`.
    ///
    /// - Parameters:
    ///   - maxClients: the bound of the table (`[clients] max_clients`); at least 1.
    ///   - clock: monotonic nanoseconds; `ManualClock` in tests.
    ///   - seed: the jitter seed; pass a random value in production, a constant in tests.
    ///   - shards: rounded up to a power of two, and down so every shard can hold an entry.
    ///   - probeLease: a probe whose outcome is neither recorded nor abandoned within this time is
    ///     presumed lost and the next request may probe. Make it longer than the upstream
    ///     `timeout` times (`retries` + 1), so a slow probe is not doubled.
    public init(maxClients: Int, clock: Clock, seed: UInt64, shards: Int = 64,
                probeLease: Duration = .seconds(120)) {
        self.clock = clock
        random = nil
        probeLeaseNs = Swift.max(1, probeLease.clampedNanoseconds)
        (self.shards, shardShift, filter) = ErrorTracker.makeShards(maxClients: maxClients, shards: shards, seed: seed)
    }

    /// A tracker whose jitter draws come from `random`, which must return values in [0, 1) and be
    /// safe to call from several threads (it is called under a shard's lock). Tests pass
    /// `{ 0 }` for windows of exactly `delay(n)` or `{ 0.999 }` for the shortest.
    public init(maxClients: Int, clock: Clock, shards: Int = 64, probeLease: Duration = .seconds(120),
                random: @escaping @Sendable () -> Double) {
        self.clock = clock
        self.random = random
        probeLeaseNs = Swift.max(1, probeLease.clampedNanoseconds)
        (self.shards, shardShift, filter) = ErrorTracker.makeShards(maxClients: maxClients, shards: shards, seed: 0)
    }

    deinit {
        filter.deallocate()
    }

    private static func makeShards(maxClients: Int, shards: Int, seed: UInt64)
        -> (LockedValues<TrackerShard>, UInt64, PresenceFilter) {
        let bound = Swift.max(1, maxClients)
        var count = 1
        while count < shards && count * 2 <= bound { count <<= 1 }
        var seeds = SplitMix64(seed: seed)
        // The filter picks a counter by the hash's top bits, as `withShard` picks a shard, and
        // has at least two counters per shard: every counter belongs to exactly one shard.
        let filter = PresenceFilter(capacity: bound, shards: count)
        let list = (0..<count).map { i in
            // Spread the remainder so the shard limits add up to exactly `maxClients`.
            let limit = bound / count + (i < bound % count ? 1 : 0)
            return TrackerShard(limit: limit, seed: seeds.next(), filter: filter)
        }
        return (LockedValues(list), UInt64(64 - count.trailingZeroBitCount), filter)
    }

    /// Runs `body` under the lock of the shard that holds the key with `hash`.
    @inline(__always)
    func withShard<Result>(for hash: UInt64, _ body: (inout TrackerShard) -> Result) -> Result {
        // Top bits pick the shard; the index uses the low bits, so the two stay independent.
        // With one shard the shift is 64, which would leave `hash` unchanged: pick 0 instead.
        let i = shardShift == 64 ? 0 : Int(truncatingIfNeeded: hash >> shardShift)
        return shards.withLock(i, body)
    }

    /// How many shards the table has.
    var shardCount: Int { shards.count }

    /// Runs `body` under the lock of shard `index` alone.
    func withShard<Result>(index: Int, _ body: (inout TrackerShard) -> Result) -> Result {
        shards.withLock(index, body)
    }

    /// Runs `body` under each shard's lock in turn: for the whole-table views, not the request path.
    private func eachShard<Result>(_ body: (inout TrackerShard) -> Result) -> [Result] {
        (0..<shards.count).map { shards.withLock($0, body) }
    }

    /// The verdict for a request of `key`. Does not look at `policy.mode`: in dry-run the server
    /// forwards anyway and counts what would have happened.
    ///
    /// `.probe` marks the probe in flight: the request must be forwarded, and its outcome passed
    /// to `record` (or `abandonProbe` if it never reaches the upstream). `policy` is not consulted:
    /// windows and expiry were fixed when the errors were recorded, so a reload never stretches or
    /// cuts a window already imposed.
    public func check(_ key: ClientKey, policy: BackoffPolicy) -> Verdict {
        let hash = mix64(key.value)
        guard filter.mayContain(hash) else { return .forward }
        return withShard(for: hash) { shard in
            guard let slot = shard.find(key.value, hash: hash) else { return .forward }
            return shard.check(slot: slot, now: clock.nanoseconds(), probeLeaseNs: probeLeaseNs)
        }
    }

    /// Records the upstream's answer to a forwarded request of `key` and returns the window it
    /// imposed, if any (for the window histogram).
    ///
    /// Error: `consecutiveErrors + 1`; at or past the threshold and outside an open window, the
    /// next level's window `delay(level)` jittered, at least `upstreamRetryAfter`. Inside an open
    /// window the error only counts, but an upstream `Retry-After` reaching past the window
    /// still extends it. Success: the entry is deleted. Either way the probe is no longer in flight.
    public func record(_ key: ClientKey, outcome: Outcome, policy: BackoffPolicy, routeIndex: Int,
                       upstreamRetryAfter: Duration?) -> Duration? {
        let hash = mix64(key.value)
        switch outcome {
        case .success:
            // No clock read: a success deletes whatever is there, whenever it is.
            guard filter.mayContain(hash) else { return nil }
            withShard(for: hash) { shard in
                if let slot = shard.find(key.value, hash: hash) { shard.remove(slot: slot) }
            }
            return nil
        case .error:
            let floor = upstreamRetryAfter.map {
                Swift.min(Swift.max(0, $0.clampedNanoseconds), ErrorTracker.upstreamFloorLimit.clampedNanoseconds)
            }
            return withShard(for: hash) { shard in
                let now = clock.nanoseconds()
                let imposed = shard.recordError(key: key.value, hash: hash, now: now, policy: policy,
                                                routeIndex: routeIndex, floorNs: floor, random: random)
                return imposed.map { .nanoseconds($0) }
            }
        }
    }

    /// The probe request of `key` will not reach the upstream (the client went away, or the
    /// request was refused before forwarding): let the next request probe.
    public func abandonProbe(_ key: ClientKey) {
        let hash = mix64(key.value)
        guard filter.mayContain(hash) else { return }
        withShard(for: hash) { shard in
            if let slot = shard.find(key.value, hash: hash) { shard.clearProbe(slot: slot) }
        }
    }

    /// Admin reset: forgets `key`; true if it was tracked.
    public func forget(_ key: ClientKey) -> Bool {
        let hash = mix64(key.value)
        guard filter.mayContain(hash) else { return false }
        return withShard(for: hash) { shard in
            guard let slot = shard.find(key.value, hash: hash) else { return false }
            shard.remove(slot: slot)
            return true
        }
    }

    /// The state of one key, or nil if it is not tracked (or has expired).
    public func client(_ key: ClientKey) -> TrackedClient? {
        let hash = mix64(key.value)
        guard filter.mayContain(hash) else { return nil }
        return withShard(for: hash) { shard in
            guard let slot = shard.find(key.value, hash: hash) else { return nil }
            let entry = shard.entries[slot]
            return entry.expiresAt <= clock.nanoseconds() ? nil : entry.snapshot
        }
    }

    /// Entries in the table, including expired ones not yet purged (see `purgeExpired`).
    public var trackedCount: Int {
        eachShard { $0.entries.count }.reduce(0, +)
    }

    /// Clients inside a window right now.
    public var blockedCount: Int {
        let now = clock.nanoseconds()
        return eachShard { $0.blockedCount(now: now) }.reduce(0, +)
    }

    /// Entries dropped to keep the table within `maxClients` (expired ones are not counted).
    public var evictions: Int {
        eachShard { $0.evictions }.reduce(0, +)
    }

    /// The `n` tracked clients with the highest level (then most consecutive errors), highest first.
    ///
    /// Walks the whole table one shard lock at a time: for `/stats`, not for the request path.
    public func top(_ n: Int) -> [TrackedClient] {
        guard n > 0 else { return [] }
        let now = clock.nanoseconds()
        var best: [TrackedClient] = []
        for i in 0..<shards.count {
            shards.withLock(i) { $0.collectTop(n, now: now, into: &best) }
        }
        return best
    }

    /// Deletes every entry past its `reset_after`; returns how many. Expired entries are also
    /// dropped lazily when touched and when room is needed, so this only keeps `trackedCount`
    /// honest: call it from a timer every few seconds, never from the request path.
    @discardableResult
    public func purgeExpired() -> Int {
        let now = clock.nanoseconds()
        return eachShard { $0.purgeExpired(now: now) }.reduce(0, +)
    }

    /// The first internal inconsistency found, or nil; for tests.
    func integrityProblem() -> String? {
        if let problem = eachShard({ $0.integrityProblem() }).lazy.compactMap({ $0 }).first { return problem }
        // Every counter of the filter holds the number of keys that map to it, or is saturated.
        var counts = [Int](repeating: 0, count: filter.count)
        for keys in eachShard({ $0.entries.map(\.key) }) {
            for key in keys { counts[filter.slot(of: mix64(key))] += 1 }
        }
        for (slot, expected) in counts.enumerated() {
            let value = filter.value(at: slot)
            if value != PresenceFilter.saturated && Int(value) != expected {
                return "filter counter \(slot) is \(value), \(expected) keys map to it"
            }
        }
        return nil
    }

    /// Bytes held by the table's arrays (entries, index and presence filter), for the
    /// memory-bound test and `/stats`.
    public var tableBytes: Int {
        eachShard { $0.byteCount }.reduce(0, +) + filter.byteCount
    }
}
