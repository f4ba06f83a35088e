import Synchronization

/// `[circuit]`: when the upstream of a route fails for everyone, the route is shut for a window
/// instead of every client's level being raised.
public struct CircuitPolicy: Sendable, Equatable {
    /// `enabled`: false brings back the per-client accounting of every failure.
    public var enabled = true
    /// `share`: the circuit also opens when failures are at least this share of the route's
    /// requests of the last `window` (and at least `min_failures`), successes in between or not.
    public var share = 0.5
    /// `min_failures`: this many failures in a row open the circuit; and the failures of `window`
    /// that the share needs at least.
    public var minFailures = 3
    /// `window`: how far back the route's requests are counted.
    public var window: Duration = .seconds(10)
    /// `base`: the first open window; each failed probe doubles it, up to `max`.
    public var base: Duration = .seconds(1)
    /// `max`: no open window is longer.
    public var max: Duration = .seconds(2)
    /// `jitter`: open windows, and the Retry-After of the requests turned away, are spread by up
    /// to this fraction of the window, so clients do not all come back in the same instant.
    public var jitter = 0.2

    /// The defaults the README documents (section "Configuration").
    public init() {}

    /// The open windows' growth, as the tracker computes a client's.
    var backoff: BackoffPolicy {
        BackoffPolicy(base: base, factor: 2, max: max, jitter: jitter)
    }
}

/// The circuit of one route: whether requests go to the upstream, from what the upstream did with
/// the route's recent requests. A plain value driven by the caller's clock readings (`now`, in
/// nanoseconds) and random draws (`u`, uniform in [0, 1)), so every rule is testable without sleeping.
///
/// - Closed: everything is forwarded. Each answer is counted in a sliding window of ten buckets.
/// - A connect error or a timeout is the route's failure: it never raises a client's level. A 5xx
///   is the client's, as before, unless it is the failure that opens the circuit.
/// - The circuit opens after `min_failures` failures in a row (an upstream that is down fails
///   everything), or when the failures of the last `window` are at least `min_failures` and at
///   least `share` of its requests (an upstream that fails many requests among successes). Open: one request per window is the probe, the others are
///   turned away (the caller answers 503 with Retry-After); every failure while open is the route's.
/// - Any success closes it at once and forgets the counts.
public struct RouteCircuit: Sendable {
    /// What the circuit does with a request.
    public enum Admission: Equatable, Sendable {
        /// Closed: forward.
        case forward
        /// Open and the window is over: this request goes to the upstream to learn whether it is back.
        case probe
        /// Open: answer without the upstream; come back after `retryAfter`.
        case reject(retryAfter: Duration)
    }

    /// How a failure reached the upstream, or failed to.
    public enum Failure: Sendable {
        /// No connection could be made.
        case connect
        /// No answer within the timeout.
        case timeout
        /// A 5xx status counted by the route's `on`.
        case status
    }

    /// Whose failure an upstream failure is.
    public enum Blame: Equatable, Sendable {
        /// The client's: its level is raised as before.
        case client
        /// The route's: the client's level is left alone.
        case route
    }

    /// A change the caller shows (`breakwater_route_circuit_open`) and logs.
    public enum Transition: Equatable, Sendable {
        case opened, closed
    }

    public let policy: CircuitPolicy
    /// Whether the circuit is open.
    public private(set) var isOpen = false
    /// Failed probes in a row plus one while open: the level of the open window.
    public private(set) var level = 0
    /// Where the current open window ends.
    public private(set) var openUntil: Int64 = 0
    /// The length of the current open window, which the Retry-After spread is a fraction of.
    private var openLength: Int64 = 0
    private var probeInFlight = false
    /// Failures since the last success.
    private var consecutive = 0
    /// The sliding window: ten buckets of `window / 10`, each with the bucket number it counts for.
    private var buckets: [Bucket]
    private let bucketNanoseconds: Int64
    private static let bucketCount = 10

    private struct Bucket {
        var stamp = Int64.min
        var requests = 0
        var failures = 0
    }

    /// A closed circuit.
    public init(policy: CircuitPolicy) {
        self.policy = policy
        buckets = Array(repeating: Bucket(), count: Self.bucketCount)
        bucketNanoseconds = Swift.max(1, policy.window.clampedNanoseconds / Int64(Self.bucketCount))
    }

    /// Decides for one request at `now`; `u` spreads the Retry-After of a refused one.
    public mutating func admit(now: Int64, u: Double) -> Admission {
        guard isOpen else { return .forward }
        if now >= openUntil && !probeInFlight {
            probeInFlight = true
            return .probe
        }
        // While a probe is out its answer is near (a refused connection is known at once): the
        // others are told to come back after `base`, by when it is usually known.
        let remaining = now < openUntil ? openUntil - now : Swift.max(1, policy.base.clampedNanoseconds)
        let spread = Double(openLength) * Swift.min(Swift.max(policy.jitter, 0), 1) * Swift.min(Swift.max(u, 0), 1)
        return .reject(retryAfter: .nanoseconds(remaining.addingClamped(Int64(spread))))
    }

    /// The upstream answered with anything but a failure: the route works. Closes an open circuit.
    public mutating func recordSuccess(now: Int64, isProbe: Bool) -> Transition? {
        count(now: now, failed: false)
        consecutive = 0
        if isProbe { probeInFlight = false }
        guard isOpen else { return nil }
        isOpen = false
        level = 0
        probeInFlight = false
        for i in buckets.indices { buckets[i] = Bucket() }
        return .closed
    }

    /// The upstream failed a request at `now`. Says whose failure it is, and whether the circuit
    /// opened; `u` jitters the window, and `floor` (the upstream's own Retry-After) lengthens it.
    public mutating func recordFailure(_ failure: Failure, now: Int64, isProbe: Bool, u: Double,
                                       floor: Duration? = nil) -> (Blame, Transition?) {
        count(now: now, failed: true)
        consecutive += 1
        if isOpen {
            if isProbe {
                probeInFlight = false
                level += 1
                open(now: now, u: u, floor: floor)
            }
            return (.route, nil)
        }
        let (total, failed) = totals(now: now)
        if consecutive >= policy.minFailures
            || (failed >= policy.minFailures && Double(failed) >= policy.share * Double(total)) {
            isOpen = true
            level = 1
            probeInFlight = false
            open(now: now, u: u, floor: floor)
            return (.route, .opened)
        }
        return (failure == .status ? .client : .route, nil)
    }

    /// The probe's client left before its answer: the next request may probe.
    public mutating func abandonProbe() {
        probeInFlight = false
    }

    private mutating func open(now: Int64, u: Double, floor: Duration?) {
        var length = policy.backoff.windowNanoseconds(level: level, u: u)
        if let floor { length = Swift.max(length, floor.clampedNanoseconds) }
        openLength = length
        openUntil = now.addingClamped(length)
    }

    private mutating func count(now: Int64, failed: Bool) {
        let stamp = now / bucketNanoseconds
        let index = Int(stamp % Int64(Self.bucketCount))
        buckets.withUnsafeMutableBufferPointer { all in
            if all[index].stamp != stamp { all[index] = Bucket(stamp: stamp) }
            all[index].requests += 1
            if failed { all[index].failures += 1 }
        }
    }

    /// Requests and failures of the buckets within `window` of `now`.
    private func totals(now: Int64) -> (requests: Int, failures: Int) {
        let stamp = now / bucketNanoseconds
        var total = 0
        var failed = 0
        for bucket in buckets where bucket.stamp != .min && bucket.stamp > stamp - Int64(Self.bucketCount) {
            total += bucket.requests
            failed += bucket.failures
        }
        return (total, failed)
    }
}

/// The circuits of every route of one config, shared by every worker: one lock per route, and
/// beside it whether the circuit is open, read without the lock, so a request to a route whose
/// circuit is closed (nearly all of them) costs one atomic load. Jitter draws come from a
/// SplitMix64 kept under the lock, not from the system's generator (a system call each).
public final class RouteCircuits<C: TrackerClock>: Sendable {
    private let cells: [RouteCircuitCell]
    private let clock: C
    /// Whether the circuits are in use (`[circuit] enabled`).
    public let enabled: Bool

    /// One closed circuit per route index.
    public init(routes: Int, policy: CircuitPolicy, clock: C) {
        var seeds = SystemRandomNumberGenerator()
        cells = (0..<routes).map { _ in RouteCircuitCell(policy: policy, seed: seeds.next()) }
        self.clock = clock
        enabled = policy.enabled
    }

    /// `RouteCircuit.admit` for the route at `index`.
    public func admit(route index: Int) -> RouteCircuit.Admission {
        guard enabled, cells[index].open.load(ordering: .acquiring) else { return .forward }
        let now = clock.nanoseconds()
        return cells[index].update { circuit, random in circuit.admit(now: now, u: random.nextUnit()) }
    }

    /// `RouteCircuit.recordSuccess` for the route at `index`.
    public func recordSuccess(route index: Int, isProbe: Bool) -> RouteCircuit.Transition? {
        guard enabled else { return nil }
        let now = clock.nanoseconds()
        return cells[index].update { circuit, _ in circuit.recordSuccess(now: now, isProbe: isProbe) }
    }

    /// `RouteCircuit.recordFailure` for the route at `index`; every failure is the client's while disabled.
    public func recordFailure(route index: Int, _ failure: RouteCircuit.Failure, isProbe: Bool,
                              floor: Duration? = nil) -> (RouteCircuit.Blame, RouteCircuit.Transition?) {
        guard enabled else { return (.client, nil) }
        let now = clock.nanoseconds()
        return cells[index].update { circuit, random in
            circuit.recordFailure(failure, now: now, isProbe: isProbe, u: random.nextUnit(), floor: floor)
        }
    }

    /// `RouteCircuit.abandonProbe` for the route at `index`.
    public func abandonProbe(route index: Int) {
        cells[index].update { circuit, _ in circuit.abandonProbe() }
    }

    /// Whether the route's circuit is open now.
    public func isOpen(route index: Int) -> Bool {
        cells[index].open.load(ordering: .acquiring)
    }
}

/// One route's circuit in `RouteCircuits`: the value under its lock, and whether it is open,
/// published after every change for the lock-free check. Not nested in the generic class, so
/// reaching it needs no generic metadata lookup on the request path.
final class RouteCircuitCell: Sendable {
    private let state: LockedValue<(circuit: RouteCircuit, random: SplitMix64)>
    let open = Atomic<Bool>(false)

    init(policy: CircuitPolicy, seed: UInt64) {
        state = LockedValue((RouteCircuit(policy: policy), SplitMix64(seed: seed)))
    }

    /// Runs `body` under the lock and publishes whether the circuit is open after it.
    func update<R>(_ body: (inout RouteCircuit, inout SplitMix64) -> R) -> R {
        state.withLock { s in
            let result = body(&s.circuit, &s.random)
            open.store(s.circuit.isOpen, ordering: .releasing)
            return result
        }
    }
}
