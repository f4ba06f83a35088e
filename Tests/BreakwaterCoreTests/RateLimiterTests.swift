import Testing
@testable import BreakwaterCore

@Suite struct RateLimiterTests {
    let clock = ManualClock()
    let key = ClientKey(value: 7)

    @Test func secondRequestWithoutBurstWaitsExactlyOneInterval() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 10)
        #expect(limiter.check(key, rate: rate, burst: 0) == nil)
        #expect(limiter.check(key, rate: rate, burst: 0) == .milliseconds(100))
        clock.advance(by: .milliseconds(40))
        #expect(limiter.check(key, rate: rate, burst: 0) == .milliseconds(60))
        clock.advance(by: .milliseconds(60))
        #expect(limiter.check(key, rate: rate, burst: 0) == nil)
    }

    @Test func burstAdmitsBurstPlusOneAtOnce() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 10)
        let admitted = (0..<30).filter { _ in limiter.check(key, rate: rate, burst: 20) == nil }.count
        #expect(admitted == 21)
        #expect(limiter.check(key, rate: rate, burst: 20) == .milliseconds(100))
    }

    @Test func refusedRequestsDoNotPushTheClientFurtherBack() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 2)
        #expect(limiter.check(key, rate: rate, burst: 0) == nil)
        for _ in 0..<100 { #expect(limiter.check(key, rate: rate, burst: 0) != nil) }
        clock.advance(by: .milliseconds(500))
        #expect(limiter.check(key, rate: rate, burst: 0) == nil)
    }

    @Test func steadyRateAtTheLimitIsAlwaysAdmitted() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 5)
        for _ in 0..<1_000 {
            #expect(limiter.check(key, rate: rate, burst: 0) == nil)
            clock.advance(by: .milliseconds(200))
        }
    }

    @Test func slowRatesPerMinuteAreExact() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 6.0 / 60)  // 6r/m
        #expect(limiter.check(key, rate: rate, burst: 0) == nil)
        #expect(limiter.check(key, rate: rate, burst: 0) == .seconds(10))
        #expect(RetryAfter.seconds(.seconds(10)) == 10)
    }

    @Test func keysAreIndependent() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        let rate = Rate(perSecond: 1)
        #expect(limiter.check(ClientKey(value: 1), rate: rate, burst: 0) == nil)
        #expect(limiter.check(ClientKey(value: 2), rate: rate, burst: 0) == nil)
        #expect(limiter.check(ClientKey(value: 1), rate: rate, burst: 0) != nil)
    }

    @Test func nonPositiveRateMeansNoLimit() {
        let limiter = RateLimiter(maxKeys: 100, clock: clock)
        for _ in 0..<10 { #expect(limiter.check(key, rate: Rate(perSecond: 0), burst: 0) == nil) }
        #expect(limiter.trackedCount == 0)
    }

    @Test func memoryIsBoundedAndStaleKeysGoFirst() {
        let limiter = RateLimiter(maxKeys: 64, clock: clock, shards: 4)
        let rate = Rate(perSecond: 1)
        for i in 0..<10_000 {
            _ = limiter.check(ClientKey(value: UInt64(i)), rate: rate, burst: 0)
            clock.advance(by: .seconds(1))
        }
        #expect(limiter.trackedCount <= 64)
        #expect(limiter.evictions == 0, "every evicted key had already passed its TAT")
        for i in 0..<1_000 { _ = limiter.check(ClientKey(value: UInt64(100_000 + i)), rate: rate, burst: 0) }
        #expect(limiter.trackedCount <= 64)
        #expect(limiter.evictions > 0)
    }
}
