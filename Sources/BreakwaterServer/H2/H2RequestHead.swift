import BreakwaterHTTP

/// An HTTP/2 request's header block as the HTTP/1.1 head every rule reads. The fields are written
/// as they arrive into one buffer: the request line and Host (from `:method`, `:path` and
/// `:authority`) once the pseudo-header fields are in (nghttp2 delivers them first, each once),
/// then a line per field, the cookies joined into one line last (RFC 9113 8.2.3). `finish` parses
/// and checks it with the HTTP/1.1 rules (`HTTPHead.parseRequest`, `checkRequest`), so a stream
/// is refused, routed, keyed and forwarded exactly as the same request over HTTP/1.1.
struct H2RequestHead {
    /// The pseudo-header fields' values, one after the other.
    private var pseudo: [UInt8] = []
    private var method = 0..<0
    private var path = 0..<0
    private var authority = 0..<0
    private var text: [UInt8] = []
    private var cookies: [UInt8] = []

    /// One field of the header block (names lower-case, as HTTP/2 requires and nghttp2 checks).
    mutating func add(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) {
        if name.first == UInt8(ascii: ":") {
            // One allocation for the three values in the usual case, not one per growth.
            if pseudo.capacity == 0 { pseudo.reserveCapacity(256) }
            let start = pseudo.count
            if Self.name(name, is: ":method") {
                pseudo.append(contentsOf: value)
                method = start..<pseudo.count
            } else if Self.name(name, is: ":path") {
                pseudo.append(contentsOf: value)
                path = start..<pseudo.count
            } else if Self.name(name, is: ":authority") {
                pseudo.append(contentsOf: value)
                authority = start..<pseudo.count
            }
            return
        }
        if Self.name(name, is: "cookie") {
            if !cookies.isEmpty { cookies.append(ascii: "; ") }
            cookies.append(contentsOf: value)
            return
        }
        // :authority stands for Host (RFC 9113 8.3.1); a Host beside it is not sent twice.
        if !authority.isEmpty, Self.name(name, is: "host") { return }
        if text.isEmpty { startText() }
        text.append(contentsOf: name)
        text.append(ascii: ": ")
        text.append(contentsOf: value)
        text.append(ascii: "\r\n")
    }

    /// `add` for fields in arrays (tests, and callers that hold them so).
    mutating func add(_ name: [UInt8], _ value: [UInt8]) {
        name.withUnsafeBufferPointer { n in value.withUnsafeBufferPointer { v in add(n, v) } }
    }

    /// The head, parsed and checked as an HTTP/1.1 request's; the error is the one the same
    /// request over HTTP/1.1 gets.
    consuming func finish() throws(HTTPError) -> HTTPHead {
        var fields: [HeaderField] = []
        return try finish(reusing: &fields)
    }

    /// `finish`, its header lines collected in `fields` (see `HTTPHead.parseRequest(_:fields:)`):
    /// a connection passes the same array for every stream, whose storage is reused once the
    /// previous request is gone.
    consuming func finish(reusing fields: inout [HeaderField]) throws(HTTPError) -> HTTPHead {
        if text.isEmpty { startText() }
        if !cookies.isEmpty {
            text.append(ascii: "Cookie: ")
            text.append(contentsOf: cookies)
            text.append(ascii: "\r\n")
        }
        text.append(ascii: "\r\n")
        let head = try HTTPHead.parseRequest(text, fields: &fields)
        _ = try head.checkRequest()
        return head
    }

    private static func name(_ name: UnsafeBufferPointer<UInt8>, is literal: StaticString) -> Bool {
        name.count == literal.utf8CodeUnitCount
            && name.elementsEqual(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// The request line and Host.
    private mutating func startText() {
        text.reserveCapacity(pseudo.count + 320)
        text.append(contentsOf: pseudo[method])
        text.append(0x20)
        text.append(contentsOf: pseudo[path])
        text.append(ascii: " HTTP/1.1\r\n")
        if !authority.isEmpty {
            text.append(ascii: "Host: ")
            text.append(contentsOf: pseudo[authority])
            text.append(ascii: "\r\n")
        }
    }
}
