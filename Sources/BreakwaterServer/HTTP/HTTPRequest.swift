import BreakwaterHTTP
private import CLibevent
import BreakwaterCore

/// Serves the requests of one listener. One instance per worker, used only on its thread.
protocol HTTPHandler: AnyObject {
    /// Answers `request`, now or later, through `connection`'s response calls.
    func handle(_ request: HTTPRequest, on connection: ClientConnection)
    /// The connection refused a request itself (malformed, too large, too slow) with `status`;
    /// `secure`: it came over TLS.
    func rejected(status: Int, peer: IPAddress, secure: Bool, over wire: WireProtocol)
    /// A request's head arrived and its body is to follow (`request` has no body yet): nil lets
    /// the body be read, or the answer to give at once instead, written by the closure, before
    /// a `100 Continue` and before any body byte is buffered.
    func bodyAhead(_ request: HTTPRequest, on connection: ClientConnection) -> ((ClientConnection) -> Void)?
    /// `handle` for a request that came on an HTTP/2 stream.
    func handle(_ request: HTTPRequest, on stream: H2Stream)
    /// `bodyAhead` for a request that came on an HTTP/2 stream.
    func bodyAhead(_ request: HTTPRequest, on stream: H2Stream) -> ((H2Stream) -> Void)?
    /// HTTP/2 streams opened (+1) or closed (-1) on this worker.
    func h2Streams(_ delta: Int)
    /// HTTP/2 connections opened (+1) or closed (-1) on this worker.
    func h2Connections(_ delta: Int)
}

extension HTTPHandler {
    func rejected(status: Int, peer: IPAddress, secure: Bool, over wire: WireProtocol) {}
    func bodyAhead(_ request: HTTPRequest, on connection: ClientConnection) -> ((ClientConnection) -> Void)? { nil }
    /// Only the proxy's listeners speak HTTP/2; any other handler never sees a stream.
    func handle(_ request: HTTPRequest, on stream: H2Stream) {
        stream.respond(status: 505, reason: "HTTP Version Not Supported", headers: [("Content-Type", "text/plain")],
                       body: Array("505 HTTP Version Not Supported\n".utf8))
    }
    func bodyAhead(_ request: HTTPRequest, on stream: H2Stream) -> ((H2Stream) -> Void)? { nil }
    func h2Streams(_ delta: Int) {}
    func h2Connections(_ delta: Int) {}
}

/// The side of a pending response that must hear about the client.
protocol ClientExchange: AnyObject {
    /// The client went away before the response ended: stop working for it.
    func clientClosed()
    /// The client's output buffer drained: relaying may resume.
    func clientDrained()
}

/// How the body of a response is delimited on the wire to the client.
typealias BodyFraming = ResponseFraming.Body

/// A complete, validated request: head plus the whole body (requests are buffered, as nginx does
/// by default, so a body can be sent again and the upstream never sees client framing).
final class HTTPRequest {
    let head: HTTPHead
    /// The decoded body, nil when the request has none. Owned by this request.
    let body: OpaquePointer?
    /// The TCP peer.
    let peer: IPAddress
    /// The connection's TLS session, nil for plain HTTP.
    let tls: TLSSession?
    /// Set by the handler when the request asks to switch to a protocol its route allows.
    var upgrading = false
    /// The path in its normal form when the request spelt it otherwise: what routes matched and
    /// what goes upstream. nil: the path as received is already normal.
    var normalizedPath: [UInt8]?

    init(head: consuming HTTPHead, body: OpaquePointer?, peer: IPAddress, tls: TLSSession? = nil) {
        self.head = head
        self.body = body
        self.peer = peer
        self.tls = tls
    }

    /// Whether the request came over TLS (`X-Forwarded-Proto: https`).
    var isSecure: Bool { tls != nil }

    /// The SHA-256 fingerprint of the client's certificate (hex), nil without one: the value of
    /// the `tls:fingerprint` key part.
    var clientCertificateFingerprint: String? { tls?.peerFingerprint() }

    deinit { if let body { evbuffer_free(body) } }

    /// Whether this is a HEAD request (its response never has a body).
    var isHEAD: Bool { head.isHEAD }

    /// Body length in bytes.
    var bodyLength: Int { body.map { evbuffer_get_length($0) } ?? 0 }

    /// A gRPC call (`content-type: application/grpc...`): the shield answers it the gRPC way.
    lazy var isGRPC: Bool = head.combined("content-type").map { GRPCStatus.isGRPC(contentType: $0) } ?? false
}
