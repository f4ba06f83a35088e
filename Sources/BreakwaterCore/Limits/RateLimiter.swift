/// A plain per-key request rate limit (`rate = "10r/s"`, `burst = 20`), the GCRA of ATM networks
/// as nginx `limit_req` users expect it.
///
/// One timestamp per key, the theoretical arrival time (TAT): each admitted request pushes it one
/// emission interval `T = 1/rate` later; a request is admitted while `TAT - burst*T <= now`. A
/// refused request does not move the TAT, so a client that hammers is not punished beyond the
/// rate, and the answer to a refused request is exact: `TAT - burst*T - now`.
///
/// Memory is bounded by `maxKeys`. A key whose TAT has passed is indistinguishable from a new one,
/// so such keys are dropped first; when none is at hand, the key closest to being fresh goes
/// (counted in `evictions`), which at worst grants it its burst early.
public final class RateLimiter<Clock: TrackerClock>: Sendable {
    private let clock: Clock
    private let shards: [LockedValue<LimiterShard>]
    private let shardShift: UInt64

    /// A limiter for at most `maxKeys` keys (at least 1), on `clock`.
    public init(maxKeys: Int, clock: Clock, shards: Int = 64) {
        self.clock = clock
        let bound = Swift.max(1, maxKeys)
        var count = 1
        while count < shards && count * 2 <= bound { count <<= 1 }
        self.shards = (0..<count).map { i in
            LockedValue(LimiterShard(limit: bound / count + (i < bound % count ? 1 : 0)))
        }
        shardShift = UInt64(64 - count.trailingZeroBitCount)
    }

    /// nil if a request of `key` is admitted now (and counted); else the exact time until it would
    /// be, which `RetryAfter.seconds` turns into the header.
    ///
    /// A rate that is not positive and finite means "no limit" (validation should refuse it).
    /// `key` holds one TAT for every route using it: give routes with different rates distinct
    /// keys (a `route` key part, or `key.scoped(to: route.index)`).
    public func check(_ key: ClientKey, rate: Rate, burst: Int) -> Duration? {
        guard rate.perSecond > 0, rate.perSecond.isFinite else { return nil }
        let interval = 1e9 / rate.perSecond
        let emission = interval < 9e18 ? Swift.max(1, Int64(interval.rounded())) : Int64(9e18)
        let (tolerance, overflow) = emission.multipliedReportingOverflow(by: Int64(Swift.max(0, burst)))
        let tau = overflow ? Int64.max : tolerance
        let hash = mix64(key.value)
        let shard = shards.count == 1 ? shards[0] : shards[Int(truncatingIfNeeded: hash >> shardShift)]
        let wait: Int64? = shard.withLock { shard in
            shard.admit(key: key.value, hash: hash, now: clock.nanoseconds(), emission: emission, tolerance: tau)
        }
        return wait.map { .nanoseconds($0) }
    }

    /// Keys in the table, including ones whose TAT has passed and that are therefore fresh again.
    public var trackedCount: Int {
        shards.reduce(0) { sum, shard in sum + shard.withLock { $0.keys.count } }
    }

    /// Keys dropped for room while they still held state.
    public var evictions: Int {
        shards.reduce(0) { sum, shard in sum + shard.withLock { $0.evictions } }
    }
}

/// One shard of the limiter: dense arrays of keys and TATs with a hash index.
struct LimiterShard {
    /// `ClientKey.value` per slot.
    var keys: [UInt64] = []
    /// Theoretical arrival time per slot.
    var tats: [Int64] = []
    /// Key hash → slot.
    var index: SlotIndex
    /// This shard's share of `maxKeys`.
    let limit: Int
    /// Keys dropped while they still held state.
    var evictions = 0
    // Where the next search for a stale key starts, so repeated evictions sweep the whole shard.
    private var hand = 0
    // Slots examined per eviction.
    private static let scan = 8

    /// An empty shard holding at most `limit` keys.
    init(limit: Int) {
        self.limit = limit
        index = SlotIndex(capacity: Swift.min(limit, 16), maxSlots: limit)
    }

    /// GCRA for one request: nil and the TAT advanced if admitted, else the wait in nanoseconds.
    mutating func admit(key: UInt64, hash: UInt64, now: Int64, emission: Int64, tolerance: Int64) -> Int64? {
        if let slot = index.find(hash, isMatch: { keys[$0] == key }) {
            let tat = Swift.max(tats[slot], now)
            let allowedAt = tat.addingClamped(-tolerance)
            if allowedAt > now { return allowedAt - now }
            tats[slot] = tat.addingClamped(emission)
            return nil
        }
        // A new key is admitted at once: its TAT is now, and now - tolerance <= now.
        if keys.count >= limit { evictOne(now: now) }
        if keys.count == keys.capacity {
            let grown = Swift.min(limit, Swift.max(16, keys.count * 2))
            keys.reserveCapacity(grown)
            tats.reserveCapacity(grown)
        }
        keys.append(key)
        tats.append(now.addingClamped(emission))
        index.insert(hash, slot: keys.count - 1)
        return nil
    }

    private mutating func evictOne(now: Int64) {
        guard !keys.isEmpty else { return }
        var victim = hand % keys.count
        for step in 0..<Swift.min(LimiterShard.scan, keys.count) {
            let slot = (hand + step) % keys.count
            if tats[slot] <= now {
                victim = slot
                break
            }
            if tats[slot] < tats[victim] { victim = slot }
        }
        hand = (victim + 1) % Swift.max(1, keys.count - 1)
        if tats[victim] > now { evictions += 1 }
        remove(slot: victim)
    }

    private mutating func remove(slot: Int) {
        index.remove(mix64(keys[slot]), slot: slot)
        let last = keys.count - 1
        if slot != last {
            keys[slot] = keys[last]
            tats[slot] = tats[last]
            index.move(mix64(keys[slot]), from: last, to: slot)
        }
        keys.removeLast()
        tats.removeLast()
    }
}
