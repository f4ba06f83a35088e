import Testing
@testable import BreakwaterCore

@Suite struct BackoffTests {
    @Test func exponentialDoublesFromBaseUpToMax() {
        let p = BackoffPolicy(max: .seconds(8))
        let delays = (1...8).map { p.delay(level: $0) }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4),
                           .seconds(8), .seconds(8), .seconds(8), .seconds(8)])
    }

    @Test func linearGrowsByBaseEachLevel() {
        let p = BackoffPolicy(strategy: .linear, base: .seconds(10), max: .seconds(35))
        #expect((1...5).map { p.delay(level: $0) } == [.seconds(10), .seconds(20), .seconds(30), .seconds(35), .seconds(35)])
    }

    @Test func hugeLevelsStayAtMaxWithoutOverflow() {
        let p = BackoffPolicy()
        for level in [64, 1_024, 10_000, Int(UInt32.max), Int.max] {
            #expect(p.delay(level: level) == .seconds(600))
        }
        for level in [1_200, 10_000, Int(UInt32.max), Int.max] {
            #expect(BackoffPolicy(strategy: .linear).delay(level: level) == .seconds(600))
        }
    }

    @Test func levelBelowOneIsTreatedAsOne() {
        #expect(BackoffPolicy().delay(level: 0) == .milliseconds(500))
        #expect(BackoffPolicy().delay(level: -3) == .milliseconds(500))
    }

    @Test func jitterShortensWithinTheConfiguredFraction() {
        let p = BackoffPolicy(jitter: 0.2)
        var rng = SplitMix64(seed: 7)
        for level in 1...12 {
            let delay = p.delayNanoseconds(level: level)
            for _ in 0..<200 {
                let window = p.windowNanoseconds(level: level, u: rng.nextUnit())
                #expect(window <= delay)
                #expect(Double(window) >= Double(delay) * 0.8 - 1)
            }
        }
        #expect(p.window(level: 1, u: 0) == .milliseconds(500))
        #expect(p.window(level: 1, u: 0.5) == .milliseconds(450))
    }

    @Test func jitterStillSpreadsWindowsAtTheCap() {
        // fleet PR #53357: clamping after jitter made every agent wait exactly `max` again.
        let p = BackoffPolicy(max: .seconds(60), jitter: 0.2)
        var rng = SplitMix64(seed: 53_357)
        let windows = (0..<500).map { _ in p.windowNanoseconds(level: 40, u: rng.nextUnit()) }
        #expect(Set(windows).count > 400)
        #expect(windows.allSatisfy { $0 <= 60_000_000_000 && $0 >= 48_000_000_000 })
        #expect(windows.min()! < 50_000_000_000)
        #expect(windows.max()! > 58_000_000_000)
    }

    @Test func zeroJitterGivesExactDelay() {
        let p = BackoffPolicy(jitter: 0)
        #expect(p.window(level: 3, u: 0.9) == .seconds(2))
    }

    @Test func errorSetClassifiesStatuses() {
        let on = ErrorSet.default
        #expect(on.classify(status: 401) == .error)
        #expect(on.classify(status: 503) == .error)
        #expect(on.classify(status: 200) == .success)
        #expect(on.classify(status: 404) == .success)
        #expect(on.classify(status: 429) == .success)
    }

    @Test func statusBitmapAgreesWithTheSet() {
        let on = ErrorSet(statuses: [0, 63, 64, 401, 599, 639, 640, 1_000, -1], connect: false, timeout: false)
        let bitmap = StatusClassifier(on)
        for status in -2...1_100 {
            #expect(bitmap.classify(status: status) == on.classify(status: status), "status \(status)")
        }
    }

    @Test func splitMixIsReproducibleAndInRange() {
        var a = SplitMix64(seed: 42)
        var b = SplitMix64(seed: 42)
        for _ in 0..<1_000 {
            let u = a.nextUnit()
            #expect(u == b.nextUnit())
            #expect(u >= 0 && u < 1)
        }
    }
}

@Suite struct RetryAfterTests {
    @Test func secondsRoundUpAndAreAtLeastOne() {
        #expect(RetryAfter.seconds(.milliseconds(200)) == 1)
        #expect(RetryAfter.seconds(.seconds(1)) == 1)
        #expect(RetryAfter.seconds(.milliseconds(1_010)) == 2)
        #expect(RetryAfter.seconds(.nanoseconds(8_000_000_001)) == 9)
        #expect(RetryAfter.seconds(.zero) == 1)
        #expect(RetryAfter.seconds(.seconds(-5)) == 1)
        #expect(RetryAfter.seconds(.seconds(600)) == 600)
    }

    @Test func parsesDelaySeconds() {
        #expect(RetryAfter.parse("120", now: 0) == .seconds(120))
        #expect(RetryAfter.parse(" 0 ", now: 0) == .zero)
        #expect(RetryAfter.parse("-5", now: 0) == nil)
        #expect(RetryAfter.parse("1.5", now: 0) == nil)
        #expect(RetryAfter.parse("", now: 0) == nil)
        #expect(RetryAfter.parse("soon", now: 0) == nil)
        #expect(RetryAfter.parse("99999999999999999999999", now: 0) == nil)
    }

    @Test func parsesAllThreeHTTPDateForms() {
        let date: Int64 = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
        let now = date - 90
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == .seconds(90))
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:49:37 GMT", now: now) == .seconds(90))
        #expect(RetryAfter.parse("Sun Nov  6 08:49:37 1994", now: now) == .seconds(90))
    }

    @Test func pastDatesMeanNoWait() {
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", now: 1_700_000_000) == .zero)
    }

    @Test func leapYearsAndYearEndsAreRight() {
        // 2024-02-29 00:00:00 and 2000-12-31 23:59:59 UTC.
        #expect(RetryAfter.parse("Thu, 29 Feb 2024 00:00:00 GMT", now: 1_709_164_800 - 1) == .seconds(1))
        #expect(RetryAfter.parse("Sun, 31 Dec 2000 23:59:59 GMT", now: 978_307_199 - 2) == .seconds(2))
    }

    @Test func rejectsMalformedDates() {
        for bad in ["Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                    "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08-49-37 GMT"] {
            #expect(RetryAfter.parse(bad, now: 0) == nil, "\(bad)")
        }
    }
}
