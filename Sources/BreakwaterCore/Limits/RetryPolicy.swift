/// When and how long to wait before sending a request to the upstream again (flyctl's lesson:
/// one transient failure must not fail the whole operation, and retries must never become a storm).
public struct RetryPolicy: Sendable {
    /// Why an attempt is retried; the `reason` label of `breakwater_upstream_retries_total`.
    public enum Reason: String, Sendable, CaseIterable {
        /// The upstream refused (or could not be reached for) the connection.
        case connect
        /// The connection was reset or closed before any response byte.
        case reset
        /// The upstream answered with a status listed in `retry_on`.
        case status
    }

    /// `upstream.retries`: retries after the first attempt.
    public var retries: Int
    /// `upstream.retry_base`: the first wait is drawn from [0, base), doubling after each retry.
    public var base: Duration
    /// `upstream.retry_on`, as a bitmap for the check on every response.
    private let retryOn: StatusClassifier

    /// A policy from the `[upstream]` keys.
    public init(_ upstream: UpstreamConfig) {
        retries = upstream.retries
        base = upstream.retryBase
        retryOn = StatusClassifier(statuses: upstream.retryOn)
    }

    /// Whether `retry_on` lists `status`.
    @inline(__always)
    public func isRetryable(status: Int) -> Bool { retryOn.contains(status) }

    /// Whether an answer whose status `retry_on` lists is retried, given whether it carries a
    /// `Retry-After`: an upstream that says when to come back (a 503 or 429 with Retry-After) is
    /// not asked again within the same request; its answer goes to the client, Retry-After included.
    /// Asked only for a status in `retry_on`, so other answers cost no header scan.
    @inline(__always)
    public static func retriesAnswer(hasRetryAfter: Bool) -> Bool { !hasRetryAfter }

    /// Methods that may be sent twice without a second effect (RFC 9110 9.2.2), or any request
    /// that carries an `Idempotency-Key`.
    public static func isIdempotent(method: some StringProtocol, hasIdempotencyKey: Bool) -> Bool {
        switch method {
        case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE": return true
        default: return hasIdempotencyKey
        }
    }

    /// The wait before retry number `attempt` (1-based): full jitter, `u * base * 2^(attempt-1)`,
    /// never past `remaining` (the request's own timeout). Nil when no time is left to retry.
    public func wait(attempt: Int, u: Double, remaining: Duration) -> Duration? {
        guard remaining > .zero else { return nil }
        let ceiling = base * Double(1 << min(max(attempt - 1, 0), 20))
        let drawn = ceiling * min(max(u, 0), 1)
        return drawn < remaining ? drawn : nil
    }
}

/// Retries may add at most `fraction` of the requests of the last `window` (10 s): beyond that a
/// failure is answered at once. So that a quiet proxy can still absorb a blip, the budget is never
/// below `minimum` retries per window (a floor, not an addition: under load the fraction rules).
/// Counts live in one-second buckets, so memory is constant. Not thread-safe: each worker keeps its own.
public struct RetryBudget: Sendable {
    /// The share of requests that retries may add, `upstream.retry_budget`.
    public var fraction: Double
    /// Retries always allowed per window, however few the requests.
    public var minimum = 10
    private var requests: [Int]
    private var retries: [Int]
    private var stamps: [Int64]
    private let bucketNanoseconds: Int64 = 1_000_000_000

    /// A budget over `buckets` one-second buckets.
    public init(fraction: Double, buckets: Int = 10) {
        self.fraction = fraction
        requests = Array(repeating: 0, count: buckets)
        retries = Array(repeating: 0, count: buckets)
        stamps = Array(repeating: -1, count: buckets)
    }

    private mutating func bucket(_ now: Int64) -> Int {
        let second = now / bucketNanoseconds
        let index = Int(second % Int64(stamps.count))
        if stamps[index] != second {
            stamps[index] = second
            requests[index] = 0
            retries[index] = 0
        }
        return index
    }

    private func total(_ counts: [Int], _ now: Int64) -> Int {
        let second = now / bucketNanoseconds
        var sum = 0
        for i in counts.indices where stamps[i] > second - Int64(stamps.count) { sum += counts[i] }
        return sum
    }

    /// Counts one client request sent upstream.
    public mutating func recordRequest(now: Int64) {
        requests[bucket(now)] += 1
    }

    /// Takes one retry from the budget if it allows one more; false means fail fast.
    public mutating func takeRetry(now: Int64) -> Bool {
        let index = bucket(now)
        let budget = max(Double(minimum), fraction * Double(total(requests, now)))
        let allowed = Double(total(retries, now) + 1) <= budget
        if allowed { retries[index] += 1 }
        return allowed
    }
}
