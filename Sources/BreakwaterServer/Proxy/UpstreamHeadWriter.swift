import BreakwaterHTTP

/// Where `ProxyHeaders.upstreamRequest` writes the head of a forwarded request, piece by piece:
/// as HTTP/1.1 text (every `ByteSink`, below) or as HTTP/2 header fields
/// (`H2Headers.RequestFields`), so that both protocols forward by the same rule.
protocol UpstreamHeadWriter {
    /// The method, and the target as path and query (`?` included, or empty).
    mutating func requestLine(method: ArraySlice<UInt8>, path: ArraySlice<UInt8>, query: ArraySlice<UInt8>)
    /// A field of the client's request, as it came.
    mutating func field(_ head: HTTPHead, _ f: HeaderField)
    /// The host the upstream is asked for.
    mutating func host(_ value: ArraySlice<UInt8>)
    /// The fields that say who forwarded: X-Forwarded-For (`forwardedFor`, the client's own,
    /// then `client`), X-Forwarded-Proto, and Via (`via`, the client's, then Breakwater's).
    mutating func forwarding(forwardedFor: String?, client: ArraySlice<UInt8>, secure: Bool, via: String?)
    /// A field the proxy writes: its name, then `value` pieces, then `endField`.
    mutating func startField(_ name: StaticString)
    mutating func value(bytes: ArraySlice<UInt8>)
    mutating func value(ascii: StaticString)
    mutating func value(utf8: String)
    mutating func endField()
    /// The length of the body that follows.
    mutating func contentLength(_ length: Int)
    /// The head is complete.
    mutating func endHead()
}

/// The head as HTTP/1.1 text.
extension UpstreamHeadWriter where Self: ByteSink {
    mutating func requestLine(method: ArraySlice<UInt8>, path: ArraySlice<UInt8>, query: ArraySlice<UInt8>) {
        append(bytes: method)
        append(0x20)
        append(bytes: path)
        if !query.isEmpty { append(bytes: query) }
        append(ascii: " HTTP/1.1\r\n")
    }

    mutating func forwarding(forwardedFor: String?, client: ArraySlice<UInt8>, secure: Bool, via: String?) {
        append(ascii: "X-Forwarded-For: ")
        if let forwardedFor {
            append(utf8: forwardedFor)
            append(ascii: ", ")
        }
        append(bytes: client)
        append(ascii: secure ? "\r\nX-Forwarded-Proto: https\r\nVia: " : "\r\nX-Forwarded-Proto: http\r\nVia: ")
        if let via {
            append(utf8: via)
            append(ascii: ", ")
        }
        append(ascii: "1.1 breakwater\r\n")
    }

    mutating func field(_ head: HTTPHead, _ f: HeaderField) {
        append(line: head, f)
    }

    mutating func host(_ value: ArraySlice<UInt8>) {
        append(ascii: "Host: ")
        append(bytes: value)
        append(ascii: "\r\n")
    }

    mutating func startField(_ name: StaticString) {
        append(ascii: name)
        append(ascii: ": ")
    }

    mutating func value(bytes: ArraySlice<UInt8>) { append(bytes: bytes) }
    mutating func value(ascii: StaticString) { append(ascii: ascii) }
    mutating func value(utf8: String) { append(utf8: utf8) }
    mutating func endField() { append(ascii: "\r\n") }

    mutating func contentLength(_ length: Int) {
        append(ascii: "Content-Length: ")
        append(decimal: length)
        append(ascii: "\r\n")
    }

    mutating func endHead() { append(ascii: "\r\n") }
}

extension Array: UpstreamHeadWriter where Element == UInt8 {}
extension EvbufferWriter: UpstreamHeadWriter {}

extension ByteSink {
    /// Appends field `f` of `head` as it came (name, colon, value) and CRLF, its bytes read in
    /// place: no slice of the head's array is made (and retained) for each field.
    @inline(__always)
    mutating func append(line head: HTTPHead, _ f: HeaderField) {
        head.bytes.withUnsafeBytes { append(raw: UnsafeRawBufferPointer(rebasing: $0[Int(f.nameStart)..<Int(f.valueEnd)])) }
        append(ascii: "\r\n")
    }
}
