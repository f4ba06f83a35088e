private import CLibevent

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
