import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

@Suite struct RequestLimitTests {
    private func answer(_ raw: String, configure: (inout Config) -> Void = { _ in }) throws -> (TestMessage?, TestUpstream) {
        let upstream = try TestUpstream()
        let proxy = try Harness(upstreamPorts: [upstream.port], configure: configure)
        let socket = try TestSocket(port: proxy.port)
        try socket.send(raw)
        let response = try socket.readMessage()
        upstream.stop()
        return (response, upstream)
    }

    @Test func headersOverTheLimitGet431() throws {
        let big = String(repeating: "a", count: 2000)
        let (response, upstream) = try answer("GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(big)\r\n\r\n") { $0.server.maxHeaderBytes = 1024 }
        #expect(response?.status == 431)
        #expect(upstream.requestCount == 0)
    }

    /// The request line has a limit of its own below the head's, as nginx's 8 KiB line buffer:
    /// a 9,000-byte target in a head well under 16 KiB is a 414, and 8,000 bytes go through.
    @Test func aRequestLineOverItsOwnLimitGets414() throws {
        let long = "/" + String(repeating: "a", count: 9000)
        let (response, upstream) = try answer("GET \(long) HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(response?.status == 414)
        #expect(upstream.requestCount == 0)
        let fits = "/" + String(repeating: "a", count: 8000)
        let (ok, reached) = try answer("GET \(fits) HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(ok?.status == 200)
        #expect(reached.requestCount == 1)
    }

    @Test func headersThatNeverEndGet431() throws {
        let lines = String(repeating: "X-A: b\r\n", count: 400)
        let (response, _) = try answer("GET / HTTP/1.1\r\nHost: t\r\n\(lines)") { $0.server.maxHeaderBytes = 1024 }
        #expect(response?.status == 431)
    }

    @Test func bodyOverTheLimitGets413AndNeverReachesUpstream() throws {
        let (response, upstream) = try answer("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n") { $0.server.maxBodyBytes = 1000 }
        #expect(response?.status == 413)
        #expect(upstream.requestCount == 0)
    }

    /// A client that sends its whole body anyway must still read the 413: the proxy shuts its
    /// side and drops what keeps arriving instead of closing with unread bytes, which would make
    /// the kernel answer with a reset that can overtake the 413.
    @Test func aBodySentAnywayAfterA413IsDroppedAndThe413ArrivesWhole() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.server.maxBodyBytes = 1000 }
        for _ in 0..<3 {
            let socket = try TestSocket(port: proxy.port)
            let body = [UInt8](repeating: UInt8(ascii: "b"), count: 4 << 20)
            try socket.send(rawRequest("POST", "/upload", body: body))
            let response = try #require(try socket.readMessage())
            #expect(response.status == 413)
            #expect(response.header("connection")?.lowercased() == "close")
            #expect(try socket.readToEnd().isEmpty, "the connection ends after the 413")
        }
        #expect(upstream.requestCount == 0)
    }

    @Test func chunkedBodyOverTheLimitGets413() throws {
        let chunk = String(repeating: "z", count: 800)
        let raw = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n\(chunk)\r\n320\r\n\(chunk)\r\n0\r\n\r\n"
        let (response, upstream) = try answer(raw) { $0.server.maxBodyBytes = 1000 }
        #expect(response?.status == 413)
        #expect(upstream.requestCount == 0)
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\n folded: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n continued\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\nHost: t\n\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-Nul: a\u{0}b\r\n\r\n",
    ])
    func malformedRequestsGet400AndNeverReachUpstream(raw: String) throws {
        let (response, upstream) = try answer(raw)
        #expect(response?.status == 400)
        #expect(response?.header("Connection") == "close")
        #expect(upstream.requestCount == 0)
    }

    @Test func unsupportedVersionGets505() throws {
        let (response, _) = try answer("GET / HTTP/2.0\r\nHost: t\r\n\r\n")
        #expect(response?.status == 505)
    }

    @Test func slowHeadersAreCutOffAfterTheHeaderTimeout() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.server.headerTimeout = .milliseconds(700) }
        let socket = try TestSocket(port: proxy.port)
        let started = Date()
        try socket.send("GET / HTTP/1.1\r\n")
        // Keep trickling bytes: a per-read timeout would never fire, the head deadline must.
        var cut = false
        for _ in 0..<30 {
            usleep(100_000)
            if (try? socket.send("X")) == nil { cut = true; break }
            if Date().timeIntervalSince(started) > 2.5 { break }
        }
        let rest = (try? socket.readToEnd()) ?? []
        let elapsed = Date().timeIntervalSince(started)
        #expect(cut || String(decoding: rest, as: UTF8.self).contains("408"))
        #expect(elapsed < 2.5)
        #expect(upstream.requestCount == 0)
    }

    @Test func idleKeepAliveConnectionsAreClosed() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.server.idleTimeout = .milliseconds(300) }
        let socket = try TestSocket(port: proxy.port)
        try socket.send(rawRequest("GET", "/"))
        _ = try socket.readMessage()
        let started = Date()
        #expect(socket.isClosedByPeer())
        #expect(Date().timeIntervalSince(started) < 2)
    }

    /// A connection that never sends a byte is closed after header_timeout, not held for the
    /// idle_timeout of kept-alive connections (nginx and HAProxy close it after seconds too).
    @Test func aSilentConnectionIsClosedAfterTheHeaderTimeout() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.server.headerTimeout = .milliseconds(400)
            $0.server.idleTimeout = .seconds(60)
        }
        let socket = try TestSocket(port: proxy.port)
        let started = Date()
        #expect(socket.isClosedByPeer())
        let waited = Date().timeIntervalSince(started)
        #expect(waited > 0.3 && waited < 3, "closed after \(waited) s")
    }
}
