import BreakwaterHTTP

/// The wire protocol a request came in on (the `protocol` label of the request metrics).
enum WireProtocol: String, CaseIterable, Sendable {
    case http1, h2
}

/// The client side of one request: an HTTP/1.1 connection, or one stream of an HTTP/2
/// connection. The request path (route, identity, the shield, forwarding) answers through these
/// calls only, so both protocols take the same path. Heads are written as HTTP/1.1 text (status
/// line and header lines, CRLF-terminated, no blank line); an HTTP/2 stream turns them into
/// header fields.
protocol ClientResponder: AnyObject {
    /// The handler's side of the current exchange, told when the client leaves or drains.
    var exchange: ClientExchange? { get set }
    /// The peer's address as text (it goes into X-Forwarded-For).
    var peerText: [UInt8] { get }
    /// Which protocol the request came in on.
    var wireProtocol: WireProtocol { get }
    /// The request's `Origin` when `[server] cors_origins` lists it: Breakwater's own answer
    /// carries the CORS headers that let that page read it.
    var corsOrigin: String? { get set }
    /// Relays the head of an upstream response (its hop-by-hop fields left out); the body follows
    /// through `sendBody` and `endResponse`.
    func beginResponse(relaying head: HTTPHead, framing body: BodyFraming)
    /// Writes the head of a response whose body follows through `sendBody` and `endResponse`.
    func beginResponse(framing body: BodyFraming, reserving size: Int, head writeHead: (inout EvbufferWriter) -> Void)
    /// A whole response with a body of `bodyLength` bytes.
    func respond(bodyLength: Int, head writeHead: (inout EvbufferWriter) -> Void, body writeBody: (inout EvbufferWriter) -> Void)
    /// Appends body bytes taken from `buffer` (left empty). True when the client is slow and the
    /// caller should pause until `clientDrained`.
    @discardableResult
    func sendBody(_ buffer: OpaquePointer) -> Bool
    /// Completes the response.
    func endResponse()
    /// Completes the response with trailer fields (names lower-case) after its body. HTTP/1.1
    /// drops them (its responses are framed by Content-Length or chunked without a trailer).
    func endResponse(trailers: [(name: [UInt8], value: [UInt8])])
    /// A request body that streams to the upstream as it arrives, once `startStreaming` made one.
    var bodyPipe: RequestBodyPipe? { get }
    /// Ends the response mid-body so that the client cannot take a part for the whole.
    func abortResponse()
    /// The upstream switched protocols (a 101): joins the client and `upstream` into a tunnel.
    func startTunnel(upstream: Socket, idleTimeout: Duration, metrics: ProxyMetrics,
                     head writeHead: (inout EvbufferWriter) -> Void, onClose: @escaping (Duration, Int, Int) -> Void)
}

extension ClientResponder {
    func endResponse(trailers: [(name: [UInt8], value: [UInt8])]) { endResponse() }

    var bodyPipe: RequestBodyPipe? { nil }

    /// A complete response in one call: one of Breakwater's own answers, through
    /// `respond(bodyLength:head:body:)`.
    func respond(status: Int, reason: String, headers: [(String, String)], body: [UInt8]) {
        respond(bodyLength: body.count) { head in
            head.append(ascii: "HTTP/1.1 ")
            head.append(decimal: status)
            head.append(ascii: " ")
            head.append(utf8: reason)
            head.append(ascii: "\r\n")
            for (name, value) in headers {
                head.append(utf8: name)
                head.append(ascii: ": ")
                head.append(utf8: value)
                head.append(ascii: "\r\n")
            }
        } body: { $0.append(bytes: body[...]) }
    }
}
