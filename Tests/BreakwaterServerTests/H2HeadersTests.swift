@testable import BreakwaterServer
import BreakwaterHTTP
import CNGHTTP2
import Testing

/// A relayed response head becomes HTTP/2 fields without being written as HTTP/1.1 text first;
/// the fields must be exactly those the HTTP/1.1 relay writes (same drops, same added Date),
/// lower-case, after `:status`, with the stream's Content-Length.
@Suite struct H2HeadersTests {
    private static let date = Array("Date: Sat, 05 Dec 2026 03:00:00 GMT\r\n".utf8)

    private static let heads = [
        "HTTP/1.1 200 OK\r\nServer: up\r\nDate: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nX-One: a\r\nConnection: X-One, close\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nWWW-Authenticate: Bearer\r\n\r\n",
        "HTTP/1.0 204 No Content\r\n\r\n",
    ]

    /// What the HTTP/1.1 relay writes for `head`, parsed back into (name, value) pairs.
    private static func relayedByText(_ head: HTTPHead, keepLength: Bool) throws -> [(name: [UInt8], value: [UInt8])] {
        var text: [UInt8] = []
        Self.date.withUnsafeBytes { date in
            ProxyHeaders.clientResponse(head, keepLength: keepLength, date: date, into: &text)
        }
        text.append(contentsOf: "\r\n".utf8)
        let parsed = try HTTPHead.parseResponse(text)
        return parsed.fields.map { f in
            (Array(parsed.bytes[Int(f.nameStart)..<Int(f.nameEnd)]).map { $0 | ($0 &- 0x41 < 26 ? 0x20 : 0) },
             Array(parsed.bytes[Int(f.valueStart)..<Int(f.valueEnd)]))
        }
    }

    private static func text(_ pairs: [(name: [UInt8], value: [UInt8])]) -> [String] {
        pairs.map { String(decoding: $0.name, as: UTF8.self) + ": " + String(decoding: $0.value, as: UTF8.self) }
    }

    @Test(arguments: heads, [nil, 0, 3, 1_234_567] as [Int?])
    func relayedFieldsAreTheHTTP1RelaysFields(_ raw: String, length: Int?) throws {
        let head = try HTTPHead.parseResponse(Array(raw.utf8))
        let keepLength = length == nil
        // Into the fields of another response first, as a connection reuses them: nothing of
        // that one may remain.
        let other = try HTTPHead.parseResponse(Array(Self.heads[1].utf8))
        var fields = H2Headers.Fields()
        Self.date.withUnsafeBytes { date in
            H2Headers.write(relaying: other, length: 12, keepLength: false, date: date, into: &fields)
            H2Headers.write(relaying: head, length: length, keepLength: keepLength, date: date, into: &fields)
        }
        var expected = try Self.relayedByText(head, keepLength: keepLength)
        if length != nil { expected.removeAll { $0.name == Array("content-length".utf8) } }
        expected.insert((Array(":status".utf8), Array(String(head.status).utf8)), at: 0)
        if let length { expected.append((Array("content-length".utf8), Array(String(length).utf8))) }
        #expect(Self.text(fields.pairs) == Self.text(expected))
    }

    @Test(arguments: [0, 7, 10, 200, 429, 1_000_000, Int(Int32.max)])
    func numbersAreWrittenInDecimal(_ n: Int) {
        let fields = H2Headers.fields(status: 200, headers: [("X-A", "b")], length: n)
        #expect(Self.text(fields.pairs) == [":status: 200", "x-a: b", "content-length: \(n)"])
    }

    @Test func nameValuePairsPointAtTheFieldsBytes() {
        let head = try! HTTPHead.parseResponse(Array(Self.heads[1].utf8))
        var fields = H2Headers.Fields()
        Self.date.withUnsafeBytes { H2Headers.write(relaying: head, length: 12, keepLength: false, date: $0, into: &fields) }
        let viaNV: [String] = fields.withNameValues { nvs in
            nvs.map { nv in
                String(decoding: UnsafeBufferPointer(start: nv.name, count: nv.namelen), as: UTF8.self) + ": "
                    + String(decoding: UnsafeBufferPointer(start: nv.value, count: nv.valuelen), as: UTF8.self)
            }
        }
        #expect(viaNV == Self.text(fields.pairs))
        #expect(viaNV.first == ":status: 404")
        #expect(viaNV.last == "content-length: 12")
        #expect(!viaNV.contains { $0.hasPrefix("x-one") || $0.hasPrefix("connection") || $0.hasPrefix("transfer-encoding") })
        #expect(H2Headers.Fields().withNameValues { $0.count } == 0)
    }
}
