/// One header line of a parsed head: byte offsets into `HTTPHead.bytes`.
public struct HeaderField {
    public var nameStart: Int32
    public var nameEnd: Int32
    public var valueStart: Int32
    public var valueEnd: Int32
}

/// A parsed request or response head. The raw bytes are kept once; every name, value and the
/// start line are ranges into them, so forwarding writes slices instead of rebuilding strings.
public struct HTTPHead {
    /// The head as received, up to and including the blank line.
    public let bytes: [UInt8]
    /// Header lines in order.
    public private(set) var fields: [HeaderField] = []
    /// Request: method. Response: protocol version.
    public private(set) var first: Range<Int> = 0..<0
    /// Request: request-target. Response: reason phrase.
    public private(set) var second: Range<Int> = 0..<0
    /// Request with an absolute-form target: the target's authority (host and optional port,
    /// never userinfo). Empty for an origin-form target and for responses.
    public private(set) var authority: Range<Int> = 0..<0
    /// The minor HTTP version (0 or 1).
    public private(set) var minorVersion = 1
    /// Response status code; 0 for requests.
    public private(set) var status = 0
    /// Which header names the head may carry: the bit `nameBit` gives a name is set for every
    /// field. A clear bit means no field has that name, so asking for an absent header (most
    /// heads have no Transfer-Encoding, Upgrade, Expect...) costs no pass over the fields.
    @usableFromInline private(set) var names: UInt64 = 0
    /// What the Connection fields list, read once while parsing: every head is asked whether it
    /// keeps the connection alive and whether it makes other fields hop-by-hop.
    private(set) var connection: ConnectionOptions = []

    /// The options of the Connection fields that decide something about the message.
    struct ConnectionOptions: OptionSet {
        let rawValue: UInt8
        static let close = ConnectionOptions(rawValue: 1)
        static let keepAlive = ConnectionOptions(rawValue: 2)
        /// Anything but `close` and `keep-alive` (`upgrade` too).
        static let other = ConnectionOptions(rawValue: 4)
        static let upgrade = ConnectionOptions(rawValue: 8)
    }

    public static let maxFields = 256

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// Parses `method SP target SP HTTP/1.x CRLF headers CRLF`.
    ///
    /// The request line is held to the stricter of nginx 1.22 and HAProxy 2.6 (every refusal is
    /// a 400 unless said otherwise):
    /// - The method is upper-case letters, `_` and `-`, as nginx requires (RFC 9110 would allow
    ///   any token). Methods are case-sensitive (RFC 9110 9.1): `get` is not GET, and rather than
    ///   forward a method no upstream knows, it is refused as nginx refuses it. Every registered
    ///   method fits.
    /// - The target is origin-form (`/path?query`) or absolute-form (`http://authority/path`,
    ///   `https://` too; any case). Its authority is held to `checkHost` with nginx's narrower
    ///   reg-name of a request line, and userinfo (`http://user:pw@host/`) is refused: RFC 9110
    ///   4.2.4 deprecates it, and nginx refuses it too.
    /// - The asterisk-form (`*`) is refused with every method. RFC 9112 3.2.4 allows it only
    ///   with OPTIONS, so with any other method it is malformed; `OPTIONS *` itself is refused as
    ///   nginx refuses it: it asks about the server as a whole, which no route of a reverse proxy
    ///   in front of one API stands for, and it has no path to route or rate-limit by.
    /// - CONNECT is refused: its only target form is authority-form (RFC 9110 9.3.6), which a
    ///   reverse proxy does not serve, so CONNECT with any target it accepts is malformed.
    /// - In the path (not the query), a `%` must start a pct-encoding (`%` and two hex digits) and
    ///   `%00` is refused, as nginx's URI decoder refuses both: an encoded NUL ends a path early
    ///   for whatever decodes it into a C string.
    public static func parseRequest(_ bytes: [UInt8]) throws(HTTPError) -> HTTPHead {
        var fields: [HeaderField] = []
        return try parseRequest(bytes, fields: &fields)
    }

    /// `parseRequest`, collecting the header lines in `fields` (emptied first): a connection
    /// passes the same array for every head, so its storage is reused once the last head is gone.
    public static func parseRequest(_ bytes: [UInt8], fields: inout [HeaderField]) throws(HTTPError) -> HTTPHead {
        var head = HTTPHead(bytes: bytes)
        let lineEnd = try Self.lineEnd(bytes, from: 0)
        let (method, target, sawPercent) = try bytes.withUnsafeBufferPointer {
            (b) throws(HTTPError) -> (Range<Int>, Range<Int>, Bool) in
            var i = 0
            while i < lineEnd, isMethodChar(b[i]) { i += 1 }
            guard i > 0, i < lineEnd, b[i] == 0x20 else { throw .badRequest("bad method") }
            let method = 0..<i
            i += 1
            let targetStart = i
            // Noting a `%` on the way costs less than a second pass over every target.
            var sawPercent = false
            i = targetEnd(b, from: i, to: lineEnd, sawPercent: &sawPercent)
            guard i > targetStart, i < lineEnd, b[i] == 0x20 else { throw .badRequest("bad request target") }
            return (method, targetStart..<i, sawPercent)
        }
        head.first = method
        head.second = target
        let i = target.upperBound
        try head.checkTarget(sawPercent: sawPercent)
        head.minorVersion = try parseVersion(bytes, from: i + 1, to: lineEnd)
        head.names = try parseFields(bytes, from: lineEnd + 2, into: &fields)
        head.fields = fields
        head.connection = head.readConnectionOptions()
        return head
    }

    /// Parses `HTTP/1.x SP 3DIGIT [SP reason] CRLF headers CRLF`.
    public static func parseResponse(_ bytes: [UInt8]) throws(HTTPError) -> HTTPHead {
        var fields: [HeaderField] = []
        return try parseResponse(bytes, fields: &fields)
    }

    /// `parseResponse`, collecting the header lines in `fields` (see `parseRequest(_:fields:)`).
    public static func parseResponse(_ bytes: [UInt8], fields: inout [HeaderField]) throws(HTTPError) -> HTTPHead {
        var head = HTTPHead(bytes: bytes)
        let lineEnd = try Self.lineEnd(bytes, from: 0)
        guard lineEnd >= 12, bytes[8] == 0x20 else { throw .badRequest("bad status line") }
        head.minorVersion = try parseVersion(bytes, from: 0, to: 8)
        head.first = 0..<8
        var status = 0
        for i in 9..<12 {
            let d = bytes[i] &- 0x30
            guard d < 10 else { throw .badRequest("bad status code") }
            status = status * 10 + Int(d)
        }
        guard status >= 100 else { throw .badRequest("bad status code") }
        head.status = status
        if lineEnd > 12 {
            guard bytes[12] == 0x20 else { throw .badRequest("bad status line") }
            head.second = 13..<lineEnd
        } else {
            head.second = 12..<12
        }
        head.names = try parseFields(bytes, from: lineEnd + 2, into: &fields)
        head.fields = fields
        head.connection = head.readConnectionOptions()
        return head
    }

    /// Whether `prefix`, the first bytes of a request received so far, can still grow into a valid
    /// request line: a method of `isMethodChar`s, one space, a target starting as origin or
    /// absolute form, one space, `HTTP/d.d` and CRLF. Lets a connection refuse what is not HTTP at
    /// once. Never stricter than `parseRequest`: a request line it parses passes here at every
    /// length (the fuzz oracle checks it), while some it refuses (`OPTIONS *`, a lower-case
    /// method) are refused here from their first bytes.
    public static func isPlausibleRequestStart(_ prefix: ArraySlice<UInt8>) -> Bool {
        var i = prefix.startIndex
        let end = prefix.endIndex
        while i < end, isMethodChar(prefix[i]) { i += 1 }
        guard i < end else { return true }
        guard i > prefix.startIndex, prefix[i] == 0x20 else { return false }
        i += 1
        guard i < end else { return true }
        guard prefix[i] == UInt8(ascii: "/") || prefix[i] | 0x20 == UInt8(ascii: "h") else { return false }
        while i < end, prefix[i] > 0x20, prefix[i] < 0x7f { i += 1 }
        guard i < end else { return true }
        guard prefix[i] == 0x20 else { return false }
        i += 1
        // "HTTP/" digit "." digit CR LF, where 0 stands for a digit.
        let pattern = Array("HTTP/0.0\r\n".utf8)
        for p in pattern where i < end {
            let c = prefix[i]
            guard p == UInt8(ascii: "0") ? (c >= 0x30 && c <= 0x39) : c == p else { return false }
            i += 1
        }
        return true
    }

    /// Whether `bytes`, the next bytes of a head still arriving, hold nothing a head never may:
    /// a control character other than HTAB, a bare LF, or a CR not followed by LF. `last` is the
    /// byte before them (0 at the start of the head) and becomes the last one scanned.
    public static func scanHeadBytes<Bytes: Sequence<UInt8>>(_ bytes: Bytes, last: inout UInt8) -> Bool {
        var previous = last
        for c in bytes {
            if previous == 0x0d && c != 0x0a { return false }
            if c == 0x0a && previous != 0x0d { return false }
            if c < 0x20 && c != 0x09 && c != 0x0d && c != 0x0a || c == 0x7f { return false }
            previous = c
        }
        last = previous
        return true
    }

    /// The request-target rules of `parseRequest`; sets `authority` for an absolute-form target.
    private mutating func checkTarget(sawPercent: Bool) throws(HTTPError) {
        if methodIs("CONNECT") { throw .badRequest("CONNECT without authority-form") }
        let end = second.upperBound
        var pathStart = second.lowerBound
        switch bytes[pathStart] {
        case UInt8(ascii: "/"):
            break
        case UInt8(ascii: "*"):
            throw .badRequest(methodIs("OPTIONS") ? "OPTIONS * is not served" : "asterisk-form without OPTIONS")
        default:
            guard let start = Self.authorityStart(bytes, second) else { throw .badRequest("bad request target") }
            // RFC 3986 3.2: the authority ends at the path or the query.
            var j = start
            while j < end, bytes[j] != UInt8(ascii: "/"), bytes[j] != UInt8(ascii: "?") {
                if bytes[j] == UInt8(ascii: "@") { throw .badRequest("userinfo in the request target") }
                j += 1
            }
            try Self.checkHost(bytes, start..<j, requestLine: true)
            authority = start..<j
            pathStart = j
        }
        if sawPercent { try Self.checkPercentEncoding(bytes, from: pathStart, to: end) }
    }

    /// The index after `http://` or `https://` (scheme in any case) at the start of `target`; nil
    /// when it starts with neither.
    private static func authorityStart(_ b: [UInt8], _ target: Range<Int>) -> Int? {
        var i = target.lowerBound
        for c in "http".utf8 {
            guard i < target.upperBound, b[i] | 0x20 == c else { return nil }
            i += 1
        }
        if i < target.upperBound, b[i] | 0x20 == UInt8(ascii: "s") { i += 1 }
        for c in "://".utf8 {
            guard i < target.upperBound, b[i] == c else { return nil }
            i += 1
        }
        return i
    }

    /// Refuses, in the path from `start` up to the query, a `%` not followed by two hex digits and
    /// the pct-encoded NUL.
    private static func checkPercentEncoding(_ b: [UInt8], from start: Int, to end: Int) throws(HTTPError) {
        var i = start
        while i < end {
            switch b[i] {
            case UInt8(ascii: "?"):
                return
            case UInt8(ascii: "%"):
                guard i + 2 < end, let high = hexDigit(b[i + 1]), let low = hexDigit(b[i + 2]) else {
                    throw .badRequest("bad percent-encoding in the path")
                }
                guard high | low != 0 else { throw .badRequest("encoded NUL in the path") }
                i += 3
            default:
                i += 1
            }
        }
    }

    /// The value of a hex digit of either case; nil for any other byte.
    @inline(__always)
    static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c &- UInt8(ascii: "A") &+ 10
        default: nil
        }
    }

    /// `HTTP/d.d` in `b[start..<end]`, read as one eight-byte word (`end` lies in `b`: it is a
    /// line's CR, or the status line is longer).
    private static func parseVersion(_ b: [UInt8], from start: Int, to end: Int) throws(HTTPError) -> Int {
        guard end - start == 8, start >= 0, end <= b.count else { throw .badRequest("bad HTTP version") }
        let w = b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: start, as: UInt64.self)) }
        // "HTTP/" and "." in place, the two digits masked out (the first byte is the lowest).
        guard w & 0x00FF_00FF_FFFF_FFFF == 0x002E_002F_5054_5448 else { throw .badRequest("bad HTTP version") }
        let major = UInt8(truncatingIfNeeded: w >> 40) &- 0x30
        let minor = UInt8(truncatingIfNeeded: w >> 56) &- 0x30
        guard major < 10, minor < 10 else { throw .badRequest("bad HTTP version") }
        guard major == 1 else { throw HTTPError(505, "an HTTP major version other than 1") }
        return minor == 0 ? 0 : 1
    }

    /// The index of the CR of the line starting at `start`; a bare LF or CR is malformed.
    private static func lineEnd(_ bytes: [UInt8], from start: Int) throws(HTTPError) -> Int {
        try bytes.withUnsafeBufferPointer { (b) throws(HTTPError) -> Int in try lineEnd(b, from: start) }
    }

    /// Only control characters and DEL can end a line or break it, so the others are skipped
    /// eight at a time (`firstSpecialByte`).
    private static func lineEnd(_ b: UnsafeBufferPointer<UInt8>, from start: Int) throws(HTTPError) -> Int {
        var i = start
        let n = b.count
        while true {
            i = firstSpecialByte(b, from: i)
            guard i < n else { throw .badRequest("unterminated line") }
            let c = b[i]
            if c == 0x0d {
                guard i + 1 < n, b[i + 1] == 0x0a else { throw .badRequest("bare CR") }
                return i
            }
            if c == 0x0a { throw .badRequest("bare LF") }
            i += 1
        }
    }

    /// The header lines from `start` up to the blank line, appended to `fields` (emptied first);
    /// returns the `names` mask of their names.
    ///
    /// One pass over every byte of every head: each line's name is scanned eight bytes at a time
    /// while they are letters and `-` (`lettersAndDashes`), then matched against the token bitmap,
    /// and its value is scanned eight bytes at a time for the first byte that needs a look (a
    /// control character or DEL; the CR ending the line is one), as picohttpparser does with SSE.
    /// Reads through a buffer pointer, whose indices the loop conditions keep in range. The fields
    /// are collected in a chunk on the stack and stored into `fields` a chunk at a time
    /// (`store`), not appended one by one, each append asking whether the array is shared.
    private static func parseFields(_ bytes: [UInt8], from start: Int, into fields: inout [HeaderField]) throws(HTTPError) -> UInt64 {
        // Offsets are kept as Int32: checked once here rather than at every field.
        precondition(bytes.count <= Int(Int32.max), "a head of 2 GiB or more")
        return try bytes.withUnsafeBufferPointer { (b) throws(HTTPError) -> UInt64 in
            // 32 fields (512 bytes, a literal so that the chunk is on the stack) hold most heads.
            try withUnsafeTemporaryAllocation(of: HeaderField.self, capacity: 32) { (chunk) throws(HTTPError) -> UInt64 in
                try parseFields(b, from: start, chunk: chunk, into: &fields)
            }
        }
    }

    private static func parseFields(_ b: UnsafeBufferPointer<UInt8>, from start: Int, chunk: UnsafeMutableBufferPointer<HeaderField>,
                                    into fields: inout [HeaderField]) throws(HTTPError) -> UInt64 {
        let n = b.count
        var i = start
        var names: UInt64 = 0
        var stored = 0   // fields already stored into `fields`
        var pending = 0  // fields in `chunk` after them
        while true {
            guard i < n else { throw .badRequest("unterminated line") }
            let c = b[i]
            if c == 0x0d {
                guard i + 1 < n, b[i + 1] == 0x0a else { throw .badRequest("bare CR") }
                store(chunk, pending, at: stored, into: &fields)
                stored += pending
                if fields.count > stored { fields.removeLast(fields.count - stored) }
                return names
            }
            guard stored + pending < maxFields else { throw HTTPError(431, "more header lines than HTTPHead.maxFields") }
            if c == 0x20 || c == 0x09 { throw .badRequest("obsolete line folding") }
            var j = i
            if let base = b.baseAddress {
                let raw = UnsafeRawPointer(base)
                while n - j >= 8 {
                    let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
                    let others = ~lettersAndDashes(w) & 0x8080_8080_8080_8080
                    if others != 0 {
                        j += others.trailingZeroBitCount / 8
                        break
                    }
                    j += 8
                }
            }
            while j < n, isTokenChar(b[j]) { j += 1 }
            guard j > i, j < n, b[j] == UInt8(ascii: ":") else {
                if j < n, b[j] == 0x0a { throw .badRequest("bare LF") }
                throw .badRequest("bad header name")
            }
            let nameEnd = j
            names |= nameBit(count: nameEnd - i, first: b[i], last: b[nameEnd - 1])
            j += 1
            while j < n, b[j] == 0x20 || b[j] == 0x09 { j += 1 }
            let valueStart = j
            // Find the CR: skip runs of ordinary bytes a word at a time, look at the others.
            while true {
                j = firstSpecialByte(b, from: j)
                guard j < n else { throw .badRequest("unterminated line") }
                let v = b[j]
                if v == 0x09 {
                    j += 1
                    continue
                }
                if v == 0x0d {
                    guard j + 1 < n, b[j + 1] == 0x0a else { throw .badRequest("bare CR") }
                    break
                }
                throw .badRequest(v == 0x0a ? "bare LF" : "control character in header value")
            }
            var valueEnd = j
            while valueEnd > valueStart, b[valueEnd - 1] == 0x20 || b[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            if pending == chunk.count {
                store(chunk, pending, at: stored, into: &fields)
                stored += pending
                pending = 0
            }
            chunk.initializeElement(at: pending, to: HeaderField(
                nameStart: Int32(truncatingIfNeeded: i), nameEnd: Int32(truncatingIfNeeded: nameEnd),
                valueStart: Int32(truncatingIfNeeded: valueStart), valueEnd: Int32(truncatingIfNeeded: valueEnd)))
            pending += 1
            i = j + 2
        }
    }

    /// Stores the first `count` fields of `chunk` as `fields[offset..<offset + count]`,
    /// overwriting the fields of an earlier head where there are some (`fields.count >= offset`).
    @inline(__always)
    private static func store(_ chunk: UnsafeMutableBufferPointer<HeaderField>, _ count: Int, at offset: Int,
                              into fields: inout [HeaderField]) {
        let overwritten = min(count, fields.count - offset)
        if overwritten > 0 {
            fields.withUnsafeMutableBufferPointer { out in
                for k in 0..<overwritten { out[offset + k] = chunk[k] }
            }
        }
        if overwritten < count {
            fields.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[overwritten..<count]))
        }
    }
}
