import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// One client request on its way to the upstream and back. It owns the decision that the
/// shield made for it (a probe must report its outcome) and relays the response as it streams.
final class ProxyExchange: ClientExchange, UpstreamWaiter, UpstreamExchange {
    private unowned let handler: ProxyHandler
    private let request: HTTPRequest
    private let client: ClientConnection
    private let route: ResolvedRoute
    /// The tracker key, nil for bypass routes.
    private let key: ClientKey?
    private let isProbe: Bool
    private let requestHead: [UInt8]
    private var server: UpstreamServer
    private var upstream: UpstreamConnection?
    private var responseStarted = false
    private var finished = false
    private var recorded = false
    private var freshRetries = 0
    private let started = ContinuousClock.now

    init(handler: ProxyHandler, request: HTTPRequest, client: ClientConnection,
         route: ResolvedRoute, key: ClientKey?, isProbe: Bool) {
        self.handler = handler
        self.request = request
        self.client = client
        self.route = route
        self.key = key
        self.isProbe = isProbe
        requestHead = ProxyHeaders.upstreamRequest(request, clientAddress: request.peer.description)
        server = handler.pool.pickServer()
    }

    func start() {
        client.exchange = self
        handler.pool.acquire(server, for: self)
    }

    // MARK: UpstreamWaiter

    func connectionReady(_ connection: UpstreamConnection) {
        guard !finished else {
            connection.cancel()
            return
        }
        upstream = connection
        connection.send(head: requestHead, body: request.body, expectNoBody: request.isHEAD, to: self)
    }

    func connectionFailed(_ failure: UpstreamFailure) {
        upstreamFailed(failure)
    }

    // MARK: UpstreamExchange

    func upstreamHead(_ head: HTTPHead, framing: BodyFraming) {
        record(status: head.status, retryAfter: head.combined("retry-after"))
        responseStarted = true
        client.beginResponse(ProxyHeaders.clientResponse(head, keepLength: framing == .none), framing: framing)
    }

    func upstreamBody(_ buffer: OpaquePointer) {
        if client.sendBody(buffer) { upstream?.pause() }
    }

    func upstreamEnd() {
        upstream = nil
        finished = true
        client.endResponse()
    }

    func upstreamFailed(_ failure: UpstreamFailure) {
        let reused = upstream?.reused ?? false
        upstream = nil
        guard !finished else { return }
        if responseStarted {
            finished = true
            client.abortResponse()
            return
        }
        // A parked connection the server had already closed: the request never reached it.
        if failure == .closedBeforeResponse, reused, freshRetries < 1, isIdempotent {
            freshRetries += 1
            handler.pool.acquire(server, for: self, fresh: true)
            return
        }
        finished = true
        switch failure {
        case .connect:
            recordFailure(counts: route.policy.on.connect)
            client.respond(status: 502, reason: "Bad Gateway", headers: Self.plain, body: Array("502 Bad Gateway\n".utf8))
        case .timeout:
            recordFailure(counts: route.policy.on.timeout)
            client.respond(status: 504, reason: "Gateway Timeout", headers: Self.plain, body: Array("504 Gateway Timeout\n".utf8))
        case .closedBeforeResponse, .badResponse, .brokenResponse:
            record(status: 502, retryAfter: nil)
            client.respond(status: 502, reason: "Bad Gateway", headers: Self.plain, body: Array("502 Bad Gateway\n".utf8))
        }
    }

    private static let plain = [("Content-Type", "text/plain")]

    private var isIdempotent: Bool {
        switch request.head.method {
        case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE": return true
        default: return request.head.count("idempotency-key") > 0
        }
    }

    // MARK: ClientExchange

    func clientClosed() {
        finished = true
        if let upstream {
            self.upstream = nil
            upstream.cancel()
        } else {
            handler.pool.cancel(self)
        }
        if isProbe, !recorded, let key { handler.context.tracker.abandonProbe(key) }
    }

    func clientDrained() { upstream?.resume() }

    // MARK: tracker

    private func record(status: Int, retryAfter: String?) {
        guard !recorded, let key else { return }
        recorded = true
        let outcome = route.policy.on.classify(status: status)
        let floor = outcome == .error ? retryAfter.flatMap { RetryAfter.parse($0, now: Self.unixNow()) } : nil
        _ = handler.context.tracker.record(key, outcome: outcome, policy: route.policy, routeIndex: route.index,
                                       upstreamRetryAfter: floor)
    }

    /// A connect error or timeout is an error only when `on` lists it; otherwise it neither
    /// blocks nor clears, but a probe is released so the next request can probe again.
    private func recordFailure(counts: Bool) {
        guard !recorded, let key else { return }
        recorded = true
        if counts {
            _ = handler.context.tracker.record(key, outcome: .error, policy: route.policy, routeIndex: route.index,
                                           upstreamRetryAfter: nil)
        } else if isProbe {
            handler.context.tracker.abandonProbe(key)
        }
    }

    private static func unixNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }
}
