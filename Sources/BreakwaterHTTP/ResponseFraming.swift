/// How a response is framed for the client that asked for it: the headers that only the
/// connection can decide (Content-Length, Transfer-Encoding, Connection), and whether its body is
/// sent at all.
public struct ResponseFraming: Sendable {
    /// What the writer of a response knows of its body.
    public enum Body: Equatable, Sendable {
        /// No body at all (204, 304, or a reply without content).
        case none
        /// Exactly this many bytes follow.
        case length(Int)
        /// Length unknown in advance: chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0.
        case stream
    }

    /// The framing headers of one response.
    public struct Headers: Equatable, Sendable {
        /// `Content-Length: n`.
        public var contentLength: Int?
        /// `Transfer-Encoding: chunked`; the body is then written as chunks.
        public var chunked = false
        /// `Connection: close`.
        public var close = false
        /// `Connection: keep-alive` (an HTTP/1.0 client that asked to keep the connection).
        public var keepAlive = false
    }

    /// The request's minor HTTP version (0 or 1).
    public let minorVersion: Int
    /// The request is a HEAD: the response carries the GET's headers (its Content-Length
    /// included) but never a body (RFC 9110 9.3.2), whatever the writer sends.
    public let answeringHEAD: Bool
    /// Whether the connection stays open after this response.
    public private(set) var keepAlive: Bool
    /// Whether the body is being sent as chunks.
    public private(set) var chunked = false

    /// The framing for the response to a request whose body was not read: the connection closes
    /// after it (the rest of the request is still on the wire).
    public static func closing(request: borrowing HTTPHead) -> ResponseFraming {
        var framing = ResponseFraming(request: request)
        framing.keepAlive = false
        return framing
    }

    /// The framing for the response to `request`.
    public init(request: borrowing HTTPHead) {
        minorVersion = request.minorVersion
        answeringHEAD = request.isHEAD
        keepAlive = request.keepsAlive
    }

    /// The framing for an answer to a request that was refused before it was understood: HTTP/1.1,
    /// with a body, and the connection closed after it.
    public static var refusal: ResponseFraming { ResponseFraming() }

    private init() {
        minorVersion = 1
        answeringHEAD = false
        keepAlive = false
    }

    /// The framing headers for a response with `body`; `draining`: the server is stopping, so
    /// the connection closes after this response.
    public mutating func headers(for body: Body, draining: Bool) -> Headers {
        var headers = Headers()
        chunked = false
        switch body {
        case .none:
            break
        case .length(let n):
            headers.contentLength = n
        case .stream where answeringHEAD:
            break   // no body follows, so no framing for one
        case .stream:
            if minorVersion == 1 {
                chunked = true
                headers.chunked = true
            } else {
                keepAlive = false   // the end of the body is the end of the connection
            }
        }
        if draining { keepAlive = false }
        if !keepAlive {
            headers.close = true
        } else if minorVersion == 0 {
            headers.keepAlive = true
        }
        return headers
    }
}

extension HTTPHead {
    /// Whether this request is a HEAD (methods are case-sensitive: `head` is another method).
    public var isHEAD: Bool { methodIs("HEAD") }
}
