import BreakwaterHTTP
private import CLibevent
internal import CNGHTTP2

/// Response heads as HTTP/2 header fields. The request path writes every head as HTTP/1.1 text
/// (a status line and header lines); here it becomes `:status` and lower-case fields, without
/// the fields HTTP/2 forbids (RFC 9113 8.2.2), with the Content-Length the stream knows.
enum H2Headers {
    /// Header fields, their bytes in one array.
    struct Fields {
        var storage = ByteBuilder()
        var ranges: [(name: Range<Int>, value: Range<Int>)] = []

        init() {}

        /// Room for `count` fields of `bytes` bytes in all: each array is allocated once.
        init(bytes: Int, count: Int) {
            reserve(bytes: bytes, count: count)
        }

        /// How many fields there are.
        var count: Int { ranges.count }

        /// Room for `count` fields of `bytes` bytes in all.
        mutating func reserve(bytes: Int, count: Int) {
            storage.reserveCapacity(bytes)
            ranges.reserveCapacity(count)
        }

        /// Empties the fields, keeping the arrays' storage for the next head.
        mutating func removeAll() {
            storage.removeAll()
            ranges.removeAll(keepingCapacity: true)
        }

        mutating func add(_ name: some Collection<UInt8>, _ value: some Collection<UInt8>, lowercasing: Bool = true) {
            let nameStart = storage.count
            storage.append(contentsOf: name)
            let valueStart = storage.count
            // In place: a lazily mapped sequence would be appended a byte at a time.
            if lowercasing { storage.lowercaseASCII(nameStart..<valueStart) }
            storage.append(contentsOf: value)
            ranges.append((nameStart..<valueStart, valueStart..<storage.count))
        }

        /// A field whose value is a non-negative integer (`:status`, `content-length`), written
        /// in decimal without a String in between.
        mutating func add(_ name: StaticString, decimal value: Int) {
            let nameStart = storage.count
            storage.append(ascii: name)
            let valueStart = storage.count
            storage.append(decimal: max(value, 0))
            ranges.append((nameStart..<valueStart, valueStart..<storage.count))
        }

        /// The fields as (name, value) byte arrays, in order.
        var pairs: [(name: [UInt8], value: [UInt8])] {
            ranges.map { range in (storage.withBytes(range.name) { Array($0) }, storage.withBytes(range.value) { Array($0) }) }
        }

        /// Calls `body` with the fields as nghttp2 name-value pairs. nghttp2 copies names and
        /// values (no NO_COPY flag is set), so they point into `storage` itself, and the pairs
        /// live on the stack.
        func withNameValues<R>(_ body: (UnsafeBufferPointer<nghttp2_nv>) -> R) -> R {
            storage.withBytes(0..<storage.count) { bytes in
                let start = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
                let base = UnsafeMutablePointer(mutating: start)
                return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: ranges.count) { pairs in
                    for (i, r) in ranges.enumerated() {
                        pairs.initializeElement(at: i, to: nghttp2_nv(
                            name: base + r.name.lowerBound, value: base + r.value.lowerBound, namelen: r.name.count,
                            valuelen: r.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
                    }
                    return body(UnsafeBufferPointer(pairs))
                }
            }
        }
    }

    /// The fields of a head written by `writeHead` as HTTP/1.1 text; `length`: the body's
    /// Content-Length, nil to keep the head's own (a response to HEAD).
    static func fields(reserving size: Int, length: Int?, _ writeHead: (inout EvbufferWriter) -> Void) -> Fields {
        let scratch = evbuffer_new()!
        defer { evbuffer_free(scratch) }
        EvbufferWriter.write(into: scratch, reserving: size) { out in
            writeHead(&out)
            out.append(ascii: "\r\n")
        }
        let count = evbuffer_get_length(scratch)
        let text = Array(UnsafeBufferPointer(start: evbuffer_pullup(scratch, count), count: count))
        guard let head = try? HTTPHead.parseResponse(text) else {
            return fields(status: 502, headers: [], length: 0)
        }
        var fields = Fields(bytes: count + 32, count: head.fields.count + 2)
        fields.add(":status", decimal: head.status)
        for f in head.fields {
            if isForbidden(head, f) || (length != nil && head.nameIs(f, "content-length")) { continue }
            fields.add(head.bytes[Int(f.nameStart)..<Int(f.nameEnd)], head.bytes[Int(f.valueStart)..<Int(f.valueEnd)])
        }
        if let length { fields.add("content-length", decimal: length) }
        return fields
    }

    /// The fields of an upstream response relayed to the client: `ProxyHeaders.relays`'s fields
    /// (which leave out every field HTTP/2 forbids), with `length` as Content-Length when given,
    /// and the value of `date` (a whole `Date` line) when the upstream sent none (RFC 9110 6.6.1).
    /// They are written into `fields`, emptied first: a connection passes the same `Fields` for
    /// every response, whose storage nghttp2 has copied by the next.
    static func write(relaying head: HTTPHead, length: Int?, keepLength: Bool, date: UnsafeRawBufferPointer,
                      into fields: inout Fields) {
        fields.removeAll()
        fields.reserve(bytes: head.bytes.count + 64, count: head.fields.count + 3)
        fields.add(":status", decimal: head.status)
        let hasConnection = head.connectionListsOtherFields
        var dated = false
        for f in head.fields where ProxyHeaders.relays(head, f, keepLength: keepLength, hasConnection: hasConnection) {
            if length != nil, head.nameIs(f, "content-length") { continue }
            if !dated, head.nameIs(f, "date") { dated = true }
            fields.add(head.bytes[Int(f.nameStart)..<Int(f.nameEnd)], head.bytes[Int(f.valueStart)..<Int(f.valueEnd)])
        }
        if !dated, date.count > 8 { fields.add("date".utf8, date[6..<(date.count - 2)]) }
        if let length { fields.add("content-length", decimal: length) }
    }

    /// Trailer fields relayed from the upstream (names lower-case already), without those that
    /// are connection-specific.
    static func fields(trailers: [(name: [UInt8], value: [UInt8])]) -> Fields {
        var fields = Fields()
        for (name, value) in trailers where !connectionSpecific.contains(name) { fields.add(name, value) }
        return fields
    }

    private static let connectionSpecific: [[UInt8]] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                                        "upgrade", "te"].map { Array($0.utf8) }

    /// The fields of a response the proxy makes itself.
    static func fields(status: Int, headers: [(String, String)], length: Int) -> Fields {
        var fields = Fields()
        fields.add(":status", decimal: status)
        for (name, value) in headers { fields.add(name.utf8, value.utf8) }
        fields.add("content-length", decimal: length)
        return fields
    }

    /// Connection-specific fields, which an HTTP/2 message must not carry.
    private static func isForbidden(_ head: HTTPHead, _ f: HeaderField) -> Bool {
        head.nameIs(f, "connection") || head.nameIs(f, "keep-alive") || head.nameIs(f, "proxy-connection")
            || head.nameIs(f, "transfer-encoding") || head.nameIs(f, "upgrade") || head.nameIs(f, "te")
    }
}
