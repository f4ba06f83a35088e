import BreakwaterCore

/// What the upstream's answer to one exchange means for the shield: the route's circuit hears
/// it first, then (unless the circuit took the blame) the client's tracker entry. Shared by the
/// HTTP/1.1 and HTTP/2 exchanges, so both judge an answer the same way.
struct ShieldReport {
    let handler: ProxyHandler
    let request: HTTPRequest
    let route: ResolvedRoute
    /// The tracker key, nil for bypass routes.
    let key: ClientKey?
    /// This request is its client's probe: its outcome ends or renews the client's window.
    let isProbe: Bool
    /// This request is its route's circuit probe: its outcome opens or closes the circuit.
    let circuitProbe: Bool
    /// The circuits of the context the exchange started in (a reload may replace the handler's).
    let circuits: RouteCircuits<LoopClock>
    let metrics: RouteMetrics

    /// The client left before the answer came: the outcome will never be known, so the probes
    /// this request held, the client's and the route's, are given back for another to take.
    func abandonProbes() {
        if isProbe, let key { handler.store.abandonProbe(key) }
        if circuitProbe { circuits.abandonProbe(route: route.index) }
    }

    /// Tells the route's circuit and then, unless the circuit took the blame, the client's tracker.
    /// `retryAfter` and `challenge` (the answer's Retry-After and WWW-Authenticate) are read only
    /// for an answer that counts as an error: most answers are not, and need no header scan.
    func record(status: Int, grpcStatus: Int? = nil, retryAfter: @autoclosure () -> String?,
                challenge: @autoclosure () -> String? = nil) {
        guard let key else { return }
        let outcome = route.classify(status: status, grpcStatus: grpcStatus)
        let challenge = outcome == .error ? challenge() : nil
        // A 401 that opens or continues a Digest, NTLM or Negotiate handshake is no failure: the
        // upstream works, and the client's next request carries the answer.
        if outcome == .error, challenge != nil,
           AuthChallenge.isHandshakeStep(wwwAuthenticate: challenge, authorization: request.head.combined("authorization")) {
            circuitChanged(circuits.recordSuccess(route: route.index, isProbe: circuitProbe))
            if isProbe { handler.store.abandonProbe(key) }
            return
        }
        let floor = outcome == .error ? retryAfter().flatMap { RetryAfter.parse($0, now: LoopClock.wallSeconds()) } : nil
        if outcome == .error && status >= 500 {
            let (blame, transition) = circuits.recordFailure(route: route.index, .status, isProbe: circuitProbe, floor: floor)
            circuitChanged(transition)
            if blame == .route {
                if isProbe { handler.store.abandonProbe(key) }
                return
            }
        } else {
            circuitChanged(circuits.recordSuccess(route: route.index, isProbe: circuitProbe))
        }
        handler.store.record(key, outcome: outcome, policy: route.policy, routeIndex: route.index,
                             upstreamRetryAfter: floor, windows: metrics)
    }

    /// A connect error or timeout is the route's circuit's to judge when `on` lists it, and the
    /// client's only while circuits are disabled. Otherwise it neither blocks nor clears the
    /// client, but a probe is released so the next request can probe again.
    func recordFailure(_ failure: RouteCircuit.Failure, counts: Bool) {
        guard let key else { return }
        if counts {
            let (blame, transition) = circuits.recordFailure(route: route.index, failure, isProbe: circuitProbe)
            circuitChanged(transition)
            if blame == .client {
                handler.store.record(key, outcome: .error, policy: route.policy, routeIndex: route.index,
                                     upstreamRetryAfter: nil, windows: metrics)
                return
            }
        } else if circuitProbe {
            circuits.abandonProbe(route: route.index)
        }
        if isProbe { handler.store.abandonProbe(key) }
    }

    /// Shows a circuit that opened or closed in `breakwater_route_circuit_open` and the error log.
    func circuitChanged(_ transition: RouteCircuit.Transition?) {
        guard let transition else { return }
        metrics.circuitOpen.set(Int64(transition == .opened ? 1 : 0))
        handler.logger.warning(transition == .opened ? "route circuit opened: upstream failing for every client"
                                                     : "route circuit closed: upstream answering again",
                               metadata: ["route": "\(route.name)"])
    }
}
