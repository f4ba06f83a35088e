import BreakwaterHTTP
private import CLibevent
import BreakwaterCore

/// Serves the requests of one listener. One instance per worker, used only on its thread.
protocol HTTPHandler: AnyObject {
    /// Answers `request`, now or later, through `connection`'s response calls.
    func handle(_ request: HTTPRequest, on connection: ClientConnection)
    /// The connection refused a request itself (malformed, too large, too slow) with `status`.
    func rejected(status: Int, peer: IPAddress)
}

extension HTTPHandler {
    func rejected(status: Int, peer: IPAddress) {}
}

/// The side of a pending response that must hear about the client.
protocol ClientExchange: AnyObject {
    /// The client went away before the response ended: stop working for it.
    func clientClosed()
    /// The client's output buffer drained: relaying may resume.
    func clientDrained()
}

/// How the body of a response is delimited on the wire to the client.
enum BodyFraming: Equatable {
    /// No body at all (HEAD, 204, 304, or a reply without content).
    case none
    /// Exactly this many bytes follow.
    case length(Int)
    /// Length unknown in advance: chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0.
    case stream
}

/// A complete, validated request: head plus the whole body (requests are buffered, as nginx does
/// by default, so a body can be sent again and the upstream never sees client framing).
final class HTTPRequest {
    let head: HTTPHead
    /// The decoded body, nil when the request has none. Owned by this request.
    let body: OpaquePointer?
    /// The TCP peer.
    let peer: IPAddress

    init(head: HTTPHead, body: OpaquePointer?, peer: IPAddress) {
        self.head = head
        self.body = body
        self.peer = peer
    }

    deinit { if let body { evbuffer_free(body) } }

    /// Whether this is a HEAD request (its response never has a body).
    var isHEAD: Bool { head.bytes[head.first].elementsEqual("HEAD".utf8) }

    /// Body length in bytes.
    var bodyLength: Int { body.map { evbuffer_get_length($0) } ?? 0 }
}
