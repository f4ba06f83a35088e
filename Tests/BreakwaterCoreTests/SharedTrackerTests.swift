import Testing
@testable import BreakwaterCore

/// The pure parts of the shared tracker: the clean-key cache, script arguments, reply decoding.
/// (The scripts themselves run against a real Redis in BreakwaterServerTests/RedisScriptTests.)
@Suite struct SharedTrackerTests {
    @Test func cleanKeysExpireAfterTheirTTLAndErrorsInvalidateThem() {
        var cache = CleanKeyCache(capacity: 8, ttl: .milliseconds(250))
        let key = ClientKey(value: 0xdead_beef)
        #expect(!cache.isClean(key, now: 0))
        cache.markClean(key, now: 1_000)
        #expect(cache.isClean(key, now: 1_000))
        #expect(cache.isClean(key, now: 1_000 + 249_999_999))
        #expect(!cache.isClean(key, now: 1_000 + 250_000_000))
        cache.markClean(key, now: 2_000)
        cache.invalidate(key)
        #expect(!cache.isClean(key, now: 2_000))
    }

    @Test func aCollidingKeyReplacesTheSlotAndIsNeverMistakenForTheOther() {
        var cache = CleanKeyCache(capacity: 8, ttl: .seconds(1))
        let a = ClientKey(value: 0x10), b = ClientKey(value: 0x18)   // same low 3 bits
        cache.markClean(a, now: 0)
        cache.markClean(b, now: 0)
        #expect(cache.isClean(b, now: 1))
        #expect(!cache.isClean(a, now: 1))
        cache.invalidate(a)   // not in the slot: leaves b alone
        #expect(cache.isClean(b, now: 1))
        cache.removeAll()
        #expect(!cache.isClean(b, now: 1))
    }

    @Test func aZeroTTLTurnsTheCacheOff() {
        var cache = CleanKeyCache(capacity: 4, ttl: .zero)
        cache.markClean(ClientKey(value: 1), now: 0)
        #expect(!cache.isClean(ClientKey(value: 1), now: 0))
    }

    @Test func errorArgumentsCarryThePolicyClampedAsTheTrackerClampsIt() {
        var policy = BackoffPolicy(base: .milliseconds(500), max: .seconds(600), jitter: 1.5, threshold: 0,
                                   resetAfter: .seconds(900))
        let args = SharedTracker.errorArguments(policy: policy, u: 0.25, upstreamRetryAfter: .seconds(200_000))
        #expect(args == ["1", "e", "500000000", "2.0", "600000000000", "1.0", "0.25", "900000000", "86400000000000"])
        policy.strategy = .linear
        #expect(SharedTracker.errorArguments(policy: policy, u: .nan, upstreamRetryAfter: nil)[1] == "l")
        #expect(SharedTracker.errorArguments(policy: policy, u: .nan, upstreamRetryAfter: nil)[6] == "0.0")
        #expect(SharedTracker.errorArguments(policy: policy, u: 0, upstreamRetryAfter: nil)[8] == "-1")
    }

    @Test func checkRepliesDecodeToTheTrackersVerdicts() {
        #expect(SharedTracker.verdict(code: 0, remainingMicroseconds: 0)! == (.forward, true))
        #expect(SharedTracker.verdict(code: 1, remainingMicroseconds: 0)! == (.forward, false))
        #expect(SharedTracker.verdict(code: 2, remainingMicroseconds: 0)! == (.probe, false))
        #expect(SharedTracker.verdict(code: 3, remainingMicroseconds: 1_500_000)! == (.reject(.backoff, retryAfter: .microseconds(1_500_000)), false))
        #expect(SharedTracker.verdict(code: 4, remainingMicroseconds: 9)! == (.reject(.probe, retryAfter: ErrorTracker<ManualClock>.probeRetryHint), false))
        #expect(SharedTracker.verdict(code: 7, remainingMicroseconds: 0) == nil)
        #expect(SharedTracker.imposedWindow(-1) == nil)
        #expect(SharedTracker.imposedWindow(2_000_000_000) == .seconds(2))
    }

    @Test func reconnectDelaysDoubleFrom100msTo5sAndSpreadByUpToHalf() {
        let p = SharedTracker.reconnect
        #expect((1...8).map { p.delay(level: $0) } == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                                                     .milliseconds(1600), .milliseconds(3200), .seconds(5), .seconds(5)])
        #expect(p.window(level: 40, u: 0.999) > .milliseconds(2500))
        #expect(p.window(level: 40, u: 0.999) < .seconds(5))
    }

    @Test func theLocalTrackerIsAStoreThatAnswersAtOnce() {
        let tracker = ErrorTracker(maxClients: 10, clock: ManualClock(), random: { 0 })
        let store: TrackerStore = tracker
        let key = ClientKey(value: 42)
        let policy = BackoffPolicy(base: .seconds(1))
        #expect(store.checkNow(key, policy: policy) == .forward)
        final class Windows: WindowObserver {
            var seen: [Duration] = []
            func windowImposed(_ window: Duration) { seen.append(window) }
        }
        let windows = Windows()
        store.record(key, outcome: .error, policy: policy, routeIndex: 0, upstreamRetryAfter: nil, windows: windows)
        #expect(windows.seen == [.seconds(1)])
        var decided: Verdict?
        store.check(key, policy: policy) { decided = $0 }
        #expect(decided == .reject(.backoff, retryAfter: .seconds(1)))
        var known: Bool?
        store.forget(key) { known = $0 }
        #expect(known == true)
    }
}
