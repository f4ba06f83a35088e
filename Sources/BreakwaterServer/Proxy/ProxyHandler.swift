import BreakwaterHTTP
import BreakwaterCore
import Logging

/// What every worker of one proxy shares: the config in force and the shield's state.
/// Replaced as a whole on reload, except the tracker and rate limiter, which carry over.
final class ProxyContext: Sendable {
    let config: Config
    let routes: RouteTable
    let identity: ClientIdentity
    let tracker: ErrorTracker<LoopClock>
    let rateLimiter: RateLimiter<LoopClock>
    let metrics: ProxyMetrics
    /// Metric handles by route index (the implicit default route last).
    let routeMetrics: [RouteMetrics]
    /// Requests refused before routing (malformed, too large) count under route "none".
    let unroutedMetrics: RouteMetrics
    /// `[upstream]` retry settings.
    let retryPolicy: RetryPolicy
    /// TLS towards the upstream servers (`[upstream] tls = true`), nil for plain HTTP.
    let upstreamTLS: TLSClientContext?
    /// One circuit per route (`[circuit]`); a reload starts them closed.
    let circuits: RouteCircuits<LoopClock>
    /// Some route has `upstream_protocol = "h2"`.
    let hasH2Routes: Bool
    /// `[server] cors_origins`, and whether it lists "*".
    private let corsOrigins: Set<String>
    private let corsAnyOrigin: Bool

    init(config: Config, hasher: KeyedHasher, tracker: ErrorTracker<LoopClock>, rateLimiter: RateLimiter<LoopClock>,
         metrics: ProxyMetrics, upstreamTLS: TLSClientContext? = nil) {
        self.upstreamTLS = upstreamTLS
        self.config = config
        self.routes = RouteTable(config: config)
        self.identity = ClientIdentity(clients: config.clients, hasher: hasher)
        self.tracker = tracker
        self.rateLimiter = rateLimiter
        self.metrics = metrics
        routeMetrics = routes.routes.map { metrics.route($0.name) }
        unroutedMetrics = metrics.route("none")
        retryPolicy = RetryPolicy(config.upstream)
        circuits = RouteCircuits(routes: routes.routes.count, policy: config.circuit, clock: LoopClock())
        hasH2Routes = routes.routes.contains { $0.upstreamH2 }
        corsOrigins = Set(config.server.corsOrigins)
        corsAnyOrigin = corsOrigins.contains("*")
        for metrics in routeMetrics { metrics.circuitOpen.set(Int64(0)) }
    }

    /// The request's Origin when `cors_origins` lets that page read Breakwater's own answers.
    func corsOrigin(of request: HTTPRequest) -> String? {
        guard !corsOrigins.isEmpty, let origin = request.head.combined("origin") else { return nil }
        return corsAnyOrigin || corsOrigins.contains(origin) ? origin : nil
    }
}

/// The proxy's request path on one worker: route, identity, the shield check, then forwarding.
final class ProxyHandler: HTTPHandler {
    /// Connections to the upstream servers; replaced when a reload changes [upstream].
    var pool: UpstreamPool
    /// The context in force on this worker. A reload replaces it from the worker's own thread,
    /// so reading it takes no lock; an exchange keeps the route it started with.
    var context: ProxyContext
    /// This worker's access log buffer, nil when `server.access_log` is off.
    var accessLog: AccessLog?
    /// The error log: upstream failures, with the server and what went wrong.
    let logger: Logger
    let worker: Worker
    /// This worker's share of the retry budget (each worker counts its own requests).
    var retryBudget: RetryBudget
    /// When to retry, from the config in force.
    var retryPolicy: RetryPolicy { context.retryPolicy }
    /// Where the shield's state lives for this worker: the local tracker, or the Redis-backed
    /// store shared by every replica (`[redis]`). Replaced from the worker's thread on reload.
    var store: TrackerStore

    init(worker: Worker, context: ProxyContext, accessLog: AccessLog?, logger: Logger, health: [UpstreamHealth]) throws {
        self.worker = worker
        retryBudget = RetryBudget(fraction: context.config.upstream.retryBudget)
        self.context = context
        self.accessLog = accessLog
        self.logger = logger
        store = context.tracker
        pool = try UpstreamPool(worker: worker, config: context.config.upstream, health: health, tls: context.upstreamTLS)
    }

    /// Why the request path refuses a request before the shield: the error, and what the answer
    /// adds to its text.
    private struct Refusal: Error {
        let error: HTTPError
        let detail: String
    }

    /// Normalises the path (what routes match and what goes upstream), picks the route, decides
    /// whether an upgrade goes through, and computes the client's key into `key` (nil on a bypass
    /// route). The route comes back as the result and a refusal as a typed error, so that neither
    /// is wrapped in a value the caller must copy out of and destroy.
    private func admit(_ request: HTTPRequest, _ context: ProxyContext, key: inout ClientKey?) throws(Refusal) -> ResolvedRoute {
        let path = request.head.pathBytes
        let normalized: NormalizedPath?
        do throws(HTTPError) {
            normalized = try NormalizedPath.of(path)
        } catch {
            throw Refusal(error: error, detail: "")
        }
        request.normalizedPath = normalized?.path
        let route = normalized.map { n in n.matchPath.withUnsafeBytes { context.routes.match(pathBytes: $0) } }
            ?? path.withUnsafeBytes { context.routes.match(pathBytes: $0) }
        // An upgrade (WebSocket...) goes through as one only to a protocol the route allows; h2c
        // alone is served as HTTP/1.1, its Upgrade dropped like any hop-by-hop field.
        let protocols = request.head.upgradeProtocols
        if !protocols.isEmpty, protocols.contains(where: { $0 != "h2c" }) {
            guard protocols.contains(where: { route.upgrades.contains($0) }) else {
                throw Refusal(error: .badRequest("upgrade not allowed"), detail: ": upgrade not allowed here")
            }
            request.upgrading = true
        }
        if route.bypass {
            key = nil
            return route
        }
        key = context.identity.key(parts: route.keyParts, routeName: route.name, peer: request.peer,
                                       tlsFingerprint: request.isSecure && route.keyParts.contains(.tlsFingerprint)
                                           ? request.clientCertificateFingerprint : nil) {
            request.head.combined(dynamic: $0)
        }
        return route
    }

    private func refuse<Client: ClientResponder>(_ error: HTTPError, detail: String, _ request: HTTPRequest, on connection: Client) {
        rejected(status: error.status, peer: request.peer, secure: request.isSecure, over: connection.wireProtocol)
        connection.respond(status: error.status, reason: error.reason, headers: [("Content-Type", "text/plain")],
                           body: Array("\(error.status) \(error.reason)\(detail)\n".utf8))
    }

    /// The shield judges a request with a body from its head: a blocked client is answered before
    /// a `100 Continue` and before one byte of its body is kept, and its body is dropped. The
    /// verdict of a client that may go on (a probe, say) is held for when the body is complete.
    func bodyAhead(_ request: HTTPRequest, on connection: ClientConnection) -> ((ClientConnection) -> Void)? {
        judgeAhead(request, on: connection)
    }

    /// A request that goes upstream over HTTP/2 takes the whole request path now, its body
    /// streaming behind it; any other is judged from its head.
    func bodyAhead(_ request: HTTPRequest, on stream: H2Stream) -> ((H2Stream) -> Void)? {
        if goesOverH2(request) {
            stream.startStreaming()
            serve(request, on: stream)
            return nil
        }
        return judgeAhead(request, on: stream)
    }

    /// A gRPC call, or a request on a route with `upstream_protocol = "h2"`.
    private func goesOverH2(_ request: HTTPRequest) -> Bool {
        if request.isGRPC { return true }
        guard context.hasH2Routes, !request.upgrading else { return false }
        let path = request.head.pathBytes
        let normalized: NormalizedPath?
        do throws(HTTPError) {
            normalized = try NormalizedPath.of(path)
        } catch {
            return false   // the request path refuses it
        }
        let route = normalized.map { n in n.matchPath.withUnsafeBytes { context.routes.match(pathBytes: $0) } }
            ?? path.withUnsafeBytes { context.routes.match(pathBytes: $0) }
        return route.upstreamH2
    }

    /// Forwards the request: over HTTP/2 for a gRPC call or an `upstream_protocol = "h2"` route,
    /// else over the HTTP/1.1 pool.
    private func forward(_ request: HTTPRequest, on connection: some ClientResponder, route: ResolvedRoute, key: ClientKey?,
                         isProbe: Bool, circuitProbe: Bool) {
        if !request.upgrading, route.upstreamH2 || request.isGRPC {
            H2ProxyExchange(handler: self, request: request, client: connection, route: route, key: key, isProbe: isProbe,
                            circuitProbe: circuitProbe).start()
        } else {
            ProxyExchange(handler: self, request: request, client: connection, route: route, key: key, isProbe: isProbe,
                          circuitProbe: circuitProbe).start()
        }
    }

    func handle(_ request: HTTPRequest, on connection: ClientConnection) {
        serve(request, on: connection)
    }

    func handle(_ request: HTTPRequest, on stream: H2Stream) {
        serve(request, on: stream)
    }

    /// `bodyAhead` for either protocol.
    private func judgeAhead<Client: ClientResponder>(_ request: HTTPRequest, on connection: Client) -> ((Client) -> Void)? {
        let context = self.context
        if let origin = context.corsOrigin(of: request) { connection.corsOrigin = origin }
        var key: ClientKey?
        let route: ResolvedRoute
        do throws(Refusal) {
            route = try admit(request, context, key: &key)
        } catch {
            return { [self] in refuse(error.error, detail: error.detail, request, on: $0) }
        }
        guard let key, let verdict = store.checkNow(key, policy: route.policy) else { return nil }
        if case .reject = verdict, route.policy.mode == .enforce {
            return { [self] in shield(verdict, request, on: $0, route: route, key: key, context: context) }
        }
        connection.exchange = HeldVerdict(verdict: verdict, key: key, store: store)
        return nil
    }

    /// The request path for either protocol.
    private func serve<Client: ClientResponder>(_ request: HTTPRequest, on connection: Client) {
        let context = self.context
        if let origin = context.corsOrigin(of: request) { connection.corsOrigin = origin }
        var key: ClientKey?
        let route: ResolvedRoute
        do throws(Refusal) {
            route = try admit(request, context, key: &key)
        } catch {
            return refuse(error.error, detail: error.detail, request, on: connection)
        }
        guard let key else {
            context.routeMetrics[route.index].count(.bypassed, over: connection.wireProtocol, totals: context.metrics.totals)
            forward(request, on: connection, route: route, key: nil, isProbe: false, circuitProbe: false)
            return
        }
        // The verdict given when the head arrived, for a request whose body followed.
        if let held = connection.exchange as? HeldVerdict {
            connection.exchange = nil
            return shield(held.verdict, request, on: connection, route: route, key: key, context: context)
        }
        // The shield check: the one place every tracked request passes before anything is forwarded.
        // The local tracker answers at once; a shared store may first ask Redis (within redis.timeout).
        if let verdict = checkNow(key, route: route) {
            return shield(verdict, request, on: connection, route: route, key: key, context: context)
        }
        let wait = ShieldWait()
        connection.exchange = wait
        store.check(key, policy: route.policy) { [self] verdict in
            if connection.exchange === wait { connection.exchange = nil }
            guard !wait.clientGone else {
                if verdict == .probe { store.abandonProbe(key) }
                return
            }
            shield(verdict, request, on: connection, route: route, key: key, context: context)
        }
    }

    /// `store.checkNow` with the route's policy read where it lies: called from the generic request
    /// path, the policy (a struct holding sets) would be copied for the call and destroyed after.
    @inline(never)
    private func checkNow(_ key: ClientKey, route: ResolvedRoute) -> Verdict? {
        store.checkNow(key, policy: route.policy)
    }

    /// Acts on the shield's verdict: 429 while blocked, then the rate limit, then forwarding.
    private func shield<Client: ClientResponder>(_ verdict: Verdict, _ request: HTTPRequest, on connection: Client, route: ResolvedRoute,
                        key: ClientKey, context: ProxyContext) {
        let metrics = context.routeMetrics[route.index]
        let enforce = route.policy.mode == .enforce
        var isProbe = false
        switch verdict {
        case .reject(let reason, let retryAfter):
            if enforce {
                let outcome: RequestOutcome = reason == .probe ? .probe_wait : .shielded
                metrics.count(outcome, over: connection.wireProtocol, totals: context.metrics.totals)
                if answerPreflight(request, route: route, key: key, on: connection) { return }
                if request.isGRPC {
                    ShieldResponse.sendGRPC(reason: reason, retryAfter: retryAfter, on: connection)
                } else {
                    ShieldResponse.send(reason: reason, retryAfter: retryAfter, on: connection)
                }
                logAccess(request, route: route, key: key, status: 429, outcome: outcome.rawValue, upstream: nil, bytes: 0)
                return
            }
            metrics.countDryRun()
        case .probe:
            isProbe = true
        case .forward:
            break
        }
        if let rate = route.rate, let wait = context.rateLimiter.check(key.scoped(to: route.index), rate: rate, burst: route.burst) {
            if enforce {
                if isProbe { store.abandonProbe(key) }
                metrics.count(.rate_limited, over: connection.wireProtocol, totals: context.metrics.totals)
                if answerPreflight(request, route: route, key: key, on: connection) { return }
                if request.isGRPC {
                    ShieldResponse.sendGRPC(reason: .rate, retryAfter: wait, on: connection)
                } else {
                    ShieldResponse.send(reason: .rate, retryAfter: wait, on: connection)
                }
                logAccess(request, route: route, key: key, status: 429, outcome: "rate_limited", upstream: nil, bytes: 0)
                return
            }
            metrics.countDryRun()
        }
        // The route's circuit last, so that its one probe is taken only by a request that goes.
        var circuitProbe = false
        switch context.circuits.admit(route: route.index) {
        case .forward:
            break
        case .probe:
            circuitProbe = true
        case .reject(let retryAfter):
            if enforce {
                if isProbe { store.abandonProbe(key) }
                metrics.count(.circuit_open, over: connection.wireProtocol, totals: context.metrics.totals)
                if answerPreflight(request, route: route, key: key, on: connection) { return }
                if request.isGRPC {
                    ShieldResponse.sendGRPCUpstreamDown(retryAfter: retryAfter, on: connection)
                } else {
                    ShieldResponse.sendUpstreamDown(retryAfter: retryAfter, on: connection)
                }
                logAccess(request, route: route, key: key, status: 503, outcome: "circuit_open", upstream: nil, bytes: 0)
                return
            }
            metrics.countDryRun()
        }
        metrics.count(.forwarded, over: connection.wireProtocol, totals: context.metrics.totals)
        forward(request, on: connection, route: route, key: key, isProbe: isProbe, circuitProbe: circuitProbe)
    }

    /// A CORS preflight (OPTIONS with Access-Control-Request-Method) from an origin listed in
    /// `cors_origins`, while its client is held back: a browser fails any preflight that is not
    /// 2xx without showing the page the answer, so Breakwater answers it itself with a 200 that
    /// allows the method and headers asked for, never cached (`Access-Control-Max-Age: 0`). The
    /// request that follows gets the 429 or 503, with Retry-After the page can read. The upstream
    /// sees neither. False when the request is no such preflight: the caller answers as usual.
    private func answerPreflight(_ request: HTTPRequest, route: ResolvedRoute, key: ClientKey,
                                 on connection: some ClientResponder) -> Bool {
        guard connection.corsOrigin != nil, request.head.methodIs("OPTIONS"),
              let method = request.head.combined("access-control-request-method") else { return false }
        var headers = [("Access-Control-Allow-Methods", method), ("Access-Control-Max-Age", "0")]
        if let asked = request.head.combined("access-control-request-headers") {
            headers.append(("Access-Control-Allow-Headers", asked))
        }
        connection.respond(status: 200, reason: "OK", headers: headers, body: [])
        logAccess(request, route: route, key: key, status: 200, outcome: "preflight", upstream: nil, bytes: 0)
        return true
    }

    func rejected(status: Int, peer: IPAddress, secure: Bool, over wire: WireProtocol) {
        context.unroutedMetrics.count(.rejected, over: wire, totals: context.metrics.totals)
        accessLog?.log(client: peer.description, method: "-", path: "-", status: status, outcome: "rejected",
                       route: "none", upstream: nil, bytes: 0, secure: secure)
    }

    func h2Streams(_ delta: Int) { context.metrics.h2StreamsChanged(by: delta) }

    func h2Connections(_ delta: Int) { context.metrics.h2ConnectionsChanged(by: delta) }

    /// One access log line. A client identified by a header (a token) is logged by its hashed
    /// key, and its path only up to the route prefix, so no secret reaches the log.
    func logAccess(_ request: HTTPRequest, route: ResolvedRoute, key: ClientKey?, status: Int, outcome: String,
                   upstream: Duration?, bytes: Int) {
        guard let accessLog else { return }
        let secretKeyed = route.keyParts.contains { if case .header = $0 { return true } else { return false } }
        let client: String
        let path: Substring
        if secretKeyed, let key {
            client = "key:\(key)"
            path = Substring(route.path + "…")
        } else {
            client = context.identity.clientAddress(peer: request.peer, forwardedFor: request.head.combined("x-forwarded-for")).description
            path = request.head.path
        }
        accessLog.log(client: client, method: request.head.method, path: path, status: status, outcome: outcome,
                      route: route.name, upstream: upstream, bytes: bytes, secure: request.isSecure)
    }
}
