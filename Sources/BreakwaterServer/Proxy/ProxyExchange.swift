import BreakwaterHTTP
private import CLibevent
import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// One client request on its way to the upstream and back. It owns the decision that the
/// shield made for it (a probe must report its outcome) and relays the response as it streams.
final class ProxyExchange: ClientExchange, UpstreamWaiter, UpstreamExchange {
    /// Where the exchange is. The tracker hears the outcome exactly once: when the response head
    /// is relayed (`relaying`) or when the exchange fails for good; an exchange that ends while
    /// `waiting` or `sent` has told it nothing.
    private enum Phase {
        /// Waiting for an upstream connection, or for a retry's wait to pass.
        case waiting
        /// The request went out on `connection`; no usable response yet.
        case sent
        /// The response head was relayed; the body streams from `connection`.
        case relaying
        /// Answered, failed or abandoned: nothing more happens.
        case finished
    }

    /// An HTTP/1.1 connection or an HTTP/2 stream. An existential, not a generic parameter: a
    /// generic class would look its metadata and conformances up at run time for every request.
    private let client: any ClientResponder
    /// Tells the circuit and the tracker what the upstream answered. It holds the handler, the
    /// request, the route, the key and the route's metrics, which the exchange reads from it
    /// rather than keep (and retain and release) a second time.
    private let report: ShieldReport
    /// Strong: the handler holds no exchange, so there is no cycle.
    private var handler: ProxyHandler { report.handler }
    private var request: HTTPRequest { report.request }
    private var route: ResolvedRoute { report.route }
    /// The tracker key, nil for bypass routes.
    private var key: ClientKey? { report.key }
    private var metrics: RouteMetrics { report.metrics }
    private var server: UpstreamServer
    private var phase = Phase.waiting
    /// The connection the request went out on: set while `sent` and `relaying`, nil otherwise.
    /// Kept beside the phase rather than in it, so that a change of phase moves no reference.
    private var connection: UpstreamConnection?
    private var freshRetries = 0
    /// Retries taken so far (not counting a resend after a stale keep-alive connection).
    private var retries = 0
    /// Whether the request may be sent again; worked out only when a retry is considered.
    private lazy var idempotent = RetryPolicy.isIdempotent(method: request.head.method,
                                                           hasIdempotencyKey: request.head.count("idempotency-key") > 0)
    /// When the exchange began (LoopClock nanoseconds).
    private let started = LoopClock().nanoseconds()
    private let pool: UpstreamPool
    private var status = 0
    private var upstreamTime: Duration?
    private var bytesSent = 0

    /// The request asks to switch to a protocol its route allows (`upgrades`): its Upgrade goes
    /// upstream, and a 101 turns the two connections into a tunnel.
    private var upgrading: Bool { request.upgrading }

    init(handler: ProxyHandler, request: HTTPRequest, client: any ClientResponder,
         route: ResolvedRoute, key: ClientKey?, isProbe: Bool, circuitProbe: Bool = false) {
        self.client = client
        report = ShieldReport(handler: handler, request: request, route: route, key: key, isProbe: isProbe,
                              circuitProbe: circuitProbe, circuits: handler.context.circuits,
                              metrics: handler.context.routeMetrics[route.index])
        // Kept for the whole exchange: a reload may give the handler a new pool meanwhile.
        pool = handler.pool
        server = pool.pickServer()
    }

    func start() {
        client.exchange = self
        handler.retryBudget.recordRequest(now: started)
        pool.acquire(server, for: self)
    }

    // MARK: UpstreamWaiter

    func connectionReady(_ connection: UpstreamConnection) {
        guard case .waiting = phase else {
            connection.cancel()
            return
        }
        phase = .sent
        self.connection = connection
        connection.send(body: request.body, expectNoBody: request.isHEAD, upgrading: upgrading, to: self,
                        reserving: request.head.bytes.count + 256) {
            ProxyHeaders.upstreamRequest(request, clientAddress: client.peerText, defaultHost: server.hostHeader,
                                         upgrade: upgrading, into: &$0)
        }
    }

    func connectionFailed(_ failure: UpstreamFailure) {
        upstreamFailed(failure)
    }

    // MARK: UpstreamExchange

    func upstreamHead(_ head: HTTPHead, framing: BodyFraming) {
        guard case .sent = phase else { return }
        metrics.count(UpstreamClass(status: head.status))
        server.health.succeeded()
        if handler.retryPolicy.isRetryable(status: head.status),
           RetryPolicy.retriesAnswer(hasRetryAfter: head.count("retry-after") > 0), let connection,
           retry(.status, detail: "\(head.status)") {
            // This answer is discarded: the connection cannot be reused mid-body, so it goes.
            connection.cancel()
            return
        }
        let elapsed = Duration.nanoseconds(LoopClock().nanoseconds() - started)
        metrics.upstreamDuration.record(elapsed)
        upstreamTime = elapsed
        status = head.status
        phase = .relaying
        // A trailers-only gRPC answer carries its grpc-status in the head; looked for only on a
        // route that counts gRPC statuses.
        let grpcStatus = route.policy.on.grpcStatuses.isEmpty ? nil : head.combined("grpc-status").flatMap { GRPCStatus.parse($0) }
        report.record(status: head.status, grpcStatus: grpcStatus,
               retryAfter: head.combined("retry-after"), challenge: head.status == 401 ? head.combined("www-authenticate") : nil)
        client.beginResponse(relaying: head, framing: framing)
    }

    func upstreamSwitched(_ head: HTTPHead, socket: Socket) {
        guard case .sent = phase else { return socket.close() }
        metrics.count(UpstreamClass(status: head.status))
        server.health.succeeded()
        let elapsed = Duration.nanoseconds(LoopClock().nanoseconds() - started)
        metrics.upstreamDuration.record(elapsed)
        status = 101
        phase = .finished
        connection = nil
        report.record(status: 101, retryAfter: nil)   // the handshake succeeded: a success for the tracker
        metrics.tunnels.increment()
        let context = handler.context
        let (handler, request, route, key) = (self.handler, self.request, self.route, self.key)
        client.startTunnel(upstream: socket, idleTimeout: context.config.server.tunnelIdleTimeout, metrics: context.metrics) {
            ProxyHeaders.switchingResponse(head, into: &$0)
        } onClose: { duration, toUpstream, toClient in
            handler.logAccess(request, route: route, key: key, status: 101, outcome: "tunnel", upstream: duration,
                              bytes: toUpstream + toClient)
        }
    }

    func upstreamBody(_ buffer: OpaquePointer) {
        bytesSent += evbuffer_get_length(buffer)
        if client.sendBody(buffer), case .relaying = phase { connection?.pause() }
    }

    func upstreamEnd() {
        phase = .finished
        connection = nil
        client.endResponse()
        logAccess()
    }

    private func logAccess() {
        handler.logAccess(request, route: route, key: key, status: status, outcome: key == nil ? "bypassed" : "forwarded",
                          upstream: upstreamTime, bytes: bytesSent)
    }

    /// Answers the client with the proxy's own error.
    private func respond(_ code: Int, _ reason: String) {
        status = code
        client.respond(status: code, reason: reason, headers: [("Content-Type", "text/plain")],
                       body: Array("\(code) \(reason)\n".utf8))
        logAccess()
    }

    func upstreamFailed(_ failure: UpstreamFailure) {
        let reused: Bool
        switch phase {
        case .finished:
            return
        case .relaying:
            phase = .finished
            connection = nil
            handler.logger.warning("upstream broke mid-response; client connection cut", metadata: [
                "server": "\(server.endpoint)", "failure": "\(failure)", "route": "\(route.name)",
            ])
            client.abortResponse()
            logAccess()
            return
        case .sent:
            reused = connection?.reused ?? false
        case .waiting:
            reused = false
        }
        phase = .waiting
        connection = nil
        // A parked connection the server had already closed: the request never reached it.
        if failure == .closedBeforeResponse, reused, freshRetries < 1, idempotent {
            freshRetries += 1
            pool.acquire(server, for: self, fresh: true)
            return
        }
        if failure == .connect || failure == .timeout { server.health.failed() }
        if failure == .connect, retry(.connect, detail: "connect") { return }
        if failure == .closedBeforeResponse, retry(.reset, detail: "reset") { return }
        phase = .finished
        handler.logger.warning("upstream failed", metadata: [
            "server": "\(server.endpoint)", "failure": "\(failure)", "route": "\(route.name)",
            "reused_connection": "\(reused)",
        ])
        switch failure {
        case .connect:
            metrics.count(.connect_error)
            report.recordFailure(.connect, counts: route.policy.on.connect)
            respond(502, "Bad Gateway")
        case .timeout:
            metrics.count(.timeout)
            report.recordFailure(.timeout, counts: route.policy.on.timeout)
            respond(504, "Gateway Timeout")
        case .closedBeforeResponse, .badResponse, .brokenResponse:
            metrics.count(.c5xx)
            report.record(status: 502, retryAfter: nil)
            respond(502, "Bad Gateway")
        }
    }

    // MARK: retries

    /// Sends the request again after a transient failure, if the request is idempotent, retries
    /// are left, the worker's budget allows one, and the wait fits in the request's timeout.
    /// Another server is preferred. The shield sees only the final attempt's outcome.
    private func retry(_ reason: RetryPolicy.Reason, detail: String) -> Bool {
        let policy = handler.retryPolicy
        guard idempotent, retries < policy.retries else { return false }
        let now = LoopClock().nanoseconds()
        let remaining = pool.settings.timeout - .nanoseconds(now - started)
        guard let wait = policy.wait(attempt: retries + 1, u: Double.random(in: 0..<1), remaining: remaining),
              handler.retryBudget.takeRetry(now: now)
        else { return false }
        retries += 1
        metrics.countRetry(reason)
        handler.logger.info("retrying upstream request", metadata: [
            "route": "\(route.name)", "attempt": "\(retries + 1)", "reason": "\(detail)",
            "wait_ms": "\(wait.clampedNanoseconds / 1_000_000)",
            "server": "\(server.endpoint)",
        ])
        let failed = server
        phase = .waiting
        connection = nil
        handler.worker.schedule(after: wait) { [self] in
            guard case .waiting = phase else { return }
            server = pool.pickServer(excluding: failed)
            pool.acquire(server, for: self)
        }
        return true
    }

    // MARK: ClientExchange

    func clientClosed() {
        let before = phase
        let connection = self.connection
        phase = .finished
        self.connection = nil
        switch before {
        case .finished:
            return
        case .relaying:
            connection?.cancel()
        case .sent:
            connection?.cancel()
            report.abandonProbes()
        case .waiting:
            pool.cancel(self)
            report.abandonProbes()
        }
        status = 499   // nginx's code for "client closed the request"
        logAccess()
    }

    func clientDrained() {
        if case .relaying = phase { connection?.resume() }
    }
}
