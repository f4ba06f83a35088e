import BreakwaterHTTP
import BreakwaterCore
private import CLibevent

/// One request forwarded to the upstream over HTTP/2 (`upstream_protocol = "h2"`, or a gRPC
/// call): its body streams as it arrives, the response streams back as the client reads it, and
/// the upstream's trailers are relayed. The shield hears the outcome once: at the head, or, for a
/// gRPC response that is not trailers-only, at its trailers, whose grpc-status says how the call
/// ended. Not retried: a stream may have sent part of its body.
final class H2ProxyExchange: ClientExchange, UpstreamH2Exchange, RequestBodyReader {
    private enum Phase {
        case waiting
        case sent(UpstreamH2Connection, Int32)
        case relaying(UpstreamH2Connection, Int32)
        case finished
    }

    private let client: any ClientResponder
    /// Holds the handler, the request, the route, the key and the route's metrics, which the
    /// exchange reads from it rather than keep (and retain and release) a second time.
    private let report: ShieldReport
    private var handler: ProxyHandler { report.handler }
    private var request: HTTPRequest { report.request }
    private var route: ResolvedRoute { report.route }
    private var key: ClientKey? { report.key }
    private var metrics: RouteMetrics { report.metrics }
    private let pool: UpstreamPool
    private let server: UpstreamServer
    private let pipe: RequestBodyPipe?
    private let isGRPC: Bool
    private var phase = Phase.waiting
    /// The connection this exchange waits for, while it is being made.
    private var pending: UpstreamH2Connection?
    /// The shield has not heard the outcome yet (a gRPC response waits for its trailers).
    private var unreported = true
    private let started = LoopClock().nanoseconds()
    private var status = 0
    private var upstreamTime: Duration?
    private var bytesSent = 0

    init(handler: ProxyHandler, request: HTTPRequest, client: any ClientResponder,
         route: ResolvedRoute, key: ClientKey?, isProbe: Bool, circuitProbe: Bool) {
        self.client = client
        report = ShieldReport(handler: handler, request: request, route: route, key: key, isProbe: isProbe,
                              circuitProbe: circuitProbe, circuits: handler.context.circuits,
                              metrics: handler.context.routeMetrics[route.index])
        pool = handler.pool
        server = pool.pickServer()
        pipe = client.bodyPipe
        isGRPC = request.isGRPC
    }

    func start() {
        client.exchange = self
        pipe?.reader = self
        let connection = pool.h2.acquire(server, for: self) { [self] connection in
            pending = nil
            send(on: connection)
        }
        if case .waiting = phase { pending = connection }
    }

    private func send(on connection: UpstreamH2Connection) {
        guard case .waiting = phase else { return }
        var writer = H2Headers.RequestFields(scheme: pool.settings.tls == nil ? "http" : "https",
                                             teTrailers: request.head.listContains("te", token: "trailers"),
                                             reserving: request.head.bytes.count + 256, count: request.head.fields.count)
        ProxyHeaders.upstreamRequest(request, clientAddress: client.peerText, defaultHost: server.hostHeader, into: &writer)
        let fields = writer.fields
        // The upstream's `timeout` bounds the wait for a response head, except for a gRPC call:
        // a client-streaming call is answered only at its end, and gRPC has deadlines of its own
        // (grpc-timeout goes upstream with the call).
        guard let id = connection.submit(fields, pipe: pipe, body: pipe == nil ? request.body : nil,
                                         headTimeout: isGRPC ? nil : pool.settings.timeout, for: self) else {
            return h2Failed(.closedBeforeResponse)
        }
        phase = .sent(connection, id)
    }

    // MARK: RequestBodyReader

    func bodyArrived() {
        switch phase {
        case .sent(let connection, let id), .relaying(let connection, let id): connection.bodyArrived(id)
        case .waiting, .finished: break
        }
    }

    // MARK: UpstreamH2Exchange

    func h2Head(_ head: HTTPHead, endStream: Bool) {
        guard case .sent(let connection, let id) = phase else { return }
        metrics.count(UpstreamClass(status: head.status))
        server.health.succeeded()
        let elapsed = Duration.nanoseconds(LoopClock().nanoseconds() - started)
        metrics.upstreamDuration.record(elapsed)
        upstreamTime = elapsed
        status = head.status
        phase = .relaying(connection, id)
        let grpcStatus = head.combined("grpc-status").flatMap { GRPCStatus.parse($0) }
        // A gRPC answer with messages tells how the call ended only in its trailers.
        let awaitTrailers = grpcStatus == nil && !endStream
            && head.combined("content-type").map { GRPCStatus.isGRPC(contentType: $0) } == true
        if !awaitTrailers {
            unreported = false
            report.record(status: head.status, grpcStatus: grpcStatus, retryAfter: head.combined("retry-after"),
                          challenge: head.status == 401 ? head.combined("www-authenticate") : nil)
        }
        client.beginResponse(relaying: head, framing: endStream ? .none : .stream)
    }

    func h2Data(_ buffer: OpaquePointer) -> Bool {
        guard case .relaying = phase else {
            evbuffer_drain(buffer, evbuffer_get_length(buffer))
            return false
        }
        bytesSent += evbuffer_get_length(buffer)
        return client.sendBody(buffer)
    }

    func h2End(trailers: [(name: [UInt8], value: [UInt8])]) {
        guard case .relaying = phase else { return }
        phase = .finished
        if unreported {
            unreported = false
            let value = trailers.first { $0.name.elementsEqual("grpc-status".utf8) }?.value
            report.record(status: status, grpcStatus: value.flatMap { GRPCStatus.parse(String(decoding: $0, as: UTF8.self)) },
                          retryAfter: nil)
        }
        client.endResponse(trailers: trailers)
        logAccess()
    }

    func h2Failed(_ failure: UpstreamFailure) {
        let before = phase
        phase = .finished
        switch before {
        case .finished:
            return
        case .relaying:
            handler.logger.warning("upstream HTTP/2 stream broke mid-response; client stream reset", metadata: [
                "server": "\(server.endpoint)", "failure": "\(failure)", "route": "\(route.name)",
            ])
            if unreported {
                unreported = false
                report.record(status: 502, grpcStatus: isGRPC ? GRPCStatus.unavailable : nil, retryAfter: nil)
            }
            client.abortResponse()
            return logAccess()
        case .waiting, .sent:
            break
        }
        unreported = false
        handler.logger.warning("upstream failed", metadata: [
            "server": "\(server.endpoint)", "failure": "\(failure)", "route": "\(route.name)", "protocol": "h2",
        ])
        switch failure {
        case .connect:
            metrics.count(.connect_error)
            report.recordFailure(.connect, counts: route.policy.on.connect)
            respond(502, "Bad Gateway", grpcMessage: "upstream unreachable")
        case .timeout:
            metrics.count(.timeout)
            report.recordFailure(.timeout, counts: route.policy.on.timeout)
            respond(504, "Gateway Timeout", grpcMessage: "upstream timed out")
        case .closedBeforeResponse, .badResponse, .brokenResponse:
            metrics.count(.c5xx)
            report.record(status: 502, grpcStatus: isGRPC ? GRPCStatus.unavailable : nil, retryAfter: nil)
            respond(502, "Bad Gateway", grpcMessage: "upstream failed")
        }
    }

    /// Breakwater's own error: to a gRPC call, UNAVAILABLE the gRPC way.
    private func respond(_ code: Int, _ reason: String, grpcMessage: StaticString) {
        if isGRPC {
            status = 200
            ShieldResponse.sendGRPCError(GRPCStatus.unavailable, message: grpcMessage, on: client)
        } else {
            status = code
            client.respond(status: code, reason: reason, headers: [("Content-Type", "text/plain")],
                           body: Array("\(code) \(reason)\n".utf8))
        }
        logAccess()
    }

    // MARK: ClientExchange

    func clientClosed() {
        let before = phase
        phase = .finished
        switch before {
        case .finished:
            return
        case .sent(let connection, let id), .relaying(let connection, let id):
            connection.cancel(id)
        case .waiting:
            pending?.cancelWaiting(self)
        }
        if unreported {
            unreported = false
            report.abandonProbes()
        }
        status = 499
        logAccess()
    }

    func clientDrained() {
        if case .relaying(let connection, let id) = phase { connection.consumed(id) }
    }

    private func logAccess() {
        handler.logAccess(request, route: route, key: key, status: status, outcome: key == nil ? "bypassed" : "forwarded",
                          upstream: upstreamTime, bytes: bytesSent)
    }
}
