import BreakwaterCore

/// The shield's answers to a gRPC call (a request whose content-type is `application/grpc...`):
/// a gRPC client reads no HTTP status and no problem+json body, so it is told the gRPC way, as a
/// trailers-only response (HTTP 200, one HEADERS frame that ends the stream): `grpc-status`, a
/// `grpc-message`, and `grpc-retry-pushback-ms` (gRFC A6), which a client with a retry policy
/// waits out before its next attempt.
extension ShieldResponse {
    /// A blocked or rate-limited call: RESOURCE_EXHAUSTED, pushed back by the exact window.
    static func sendGRPC<Client: ClientResponder>(reason: RejectReason, retryAfter: Duration, on connection: Client) {
        let pushback = GRPCStatus.pushbackMilliseconds(retryAfter)
        connection.respond(bodyLength: 0) { head in
            head.append(ascii: "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 8\r\ngrpc-message: ")
            head.append(ascii: reason.grpcMessage)
            head.append(ascii: "\r\ngrpc-retry-pushback-ms: ")
            head.append(decimal: pushback)
            head.append(ascii: "\r\nRetry-After: ")
            head.append(decimal: RetryAfter.seconds(retryAfter))
            head.append(ascii: "\r\n")
        } body: { _ in }
    }

    /// The call while the route's circuit is open: UNAVAILABLE, pushed back until the circuit's
    /// next probe may go.
    static func sendGRPCUpstreamDown<Client: ClientResponder>(retryAfter: Duration, on connection: Client) {
        let pushback = GRPCStatus.pushbackMilliseconds(retryAfter)
        connection.respond(bodyLength: 0) { head in
            head.append(ascii: "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 14\r\n")
            head.append(ascii: "grpc-message: upstream unavailable\r\ngrpc-retry-pushback-ms: ")
            head.append(decimal: pushback)
            head.append(ascii: "\r\nRetry-After: ")
            head.append(decimal: RetryAfter.seconds(retryAfter))
            head.append(ascii: "\r\n")
        } body: { _ in }
    }
}

extension ShieldResponse {
    /// Breakwater's own error to a gRPC call (the upstream unreachable, say): `code` with
    /// `message` (printable ASCII without `%`), trailers-only.
    static func sendGRPCError(_ code: Int, message: StaticString, on connection: some ClientResponder) {
        connection.respond(bodyLength: 0) { head in
            head.append(ascii: "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: ")
            head.append(decimal: code)
            head.append(ascii: "\r\ngrpc-message: ")
            head.append(ascii: message)
            head.append(ascii: "\r\n")
        } body: { _ in }
    }
}

extension RejectReason {
    /// `grpc-message` of the shield's RESOURCE_EXHAUSTED: printable ASCII without `%`, so it
    /// needs no percent-encoding.
    var grpcMessage: StaticString {
        switch self {
        case .backoff: "too many requests: backoff"
        case .probe: "too many requests: probe"
        case .rate: "too many requests: rate"
        }
    }
}
