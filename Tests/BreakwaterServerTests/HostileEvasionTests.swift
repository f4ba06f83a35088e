import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// A blocked credential must stay blocked however it is spelt, and Connection cannot strip what
/// is end-to-end by nature.
@Suite struct HostileEvasionTests {
    /// An upstream that answers 401 to everything, counting what reaches it.
    private static func tokenRoute() -> RouteConfig {
        var route = RouteConfig(name: "api", path: "/api/")
        route.key = [.header("Authorization")]
        route.backoff.base = .seconds(30)
        route.backoff.max = .seconds(30)
        return route
    }

    @Test func aBlockedTokenIsTheSameClientHoweverItsSchemeAndSpacesAreSpelt() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 401, body: Array("expired".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.routes = [Self.tokenRoute()] }
        #expect(try request(port: proxy.port, "GET", "/api/x", headers: [("Authorization", "Bearer T0k3n")]).status == 401)
        for spelling in ["bearer T0k3n", "BEARER T0k3n", "Bearer  T0k3n", "Bearer\tT0k3n", " Bearer T0k3n "] {
            let response = try request(port: proxy.port, "GET", "/api/x", headers: [("Authorization", spelling)])
            #expect(response.status == 429, "\(spelling.debugDescription) got \(response.status)")
        }
        // The credentials themselves stay case-sensitive: another token is another client.
        #expect(try request(port: proxy.port, "GET", "/api/x", headers: [("Authorization", "Bearer t0k3n")]).status == 401)
        #expect(upstream.requestCount == 2)
    }

    @Test func twoAuthorizationLinesAreRefused() throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        try socket.send("GET /front HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n")
        #expect(try socket.readMessage()?.status == 400)
        #expect(target.received("/front").isEmpty)
    }

    @Test func connectionCannotStripHostOrAuthorization() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/x", headers: [
            ("Connection", "Host, Authorization, X-Gone"), ("Authorization", "Bearer z"), ("X-Gone", "1"),
        ])
        #expect(response.status == 200)
        let seen = try #require(upstream.requests.first)
        #expect(seen.header("Host") != nil)
        #expect(seen.header("Authorization") == "Bearer z")
        #expect(seen.header("X-Gone") == nil)   // what Connection names is still hop-by-hop otherwise
    }
}

/// A route holds however its path is spelt: the upstream sees the normalised path, and a blocked
/// client stays blocked through every spelling.
@Suite struct HostilePathTests {
    @Test func everySpellingOfABlockedRouteIsShielded() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 401, body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            var device = RouteConfig(name: "device", path: "/device/")
            device.key = [.ip, .route]
            device.backoff.base = .seconds(30)
            device.backoff.max = .seconds(30)
            device.caseInsensitive = true
            $0.routes = [device]
            $0.clients.key = [.ip, .route]
        }
        #expect(try request(port: proxy.port, "GET", "/device/x").status == 401)
        for spelling in ["/%64evice/x", "/./device/x", "/y/../device/x", "//device/x", "/DEVICE/x", "/device;v=1/x",
                         "/Device/%78"] {
            #expect(try request(port: proxy.port, "GET", spelling).status == 429, "\(spelling)")
        }
        for refused in ["/device%2Fx", "/../device/x"] {
            #expect(try request(port: proxy.port, "GET", refused).status == 400, "\(refused)")
        }
        #expect(upstream.requestCount == 1)
        // Another route is another client: the default route still reaches the upstream, with the
        // path as normalised.
        #expect(try request(port: proxy.port, "GET", "/other/./a//b?q=%2F").status == 401)
        #expect(upstream.requests.last?.target == "/other/a/b?q=%2F")
    }
}

/// A blocked client cannot make the proxy take its body: the shield judges the head, before a
/// `100 Continue` and before any body byte is kept.
@Suite struct HostileBodyTests {
    private static func blockedProxy(_ upstream: TestUpstream, base: Duration = .seconds(30)) throws -> Harness {
        try Harness(upstreamPorts: [upstream.port]) {
            var route = RouteConfig(name: "api", path: "/api/")
            route.key = [.header("Authorization")]
            route.backoff.base = base
            route.backoff.max = base
            route.backoff.jitter = 0
            $0.routes = [route]
        }
    }

    @Test func aBlockedClientIsAnsweredBeforeItsBodyAndGetsNo100Continue() throws {
        let upstream = try TestUpstream { request, socket in
            try TestUpstream.respond(socket, status: request.target.contains("ok") ? 200 : 401, body: [])
            return true
        }
        defer { upstream.stop() }
        let proxy = try Self.blockedProxy(upstream)
        #expect(try request(port: proxy.port, "GET", "/api/x", headers: [("Authorization", "Bearer old")]).status == 401)
        let socket = try TestSocket(port: proxy.port)
        let sent = Date()
        try socket.send("POST /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer old\r\nExpect: 100-continue\r\n"
                        + "Content-Length: 10000000\r\n\r\n")
        let response = try #require(try socket.readMessage())
        #expect(response.status == 429)   // not a 100 Continue first
        #expect(response.header("Retry-After") != nil)
        #expect(Date().timeIntervalSince(sent) < 2)
        // Without Expect too: the answer comes while the body is still being sent.
        let second = try TestSocket(port: proxy.port)
        try second.send("POST /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer old\r\nContent-Length: 10000000\r\n\r\n"
                        + String(repeating: "b", count: 65_536))
        #expect(try second.readMessage()?.status == 429)
        #expect(upstream.requestCount == 1)
    }

    @Test func aProbeWithABodyIsForwardedWhole() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let failing = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 401, body: [])
            return true
        }
        defer { failing.stop() }
        // Blocked for 300 ms by a 401, then the probe is a POST whose body arrives after its head.
        let proxy = try Harness(upstreamPorts: [failing.port]) {
            var route = RouteConfig(name: "api", path: "/api/")
            route.key = [.header("Authorization")]
            route.backoff.base = .milliseconds(300)
            route.backoff.max = .milliseconds(300)
            route.backoff.jitter = 0
            $0.routes = [route]
        }
        #expect(try request(port: proxy.port, "GET", "/api/x", headers: [("Authorization", "Bearer t")]).status == 401)
        usleep(400_000)
        let socket = try TestSocket(port: proxy.port)
        try socket.send("POST /api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t\r\nContent-Length: 5\r\n\r\n")
        usleep(100_000)
        try socket.send("hello")
        #expect(try socket.readMessage()?.status == 401)   // the probe reached the upstream
        #expect(failing.requestCount == 2)
        #expect(failing.requests.last?.body == Array("hello".utf8))
    }
}
