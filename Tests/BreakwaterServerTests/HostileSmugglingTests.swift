import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Request smuggling: a request hidden in another's framing. Every probe is judged by what the
/// upstream receives: never a second request, never the smuggled target, and the proxy answers
/// the probe itself with 400 (or, for a well-framed body, forwards exactly one request).
@Suite struct HostileSmugglingTests {
    /// The request each probe tries to slip past the proxy.
    static let smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

    @Test(arguments: [
        // Content-Length and Transfer-Encoding together, in both orders and disguises.
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        // Two different Content-Lengths, as two lines or one list.
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 35\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 35, 0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 0, \r\n\r\n",
        // Content-Length spellings a lenient parser reads as a number.
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: +35\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 0x23\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 3 5\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nContent-Length : 0\r\n\r\n\(smuggled)",
        // Transfer-Encoding that is not exactly "chunked".
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\u{b}chunked\r\n\r\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n folded\r\n\r\n0\r\n\r\n",
        "POST /front HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\(smuggled)",
        // Chunk sizes that overflow, are not hex, or are signed.
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\(smuggled)\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nA\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\(smuggled)",
        // Chunk extensions and line ends a lenient parser accepts.
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;\u{0}\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n\(smuggled)",
        "POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nb\r\n\r\n\(smuggled)",
    ])
    func smugglingProbesGet400AndTheUpstreamSeesNothing(raw: String) throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        try? socket.send(raw)
        let response = try socket.readMessage()
        #expect(response?.status == 400, "\(raw.debugDescription)")
        #expect(response?.header("Connection") == "close")
        #expect(socket.isClosedOrReset(), "nothing after the probe is read as a request")
        #expect(target.stillServes())
        #expect(target.received("/smuggled").isEmpty)
        #expect(target.received("/front").isEmpty)
        #expect(target.upstream.requests.map(\.target) == ["/still-serving"])
    }

    /// A request inside a well-framed body stays body: the upstream gets one request whose body
    /// is the bytes sent, with a Content-Length of the proxy's own, and never the inner request.
    @Test(arguments: ["length", "chunked", "chunked-with-extensions-and-trailers"])
    func aRequestInsideABodyStaysBody(framing: String) throws {
        let target = try HostileTarget()
        let inner = Array(Self.smuggled.utf8) + Array("POST /smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".utf8)
        var raw = "POST /front HTTP/1.1\r\nHost: t\r\n"
        switch framing {
        case "length":
            raw += "Content-Length: \(inner.count)\r\n\r\n" + String(decoding: inner, as: UTF8.self)
        case "chunked":
            raw += "Transfer-Encoding: chunked\r\n\r\n" + String(inner.count, radix: 16) + "\r\n"
                + String(decoding: inner, as: UTF8.self) + "\r\n0\r\n\r\n"
        default:
            let half = inner.count / 2
            raw += "Transfer-Encoding: chunked\r\n\r\n" + String(half, radix: 16) + ";name=\"value\"\r\n"
                + String(decoding: inner[..<half], as: UTF8.self) + "\r\n"
                + String(inner.count - half, radix: 16) + " ; x=y\r\n" + String(decoding: inner[half...], as: UTF8.self)
                + "\r\n0\r\nX-Trailer: 1\r\nContent-Length: 0\r\n\r\n"
        }
        let socket = try TestSocket(port: target.port)
        try socket.send(raw)
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200)
        #expect(response.body == inner)
        // The connection is still in sync: the next request on it is answered as itself.
        try socket.send(rawRequest("GET", "/after"))
        #expect(try socket.readMessage()?.header("X-Target") == "/after")
        #expect(target.upstream.requests.map(\.target) == ["/front", "/after"])
        let front = try #require(target.received("/front").first)
        #expect(front.body == inner)
        #expect(front.header("Content-Length") == "\(inner.count)")
        #expect(front.header("Transfer-Encoding") == nil)
        #expect(front.header("X-Trailer") == nil, "trailers are not promoted to headers")
    }

    /// Pipelined requests after a refused one are never read: the refusal closes the connection.
    @Test func requestsPipelinedBehindARefusalAreDropped() throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        try socket.send(rawRequest("GET", "/first") + Array("GET / HTTP/1.1\r\nBroken\r\n\r\n".utf8) + Array(Self.smuggled.utf8))
        #expect(try socket.readMessage()?.status == 200)
        #expect(try socket.readMessage()?.status == 400)
        #expect(socket.isClosedOrReset())
        #expect(target.upstream.requests.map(\.target) == ["/first"])
    }

    /// A GET with a body (legal, if odd) is forwarded with its body, so the body cannot become
    /// the upstream's next request.
    @Test func aGETBodyIsForwardedAsBody() throws {
        let target = try HostileTarget()
        let inner = Array(Self.smuggled.utf8)
        let response = try request(port: target.port, "GET", "/front", body: inner)
        #expect(response.status == 200)
        #expect(target.upstream.requests.map(\.target) == ["/front"])
        #expect(target.received("/front").first?.body == inner)
    }
}
