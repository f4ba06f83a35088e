/// How a message's body is delimited on the wire (RFC 9112 6).
public enum BodyLength: Equatable, Sendable {
    /// No body.
    case none
    /// Exactly this many bytes.
    case length(Int)
    /// `Transfer-Encoding: chunked`.
    case chunked
    /// A response whose body runs until the server closes the connection.
    case untilClose
}

/// The framing rules for requests and responses, one implementation for both sides of the proxy.
/// The usual request-smuggling shapes are refused before any byte is forwarded.
extension HTTPHead {
    /// The Content-Length: nil when absent. Several lines, or a list in one line, must all agree
    /// (RFC 9110 8.6); anything but digits, or more than 18 of them, is malformed.
    /// Read through a buffer pointer, within each value's range.
    public func contentLength() throws(HTTPError) -> Int? {
        guard mayHave("content-length") else { return nil }
        return try bytes.withUnsafeBufferPointer { (b) throws(HTTPError) -> Int? in
            var length: Int?
            for f in fields where nameIs(f, "content-length") {
                var i = Int(f.valueStart)
                let end = Int(f.valueEnd)
                while i <= end {
                    while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
                    var n = 0
                    var digits = 0
                    while i < end, b[i] &- 0x30 < 10 {
                        digits += 1
                        if digits > 18 { throw .badRequest("Content-Length too long") }
                        n = n * 10 + Int(b[i] &- 0x30)
                        i += 1
                    }
                    while i < end && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
                    guard digits > 0, i == end || b[i] == UInt8(ascii: ",") else {
                        throw .badRequest("malformed Content-Length")
                    }
                    guard length == nil || length == n else { throw .badRequest("Content-Length values disagree") }
                    length = n
                    i += 1
                }
            }
            return length
        }
    }

    /// Whether the connection stays open after this message (RFC 9112 9.3): HTTP/1.1 unless it
    /// says `Connection: close`, HTTP/1.0 only when it says `Connection: keep-alive`.
    public var keepsAlive: Bool {
        minorVersion == 1 ? !connection.contains(.close) : connection.contains(.keepAlive)
    }

    /// A request's body framing. Transfer-Encoding must be exactly `chunked`, on HTTP/1.1, with no
    /// Content-Length beside it (RFC 9112 6.1: with both, the message is an attack).
    public func requestBodyLength() throws(HTTPError) -> BodyLength {
        if let coding = combined("transfer-encoding") {
            guard count("content-length") == 0 else { throw .badRequest("both Transfer-Encoding and Content-Length") }
            guard minorVersion == 1 else { throw .badRequest("Transfer-Encoding in HTTP/1.0") }
            guard coding.trimmingASCIISpaces().lowercased() == "chunked" else {
                throw .badRequest("Transfer-Encoding other than chunked")
            }
            return .chunked
        }
        guard let n = try contentLength(), n > 0 else { return .none }
        return .length(n)
    }

    /// A response's body framing (RFC 9112 6.3), given whether it answers a HEAD request. A
    /// Transfer-Encoding that does not end in chunked, or no length at all, runs until close.
    public func responseBodyLength(answeringHEAD: Bool) throws(HTTPError) -> BodyLength {
        if answeringHEAD || status < 200 || status == 204 || status == 304 { return .none }
        if let coding = combined("transfer-encoding") {
            let last = coding.split(separator: ",").last?.trimmingASCIISpaces().lowercased()
            return last == "chunked" ? .chunked : .untilClose
        }
        guard let n = try contentLength() else { return .untilClose }
        return .length(n)
    }
}

extension HTTPHead {
    /// The protocols an HTTP/1.1 request asks to switch to (RFC 9110 7.8): the names in its
    /// `Upgrade` header, lower-case and without their version, when `Connection` lists `upgrade`;
    /// empty otherwise (an Upgrade that Connection does not name is a stray hop-by-hop field).
    public var upgradeProtocols: [String] {
        // The Upgrade field first: most requests have none, and looking for it is one pass over names.
        guard minorVersion == 1, mayHave("upgrade"), fields.contains(where: { nameIs($0, "upgrade") }),
              connection.contains(.upgrade), let value = combined("upgrade") else { return [] }
        return value.split(separator: ",").compactMap { element in
            let name = element.trimmingASCIISpaces().prefix { $0 != "/" }
            return name.isEmpty ? nil : name.lowercased()
        }
    }
}
