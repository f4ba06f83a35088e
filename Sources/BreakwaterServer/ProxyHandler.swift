import BreakwaterCore

/// What every worker of one proxy shares: the config in force and the shield's state.
/// Replaced as a whole on reload, except the tracker and rate limiter, which carry over.
final class ProxyContext: Sendable {
    let config: Config
    let routes: RouteTable
    let identity: ClientIdentity
    let tracker: ErrorTracker<SystemClock>
    let rateLimiter: RateLimiter<SystemClock>

    init(config: Config, hasher: KeyedHasher, tracker: ErrorTracker<SystemClock>, rateLimiter: RateLimiter<SystemClock>) {
        self.config = config
        self.routes = RouteTable(config: config)
        self.identity = ClientIdentity(clients: config.clients, hasher: hasher)
        self.tracker = tracker
        self.rateLimiter = rateLimiter
    }
}

/// The proxy's request path on one worker: route, identity, the shield check, then forwarding.
final class ProxyHandler: HTTPHandler {
    let pool: UpstreamPool
    /// The context in force on this worker. A reload replaces it from the worker's own thread,
    /// so reading it takes no lock; an exchange keeps the route it started with.
    var context: ProxyContext

    init(worker: Worker, context: ProxyContext) throws {
        self.context = context
        pool = try UpstreamPool(worker: worker, config: context.config.upstream)
    }

    func handle(_ request: HTTPRequest, on connection: ClientConnection) {
        let context = self.context
        let route = context.routes.match(request.head.path)
        if route.bypass {
            ProxyExchange(handler: self, request: request, client: connection, route: route, key: nil, isProbe: false).start()
            return
        }
        let key = context.identity.key(parts: route.keyParts, routeName: route.name, peer: request.peer) {
            request.head.combined($0)
        }
        // The shield check: the one place every tracked request passes before anything is forwarded.
        let enforce = route.policy.mode == .enforce
        var isProbe = false
        switch context.tracker.check(key, policy: route.policy) {
        case .reject(let reason, let retryAfter):
            if enforce {
                ShieldResponse.send(reason: reason, retryAfter: retryAfter, on: connection)
                return
            }
        case .probe:
            isProbe = true
        case .forward:
            break
        }
        if let rate = route.rate, let wait = context.rateLimiter.check(key, rate: rate, burst: route.burst), enforce {
            if isProbe { context.tracker.abandonProbe(key) }
            ShieldResponse.send(reason: .rate, retryAfter: wait, on: connection)
            return
        }
        ProxyExchange(handler: self, request: request, client: connection, route: route, key: key, isProbe: isProbe).start()
    }
}
