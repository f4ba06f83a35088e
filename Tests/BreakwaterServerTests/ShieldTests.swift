import BreakwaterCore
import Foundation
import Logging
import Synchronization
import Testing
@testable import BreakwaterServer

/// The shield end to end: real proxy, real upstream, real sockets.
@Suite struct ShieldTests {

    private static func deviceRoute(_ configure: (inout RouteConfig) -> Void = { _ in }) -> RouteConfig {
        var route = RouteConfig(name: "device", path: "/api/v1/device/")
        route.backoff.base = .milliseconds(300)
        route.backoff.max = .seconds(5)
        configure(&route)
        return route
    }

    @Test func expiredTokenIsShieldedThenProbedThenClearedByASuccess() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.routes = [Self.deviceRoute()] }
        let first = try request(port: proxy.port, "GET", "/api/v1/device/expired-1")
        #expect(first.status == 401)
        #expect(first.bodyText.contains("invalid or expired token"))
        #expect(first.header("WWW-Authenticate") != nil)
        for _ in 0..<5 {
            let shielded = try request(port: proxy.port, "GET", "/api/v1/device/expired-1")
            #expect(shielded.status == 429)
            let seconds = try #require(shielded.header("Retry-After").flatMap { Int($0) })
            #expect(seconds >= 1)
            #expect(shielded.header("RateLimit") == "\"backoff\";r=0;t=\(seconds)")
            #expect(shielded.header("Content-Type") == "application/problem+json")
            #expect(shielded.header("Cache-Control") == "no-store")
            #expect(shielded.bodyText == #"{"title":"Too Many Requests","status":429,"reason":"backoff","retry_after":\#(seconds)}"#)
        }
        #expect(api.requestsServed == 1)
        // Honour Retry-After: the next request is the probe, and a valid token clears the client.
        usleep(1_000_000)
        let probe = try request(port: proxy.port, "GET", "/api/v1/device/valid-1")
        #expect(probe.status == 200)
        #expect(api.requestsServed == 2)
        let after = try request(port: proxy.port, "GET", "/api/v1/device/expired-1")
        #expect(after.status == 401, "a success must clear the block at once")
        #expect(api.requestsServed == 3)
    }

    @Test func noMethodPathOrHeaderTrickReachesTheUpstreamDuringAWindow() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.routes = [Self.deviceRoute { $0.backoff.base = .seconds(30) }] }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-2").status == 401)
        let tricks: [(String, String, [(String, String)])] = [
            ("GET", "/api/v1/device/expired-2", []),
            ("HEAD", "/api/v1/device/expired-2", []),
            ("OPTIONS", "/api/v1/device/expired-2", []),
            ("POST", "/api/v1/device/expired-2", []),
            ("DELETE", "/api/v1/device/expired-2", []),
            ("GET", "/api/v1/device/expired-2?cache=bust", []),
            ("GET", "/api/v1/device/expired-2/", []),
            ("GET", "/api/v1/%64evice/expired-2", []),
            ("GET", "/API/V1/DEVICE/expired-2", []),
            ("GET", "/", []),
            ("GET", "http://other.example/api/v1/device/expired-2", []),
            ("GET", "/api/v1/device/valid-1", [("AUTHORIZATION", "Bearer x"), ("X-FORWARDED-FOR", "198.51.100.7")]),
            ("GET", "/api/v1/device/valid-1", [("X-Forwarded-For", "198.51.100.8"), ("Forwarded", "for=198.51.100.8")]),
        ]
        for (method, target, headers) in tricks {
            let response = try request(port: proxy.port, method, target, headers: headers)
            // An absolute-form target is routed and keyed by its path like any other.
            #expect(response.status == 429, "\(method) \(target) \(headers) got \(response.status)")
        }
        #expect(api.requestsServed == 1)
    }

    @Test func a429ToHEADHasNoBodyAndTheConnectionStaysInStep() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.routes = [Self.deviceRoute { $0.backoff.base = .seconds(30) }] }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-3").status == 401)
        // HEAD then GET, pipelined on one connection: a body after the HEAD's 429 would be read
        // as the start of the second response.
        let socket = try TestSocket(port: proxy.port)
        try socket.send(rawRequest("HEAD", "/api/v1/device/expired-3")
            + rawRequest("GET", "/api/v1/device/expired-3", headers: [("Connection", "close")]))
        let head = try #require(try socket.readMessage(headRequest: true))
        #expect(head.status == 429)
        #expect(Int(head.header("content-length") ?? "") ?? 0 > 0, "HEAD is told the GET's length")
        let get = try #require(try socket.readMessage())
        #expect(get.status == 429)
        #expect(get.bodyText.contains("\"retry_after\""))
        #expect(try socket.readToEnd().isEmpty, "nothing after the two responses")
        #expect(api.requestsServed == 1)
    }

    @Test func fiftyParallelRequestsAfterTheWindowSendOneProbe() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(300_000)
            try TestUpstream.respond(socket, status: 401, body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.backoff.base = .milliseconds(200)
            $0.backoff.jitter = 0
        }
        #expect(try request(port: proxy.port, "GET", "/x").status == 401)
        usleep(250_000)
        let statuses = Mutex<[Int]>([])
        let port = proxy.port
        DispatchQueue.concurrentPerform(iterations: 50) { _ in
            let status = (try? request(port: port, "GET", "/x").status) ?? -1
            statuses.withLock { $0.append(status) }
        }
        let all = statuses.withLock { $0 }
        #expect(all.filter { $0 == 401 }.count == 1)
        #expect(all.filter { $0 == 429 }.count == 49)
        #expect(upstream.requestCount == 2)
    }

    @Test func withCircuitsDisabledRefusedConnectionsPutClientsInBackoffAndARecoveredUpstreamClearsThem() throws {
        let port = TestUpstream.deadPort()
        let proxy = try Harness(upstreamPorts: [port]) {
            $0.backoff.base = .milliseconds(300)
            $0.backoff.jitter = 0
            $0.circuit.enabled = false
        }
        #expect(try request(port: proxy.port, "GET", "/x").status == 502)
        #expect(try request(port: proxy.port, "GET", "/x").status == 429)
        let upstream = try TestUpstream(port: port)
        defer { upstream.stop() }
        usleep(1_100_000)
        // Reconnects avoid a server that just refused for a short while; keep probing until it answers.
        #expect(eventually(5) { (try? request(port: proxy.port, "GET", "/x").status) == 200 })
        #expect(try request(port: proxy.port, "GET", "/x").status == 200)
    }

    @Test func aRouteKeyedByAddressAndTokenKeepsClientsWithoutTheHeaderApartFromThoseWithOne() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) {
            $0.routes = [Self.deviceRoute { $0.key = [.ip, .header("authorization")]; $0.backoff.base = .seconds(30) }]
        }
        func curl(_ path: String, token: String?) throws -> String {
            try Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
                         + (token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + ["http://127.0.0.1:\(proxy.port)\(path)"]).stdout
        }
        // One user behind the office's address has an expired token: only that token is blocked.
        #expect(try curl("/api/v1/device/expired-1", token: "expired-1") == "401")
        #expect(try curl("/api/v1/device/expired-1", token: "expired-1") == "429")
        #expect(try curl("/api/v1/device/valid-1", token: nil) == "200", "no header: a client of its own")
        #expect(try curl("/api/v1/device/valid-2", token: "valid-2") == "200")
        // A failing client without the header blocks the address's header-less requests only.
        #expect(try curl("/api/v1/device/expired-3", token: nil) == "401")
        #expect(try curl("/api/v1/device/valid-1", token: nil) == "429")
        #expect(try curl("/api/v1/device/valid-2", token: "valid-2") == "200")
    }

    @Test func dryRunForwardsWhatItWouldShield() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.routes = [Self.deviceRoute { $0.backoff.mode = .dryRun }] }
        for _ in 0..<4 { #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-3").status == 401) }
        #expect(api.requestsServed == 4)
    }

    @Test func rateLimitAnswersWithReasonRateAndAnExactRetryAfter() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            var route = RouteConfig(name: "limited", path: "/limited")
            route.rate = Rate(perSecond: 0.5)
            route.burst = 1
            $0.routes = [route]
        }
        #expect(try request(port: proxy.port, "GET", "/limited").status == 200)
        #expect(try request(port: proxy.port, "GET", "/limited").status == 200)
        let limited = try request(port: proxy.port, "GET", "/limited")
        #expect(limited.status == 429)
        #expect(limited.header("Retry-After") == "2")
        #expect(limited.bodyText.contains(#""reason":"rate""#))
        #expect(upstream.requestCount == 2)
        #expect(try request(port: proxy.port, "GET", "/elsewhere").status == 200)
    }

    @Test func bypassRoutesAreNeverShielded() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 503, body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            var health = RouteConfig(name: "health", path: "/healthz")
            health.bypass = true
            $0.routes = [health]
            $0.upstream.retries = 0
        }
        for _ in 0..<5 { #expect(try request(port: proxy.port, "GET", "/healthz").status == 503) }
        #expect(upstream.requestCount == 5)
    }

    @Test func upstreamRetryAfterIsAFloorOnTheWindow() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 503, headers: [("Retry-After", "7")], body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let first = try request(port: proxy.port, "GET", "/x")
        #expect(first.status == 503)
        #expect(first.header("Retry-After") == "7")
        let shielded = try request(port: proxy.port, "GET", "/x")
        #expect(shielded.header("Retry-After") == "7")
    }
}
