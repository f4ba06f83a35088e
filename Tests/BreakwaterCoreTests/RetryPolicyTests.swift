import Testing
@testable import BreakwaterCore

@Suite struct RetryPolicyTests {
    private var policy: RetryPolicy {
        var upstream = UpstreamConfig()
        upstream.retries = 3
        upstream.retryBase = .milliseconds(100)
        return RetryPolicy(upstream)
    }

    @Test func waitsGrowExponentiallyWithFullJitter() {
        let long = Duration.seconds(30)
        #expect(policy.wait(attempt: 1, u: 0.999_999, remaining: long)! < .milliseconds(100))
        #expect(policy.wait(attempt: 2, u: 0.5, remaining: long) == .milliseconds(100))
        #expect(policy.wait(attempt: 3, u: 0.5, remaining: long) == .milliseconds(200))
        #expect(policy.wait(attempt: 4, u: 0.5, remaining: long) == .milliseconds(400))
        #expect(policy.wait(attempt: 1, u: 0, remaining: long) == .zero)
    }

    @Test func waitsNeverOutlastTheRequestTimeout() {
        #expect(policy.wait(attempt: 4, u: 0.9, remaining: .milliseconds(300)) == nil)
        #expect(policy.wait(attempt: 1, u: 0.5, remaining: .zero) == nil)
        #expect(policy.wait(attempt: 1, u: 0.5, remaining: .milliseconds(60)) == .milliseconds(50))
    }

    @Test func anAnswerWithRetryAfterIsNeverRetried() {
        let policy = RetryPolicy(UpstreamConfig())
        #expect(policy.isRetryable(status: 503))
        #expect(RetryPolicy.retriesAnswer(hasRetryAfter: false))
        #expect(!RetryPolicy.retriesAnswer(hasRetryAfter: true))
        #expect(!policy.isRetryable(status: 429), "429 is never in retry_on")
        #expect(!policy.isRetryable(status: 500))
    }

    @Test func onlyIdempotentRequestsAreRetried() {
        for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"] {
            #expect(RetryPolicy.isIdempotent(method: method, hasIdempotencyKey: false))
        }
        #expect(!RetryPolicy.isIdempotent(method: "POST", hasIdempotencyKey: false))
        #expect(!RetryPolicy.isIdempotent(method: "PATCH", hasIdempotencyKey: false))
        #expect(RetryPolicy.isIdempotent(method: "POST", hasIdempotencyKey: true))
    }

    @Test func budgetAllowsAFifthOfRecentRequests() {
        var budget = RetryBudget(fraction: 0.2)
        let t: Int64 = 5_000_000_000
        for _ in 0..<100 { budget.recordRequest(now: t) }
        var granted = 0
        for _ in 0..<100 where budget.takeRetry(now: t) { granted += 1 }
        #expect(granted == 20)
    }

    @Test func budgetForgetsRequestsOlderThanTenSeconds() {
        var budget = RetryBudget(fraction: 0.2)
        budget.minimum = 0
        for _ in 0..<100 { budget.recordRequest(now: 1_000_000_000) }
        let inside = budget.takeRetry(now: 10_500_000_000)
        let outside = budget.takeRetry(now: 11_000_000_000)
        #expect(inside)
        #expect(!outside, "the requests of second 1 are out of the window")
    }

    @Test func aQuietProxyStillHasTheMinimumButNoMore() {
        var budget = RetryBudget(fraction: 0.2)
        budget.recordRequest(now: 0)
        var granted = 0
        for _ in 0..<50 where budget.takeRetry(now: 0) { granted += 1 }
        #expect(granted == 10)
    }
}
