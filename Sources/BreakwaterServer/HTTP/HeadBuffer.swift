import BreakwaterHTTP
private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// Where one connection's heads are parsed, head after head, without allocating for each.
///
/// A parsed `HTTPHead` shares the byte and field arrays kept here. Once the request or response
/// it belongs to is gone, they are uniquely referenced again and the next head reuses their
/// storage; while it lives (a pipelined request read during the previous exchange), the next
/// head simply gets fresh arrays.
struct HeadBuffer {
    private var bytes: [UInt8] = []
    private var fields: [HeaderField] = []

    /// A kept-alive connection holds on to at most this much between requests.
    private static let keptCapacity = 4096

    /// The length of the head at the start of `input`, through its blank line; nil while the
    /// blank line has not arrived. The head is usually all in the buffer's first chunk, searched
    /// in place line end by line end (memchr); otherwise libevent searches across chunks.
    static func headLength(in input: OpaquePointer) -> Int? {
        var chunk = iovec()
        if evbuffer_peek(input, -1, nil, &chunk, 1) >= 1, let base = chunk.iov_base {
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            let count = chunk.iov_len
            var from = 0
            while from < count, let lf = memchr(bytes + from, 0x0a, count - from) {
                let i = bytes.distance(to: lf.assumingMemoryBound(to: UInt8.self))
                if i >= 3, bytes[i - 1] == 0x0d, bytes[i - 2] == 0x0a, bytes[i - 3] == 0x0d { return i + 1 }
                from = i + 1
            }
            if count == evbuffer_get_length(input) { return nil }   // all of it searched
        }
        let end = evbuffer_search(input, "\r\n\r\n", 4, nil)
        return end.pos >= 0 ? Int(end.pos) + 4 : nil
    }

    /// Moves the first `length` bytes of `input` out and parses them as a request head.
    mutating func parseRequest(_ length: Int, from input: OpaquePointer) throws(HTTPParseError) -> HTTPHead {
        let head = take(length, from: input)
        return try parse { (fields) throws(HTTPParseError) in try HTTPHead.parseRequest(head, fields: &fields) }
    }

    /// Moves the first `length` bytes of `input` out and parses them as a response head.
    mutating func parseResponse(_ length: Int, from input: OpaquePointer) throws(HTTPParseError) -> HTTPHead {
        let head = take(length, from: input)
        return try parse { (fields) throws(HTTPParseError) in try HTTPHead.parseResponse(head, fields: &fields) }
    }

    private mutating func take(_ length: Int, from input: OpaquePointer) -> [UInt8] {
        var taken = bytes
        bytes = []   // `taken` is now the only reference, unless a head still uses the storage
        if taken.capacity > Self.keptCapacity && length <= Self.keptCapacity { taken = [] }
        taken.removeAll(keepingCapacity: true)
        if let start = evbuffer_pullup(input, length) {
            taken.append(contentsOf: UnsafeBufferPointer(start: start, count: length))
        }
        evbuffer_drain(input, length)
        bytes = taken
        return taken
    }

    private mutating func parse(_ body: (inout [HeaderField]) throws(HTTPParseError) -> HTTPHead) throws(HTTPParseError) -> HTTPHead {
        var recycled = fields
        fields = []
        defer { fields = recycled }
        return try body(&recycled)
    }
}
