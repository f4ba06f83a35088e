#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where one connection's heads are parsed, head after head, without allocating for each.
///
/// A parsed `HTTPHead` shares the byte and field arrays kept here. Once the request or response
/// it belongs to is gone, they are uniquely referenced again and the next head reuses their
/// storage; while it lives (a pipelined request read during the previous exchange), the next
/// head simply gets fresh arrays.
public struct HeadBuffer {
    private var bytes: [UInt8] = []
    private var fields: [HeaderField] = []

    /// A kept-alive connection holds on to at most this much between requests.
    private static let keptCapacity = 4096

    public init() {}

    /// The length of the head at the start of `input`, through its blank line; nil while the
    /// blank line is not in `input`. Searched line end by line end (memchr), in place.
    public static func headLength(in input: UnsafeRawBufferPointer) -> Int? {
        guard let base = input.baseAddress else { return nil }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let count = input.count
        var from = 0
        while from < count, let lf = memchr(bytes + from, 0x0a, count - from) {
            let i = bytes.distance(to: lf.assumingMemoryBound(to: UInt8.self))
            if i >= 3, bytes[i - 1] == 0x0d, bytes[i - 2] == 0x0a, bytes[i - 3] == 0x0d { return i + 1 }
            from = i + 1
        }
        return nil
    }

    /// Parses `head` (a whole head, through its blank line) as a request head.
    public mutating func parseRequest(_ head: UnsafeRawBufferPointer) throws(HTTPError) -> HTTPHead {
        let copy = take(head)
        return try parse { (fields) throws(HTTPError) in try HTTPHead.parseRequest(copy, fields: &fields) }
    }

    /// Parses `head` (a whole head, through its blank line) as a response head.
    public mutating func parseResponse(_ head: UnsafeRawBufferPointer) throws(HTTPError) -> HTTPHead {
        let copy = take(head)
        return try parse { (fields) throws(HTTPError) in try HTTPHead.parseResponse(copy, fields: &fields) }
    }

    private mutating func take(_ head: UnsafeRawBufferPointer) -> [UInt8] {
        var taken = bytes
        bytes = []   // `taken` is now the only reference, unless a head still uses the storage
        if taken.capacity > Self.keptCapacity && head.count <= Self.keptCapacity { taken = [] }
        // The last head's bytes are overwritten where there are some (heads on one connection
        // are often of one length), the rest appended, the excess dropped: no emptying first.
        let overwritten = min(taken.count, head.count)
        if overwritten > 0 {
            taken.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: head[..<overwritten])) }
        }
        if taken.count > head.count {
            taken.removeLast(taken.count - head.count)
        } else if overwritten < head.count {
            taken.append(contentsOf: UnsafeRawBufferPointer(rebasing: head[overwritten...]).assumingMemoryBound(to: UInt8.self))
        }
        bytes = taken
        return taken
    }

    private mutating func parse(_ body: (inout [HeaderField]) throws(HTTPError) -> HTTPHead) throws(HTTPError) -> HTTPHead {
        var recycled = fields
        fields = []
        defer { fields = recycled }
        return try body(&recycled)
    }
}
