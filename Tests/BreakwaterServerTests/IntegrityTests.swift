import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Bodies arrive byte for byte, both ways: random binary bodies from 0 to 1 MiB, sent with
/// Content-Length or chunked, answered with Content-Length or in random chunks, over keep-alive
/// connections. The upstream digests what it received; the client digests what it got back.
/// (scripts/reliability/integrity.py runs 10,000 of these against the release binary.)
@Suite struct IntegrityTests {
    static let requests = 300
    static let clients = 4

    /// A body size: the edges of buffer and chunk sizes first, then uniform in 0...1 MiB.
    static func size(_ i: Int) -> Int {
        let edges = [0, 1, 2, 16_383, 16_384, 16_385, 65_535, 65_536, 65_537, 1 << 20]
        return i < edges.count ? edges[i] : Int.random(in: 0...(1 << 20))
    }

    /// `body` as chunks of random sizes (1 byte to 128 KiB), with an extension now and then.
    static func chunked(_ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var offset = 0
        while offset < body.count {
            let n = min(body.count - offset, Int.random(in: 1...131_072))
            out += Array((String(n, radix: 16) + (n % 3 == 0 ? ";x=y" : "") + "\r\n").utf8)
            out += body[offset..<offset + n]
            out += [13, 10]
            offset += n
        }
        return out + Array("0\r\n\r\n".utf8)
    }

    @Test func randomBinaryBodiesArriveUnchangedBothWays() throws {
        let upstream = try DigestEchoUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let port = proxy.port
        let problems = Guarded<[String]>([])
        let checked = Guarded((requests: 0, bytes: 0))
        let perClient = Self.requests / Self.clients
        onThreads(Self.clients) { client in
            do {
                var socket = try TestSocket(port: port, timeout: 30)
                for n in 0..<perClient {
                    let i = client * perClient + n
                    let body = randomBytes(Self.size(i))
                    let chunkedRequest = i % 3 == 1
                    var head = "POST /echo/\(i) HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
                    if i % 3 == 2 { head += "X-Answer: chunked\r\n" }
                    head += chunkedRequest ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: \(body.count)\r\n\r\n"
                    try socket.send(Array(head.utf8) + (chunkedRequest ? Self.chunked(body) : body))
                    guard let response = try socket.readMessage(), response.complete else {
                        problems.withLock { $0.append("\(i): no complete response") }
                        socket = try TestSocket(port: port, timeout: 30)
                        continue
                    }
                    let sent = String(fastDigest(body), radix: 16)
                    if response.status != 200 { problems.withLock { $0.append("\(i): status \(response.status)") } }
                    if response.header("X-Body-Digest") != sent {
                        problems.withLock { $0.append("\(i): upstream received a different body (\(body.count) bytes sent)") }
                    }
                    if response.body.count != body.count || fastDigest(response.body) != fastDigest(body) {
                        problems.withLock { $0.append("\(i): client got \(response.body.count) different bytes for \(body.count)") }
                    }
                    checked.withLock {
                        $0.requests += 1
                        $0.bytes += body.count
                    }
                }
            } catch {
                problems.withLock { $0.append("client \(client): \(error)") }
            }
        }
        let found = problems.withLock { $0 }
        #expect(found.isEmpty, "\(found.prefix(10))")
        #expect(checked.withLock { $0.requests } == Self.requests)
        #expect(upstream.requestCount == Self.requests)
    }
}
