import BreakwaterHTTP

/// An HTTP/2 request's header block as the HTTP/1.1 head every rule reads. The fields are written
/// as they arrive into one buffer: the pseudo-header fields' values first (nghttp2 delivers them
/// before any other field, each once), then, from `lineStart`, the request line and Host made from
/// `:method`, `:path` and `:authority`, a line per field, the cookies joined into one line last
/// (RFC 9113 8.2.3). `finish` moves the head to the front of the buffer (its only allocation in
/// the usual case) and parses and checks it with the HTTP/1.1 rules (`HTTPHead.parseRequest`,
/// `checkRequest`), so a stream is refused, routed, keyed and forwarded exactly as the same
/// request over HTTP/1.1.
struct H2RequestHead {
    private var text = ByteBuilder()
    /// Where the pseudo-header fields' values are in `text`.
    private var method = 0..<0
    private var path = 0..<0
    private var authority = 0..<0
    /// Where the request line starts in `text`; nil until it is written.
    private var lineStart: Int?
    private var cookies = ByteBuilder()

    /// Room for the usual head without growing.
    private static let initialCapacity = 512

    /// One field of the header block (names lower-case, as HTTP/2 requires and nghttp2 checks).
    mutating func add(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) {
        let value = UnsafeRawBufferPointer(value)
        if text.isEmpty { text = ByteBuilder(capacity: Self.initialCapacity + value.count) }
        if name.first == UInt8(ascii: ":") {
            // nghttp2 refuses a pseudo-header field after a regular one, so none comes once the
            // request line is written.
            guard lineStart == nil else { return }
            let start = text.count
            if Self.name(name, is: ":method") {
                text.append(raw: value)
                method = start..<text.count
            } else if Self.name(name, is: ":path") {
                text.append(raw: value)
                path = start..<text.count
            } else if Self.name(name, is: ":authority") {
                text.append(raw: value)
                authority = start..<text.count
            }
            return
        }
        if Self.name(name, is: "cookie") {
            if !cookies.isEmpty { cookies.append(ascii: "; ") }
            cookies.append(raw: value)
            return
        }
        // :authority stands for Host (RFC 9113 8.3.1); a Host beside it is not sent twice.
        if !authority.isEmpty, Self.name(name, is: "host") { return }
        if lineStart == nil { startText() }
        text.append(raw: UnsafeRawBufferPointer(name))
        text.append(ascii: ": ")
        text.append(raw: value)
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
        if lineStart == nil { startText() }
        if !cookies.isEmpty {
            text.append(ascii: "Cookie: ")
            cookies.withBytes(0..<cookies.count) { text.append(raw: $0) }
            text.append(ascii: "\r\n")
        }
        text.append(ascii: "\r\n")
        let head = try HTTPHead.parseRequest(text.take(from: lineStart ?? 0), fields: &fields)
        _ = try head.checkRequest()
        return head
    }

    private static func name(_ name: UnsafeBufferPointer<UInt8>, is literal: StaticString) -> Bool {
        name.count == literal.utf8CodeUnitCount
            && name.elementsEqual(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// The request line and Host, after the pseudo-header fields' values.
    private mutating func startText() {
        lineStart = text.count
        text.append(copyOf: method)
        text.append(0x20)
        text.append(copyOf: path)
        text.append(ascii: " HTTP/1.1\r\n")
        if !authority.isEmpty {
            text.append(ascii: "Host: ")
            text.append(copyOf: authority)
            text.append(ascii: "\r\n")
        }
    }
}
