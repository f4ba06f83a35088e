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
