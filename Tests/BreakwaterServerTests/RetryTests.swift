import BreakwaterCore
import Foundation
import Synchronization
import Testing
@testable import BreakwaterServer

/// Transient upstream failures: bounded retries, a budget, several servers.
@Suite struct RetryTests {
    /// An upstream that answers 503 to its first `failures` requests, then 200.
    private func flaky(failures: Int) throws -> TestUpstream {
        let seen = Atomic<Int>(0)
        return try TestUpstream { _, socket in
            let n = seen.add(1, ordering: .relaxed).newValue
            try TestUpstream.respond(socket, status: n <= failures ? 503 : 200, body: Array("attempt \(n)".utf8))
            return true
        }
    }

    private func metric(_ proxy: Harness, _ series: String) throws -> Double? {
        metricValue(try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText, series)
    }

    @Test func aFlakyUpstreamIsRetriedUntilItSucceedsAndTheShieldSeesOnlyTheSuccess() throws {
        let upstream = try flaky(failures: 2)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.upstream.retries = 2
            $0.upstream.retryBase = .milliseconds(20)
            $0.upstream.retryBudget = 1.0
        }
        let response = try request(port: proxy.port, "GET", "/flaky")
        #expect(response.status == 200)
        #expect(response.bodyText == "attempt 3")
        #expect(upstream.requestCount == 3)
        #expect(try metric(proxy, #"breakwater_upstream_retries_total{route="default",reason="status"}"#) == 2)
        #expect(try request(port: proxy.port, "GET", "/flaky").status == 200, "a success on retry is a success: not shielded")
    }

    @Test func a503WithRetryAfterIsPassedOnNotRetried() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 503, reason: "Service Unavailable", headers: [("Retry-After", "7")],
                                     body: Array("come back later".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.upstream.retries = 2
            $0.upstream.retryBase = .milliseconds(20)
            $0.upstream.retryBudget = 1.0
        }
        let response = try request(port: proxy.port, "GET", "/busy")
        #expect(response.status == 503)
        #expect(response.header("Retry-After") == "7")
        #expect(response.bodyText == "come back later")
        #expect(upstream.requestCount == 1, "the upstream said when to come back: not sooner")
        #expect(try metric(proxy, #"breakwater_upstream_retries_total{route="default",reason="status"}"#) == 0)
    }

    @Test func retriesAreBoundedByTheRetriesSetting() throws {
        let upstream = try flaky(failures: 100)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.upstream.retries = 2
            $0.upstream.retryBase = .milliseconds(5)
            $0.upstream.retryBudget = 1.0
        }
        #expect(try request(port: proxy.port, "GET", "/down").status == 503)
        #expect(upstream.requestCount == 3)
    }

    @Test func postWithoutAnIdempotencyKeyIsNeverRetried() throws {
        let upstream = try flaky(failures: 100)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.upstream.retryBudget = 1.0
            $0.upstream.retryBase = .milliseconds(5)
            $0.backoff.on = ErrorSet(statuses: [], connect: false, timeout: false)
        }
        #expect(try request(port: proxy.port, "POST", "/orders", body: Array("x".utf8)).status == 503)
        #expect(upstream.requestCount == 1)
        #expect(try request(port: proxy.port, "POST", "/orders", headers: [("Idempotency-Key", "k1")], body: Array("x".utf8)).status == 503)
        #expect(upstream.requestCount == 4, "with an Idempotency-Key: the first attempt and two retries")
        #expect(upstream.requests.last?.bodyText == "x", "a retried body is sent again from the buffer")
    }

    @Test func aResponseAlreadyStreamingIsNeverRetried() throws {
        let upstream = try TestUpstream { _, socket in
            try socket.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            return false
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.upstream.retryBudget = 1.0 }
        let response = try request(port: proxy.port, "GET", "/stream")
        #expect(!response.complete)
        #expect(upstream.requestCount == 1)
    }

    @Test func theBudgetKeepsUpstreamAttemptsWithinATwentiethMoreThanRequests() throws {
        let upstream = try flaky(failures: 1_000_000)
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port], workers: 1) {
            $0.upstream.retries = 2
            $0.upstream.retryBase = .milliseconds(1)
            $0.backoff.on = ErrorSet(statuses: [], connect: false, timeout: false)
        }
        let clientRequests = 200
        for _ in 0..<clientRequests { #expect(try request(port: proxy.port, "GET", "/x").status == 503) }
        let attempts = upstream.requestCount
        #expect(attempts > clientRequests, "some retries were allowed")
        #expect(Double(attempts) <= 1.2 * Double(clientRequests))
    }

    @Test func aKilledServerIsSkippedAndComesBackIntoRotation() throws {
        let a = try TestUpstream()
        let b = try TestUpstream()
        defer { b.stop() }
        let portA = a.port
        let proxy = try Harness(upstreamPorts: [a.port, b.port]) {
            $0.upstream.retryBase = .milliseconds(5)
            $0.upstream.retryBudget = 1.0
        }
        for _ in 0..<10 { #expect(try request(port: proxy.port, "GET", "/").status == 200) }
        #expect(a.requestCount > 0 && b.requestCount > 0)
        a.stop()
        for _ in 0..<30 { #expect(try request(port: proxy.port, "GET", "/").status == 200, "no client-visible error") }
        #expect(try metric(proxy, #"breakwater_upstream_server_up{server="127.0.0.1:\#(portA)"}"#) == 0)
        let revived = try TestUpstream(port: portA)
        defer { revived.stop() }
        let back = eventually(40) {
            _ = try? request(port: proxy.port, "GET", "/")
            return revived.requestCount > 0
        }
        #expect(back, "the revived server receives traffic again")
        #expect(try metric(proxy, #"breakwater_upstream_server_up{server="127.0.0.1:\#(portA)"}"#) == 1)
    }
}
