/// Clients that the shared tracker recently said it knows nothing about, so that a healthy
/// client's requests need no Redis round trip: the negative cache of one worker.
///
/// The cost is bounded staleness: for at most `ttl` after another replica blocks a client, this
/// worker may still forward that client's requests once each (their errors then block it here too).
/// The worker's own errors invalidate the entry at once.
///
/// Direct-mapped: a key's slot is fixed by its low bits (keys are keyed hashes, so evenly spread),
/// a colliding key simply replaces it. Fixed size, no allocation after `init`, no lock: one worker
/// thread owns it.
public struct CleanKeyCache {
    private var keys: [UInt64]
    private var expiries: [Int64]
    private let mask: Int
    /// How long a clean answer is trusted, in nanoseconds; 0 turns the cache off.
    public let ttl: Int64

    /// A cache of `capacity` slots (rounded up to a power of two) trusting answers for `ttl`.
    public init(capacity: Int = 16_384, ttl: Duration) {
        var size = 1
        while size < Swift.max(1, capacity) { size <<= 1 }
        keys = Array(repeating: 0, count: size)
        expiries = Array(repeating: .min, count: size)
        mask = size - 1
        self.ttl = Swift.max(0, ttl.clampedNanoseconds)
    }

    /// Whether `key` was found clean less than `ttl` before `now`.
    @inline(__always)
    public func isClean(_ key: ClientKey, now: Int64) -> Bool {
        let slot = Int(truncatingIfNeeded: key.value) & mask
        return keys[slot] == key.value && now < expiries[slot]
    }

    /// Remembers `key` as clean from `now` on.
    public mutating func markClean(_ key: ClientKey, now: Int64) {
        guard ttl > 0 else { return }
        let slot = Int(truncatingIfNeeded: key.value) & mask
        keys[slot] = key.value
        expiries[slot] = now.addingClamped(ttl)
    }

    /// Forgets that `key` was clean (an error was just recorded for it).
    public mutating func invalidate(_ key: ClientKey) {
        let slot = Int(truncatingIfNeeded: key.value) & mask
        if keys[slot] == key.value { expiries[slot] = .min }
    }

    /// Forgets every entry.
    public mutating func removeAll() {
        for i in expiries.indices { expiries[i] = .min }
    }
}
