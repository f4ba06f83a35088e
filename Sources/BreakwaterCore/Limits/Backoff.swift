/// What one upstream answer means for the client's backoff state.
public enum Outcome: Sendable, Equatable {
    /// Any status not in `on`: the client is cleared at once.
    case success
    /// A status in `on`, or a connect failure / timeout when `"connect"` / `"timeout"` are in `on`.
    case error
}

extension ErrorSet {
    /// Classifies an upstream status: in `statuses` is an error, anything else a success.
    ///
    /// A `Set` lookup, O(1). On the request path prefer `ResolvedRoute.classify(status:)`, which
    /// answers from a bitmap built once per route.
    ///
    /// Connect failures and timeouts have no status: they are `.error` when `connect` / `timeout`
    /// is set, and otherwise should not be recorded at all (a refused connection says nothing
    /// about the client, so it must neither raise nor clear its level).
    public func classify(status: Int) -> Outcome {
        statuses.contains(status) ? .error : .success
    }
}

/// `on` as a bitmap over statuses 0..<640, built once per route so classification is one shift
/// and one mask on the request path.
public struct StatusClassifier: Sendable, Equatable {
    private static let words = 10
    private let bits: [UInt64]
    /// The set it was built from: statuses outside 0..<640 (never valid HTTP) are looked up here.
    private let statuses: Set<Int>

    /// A bitmap of `set.statuses`.
    public init(_ set: ErrorSet) {
        self.init(statuses: set.statuses)
    }

    /// A bitmap of `statuses` (such as `retry_on`).
    public init(statuses: Set<Int>) {
        var bits = [UInt64](repeating: 0, count: StatusClassifier.words)
        for status in statuses where status >= 0 && status < StatusClassifier.words * 64 {
            bits[status >> 6] |= 1 << UInt64(status & 63)
        }
        self.bits = bits
        self.statuses = statuses
    }

    /// The same answer as `ErrorSet.classify(status:)`.
    @inline(__always)
    public func classify(status: Int) -> Outcome {
        contains(status) ? .error : .success
    }

    /// Whether `status` is in the set: O(1), no hashing.
    @inline(__always)
    public func contains(_ status: Int) -> Bool {
        guard status >= 0 && status < StatusClassifier.words * 64 else { return statuses.contains(status) }
        return bits[status >> 6] & (1 << UInt64(status & 63)) != 0
    }
}

extension BackoffPolicy {
    // delay(n) is the same for every n from here on for any factor > 1.0000...: 2^1024 overflows a
    // Double. Capping n first keeps the arithmetic finite for a client that fails forever.
    private static let exponentCap = 4096

    /// The window for the `level`-th window of a streak, before jitter, in nanoseconds:
    /// `min(max, base * factor^(level-1))` (exponential) or `min(max, base * level)` (linear).
    ///
    /// `level` is the count of errors past the threshold; with `threshold = 1` the first error is
    /// level 1 and gets `base`. Never negative, never above `max`, never traps.
    public func delay(level: Int) -> Duration {
        .nanoseconds(delayNanoseconds(level: level))
    }

    /// The jittered window: `delay(level) * (1 - jitter * u)`, for `u` uniform in [0, 1).
    ///
    /// Jitter is applied after the cap, so windows at the cap are spread over
    /// [max * (1 - jitter), max] instead of all ending at `max` together (fleet PR #53357).
    public func window(level: Int, u: Double) -> Duration {
        .nanoseconds(windowNanoseconds(level: level, u: u))
    }

    /// `delay(level:)` in nanoseconds.
    func delayNanoseconds(level: Int) -> Int64 {
        let n = Swift.max(1, level)
        let baseNs = Swift.max(0, base.clampedNanoseconds)
        let maxNs = Swift.max(0, max.clampedNanoseconds)
        let raw: Double
        switch strategy {
        case .exponential:
            raw = Double(baseNs) * BackoffPolicy.power(factor, Swift.min(n - 1, BackoffPolicy.exponentCap))
        case .linear:
            raw = Double(baseNs) * Double(n)
        }
        // NaN (0 * inf) and inf both land on the cap; a negative factor's odd powers on zero.
        guard raw < Double(maxNs) else { return raw.isNaN && baseNs == 0 ? 0 : maxNs }
        return raw > 0 ? Int64(raw) : 0
    }

    /// `window(level:u:)` in nanoseconds.
    func windowNanoseconds(level: Int, u: Double) -> Int64 {
        let delay = delayNanoseconds(level: level)
        let spread = Swift.min(Swift.max(jitter.isNaN ? 0 : jitter, 0), 1)
        let draw = u.isNaN ? 0 : Swift.min(Swift.max(u, 0), 1)
        let jittered = Double(delay) * (1 - spread * draw)
        // Rounding down keeps the result at or below `delay`, hence at or below `max`.
        return Swift.min(delay, Swift.max(0, Int64(jittered.rounded(.down))))
    }

    /// `x^n` by repeated squaring: O(log n) and free of libm, so the core needs no Glibc for it.
    private static func power(_ x: Double, _ n: Int) -> Double {
        var result = 1.0
        var base = x
        var exponent = n
        while exponent > 0 {
            if exponent & 1 == 1 { result *= base }
            exponent >>= 1
            if exponent > 0 { base *= base }
        }
        return result
    }
}

/// SplitMix64 (Steele, Lea, Flood): the per-shard source of jitter.
///
/// Tiny state, statistically sound for spreading windows, and seeded explicitly so a run can be
/// reproduced. Not for secrets: the hash key comes from `SystemRandomNumberGenerator`.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    init(seed: UInt64) {
        state = seed
    }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ z >> 30) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ z >> 27) &* 0x94D0_49BB_1331_11EB
        return z ^ z >> 31
    }

    /// A uniform draw from [0, 1): the top 53 bits as a Double's mantissa.
    mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}
