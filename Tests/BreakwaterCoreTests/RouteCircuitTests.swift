import Testing
@testable import BreakwaterCore

/// The route circuit's rules, driven with clock readings and random draws: no sleeping.
@Suite struct RouteCircuitTests {
    private static let second: Int64 = 1_000_000_000

    private static func policy(_ configure: (inout CircuitPolicy) -> Void = { _ in }) -> CircuitPolicy {
        var p = CircuitPolicy()
        p.jitter = 0
        configure(&p)
        return p
    }

    @Test func connectErrorsAreTheRoutesAndOpenTheCircuitAtMinFailures() {
        var circuit = RouteCircuit(policy: Self.policy())
        let first = circuit.recordFailure(.connect, now: 0, isProbe: false, u: 0)
        #expect(first.0 == .route, "a refused connection says nothing about the client")
        #expect(first.1 == nil)
        #expect(circuit.admit(now: 1, u: 0) == .forward)
        _ = circuit.recordFailure(.timeout, now: 2, isProbe: false, u: 0)
        let third = circuit.recordFailure(.connect, now: 3, isProbe: false, u: 0)
        #expect(third == (.route, .opened))
        #expect(circuit.isOpen)
        #expect(circuit.admit(now: 4, u: 0) == .reject(retryAfter: .nanoseconds(Self.second - 1)))
    }

    @Test func aFewServerErrorsAmongManySuccessesStayTheClients() {
        var circuit = RouteCircuit(policy: Self.policy())
        for i in 0..<20 { _ = circuit.recordSuccess(now: Int64(i), isProbe: false) }
        for i in 0..<8 {
            let (blame, transition) = circuit.recordFailure(.status, now: 100 + Int64(i), isProbe: false, u: 0)
            #expect(blame == .client)
            #expect(transition == nil)
            if i % 2 == 0 { _ = circuit.recordSuccess(now: 100 + Int64(i), isProbe: false) }
        }
        #expect(!circuit.isOpen, "8 failures in 32 requests, never 3 in a row, are below share 0.5")
    }

    @Test func failuresInARowOpenTheCircuitWhateverCameBefore() {
        var circuit = RouteCircuit(policy: Self.policy())
        // A busy route: many successes in the window, far more than the failures that follow.
        for i in 0..<500 { _ = circuit.recordSuccess(now: Int64(i), isProbe: false) }
        #expect(circuit.recordFailure(.connect, now: 600, isProbe: false, u: 0) == (.route, nil))
        #expect(circuit.recordFailure(.connect, now: 601, isProbe: false, u: 0) == (.route, nil))
        #expect(circuit.recordFailure(.connect, now: 602, isProbe: false, u: 0) == (.route, .opened))
    }

    @Test func serverErrorsAboveTheShareOpenTheCircuitAndTheOpeningOneIsTheRoutes() {
        var circuit = RouteCircuit(policy: Self.policy { $0.minFailures = 4 })
        for i in 0..<3 { _ = circuit.recordSuccess(now: Int64(i), isProbe: false) }
        #expect(circuit.recordFailure(.status, now: 10, isProbe: false, u: 0).0 == .client)
        #expect(circuit.recordFailure(.status, now: 11, isProbe: false, u: 0).0 == .client)
        _ = circuit.recordSuccess(now: 12, isProbe: false)
        #expect(circuit.recordFailure(.status, now: 13, isProbe: false, u: 0).0 == .client)
        // 4 failures of 8 requests, never 4 in a row: the share is reached.
        #expect(circuit.recordFailure(.status, now: 14, isProbe: false, u: 0) == (.route, .opened))
        #expect(circuit.recordFailure(.status, now: 13, isProbe: false, u: 0) == (.route, nil), "open: every failure is the route's")
    }

    @Test func oneProbePerWindowThenAFailedProbeDoublesTheWindow() {
        var circuit = RouteCircuit(policy: Self.policy { $0.max = .seconds(10) })
        for i in 0..<3 { _ = circuit.recordFailure(.connect, now: Int64(i), isProbe: false, u: 0) }
        let opened = Int64(2)
        #expect(circuit.openUntil == opened + Self.second)
        #expect(circuit.admit(now: opened + Self.second, u: 0) == .probe)
        // While the probe is out, everyone else is turned away for base.
        #expect(circuit.admit(now: opened + Self.second + 1, u: 0) == .reject(retryAfter: .seconds(1)))
        let probeFailed = opened + Self.second + 5
        #expect(circuit.recordFailure(.connect, now: probeFailed, isProbe: true, u: 0) == (.route, nil))
        #expect(circuit.level == 2)
        #expect(circuit.openUntil == probeFailed + 2 * Self.second)
        #expect(circuit.admit(now: probeFailed + 2 * Self.second - 1, u: 0) == .reject(retryAfter: .nanoseconds(1)))
        #expect(circuit.admit(now: probeFailed + 2 * Self.second, u: 0) == .probe)
    }

    @Test func windowsStopAtMax() {
        var circuit = RouteCircuit(policy: Self.policy { $0.max = .seconds(4) })
        for i in 0..<3 { _ = circuit.recordFailure(.connect, now: Int64(i), isProbe: false, u: 0) }
        var now = Int64(2)
        for _ in 0..<10 {
            now = circuit.openUntil
            #expect(circuit.admit(now: now, u: 0) == .probe)
            _ = circuit.recordFailure(.timeout, now: now, isProbe: true, u: 0)
        }
        #expect(circuit.openUntil - now == 4 * Self.second)
    }

    @Test func theFirstSuccessClosesTheCircuitAndForgetsTheCounts() {
        var circuit = RouteCircuit(policy: Self.policy())
        for i in 0..<3 { _ = circuit.recordFailure(.connect, now: Int64(i), isProbe: false, u: 0) }
        let at = circuit.openUntil
        #expect(circuit.admit(now: at, u: 0) == .probe)
        #expect(circuit.recordSuccess(now: at + 1, isProbe: true) == .closed)
        #expect(!circuit.isOpen)
        #expect(circuit.admit(now: at + 2, u: 0) == .forward)
        // The failures before the outage ended are forgotten: one more does not reopen it.
        #expect(circuit.recordFailure(.connect, now: at + 3, isProbe: false, u: 0) == (.route, nil))
        #expect(!circuit.isOpen)
    }

    @Test func anAbandonedProbeLetsTheNextRequestProbe() {
        var circuit = RouteCircuit(policy: Self.policy())
        for i in 0..<3 { _ = circuit.recordFailure(.connect, now: Int64(i), isProbe: false, u: 0) }
        let at = circuit.openUntil
        #expect(circuit.admit(now: at, u: 0) == .probe)
        if case .probe = circuit.admit(now: at, u: 0) { Issue.record("two probes at once") }
        circuit.abandonProbe()
        #expect(circuit.admit(now: at + 1, u: 0) == .probe)
    }

    @Test func failuresOlderThanTheWindowDoNotCount() {
        var circuit = RouteCircuit(policy: Self.policy())
        _ = circuit.recordFailure(.status, now: 0, isProbe: false, u: 0)
        _ = circuit.recordFailure(.status, now: 1, isProbe: false, u: 0)
        _ = circuit.recordSuccess(now: 2, isProbe: false)
        let later = 11 * Self.second
        #expect(circuit.recordFailure(.status, now: later, isProbe: false, u: 0) == (.client, nil))
        #expect(circuit.recordFailure(.status, now: later + 1, isProbe: false, u: 0) == (.client, nil))
        #expect(!circuit.isOpen)
    }

    @Test func jitterSpreadsTheRetryAfterOfTurnedAwayRequestsWithinTheWindow() {
        var circuit = RouteCircuit(policy: Self.policy { $0.jitter = 0.5 })
        for i in 0..<3 { _ = circuit.recordFailure(.connect, now: Int64(i), isProbe: false, u: 0) }
        let opened = circuit.openUntil - Self.second
        #expect(circuit.admit(now: opened, u: 0) == .reject(retryAfter: .seconds(1)))
        #expect(circuit.admit(now: opened, u: 0.5) == .reject(retryAfter: .milliseconds(1250)))
        #expect(circuit.admit(now: opened, u: 0.999) == .reject(retryAfter: .nanoseconds(1_499_500_000)))
    }

    @Test func theUpstreamsRetryAfterLengthensTheWindow() {
        var circuit = RouteCircuit(policy: Self.policy())
        _ = circuit.recordFailure(.status, now: 0, isProbe: false, u: 0)
        _ = circuit.recordFailure(.status, now: 1, isProbe: false, u: 0)
        #expect(circuit.recordFailure(.status, now: 2, isProbe: false, u: 0, floor: .seconds(7)) == (.route, .opened))
        #expect(circuit.openUntil == 2 + 7 * Self.second)
    }

    @Test func disabledCircuitsBlameTheClientAndForwardEverything() {
        let circuits = RouteCircuits(routes: 1, policy: Self.policy { $0.enabled = false }, clock: ManualClock())
        for _ in 0..<10 { #expect(circuits.recordFailure(route: 0, .connect, isProbe: false) == (.client, nil)) }
        #expect(circuits.admit(route: 0) == .forward)
    }

    @Test func sharedCircuitsKeepOneCircuitPerRoute() {
        let clock = ManualClock()
        let circuits = RouteCircuits(routes: 2, policy: Self.policy(), clock: clock)
        for _ in 0..<3 { _ = circuits.recordFailure(route: 0, .connect, isProbe: false) }
        #expect(circuits.isOpen(route: 0))
        #expect(!circuits.isOpen(route: 1))
        #expect(circuits.admit(route: 1) == .forward)
        clock.advance(by: .seconds(1))
        #expect(circuits.admit(route: 0) == .probe)
        #expect(circuits.recordSuccess(route: 0, isProbe: true) == .closed)
    }
}

/// One route's circuit hammered by many threads, as the workers share it; also run under
/// ThreadSanitizer (`make tsan`).
@Suite struct RouteCircuitConcurrencyTests {
    @Test func manyThreadsAtAWindowsEndGetExactlyOneProbe() {
        let clock = ManualClock()
        var policy = CircuitPolicy()
        policy.jitter = 0
        let circuits = RouteCircuits(routes: 1, policy: policy, clock: clock)
        for _ in 0..<3 { _ = circuits.recordFailure(route: 0, .connect, isProbe: false) }
        clock.advance(by: .seconds(1))
        for _ in 0..<2 {
            let probes = LockedValue(0)
            runTogether(8) { _ in
                for _ in 0..<500 {
                    if case .probe = circuits.admit(route: 0) { probes.withLock { $0 += 1 } }
                }
            }
            #expect(probes.withLock { $0 } == 1)
            circuits.abandonProbe(route: 0)
        }
    }

    @Test func concurrentFailuresAndSuccessesLeaveAClosedCircuitAfterTheLastSuccess() {
        let circuits = RouteCircuits(routes: 1, policy: CircuitPolicy(), clock: ManualClock())
        runTogether(8) { i in
            for _ in 0..<1_000 {
                if i % 2 == 0 {
                    _ = circuits.recordFailure(route: 0, .status, isProbe: false)
                } else {
                    _ = circuits.recordSuccess(route: 0, isProbe: false)
                }
                _ = circuits.admit(route: 0)
            }
        }
        _ = circuits.recordSuccess(route: 0, isProbe: false)
        #expect(!circuits.isOpen(route: 0))
        #expect(circuits.admit(route: 0) == .forward)
    }
}
