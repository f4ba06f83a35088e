import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

@Suite struct ForwardingTests {
    @Test func everyMethodIsForwardedWithItsBody() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let body = method == "GET" || method == "DELETE" || method == "OPTIONS" ? [] : Array("payload-\(method)".utf8)
            let response = try request(port: proxy.port, method, "/things/1", body: body)
            #expect(response.status == 200)
            #expect(response.header("X-Method") == method)
            #expect(response.body == body)
        }
        let head = try request(port: proxy.port, "HEAD", "/things/1")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(upstream.requests.last?.method == "HEAD")
    }

    @Test func queryStringAndRepeatedHeadersArriveUnchanged() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/search?q=a%20b&x=1&x=2",
                                   headers: [("X-Rep", "one"), ("X-Other", "o"), ("X-Rep", "two")])
        #expect(response.header("X-Target") == "/search?q=a%20b&x=1&x=2")
        let seen = try #require(upstream.requests.first)
        #expect(seen.target == "/search?q=a%20b&x=1&x=2")
        #expect(seen.all("X-Rep") == ["one", "two"])
        #expect(seen.header("Host") == "test")
    }

    @Test func hopByHopHeadersAreStrippedBothWays() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 200, headers: [("Connection", "X-Up-Hop"), ("X-Up-Hop", "1"),
                                                                    ("Keep-Alive", "timeout=5"), ("X-End", "kept")], body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/", headers: [
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"), ("Keep-Alive", "300"), ("TE", "trailers"),
            ("Trailer", "X-T"), ("Upgrade", "websocket"), ("Proxy-Authorization", "Basic abc"), ("X-End", "kept"),
        ])
        let seen = try #require(upstream.requests.first)
        for name in ["Connection", "X-Hop", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization"] {
            #expect(seen.header(name) == nil, "\(name) reached the upstream")
        }
        #expect(seen.header("X-End") == "kept")
        #expect(response.header("X-Up-Hop") == nil)
        #expect(response.header("Keep-Alive") == nil)
        #expect(response.header("X-End") == "kept")
    }

    @Test func anUpstreamAnswerWithoutDateGetsOneAndOneWithDateKeepsIt() throws {
        let upstream = try TestUpstream { request, socket in
            let headers = request.target == "/dated" ? [("Date", "Tue, 01 Jan 2030 00:00:00 GMT")] : []
            try TestUpstream.respond(socket, status: 200, headers: headers, body: Array("x".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let undated = try request(port: proxy.port, "GET", "/undated")
        #expect(undated.all("Date").count == 1)
        #expect(undated.header("Date")?.hasSuffix(" GMT") == true)
        let dated = try request(port: proxy.port, "GET", "/dated")
        #expect(dated.all("Date") == ["Tue, 01 Jan 2030 00:00:00 GMT"], "the upstream's own Date passes unchanged")
    }

    @Test func forwardingHeadersAreAppendedAndSet() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        _ = try request(port: proxy.port, "GET", "/", headers: [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
                                                                ("Via", "1.0 edge")])
        _ = try request(port: proxy.port, "GET", "/")
        let first = upstream.requests[0]
        #expect(first.header("X-Forwarded-For") == "203.0.113.9, 127.0.0.1")
        #expect(first.all("X-Forwarded-Proto") == ["http"])
        #expect(first.header("Via") == "1.0 edge, 1.1 breakwater")
        #expect(upstream.requests[1].header("X-Forwarded-For") == "127.0.0.1")
    }

    @Test(arguments: [0, 1, 65_536, 5 * 1_048_576])
    func bodiesArriveByteIdenticalBothWays(size: Int) throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        var generator = SystemRandomNumberGenerator()
        let body = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let response = try request(port: proxy.port, "POST", "/upload", body: body)
        #expect(response.status == 200)
        #expect(upstream.requests.first.map { checksum($0.body) } == checksum(body))
        #expect(response.body.count == size)
        #expect(checksum(response.body) == checksum(body))
    }

    @Test func chunkedRequestBodyIsForwardedWithALength() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let socket = try TestSocket(port: proxy.port)
        try socket.send("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
        let response = try #require(try socket.readMessage())
        #expect(response.bodyText == "hello, world")
        let seen = try #require(upstream.requests.first)
        #expect(seen.header("Content-Length") == "12")
        #expect(seen.header("Transfer-Encoding") == nil)
    }

    @Test func chunkedUpstreamResponseIsStreamedComplete() throws {
        let upstream = try TestUpstream { _, socket in
            try socket.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in 0..<5 {
                let piece = String(repeating: Character(String(i)), count: 1000)
                try socket.send(String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n")
                usleep(20_000)
            }
            try socket.send("0\r\n\r\n")
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/stream")
        #expect(response.complete)
        #expect(response.body.count == 5000)
        #expect(response.header("Transfer-Encoding") == "chunked")
    }

    @Test func keepAliveConnectionsAreReusedOnBothSides() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port], workers: 1)
        let socket = try TestSocket(port: proxy.port)
        for i in 0..<20 {
            try socket.send(rawRequest("GET", "/n/\(i)"))
            let response = try #require(try socket.readMessage())
            #expect(response.status == 200)
        }
        #expect(upstream.requestCount == 20)
        #expect(upstream.connectionsAccepted == 1)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port], workers: 1)
        let socket = try TestSocket(port: proxy.port)
        try socket.send(rawRequest("GET", "/p/1") + rawRequest("GET", "/p/2") + rawRequest("GET", "/p/3"))
        for i in 1...3 {
            let response = try #require(try socket.readMessage())
            #expect(response.header("X-Target") == "/p/\(i)")
        }
    }

    @Test func noContentTypeIsInvented() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/")
        #expect(response.header("Content-Type") == nil)
    }
}

/// FNV-1a over the bytes: a mismatch shows as two numbers, not megabytes of output.
func checksum(_ bytes: [UInt8]) -> UInt64 {
    bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x0100_0000_01b3 }
}
