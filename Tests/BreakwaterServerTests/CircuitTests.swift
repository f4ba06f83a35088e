import BreakwaterCore
import Foundation
import Synchronization
import Testing
@testable import BreakwaterServer

/// The route circuit end to end: an upstream that is down for everyone opens it, clients get 503
/// with Retry-After and no mark of their own, and the first success closes it.
@Suite struct CircuitTests {
    private static let openGauge = #"breakwater_route_circuit_open{route="device"}"#

    private static func proxy(upstream port: UInt16, _ configure: (inout Config) -> Void = { _ in }) throws -> Harness {
        try Harness(upstreamPorts: [port]) {
            var route = RouteConfig(name: "device", path: "/api/v1/device/")
            route.key = [.header("authorization"), .route]
            $0.routes = [route]
            $0.upstream.retries = 0
            $0.circuit.base = .milliseconds(500)
            $0.circuit.max = .seconds(1)
            $0.circuit.jitter = 0
            configure(&$0)
        }
    }

    private static func get(_ proxy: Harness, token: String) throws -> TestMessage {
        try request(port: proxy.port, "GET", "/api/v1/device/x", headers: [("Authorization", "Bearer \(token)")])
    }

    private static func gauge(_ proxy: Harness) throws -> Double? {
        metricValue(try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText, openGauge)
    }

    @Test func anOutageOpensTheCircuitWithoutMarkingClientsAndTheFirstSuccessClosesIt() throws {
        let port = TestUpstream.deadPort()
        let proxy = try Self.proxy(upstream: port)
        #expect(try Self.gauge(proxy) == 0)
        // Three clients meet the refused connection: 502 each, and none of them is put in backoff.
        for client in ["a", "b", "c"] { #expect(try Self.get(proxy, token: client).status == 502) }
        #expect(try Self.gauge(proxy) == 1)
        // Open: everyone, old client or new, is told to come back, with reason "upstream".
        for client in ["a", "d"] {
            let refused = try Self.get(proxy, token: client)
            #expect(refused.status == 503)
            let seconds = try #require(refused.header("Retry-After").flatMap { Int($0) })
            #expect(seconds == 1)
            #expect(refused.header("Content-Type") == "application/problem+json")
            #expect(refused.header("Cache-Control") == "no-store")
            #expect(refused.bodyText == #"{"title":"Service Unavailable","status":503,"reason":"upstream","retry_after":1}"#)
        }
        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        // After the window, one request probes, finds the upstream back, and closes the circuit.
        usleep(600_000)
        #expect(eventually(3) { (try? Self.get(proxy, token: "e").status) == 200 })
        #expect(try Self.gauge(proxy) == 0)
        // The clients that met the outage are served at once: no level of their own to wait out.
        for client in ["a", "b", "c", "d"] { #expect(try Self.get(proxy, token: client).status == 200) }
        let metrics = try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText
        #expect(metrics.contains(#"breakwater_requests_total{route="device",outcome="circuit_open",protocol="http1"} 2"#))
    }

    @Test func oneProbePerWindowReachesADeadUpstream() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 503, reason: "Service Unavailable", body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Self.proxy(upstream: upstream.port)
        // 5xx: the first two are each client's own; the third, at half the route's requests, opens the circuit.
        #expect(try Self.get(proxy, token: "a").status == 503)
        #expect(try Self.get(proxy, token: "b").status == 503)
        #expect(try Self.get(proxy, token: "a").status == 429, "a 5xx below the share is still the client's")
        #expect(try Self.get(proxy, token: "c").status == 503)
        #expect(upstream.requestCount == 3)
        #expect(try Self.gauge(proxy) == 1)
        // 20 requests from new clients within the window: none reaches the upstream.
        for i in 0..<20 {
            let refused = try Self.get(proxy, token: "n\(i)")
            #expect(refused.status == 503)
            #expect(refused.bodyText.contains(#""reason":"upstream""#))
        }
        #expect(upstream.requestCount == 3)
        // The window ends: one probe goes through and fails, the window doubles (1 s, the max here).
        usleep(550_000)
        for i in 0..<10 { _ = try Self.get(proxy, token: "p\(i)") }
        #expect(upstream.requestCount == 4)
        #expect(try Self.get(proxy, token: "c").header("Retry-After") == "1")
    }

    @Test func withTheCircuitDisabledAnOutageRaisesEachClientsLevel() throws {
        let port = TestUpstream.deadPort()
        let proxy = try Self.proxy(upstream: port) { $0.circuit.enabled = false }
        for client in ["a", "b", "c", "d"] { #expect(try Self.get(proxy, token: client).status == 502) }
        #expect(try Self.get(proxy, token: "a").status == 429)
        #expect(try Self.get(proxy, token: "e").status == 502)
        #expect(try Self.gauge(proxy) == 0)
    }
}
