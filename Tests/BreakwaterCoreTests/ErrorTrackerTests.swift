import Testing
@testable import BreakwaterCore

/// The tracker's rules, driven by a manual clock: nothing here sleeps.
@Suite struct ErrorTrackerTests {
    let clock = ManualClock()
    let key = ClientKey(value: 0xA11CE)

    /// A tracker with no jitter unless `u` says otherwise, so windows are exactly `delay(n)`.
    func tracker(maxClients: Int = 1_000, u: Double = 0) -> ErrorTracker<ManualClock> {
        ErrorTracker(maxClients: maxClients, clock: clock, shards: 4, random: { u })
    }

    func fail(_ t: ErrorTracker<ManualClock>, _ key: ClientKey, _ p: BackoffPolicy, retryAfter: Duration? = nil) -> Duration? {
        t.record(key, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: retryAfter)
    }

    func succeed(_ t: ErrorTracker<ManualClock>, _ key: ClientKey, _ p: BackoffPolicy) {
        _ = t.record(key, outcome: .success, policy: p, routeIndex: 0, upstreamRetryAfter: nil)
    }

    /// Runs one probe cycle: wait out the window, take the probe, fail it; returns the new window.
    func failProbe(_ t: ErrorTracker<ManualClock>, _ p: BackoffPolicy, after window: Duration) -> Duration? {
        clock.advance(by: window)
        #expect(t.check(key, policy: p) == .probe)
        return fail(t, key, p)
    }

    @Test func unknownClientIsForwarded() {
        let t = tracker()
        #expect(t.check(key, policy: BackoffPolicy()) == .forward)
        #expect(t.trackedCount == 0)
    }

    @Test func firstErrorBlocksForBaseThenOneProbe() {
        let t = tracker()
        let p = BackoffPolicy()
        #expect(fail(t, key, p) == .milliseconds(500))
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .milliseconds(500)))
        clock.advance(by: .milliseconds(200))
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .milliseconds(300)))
        clock.advance(by: .milliseconds(300))
        #expect(t.check(key, policy: p) == .probe)
        #expect(t.check(key, policy: p) == .reject(.probe, retryAfter: .seconds(1)))
    }

    @Test func exponentialWindowsDoubleUpToMax() {
        let t = tracker()
        let p = BackoffPolicy(max: .seconds(8))
        var windows = [fail(t, key, p)!]
        for _ in 0..<6 { windows.append(failProbe(t, p, after: windows.last!)!) }
        #expect(windows == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        #expect(t.client(key)?.level == 7)
    }

    @Test func linearWindowsGrowOneBaseAtATime() {
        // Coder's prebuilds: 1x, 2x, 3x the interval.
        let t = tracker()
        let p = BackoffPolicy(strategy: .linear, base: .seconds(30), max: .seconds(3_600))
        var windows = [fail(t, key, p)!]
        for _ in 0..<3 { windows.append(failProbe(t, p, after: windows.last!)!) }
        #expect(windows == [.seconds(30), .seconds(60), .seconds(90), .seconds(120)])
    }

    @Test func thresholdThreeNeedsThreeErrorsBeforeTheFirstWindow() {
        let t = tracker()
        let p = BackoffPolicy(threshold: 3)
        #expect(fail(t, key, p) == nil)
        #expect(t.check(key, policy: p) == .forward)
        #expect(fail(t, key, p) == nil)
        #expect(t.check(key, policy: p) == .forward)
        #expect(fail(t, key, p) == .milliseconds(500))
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .milliseconds(500)))
        #expect(failProbe(t, p, after: .milliseconds(500)) == .seconds(1))
        #expect(t.client(key)?.consecutiveErrors == 4)
        #expect(t.client(key)?.level == 2)
    }

    @Test func jitteredWindowsStayWithinTheJitterFraction() {
        let t = ErrorTracker(maxClients: 100, clock: clock, seed: 99, shards: 1)
        let p = BackoffPolicy(max: .seconds(60))
        var seen = Set<Duration>()
        for i in 0..<200 {
            let k = ClientKey(value: UInt64(i))
            var window = fail(t, k, p)!
            for _ in 0..<12 {
                clock.advance(by: window)
                #expect(t.check(k, policy: p) == .probe)
                window = fail(t, k, p)!
            }
            // Level 13: far past the cap, still spread over [0.8 max, max].
            #expect(window <= .seconds(60) && window >= .seconds(48))
            seen.insert(window)
        }
        #expect(seen.count > 150)
    }

    @Test func successClearsAtOnceAndTheNextFailureStartsFromBase() {
        // NetBird: state left over from before a long healthy period must not decide anything.
        let t = tracker()
        let p = BackoffPolicy()
        var window = fail(t, key, p)!
        for _ in 0..<5 { window = failProbe(t, p, after: window)! }
        #expect(window == .seconds(16))
        clock.advance(by: window)
        #expect(t.check(key, policy: p) == .probe)
        succeed(t, key, p)
        #expect(t.client(key) == nil)
        #expect(t.check(key, policy: p) == .forward)
        clock.advance(by: .seconds(30 * 86_400))
        #expect(fail(t, key, p) == .milliseconds(500))
    }

    @Test func idleEntryIsForgottenAfterResetAfter() {
        // Wave: a period of stability resets the backoff.
        let t = tracker()
        let p = BackoffPolicy(threshold: 3, resetAfter: .seconds(60))
        _ = fail(t, key, p)
        _ = fail(t, key, p)
        clock.advance(by: .seconds(59))
        #expect(t.client(key)?.consecutiveErrors == 2)
        clock.advance(by: .seconds(1))
        #expect(t.client(key) == nil)
        #expect(t.check(key, policy: p) == .forward)
        #expect(fail(t, key, p) == nil, "the count started again from zero")
    }

    @Test func resetAfterCountsFromTheWindowEnd() {
        // max (30 min) longer than reset_after (15 min): the client must stay at max, not be
        // forgotten while it waits out its own window.
        let t = tracker()
        let p = BackoffPolicy(base: .seconds(1_800), max: .seconds(1_800), resetAfter: .seconds(900))
        _ = fail(t, key, p)
        #expect(failProbe(t, p, after: .seconds(1_800)) == .seconds(1_800))
        #expect(t.client(key)?.level == 2)
        clock.advance(by: .seconds(1_800 + 899))
        #expect(t.check(key, policy: p) == .probe)
    }

    @Test func tenThousandFailuresStillBlockForMaxAndStillProbe() {
        // Never give up: no overflow, no exhaustion, one probe per window forever.
        let t = tracker()
        let p = BackoffPolicy(max: .seconds(600))
        var window = fail(t, key, p)!
        for _ in 1..<10_000 {
            clock.advance(by: window)
            #expect(t.check(key, policy: p) == .probe)
            window = fail(t, key, p)!
            #expect(window <= .seconds(600))
        }
        #expect(window == .seconds(600))
        #expect(t.client(key)?.consecutiveErrors == 10_000)
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .seconds(600)))
        clock.advance(by: .seconds(600))
        #expect(t.check(key, policy: p) == .probe)
        #expect(t.check(key, policy: p) == .reject(.probe, retryAfter: .seconds(1)))
    }

    @Test func upstreamRetryAfterIsAFloorOnTheWindow() {
        let t = tracker()
        let p = BackoffPolicy()
        #expect(fail(t, key, p, retryAfter: .seconds(30)) == .seconds(30))
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .seconds(30)))
        // A shorter upstream hint does not shorten our own window.
        #expect(failProbe(t, p, after: .seconds(30)) == .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(t.check(key, policy: p) == .probe)
        #expect(fail(t, key, p, retryAfter: .milliseconds(10)) == .seconds(2))
    }

    @Test func absurdUpstreamRetryAfterIsCapped() {
        let t = tracker()
        #expect(fail(t, key, BackoffPolicy(), retryAfter: .seconds(Int64.max)) == .seconds(86_400))
    }

    @Test func rejectedRequestsNeverExtendTheWindow() {
        // haproxy #615: hammering during a window must not push its end further away.
        let t = tracker()
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        for _ in 0..<1_000 {
            _ = t.check(key, policy: p)
            clock.advance(by: .microseconds(400))
        }
        #expect(clock.nanoseconds() == 400_000_000)
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .milliseconds(100)))
        clock.advance(by: .milliseconds(100))
        #expect(t.check(key, policy: p) == .probe)
    }

    @Test func errorsFromRequestsForwardedBeforeTheWindowDoNotEscalate() {
        // 50 parallel requests all answered 401: one window, not 50 levels.
        let t = tracker()
        let p = BackoffPolicy()
        #expect(fail(t, key, p) == .milliseconds(500))
        for _ in 1..<50 { #expect(fail(t, key, p) == nil) }
        let state = t.client(key)!
        #expect(state.consecutiveErrors == 50)
        #expect(state.level == 1)
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .milliseconds(500)))
    }

    @Test func upstreamRetryAfterExtendsAnOpenWindow() {
        let t = tracker()
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        #expect(fail(t, key, p, retryAfter: .seconds(10)) == .seconds(10))
        #expect(fail(t, key, p, retryAfter: .seconds(5)) == nil)
        #expect(t.check(key, policy: p) == .reject(.backoff, retryAfter: .seconds(10)))
    }

    @Test func abandonedProbeLetsTheNextRequestProbe() {
        let t = tracker()
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        clock.advance(by: .milliseconds(500))
        #expect(t.check(key, policy: p) == .probe)
        #expect(t.check(key, policy: p) == .reject(.probe, retryAfter: .seconds(1)))
        t.abandonProbe(key)
        #expect(t.check(key, policy: p) == .probe)
        #expect(t.client(key)?.probeInFlight == true)
    }

    @Test func lostProbeIsReplacedAfterTheLease() {
        let t = ErrorTracker(maxClients: 10, clock: clock, shards: 1, probeLease: .seconds(90), random: { 0 })
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        clock.advance(by: .milliseconds(500))
        #expect(t.check(key, policy: p) == .probe)
        clock.advance(by: .seconds(89))
        #expect(t.check(key, policy: p) == .reject(.probe, retryAfter: .seconds(1)))
        clock.advance(by: .seconds(1))
        #expect(t.check(key, policy: p) == .probe)
    }

    @Test func successOfAnyRequestClearsTheProbe() {
        let t = tracker()
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        clock.advance(by: .milliseconds(500))
        #expect(t.check(key, policy: p) == .probe)
        succeed(t, key, p)
        #expect(t.check(key, policy: p) == .forward)
    }

    @Test func forgetIsTheAdminReset() {
        let t = tracker()
        let p = BackoffPolicy()
        _ = fail(t, key, p)
        #expect(t.forget(key))
        #expect(!t.forget(key))
        #expect(t.check(key, policy: p) == .forward)
    }

    @Test func countsAndTopReflectTheTable() {
        let t = tracker()
        let p = BackoffPolicy(threshold: 2)
        let a = ClientKey(value: 1), b = ClientKey(value: 2), c = ClientKey(value: 3)
        _ = fail(t, a, p)
        for _ in 0..<2 { _ = fail(t, b, p) }
        for _ in 0..<2 { _ = fail(t, c, p) }
        clock.advance(by: .milliseconds(500))
        #expect(t.check(c, policy: p) == .probe)
        _ = t.record(c, outcome: .error, policy: p, routeIndex: 7, upstreamRetryAfter: nil)
        #expect(t.trackedCount == 3)
        #expect(t.blockedCount == 1)
        let top = t.top(2)
        #expect(top.map(\.key) == [c, b])
        #expect(top[0].level == 2 && top[0].consecutiveErrors == 3 && top[0].routeIndex == 7)
        #expect(top[0].windowEnd == clock.nanoseconds() + 1_000_000_000)
        #expect(t.top(10).count == 3)
        #expect(t.top(0).isEmpty)
    }

    @Test func purgeDropsExpiredEntries() {
        let t = tracker()
        let p = BackoffPolicy(threshold: 5, resetAfter: .seconds(10))
        for i in 0..<100 { _ = fail(t, ClientKey(value: UInt64(i)), p) }
        clock.advance(by: .seconds(5))
        for i in 0..<10 { _ = fail(t, ClientKey(value: UInt64(i)), p) }
        clock.advance(by: .seconds(5))
        #expect(t.purgeExpired() == 90)
        #expect(t.trackedCount == 10)
        #expect(t.integrityProblem() == nil)
    }

    @Test func evictionKeepsBlockedClientsWhileIdleOnesGo() {
        let t = tracker(maxClients: 64)
        let p = BackoffPolicy(threshold: 3)
        let blockedKeys = (0..<8).map { ClientKey(value: 0xB10C_0000 + UInt64($0)) }
        for k in blockedKeys { for _ in 0..<3 { _ = fail(t, k, p) } }
        // A flood of fresh keys, each with one error: far more than the table holds.
        for i in 0..<10_000 { _ = fail(t, ClientKey(value: UInt64(i)), p) }
        #expect(t.trackedCount <= 64)
        #expect(t.evictions >= 10_000 - 64)
        #expect(t.integrityProblem() == nil)
        for k in blockedKeys {
            #expect(t.check(k, policy: p) == .reject(.backoff, retryAfter: .milliseconds(500)))
        }
    }

    @Test func evictionPrefersEndedWindowsOverOpenOnes() {
        let t = tracker(maxClients: 16)
        let p = BackoffPolicy(threshold: 1)
        let longBlocked = (0..<4).map { ClientKey(value: 0xB10C_0000 + UInt64($0)) }
        for k in longBlocked { _ = fail(t, k, p, retryAfter: .seconds(3_600)) }
        // Fresh keys whose short windows end before the next wave arrives.
        for wave in 0..<50 {
            for i in 0..<16 { _ = fail(t, ClientKey(value: UInt64(wave * 100 + i)), p) }
            clock.advance(by: .seconds(1))
        }
        #expect(t.trackedCount == 16)
        #expect(t.integrityProblem() == nil)
        for k in longBlocked { #expect(t.client(k) != nil) }
    }

    @Test func idleEvictionGivesACheckedEntryASecondChance() {
        // One shard of 10, threshold 3: one error each leaves every key idle (level 0).
        let t = ErrorTracker(maxClients: 10, clock: clock, shards: 1, random: { 0 })
        let p = BackoffPolicy(threshold: 3)
        let keys = (0..<10).map { ClientKey(value: 0x1D1E_0000 + UInt64($0)) }
        for k in keys { _ = fail(t, k, p) }
        #expect(t.check(keys[0], policy: p) == .forward)
        _ = fail(t, ClientKey(value: 1), p)
        #expect(t.client(keys[0]) != nil, "seen since it was put in: sent back to the front")
        #expect(t.client(keys[1]) == nil, "the oldest entry not seen since")
        _ = fail(t, ClientKey(value: 2), p)
        #expect(t.client(keys[2]) == nil)
        #expect(t.client(keys[0]) != nil)
        #expect(t.integrityProblem() == nil)
    }

    @Test func idleEvictionGivesAtMostEightSecondChances() {
        // Every entry seen: eight go back to the front, the ninth from the tail goes even so,
        // so one insertion never walks the whole list.
        let t = ErrorTracker(maxClients: 10, clock: clock, shards: 1, random: { 0 })
        let p = BackoffPolicy(threshold: 3)
        let keys = (0..<10).map { ClientKey(value: 0x1D1E_0000 + UInt64($0)) }
        for k in keys { _ = fail(t, k, p) }
        for k in keys.reversed() { #expect(t.check(k, policy: p) == .forward) }
        _ = fail(t, ClientKey(value: 1), p)
        #expect(t.client(keys[8]) == nil)
        #expect(keys.filter { t.client($0) != nil }.count == 9)
        #expect(t.integrityProblem() == nil)
    }

    @Test func blockedEvictionCountsProbesButNotRejections() {
        // A rejected request changes nothing, so it does not refresh the entry's place; a probe
        // starts a new round and does.
        let t = ErrorTracker(maxClients: 3, clock: clock, shards: 1, random: { 0 })
        let p = BackoffPolicy()
        let a = ClientKey(value: 0xA), b = ClientKey(value: 0xB), c = ClientKey(value: 0xC)
        _ = fail(t, a, p)
        clock.advance(by: .milliseconds(1))
        _ = fail(t, b, p)
        _ = fail(t, c, p)
        #expect(t.check(a, policy: p) == .reject(.backoff, retryAfter: .milliseconds(499)))
        clock.advance(by: .milliseconds(500))
        #expect(t.check(b, policy: p) == .probe)
        _ = fail(t, ClientKey(value: 0xD), p)
        #expect(t.client(a) == nil, "window ended, and only rejected since its error")
        #expect(t.client(b) != nil && t.client(c) != nil)
        _ = fail(t, ClientKey(value: 0xE), p)
        #expect(t.client(c) == nil, "b probed after c's error: c goes first")
        #expect(t.client(b) != nil)
        #expect(t.integrityProblem() == nil)
    }

    @Test func presenceFilterCounterSaturatesWithoutLosingKeys() {
        // 40 keys on one filter counter (four bits): it stops at 15 and never claims one absent.
        let t = ErrorTracker(maxClients: 1_000, clock: clock, shards: 1, random: { 0 })
        let p = BackoffPolicy(threshold: 5)
        let filter = PresenceFilter(capacity: 1_000, shards: 1)
        defer { filter.deallocate() }
        var keys: [ClientKey] = []
        var candidate: UInt64 = 0
        while keys.count < 41 {
            if filter.slot(of: mix64(candidate)) == 7 { keys.append(ClientKey(value: candidate)) }
            candidate += 1
        }
        for k in keys.dropLast() { _ = fail(t, k, p) }
        #expect(keys.dropLast().allSatisfy { t.client($0)?.consecutiveErrors == 1 })
        #expect(t.integrityProblem() == nil)
        for k in keys.dropLast() { succeed(t, k, p) }
        #expect(t.trackedCount == 0)
        #expect(t.check(keys[0], policy: p) == .forward)
        _ = fail(t, keys[40], p)
        #expect(t.client(keys[40])?.consecutiveErrors == 1)
        #expect(t.integrityProblem() == nil)
    }

    @Test func presenceFilterCountsReturnToZero() {
        // Inserted, evicted, expired, forgotten, cleared: every counter ends where it started.
        let t = ErrorTracker(maxClients: 64, clock: clock, shards: 4, random: { 0 })
        let p = BackoffPolicy(threshold: 2, resetAfter: .seconds(10))
        for i in 0..<1_000 { _ = fail(t, ClientKey(value: UInt64(i) &* 0x9E37_79B9_7F4A_7C15), p) }
        #expect(t.integrityProblem() == nil)
        for i in 0..<1_000 where i % 3 == 0 { _ = t.forget(ClientKey(value: UInt64(i) &* 0x9E37_79B9_7F4A_7C15)) }
        for i in 0..<1_000 where i % 3 == 1 { succeed(t, ClientKey(value: UInt64(i) &* 0x9E37_79B9_7F4A_7C15), p) }
        #expect(t.integrityProblem() == nil)
        clock.advance(by: .seconds(10))
        t.purgeExpired()
        #expect(t.trackedCount == 0)
        #expect(t.integrityProblem() == nil)
        for i in 0..<1_000 {
            #expect(t.check(ClientKey(value: UInt64(i) &* 0x9E37_79B9_7F4A_7C15), policy: p) == .forward)
        }
    }

    @Test func tableStaysUnder96BytesPerClient() {
        let count = 100_000
        let t = ErrorTracker(maxClients: count, clock: clock, seed: 1)
        let p = BackoffPolicy()
        for i in 0..<(2 * count) { _ = fail(t, ClientKey(value: UInt64(i) &* 0x9E37_79B9_7F4A_7C15), p) }
        // Each shard holds its share of the bound, so a full table is within a few % of it.
        #expect(t.trackedCount <= count)
        #expect(t.trackedCount >= count * 97 / 100)
        #expect(MemoryLayout<TrackerEntry>.stride == 64)
        let perClient = Double(t.tableBytes) / Double(count)
        #expect(perClient <= 96, "\(perClient) bytes per client")
    }

    @Test func sameSeedGivesTheSameWindows() {
        let p = BackoffPolicy()
        func windows(seed: UInt64) -> [Duration] {
            let t = ErrorTracker(maxClients: 100, clock: ManualClock(), seed: seed, shards: 1)
            return (0..<20).map { t.record(ClientKey(value: UInt64($0)), outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)! }
        }
        #expect(windows(seed: 5) == windows(seed: 5))
        #expect(windows(seed: 5) != windows(seed: 6))
    }
}
