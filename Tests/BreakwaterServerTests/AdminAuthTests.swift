import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// The admin token and the same-origin rule of `POST /clients/reset`.
@Suite struct AdminAuthTests {
    static let token = "s3cret-admin-token-0123456789-abcdef"

    private func bearer(_ token: String) -> [(String, String)] { [("Authorization", "Bearer \(token)")] }

    @Test func everyEndpointButHealthzNeedsTheToken() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.admin.token = Self.token }
        let admin = proxy.server.adminPort
        for path in ["/stats", "/metrics", "/nowhere"] {
            let none = try request(port: admin, "GET", path)
            #expect(none.status == 401, "\(path)")
            #expect(none.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            #expect(try request(port: admin, "GET", path, headers: bearer(Self.token + "x")).status == 401, "\(path)")
            #expect(try request(port: admin, "GET", path, headers: bearer(String(Self.token.dropLast()))).status == 401)
            #expect(try request(port: admin, "GET", path, headers: [("Authorization", "Basic \(Self.token)")]).status == 401)
        }
        #expect(try request(port: admin, "POST", "/clients/reset?key=0123456789abcdef").status == 401)
        #expect(try request(port: admin, "GET", "/stats", headers: bearer(Self.token)).status == 200)
        #expect(try request(port: admin, "GET", "/stats", headers: [("authorization", "bearer  \(Self.token) ")]).status == 200)
        #expect(try request(port: admin, "GET", "/metrics", headers: bearer(Self.token)).status == 200)
        #expect(try request(port: admin, "GET", "/nowhere", headers: bearer(Self.token)).status == 404)
        #expect(try request(port: admin, "POST", "/clients/reset?key=0123456789abcdef", headers: bearer(Self.token)).status == 404)
        #expect(try request(port: admin, "GET", "/healthz").status == 200)
    }

    @Test func metricsPublicOpensMetricsAlone() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.admin.token = Self.token
            $0.admin.metricsPublic = true
        }
        let admin = proxy.server.adminPort
        let metrics = try request(port: admin, "GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.bodyText.contains("breakwater_build_info"))
        #expect(try request(port: admin, "GET", "/stats").status == 401)
        #expect(try request(port: admin, "POST", "/clients/reset?key=1").status == 401)
    }

    @Test func aReloadRotatesTheToken() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.admin.token = Self.token }
        let admin = proxy.server.adminPort
        var fresh = proxy.server.config
        fresh.admin.token = String(Self.token.reversed())
        try proxy.server.reload(fresh)
        #expect(eventually { (try? request(port: admin, "GET", "/stats", headers: bearer(String(Self.token.reversed()))).status) == 200 })
        #expect(try request(port: admin, "GET", "/stats", headers: bearer(Self.token)).status == 401)
    }

    @Test func resetTakesOnlyASameOriginPost() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) {
            $0.backoff.base = .seconds(30)
            $0.admin.token = Self.token
        }
        let admin = proxy.server.adminPort
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 429)
        let stats = try request(port: admin, "GET", "/stats", headers: bearer(Self.token))
        let json = try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any]
        let key = try #require((json?["top"] as? [[String: Any]])?.first?["key"] as? String)
        let target = "/clients/reset?key=\(key)"
        let host = ("Host", "127.0.0.1:\(admin)")

        let get = try request(port: admin, "GET", target, headers: bearer(Self.token))
        #expect(get.status == 405)
        #expect(get.header("Allow") == "POST")
        for refused in [[("Origin", "http://evil.example")], [("Origin", "null")], [("Origin", "http://127.0.0.1:1")],
                        [("Sec-Fetch-Site", "cross-site")], [("Sec-Fetch-Site", "same-site")],
                        [("Sec-Fetch-Site", "same-origin"), ("Origin", "https://evil.example")]] {
            let answer = try request(port: admin, "POST", target, headers: bearer(Self.token) + [host] + refused)
            #expect(answer.status == 403, "\(refused)")
        }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 429, "nothing was forgiven")
        let sameOrigin = [host, ("Origin", "http://127.0.0.1:\(admin)"), ("Sec-Fetch-Site", "same-origin")]
        #expect(try request(port: admin, "POST", target, headers: bearer(Self.token) + sameOrigin).status == 200)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 401, "forgiven: forwarded again")
    }

    @Test func theDigestComparisonLooksAtEveryByte() {
        #expect(AdminAuth.equal([1, 2, 3], [1, 2, 3]))
        #expect(!AdminAuth.equal([1, 2, 3], [1, 2, 4]))
        #expect(!AdminAuth.equal([9, 2, 3], [1, 2, 3]))
        #expect(!AdminAuth.equal([1, 2], [1, 2, 3]))
    }

    @Test func theBinaryRefusesAnOpenAdminOnANonLoopbackAddress() throws {
        let dir = try Binary.tempDirectory()
        let conf = dir.appendingPathComponent("open.conf")
        let port = Binary.freePort()
        try """
        [server]
        listen = "127.0.0.1:\(port)"
        [admin]
        listen = "0.0.0.0:\(Binary.freePort())"
        """.write(to: conf, atomically: true, encoding: .utf8)
        let check = try Binary.run(["check", "--config", conf.path])
        #expect(check.status == 1)
        #expect(check.stderr.contains("admin.token:"), "\(check.stderr)")
        let serve = try Binary.run(["--config", conf.path], timeout: 20)
        #expect(serve.status == 1)
        #expect(serve.stderr.contains("admin.token:"), "\(serve.stderr)")
        #expect((try? TestSocket(port: port, timeout: 1)) == nil, "nothing listens")
    }

    @Test func checkNeverPrintsTheToken() throws {
        let dir = try Binary.tempDirectory()
        let conf = dir.appendingPathComponent("token.conf")
        try "[admin]\nlisten = \"127.0.0.1:\(Binary.freePort())\"\ntoken = \"\(Self.token)\"\n"
            .write(to: conf, atomically: true, encoding: .utf8)
        let check = try Binary.run(["check", "--config", conf.path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(!check.stdout.contains(Self.token))
        #expect(check.stdout.contains("token = \"<redacted>\""))
    }
}
