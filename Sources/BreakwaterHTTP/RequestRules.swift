/// What a request must satisfy beyond its syntax before it is routed or forwarded (RFC 9112 3).
///
/// Where nginx 1.22 and HAProxy 2.6 differ, the stricter one sets the rule: whatever either of
/// them refuses is refused here too, so what Breakwater forwards is what both would have taken.
extension HTTPHead {
    /// Checks a parsed request head against the rules of request semantics and returns its body
    /// framing; throws the status to refuse the request with. The one call a connection makes on
    /// a request head before routing it. In order:
    ///
    /// - Host (RFC 9112 3.2): never more than one line, whatever the version (nginx refuses a
    ///   second one even when equal); exactly one in HTTP/1.1; its value must pass `checkHost`.
    ///   With an absolute-form target the target's authority replaces it (RFC 9112 3.2.2): the
    ///   Host line is still required and checked, as nginx does, but the upstream is sent the
    ///   authority (`ProxyHeaders`).
    /// - Authorization: at most one line.
    /// - Framing: `requestBodyLength()`, whose errors are 400s.
    /// - TRACE is refused with 405, with or without a body, as nginx refuses it. It echoes the
    ///   request back with its headers, credentials and cookies included (cross-site tracing)
    ///   and with what the proxy added to them, and an API server has no use for it. A TRACE
    ///   with a body is malformed besides (RFC 9110 9.3.8). It comes after the framing, as in
    ///   nginx, so broken framing is still a 400.
    public func checkRequest() throws(HTTPError) -> BodyLength {
        var host: HeaderField?
        var authorization = false
        for f in fields {
            if nameIs(f, "host") {
                guard host == nil else { throw .badRequest("more than one Host") }
                host = f
            } else if nameIs(f, "authorization") {
                // Two credentials would make the client two clients, or let one hide behind the
                // other (RFC 9110 11.6.2 allows one Authorization field): refused.
                guard !authorization else { throw .badRequest("more than one Authorization") }
                authorization = true
            }
        }
        if let host {
            let value = Int(host.valueStart)..<Int(host.valueEnd)
            try Self.checkHost(bytes, value, requestLine: false)
        } else if minorVersion == 1 {
            throw .badRequest("HTTP/1.1 request without Host")
        }
        let length = try requestBodyLength()
        if methodIs("TRACE") { throw HTTPError(405, "TRACE") }
        return length
    }

    /// Checks that `b[range]` is `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2), as the
    /// value of a Host or as the authority of an absolute-form target (`requestLine`); throws a
    /// 400 saying what is wrong.
    ///
    /// - uri-host is an IP-literal, `[` IPv6address or IPvFuture `]`, or a reg-name: unreserved
    ///   characters, sub-delims and pct-encodings. An IPv4address is a reg-name as far as syntax
    ///   goes, so it needs no case of its own.
    /// - The comma, a sub-delim, is refused anyway: Host holds one authority, and with a comma
    ///   the value reads as a list (`Host: a, b`) to anything that splits fields on commas
    ///   (RFC 9110 5.3). No DNS name has one.
    /// - Refused as nginx refuses them: an empty host, so an empty Host value and `Host: :80`
    ///   too; a host of just `.`; two dots in a row. An empty Host is allowed by RFC 9112 3.2
    ///   only for a target URI without authority, but every target accepted here is an http(s)
    ///   URI, whose host must not be empty (RFC 9110 4.2.1), and nginx answers it with 400.
    /// - `%00` is refused, as in the path (see `parseRequest`).
    /// - The port is digits, at most 65535. An empty port (`host:`) is allowed, as RFC 3986 and
    ///   nginx both allow it.
    /// - In the request line (`requestLine`), a reg-name is letters, digits, `.` and `-` only, as
    ///   nginx requires there; so no pct-encoding either.
    static func checkHost(_ bytes: [UInt8], _ range: Range<Int>, requestLine: Bool) throws(HTTPError) {
        // Through a buffer pointer: this runs on every request, and the loop conditions keep the
        // indices inside `range`, which lies inside the buffer.
        try bytes.withUnsafeBufferPointer { (b) throws(HTTPError) in
            try checkHost(b, range, requestLine: requestLine)
        }
    }

    private static func checkHost(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, requestLine: Bool) throws(HTTPError) {
        var i = range.lowerBound
        let end = range.upperBound
        guard i < end else { throw .badRequest("empty host") }
        if b[i] == UInt8(ascii: "[") {
            var close = i + 1
            while close < end, b[close] != UInt8(ascii: "]") { close += 1 }
            guard close < end, isIPLiteral(b, i + 1..<close) else { throw .badRequest("bad IP literal in host") }
            i = close + 1
        } else {
            let (classLow, classHigh) = requestLine ? requestLineHostClass : regNameClass
            let hostStart = i
            while i < end {
                let c = b[i]
                if isIn(c, classLow, classHigh) {
                    // Two dots in a row make an empty label, which nginx refuses.
                    if c == UInt8(ascii: "."), i > hostStart, b[i - 1] == c { throw .badRequest("empty label in host") }
                    i += 1
                } else if c == UInt8(ascii: ":") {
                    break
                } else if c == UInt8(ascii: "%"), !requestLine {
                    guard i + 2 < end, let high = hexDigit(b[i + 1]), let low = hexDigit(b[i + 2]) else {
                        throw .badRequest("bad percent-encoding in host")
                    }
                    guard high | low != 0 else { throw .badRequest("encoded NUL in host") }
                    i += 3
                } else {
                    switch c {
                    case UInt8(ascii: ","): throw .badRequest("list of hosts")
                    case UInt8(ascii: " "), 0x09: throw .badRequest("space in host")
                    case UInt8(ascii: "/"), UInt8(ascii: "?"), UInt8(ascii: "#"): throw .badRequest("path in host")
                    case UInt8(ascii: "@"): throw .badRequest("userinfo in host")
                    default: throw .badRequest("bad character in host")
                    }
                }
            }
            guard i > hostStart else { throw .badRequest("empty host") }
            guard i - hostStart > 1 || b[hostStart] != UInt8(ascii: ".") else { throw .badRequest("empty host") }
        }
        guard i < end else { return }
        guard b[i] == UInt8(ascii: ":") else { throw .badRequest("bad character in host") }
        i += 1
        var port = 0
        let portStart = i
        while i < end {
            let d = b[i] &- UInt8(ascii: "0")
            guard d < 10 else { throw .badRequest("port is not digits") }
            // Five digits at most keeps the sum small; leading zeros are left to the upstream.
            guard i - portStart < 5 else { throw .badRequest("port out of range") }
            port = port * 10 + Int(d)
            i += 1
        }
        guard port <= 65535 else { throw .badRequest("port out of range") }
    }

    /// RFC 3986 reg-name bytes other than pct-encodings: unreserved (ALPHA, DIGIT, `-._~`) and
    /// sub-delims (`!$&'()*+;=`) but the comma, as the two halves of a 128-bit map.
    private static var regNameClass: (UInt64, UInt64) { (0x2BFF_6FD2_0000_0000, 0x47FF_FFFE_87FF_FFFE) }

    /// The bytes nginx takes in the host of a request line: ALPHA, DIGIT, `.` and `-`.
    private static var requestLineHostClass: (UInt64, UInt64) { (0x03FF_6000_0000_0000, 0x07FF_FFFE_07FF_FFFE) }

    /// Whether `c` is in the byte class whose 128-bit map has the halves `low` and `high` (no
    /// table in memory, as for `isTokenChar`).
    @inline(__always)
    private static func isIn(_ c: UInt8, _ low: UInt64, _ high: UInt64) -> Bool {
        let word = c < 64 ? low : c < 128 ? high : 0
        return word >> UInt64(c & 63) & 1 != 0
    }

    /// Whether `c` is a reg-name byte of `checkHost` (pct-encodings aside).
    static func isRegNameChar(_ c: UInt8) -> Bool {
        isIn(c, regNameClass.0, regNameClass.1)
    }

    /// Whether `c` is a host byte of a request line for `checkHost`.
    static func isRequestLineHostChar(_ c: UInt8) -> Bool {
        isIn(c, requestLineHostClass.0, requestLineHostClass.1)
    }

    /// Whether `b[range]`, the inside of the brackets, is an IPv6address or an IPvFuture
    /// (RFC 3986 3.2.2). A zone identifier (RFC 6874) has no place in a Host and is refused.
    private static func isIPLiteral(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        guard let first = range.first else { return false }
        if b[first] | 0x20 == UInt8(ascii: "v") { return isIPvFuture(b, range.dropFirst()) }
        return isIPv6(b, range)
    }

    /// `1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`, without the comma and two dots in a
    /// row, as for a reg-name.
    private static func isIPvFuture(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var i = range.lowerBound
        while i < range.upperBound, hexDigit(b[i]) != nil { i += 1 }
        guard i > range.lowerBound, i < range.upperBound, b[i] == UInt8(ascii: ".") else { return false }
        i += 1
        guard i < range.upperBound else { return false }
        var previous = UInt8(ascii: ".")
        while i < range.upperBound {
            let c = b[i]
            guard isRegNameChar(c) || c == UInt8(ascii: ":") else { return false }
            if c == UInt8(ascii: "."), previous == c { return false }
            previous = c
            i += 1
        }
        return true
    }

    /// RFC 3986 IPv6address: eight groups of one to four hex digits separated by colons, the last
    /// two of which may be an IPv4address, and at most one `::` standing for one or more groups.
    private static func isIPv6(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var i = range.lowerBound
        let end = range.upperBound
        var groups = 0
        var elided = false
        if i < end, b[i] == UInt8(ascii: ":") {
            guard i + 1 < end, b[i + 1] == UInt8(ascii: ":") else { return false }
            elided = true
            i += 2
        }
        while i < end {
            let groupStart = i
            while i < end, hexDigit(b[i]) != nil { i += 1 }
            if i < end, b[i] == UInt8(ascii: ".") {
                // The IPv4 tail ends the address and counts as two groups.
                guard isIPv4(b, groupStart..<end) else { return false }
                groups += 2
                break
            }
            guard i > groupStart, i - groupStart <= 4 else { return false }
            groups += 1
            guard i < end else { break }
            guard b[i] == UInt8(ascii: ":") else { return false }
            i += 1
            if i < end, b[i] == UInt8(ascii: ":") {
                guard !elided else { return false }
                elided = true
                i += 1
            } else if i == end {
                return false   // a single trailing colon
            }
        }
        return elided ? groups <= 7 : groups == 8
    }

    /// RFC 3986 IPv4address: four dec-octets (0 to 255, no leading zero) separated by dots.
    private static func isIPv4(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var i = range.lowerBound
        for octet in 0..<4 {
            if octet > 0 {
                guard i < range.upperBound, b[i] == UInt8(ascii: ".") else { return false }
                i += 1
            }
            let start = i
            var value = 0
            while i < range.upperBound, b[i] &- UInt8(ascii: "0") < 10, i - start < 3 {
                value = value * 10 + Int(b[i] &- UInt8(ascii: "0"))
                i += 1
            }
            guard i > start, value <= 255, i - start == 1 || b[start] != UInt8(ascii: "0") else { return false }
        }
        return i == range.upperBound
    }
}
