import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Breakwater's own answers to pages of the origins in `cors_origins`, seen by curl as a browser
/// would send them: readable 429s, a blocked preflight the browser lets through, and `Date`.
@Suite struct CORSTests {
    private static let origin = "https://app.example.com"

    private static func proxy(_ api: DemoAPI, origins: [String]) throws -> Harness {
        try Harness(upstreamPorts: [api.port]) {
            var route = RouteConfig(name: "device", path: "/api/v1/device/")
            route.key = [.header("authorization")]
            route.backoff.base = .seconds(30)
            $0.routes = [route]
            $0.server.corsOrigins = origins
        }
    }

    /// Status and headers (names lower-case) of what curl received, by `curl -D -`.
    private static func curl(_ proxy: Harness, _ arguments: [String]) throws -> (status: Int, headers: [String: String]) {
        let result = try Tool.run("curl", ["-s", "-o", "/dev/null", "-D", "-", "--max-time", "10"] + arguments)
        let lines = result.stdout.split(separator: "\r\n")
        let status = Int(lines.first?.split(separator: " ")[1] ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }

    private static func get(_ proxy: Harness, origin: String?, token: String = "expired-1") throws -> (status: Int, headers: [String: String]) {
        try curl(proxy, ["-H", "Authorization: Bearer \(token)"] + (origin.map { ["-H", "Origin: \($0)"] } ?? [])
                 + ["http://127.0.0.1:\(proxy.port)/api/v1/device/\(token)"])
    }

    @Test func aListedOriginCanReadThe429AndItsRetryAfter() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Self.proxy(api, origins: [Self.origin, "http://localhost:3000"])
        let first = try Self.get(proxy, origin: Self.origin)
        #expect(first.status == 401)
        #expect(first.headers["access-control-allow-origin"] == nil, "the upstream's answers pass unchanged")
        let blocked = try Self.get(proxy, origin: Self.origin)
        #expect(blocked.status == 429)
        #expect(blocked.headers["access-control-allow-origin"] == Self.origin)
        #expect(blocked.headers["vary"] == "Origin")
        #expect(blocked.headers["access-control-expose-headers"] == "Retry-After, RateLimit")
        #expect(blocked.headers["retry-after"] != nil)
        let other = try Self.get(proxy, origin: "https://evil.example.com")
        #expect(other.status == 429)
        #expect(other.headers["access-control-allow-origin"] == nil)
        #expect(other.headers["access-control-expose-headers"] == nil)
    }

    @Test func aBlockedPreflightIsLetThroughSoTheRequestBehindItSeesThe429() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Self.proxy(api, origins: [Self.origin])
        #expect(try Self.get(proxy, origin: Self.origin).status == 401)
        let served = api.requestsServed
        let preflight = try Self.curl(proxy, ["-X", "OPTIONS", "-H", "Origin: \(Self.origin)",
                                              "-H", "Authorization: Bearer expired-1",
                                              "-H", "Access-Control-Request-Method: DELETE",
                                              "-H", "Access-Control-Request-Headers: authorization, x-trace",
                                              "http://127.0.0.1:\(proxy.port)/api/v1/device/expired-1"])
        #expect(preflight.status == 200)
        #expect(preflight.headers["access-control-allow-origin"] == Self.origin)
        #expect(preflight.headers["access-control-allow-methods"] == "DELETE")
        #expect(preflight.headers["access-control-allow-headers"] == "authorization, x-trace")
        #expect(preflight.headers["access-control-max-age"] == "0")
        #expect(preflight.headers["access-control-expose-headers"] == "Retry-After, RateLimit")
        let actual = try Self.curl(proxy, ["-X", "DELETE", "-H", "Origin: \(Self.origin)", "-H", "Authorization: Bearer expired-1",
                                           "http://127.0.0.1:\(proxy.port)/api/v1/device/expired-1"])
        #expect(actual.status == 429)
        #expect(actual.headers["access-control-allow-origin"] == Self.origin)
        #expect(api.requestsServed == served, "neither the preflight nor the request reached the upstream")
        // An unlisted origin's preflight gets the plain 429.
        let unlisted = try Self.curl(proxy, ["-X", "OPTIONS", "-H", "Origin: https://evil.example.com",
                                             "-H", "Authorization: Bearer expired-1", "-H", "Access-Control-Request-Method: GET",
                                             "http://127.0.0.1:\(proxy.port)/api/v1/device/expired-1"])
        #expect(unlisted.status == 429)
        #expect(unlisted.headers["access-control-allow-origin"] == nil)
    }

    @Test func everyOwnAnswerCarriesDateAndAListedOriginsHeadersEvenA400() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Self.proxy(api, origins: ["*"])
        let refused = try Self.curl(proxy, ["--path-as-is", "-H", "Origin: https://any.example.org",
                                            "http://127.0.0.1:\(proxy.port)/api/v1/device/a%2Fb"])
        #expect(refused.status == 400)
        #expect(refused.headers["access-control-allow-origin"] == "https://any.example.org")
        let date = try #require(refused.headers["date"])
        #expect(date.hasSuffix(" GMT") && date.count == 29)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let parsed = try #require(formatter.date(from: date))
        #expect(abs(parsed.timeIntervalSinceNow) < 5)
        _ = try Self.get(proxy, origin: nil)
        let blocked = try Self.get(proxy, origin: nil)
        #expect(blocked.status == 429)
        #expect(blocked.headers["date"] != nil)
        #expect(blocked.headers["access-control-allow-origin"] == nil, "no Origin, no CORS headers")
    }

    @Test func withoutCorsOriginsNoAnswerCarriesCORSHeaders() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Self.proxy(api, origins: [])
        _ = try Self.get(proxy, origin: Self.origin)
        let blocked = try Self.get(proxy, origin: Self.origin)
        #expect(blocked.status == 429)
        #expect(blocked.headers["access-control-allow-origin"] == nil)
    }
}
