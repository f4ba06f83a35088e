import Foundation
import Testing
@testable import BreakwaterCore

/// Starts `count` threads that wait at one gate and are released together, then waits for all.
func runTogether(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let gate = NSCondition()
    let open = LockedValue(false)
    let done = DispatchGroup()
    for i in 0..<count {
        done.enter()
        let thread = Thread {
            gate.lock()
            while !open.withLock({ $0 }) { gate.wait() }
            gate.unlock()
            body(i)
            done.leave()
        }
        thread.start()
    }
    gate.lock()
    open.withLock { $0 = true }
    gate.broadcast()
    gate.unlock()
    done.wait()
}

/// The tracker and the limiter hammered from many threads; also run under ThreadSanitizer.
@Suite struct TrackerConcurrencyTests {
    @Test func concurrentErrorsAreAllCounted() {
        // With the clock standing still, order does not matter: a serial replay gives the same
        // count per key, and one window each (all errors after the first land inside it).
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 1_000, clock: clock, seed: 3, shards: 8)
        let keys = (0..<16).map { ClientKey(value: UInt64($0) &* 0x1234_5678_9ABC) }
        let threads = 8, perThread = 2_000
        let p = BackoffPolicy(max: .seconds(2))
        runTogether(threads) { t in
            for i in 0..<perThread {
                _ = tracker.record(keys[(i + t) % keys.count], outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)
            }
        }
        for key in keys {
            let state = tracker.client(key)
            #expect(state?.consecutiveErrors == threads * perThread / keys.count)
            #expect(state?.level == 1)
        }
        #expect(tracker.integrityProblem() == nil)
    }

    @Test func oneProbeWhileFiftyRequestsWait() {
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 100, clock: clock, seed: 1, shards: 4)
        let key = ClientKey(value: 50)
        let p = BackoffPolicy(max: .seconds(2))
        var window = tracker.record(key, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)!
        for _ in 0..<20 {
            clock.advance(by: window)
            let verdicts = LockedValue<[Verdict]>([])
            runTogether(50) { _ in
                let verdict = tracker.check(key, policy: p)
                verdicts.withLock { $0.append(verdict) }
            }
            let all = verdicts.withLock { $0 }
            #expect(all.count == 50)
            #expect(all.filter { $0 == .probe }.count == 1)
            #expect(all.filter { $0 == .reject(.probe, retryAfter: .seconds(1)) }.count == 49)
            window = tracker.record(key, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)!
        }
    }

    @Test func neverTwoProbesInFlightForOneKey() {
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 100, clock: clock, shards: 2, probeLease: .seconds(1_000_000),
                                   random: { 0 })
        let keys = (0..<4).map { ClientKey(value: UInt64($0)) }
        let p = BackoffPolicy(max: .seconds(2))
        for key in keys { _ = tracker.record(key, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil) }
        let inFlight = LockedValue([Int](repeating: 0, count: keys.count))
        let violations = LockedValue(0)
        let probes = LockedValue(0)
        runTogether(16) { t in
            for i in 0..<3_000 {
                let k = (i + t) % keys.count
                if i % 50 == 0 { clock.advance(by: .milliseconds(700)) }
                switch tracker.check(keys[k], policy: p) {
                case .probe:
                    let concurrent = inFlight.withLock { $0[k] += 1; return $0[k] }
                    if concurrent != 1 { violations.withLock { $0 += 1 } }
                    probes.withLock { $0 += 1 }
                    inFlight.withLock { $0[k] -= 1 }
                    // Every third probe succeeds, which clears the key; it comes back on its next error.
                    let outcome: Outcome = i % 3 == 0 ? .success : .error
                    _ = tracker.record(keys[k], outcome: outcome, policy: p, routeIndex: 0, upstreamRetryAfter: nil)
                case .forward:
                    _ = tracker.record(keys[k], outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)
                case .reject:
                    break
                }
            }
        }
        #expect(violations.withLock { $0 } == 0)
        #expect(probes.withLock { $0 } > 10)
        #expect(tracker.integrityProblem() == nil)
    }

    @Test func successesAfterErrorsClearEveryKey() {
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 10_000, clock: clock, seed: 9, shards: 16)
        let p = BackoffPolicy(max: .seconds(2), threshold: 2)
        let keys = (0..<500).map { ClientKey(value: UInt64($0)) }
        runTogether(8) { t in
            for key in keys { _ = tracker.record(key, outcome: .error, policy: p, routeIndex: t, upstreamRetryAfter: nil) }
        }
        #expect(tracker.trackedCount == keys.count)
        #expect(keys.allSatisfy { tracker.client($0)?.consecutiveErrors == 8 })
        runTogether(8) { t in
            for key in keys where key.value % 8 == UInt64(t) {
                _ = tracker.record(key, outcome: .success, policy: p, routeIndex: t, upstreamRetryAfter: nil)
            }
        }
        #expect(tracker.trackedCount == 0)
        #expect(tracker.integrityProblem() == nil)
    }

    @Test func evictionUnderContentionKeepsTheBoundAndTheBlocked() {
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 256, clock: clock, seed: 4, shards: 8)
        let p = BackoffPolicy(max: .seconds(2), threshold: 3)
        let blocked = (0..<16).map { ClientKey(value: 0xB10C_0000 + UInt64($0)) }
        for key in blocked {
            for _ in 0..<3 { _ = tracker.record(key, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil) }
        }
        runTogether(8) { t in
            for i in 0..<5_000 {
                let fresh = ClientKey(value: UInt64(t * 1_000_000 + i))
                _ = tracker.record(fresh, outcome: .error, policy: p, routeIndex: 0, upstreamRetryAfter: nil)
                _ = tracker.check(blocked[i % blocked.count], policy: p)
            }
        }
        #expect(tracker.trackedCount <= 256)
        #expect(tracker.integrityProblem() == nil)
        for key in blocked { #expect(tracker.client(key)?.level == 1) }
    }

    @Test func statsReadersRunBesideWriters() {
        let clock = ManualClock()
        let tracker = ErrorTracker(maxClients: 512, clock: clock, seed: 5, shards: 8)
        let p = BackoffPolicy(max: .seconds(2))
        runTogether(6) { t in
            for i in 0..<2_000 {
                if t == 0 {
                    _ = tracker.top(5)
                    _ = tracker.blockedCount
                    if i % 100 == 0 { tracker.purgeExpired() }
                } else {
                    _ = tracker.record(ClientKey(value: UInt64(i % 700)), outcome: i % 5 == 0 ? .success : .error,
                                       policy: p, routeIndex: 0, upstreamRetryAfter: nil)
                    if i % 200 == 0 { clock.advance(by: .seconds(1)) }
                }
            }
        }
        #expect(tracker.trackedCount <= 512)
        #expect(tracker.integrityProblem() == nil)
    }

    @Test func limiterAdmitsExactlyTheBurstUnderContention() {
        let clock = ManualClock()
        let limiter = RateLimiter(maxKeys: 100, clock: clock, shards: 4)
        let key = ClientKey(value: 21)
        let admitted = LockedValue(0)
        runTogether(8) { _ in
            for _ in 0..<500 where limiter.check(key, rate: Rate(perSecond: 10), burst: 20) == nil {
                admitted.withLock { $0 += 1 }
            }
        }
        #expect(admitted.withLock { $0 } == 21)
    }
}
