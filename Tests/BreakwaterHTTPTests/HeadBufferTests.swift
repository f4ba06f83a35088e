@testable import BreakwaterHTTP
import Testing

/// A connection's HeadBuffer reuses the bytes of its last head for the next one: each head must
/// get exactly its own bytes, whether it is longer, shorter or as long as the last, and a head
/// still alive when the next is parsed must keep its own.
@Suite struct HeadBufferTests {
    private static func response(_ reason: String, fields: Int) -> [UInt8] {
        Array(("HTTP/1.1 200 \(reason)\r\n" + (0..<fields).map { "X-\($0): \(reason)\r\n" }.joined() + "\r\n").utf8)
    }

    @Test func eachHeadGetsItsOwnBytes() throws {
        var buffer = HeadBuffer()
        var kept: [(HTTPHead, [UInt8], String)] = []
        let shapes = [("OK", 3), ("Longer reason", 9), ("OK", 3), ("ok", 3), ("A", 0), ("Much longer reason", 200), ("B", 1)]
        for (round, (reason, fields)) in shapes.enumerated() {
            let bytes = Self.response(reason, fields: fields)
            let head = try bytes.withUnsafeBytes { try buffer.parseResponse($0) }
            #expect(head.bytes == bytes)
            #expect(head.fields.count == fields)
            #expect(head.fields.allSatisfy { head.value($0) == reason })
            // Every other head stays alive, as a pipelined one does, while the next is parsed.
            if round % 2 == 1 { kept.append((head, bytes, reason)) }
        }
        for (head, bytes, reason) in kept {
            #expect(head.bytes == bytes)
            #expect(head.fields.allSatisfy { head.value($0) == reason })
        }
        let request = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let head = try request.withUnsafeBytes { try buffer.parseRequest($0) }
        #expect(head.bytes == request)
        #expect(head.target == "/a")
    }
}
