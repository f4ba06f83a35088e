/// Where the shield's state lives, as the request path sees it: the proxy asks `check`, reports
/// `record` / `abandonProbe`, and never knows whether the state is this process's `ErrorTracker`
/// or shared by every replica through Redis.
///
/// A store belongs to one worker thread and is called only from it. The check has two halves so
/// that the local store stays synchronous and allocation-free: `checkNow` answers whenever the
/// answer needs no waiting (always, for the local tracker; for a shared store when the key is
/// known clean or the shared state is unreachable), and only when it returns nil does the caller
/// build a continuation for `check(_:policy:then:)`.
public protocol TrackerStore: AnyObject {
    /// The verdict when it is known at once; nil when it must be fetched (then call `check`).
    ///
    /// As with `ErrorTracker.check`, `.probe` obliges the caller to report the probe's outcome
    /// through `record`, or `abandonProbe` if it never reaches the upstream.
    func checkNow(_ key: ClientKey, policy: BackoffPolicy) -> Verdict?

    /// The verdict, delivered later on the caller's thread. `decide` runs exactly once, and
    /// within the store's time limit: a store that cannot get an answer in time decides locally.
    func check(_ key: ClientKey, policy: BackoffPolicy, then decide: @escaping (Verdict) -> Void)

    /// The upstream's answer to a forwarded request of `key` (see `ErrorTracker.record`). A window
    /// imposed by it is reported to `windows`, now or when the shared store answers.
    func record(_ key: ClientKey, outcome: Outcome, policy: BackoffPolicy, routeIndex: Int,
                upstreamRetryAfter: Duration?, windows: WindowObserver?)

    /// The probe of `key` will not reach the upstream: let the next request probe.
    func abandonProbe(_ key: ClientKey)

    /// Admin reset: forgets `key` everywhere the store keeps it; `done` gets whether it was known.
    func forget(_ key: ClientKey, then done: @escaping (Bool) -> Void)
}

/// Told about each backoff window a recorded error imposed (the window histogram).
public protocol WindowObserver: AnyObject {
    /// A window of `window` was imposed on a client.
    func windowImposed(_ window: Duration)
}

/// The local tracker is a store: every answer is immediate.
extension ErrorTracker: TrackerStore {
    /// `check`, which never needs to wait.
    @inline(__always)
    public func checkNow(_ key: ClientKey, policy: BackoffPolicy) -> Verdict? {
        check(key, policy: policy)
    }

    /// `check`, handed to `decide` at once.
    public func check(_ key: ClientKey, policy: BackoffPolicy, then decide: @escaping (Verdict) -> Void) {
        decide(check(key, policy: policy))
    }

    /// `record`, reporting the imposed window (if any) at once.
    public func record(_ key: ClientKey, outcome: Outcome, policy: BackoffPolicy, routeIndex: Int,
                       upstreamRetryAfter: Duration?, windows: WindowObserver?) {
        let window = record(key, outcome: outcome, policy: policy, routeIndex: routeIndex,
                            upstreamRetryAfter: upstreamRetryAfter)
        if let window { windows?.windowImposed(window) }
    }

    /// `forget`, answered at once.
    public func forget(_ key: ClientKey, then done: @escaping (Bool) -> Void) {
        done(forget(key))
    }
}
