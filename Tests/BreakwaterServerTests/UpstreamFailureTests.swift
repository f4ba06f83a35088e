import BreakwaterCore
import Foundation
import Synchronization
import Testing
@testable import BreakwaterServer

@Suite struct UpstreamFailureTests {
    @Test func refusedConnectionGets502() throws {
        let proxy = try Harness(upstreamPorts: [TestUpstream.deadPort()])
        let response = try request(port: proxy.port, "GET", "/")
        #expect(response.status == 502)
    }

    @Test func slowUpstreamGets504WithinTheTimeout() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(3_000_000)
            try TestUpstream.respond(socket, status: 200, body: [])
            return false
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.upstream.timeout = .seconds(1) }
        let started = Date()
        let response = try request(port: proxy.port, "GET", "/slow")
        let elapsed = Date().timeIntervalSince(started)
        #expect(response.status == 504)
        #expect(elapsed >= 0.9 && elapsed < 2.0)
    }

    @Test func upstreamClosingMidBodyLooksBroken() throws {
        let upstream = try TestUpstream { _, socket in
            try socket.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "x", count: 300))
            usleep(50_000)
            return false
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/")
        #expect(response.status == 200)
        #expect(!response.complete)
        #expect(response.body.count < 1000)
    }

    @Test func upstreamClosingMidChunkedBodyLooksBroken() throws {
        let upstream = try TestUpstream { _, socket in
            try socket.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            usleep(50_000)
            return false
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/")
        #expect(!response.complete)
    }

    @Test func clientLeavingCancelsTheUpstreamRequest() throws {
        let upstreamSawClose = Mutex(false)
        let upstream = try TestUpstream { _, socket in
            // Wait for Breakwater to drop the upstream connection once its client has gone.
            let closed = socket.isClosedByPeer()
            upstreamSawClose.withLock { $0 = closed }
            return false
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        do {
            let socket = try TestSocket(port: proxy.port)
            try socket.send(rawRequest("GET", "/long-poll"))
            #expect(eventually { upstream.requestCount == 1 })
        }
        #expect(eventually(5) { upstreamSawClose.withLock { $0 } })
    }
}
