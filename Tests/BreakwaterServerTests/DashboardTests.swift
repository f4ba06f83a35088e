import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// The series ring, `/stats/series`, the extended `/stats`, and the dashboard page.
@Suite struct DashboardTests {
    static let token = "dashboard-test-token-0123456789abcdef"
    private var bearer: [(String, String)] { [("Authorization", "Bearer \(Self.token)")] }

    @Test func theRingKeepsDifferencesPerSecondWithinItsCapacity() throws {
        let totals = Totals()
        let series = Series()
        totals.add(.rejected)
        series.sample(time: 100, totals: totals, tracked: 0, blocked: 0)
        #expect(series.count == 1, "the first sample holds what happened since start")
        for _ in 0..<3 { totals.add(.forwarded) }
        totals.add(.shielded)
        totals.add(.c5xx)
        totals.addWindow()
        series.sample(time: 101, totals: totals, tracked: 7, blocked: 2)
        series.sample(time: 102, totals: totals, tracked: 7, blocked: 1)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(series.json(since: 0))) as? [String: Any])
        let columns = try #require(json["columns"] as? [String])
        #expect(columns == Series.columns)
        let points = try #require(json["points"] as? [[Int]])
        #expect(points.count == 3)
        #expect(points[0][columns.firstIndex(of: "rejected")!] == 1)
        func value(_ row: Int, _ name: String) -> Int { points[row + 1][columns.firstIndex(of: name)!] }
        #expect(value(0, "t") == 101 && value(1, "t") == 102)
        #expect(value(0, "forwarded") == 3 && value(0, "shielded") == 1 && value(0, "5xx") == 1 && value(0, "windows") == 1)
        #expect(value(0, "tracked") == 7 && value(0, "blocked") == 2)
        #expect(value(1, "forwarded") == 0 && value(1, "blocked") == 1)
        let newer = try JSONSerialization.jsonObject(with: Data(series.json(since: 101))) as? [String: Any]
        #expect((newer?["points"] as? [[Int]])?.map { $0[0] } == [102])

        for t in 103..<(103 + 2 * Series.capacity) { series.sample(time: t, totals: totals, tracked: 0, blocked: 0) }
        #expect(series.count == Series.capacity)
        let all = try JSONSerialization.jsonObject(with: Data(series.json(since: 0))) as? [String: Any]
        let times = try #require((all?["points"] as? [[Int]])?.map { $0[0] })
        #expect(times.count == Series.capacity)
        #expect(times.first == 103 + Series.capacity && times.last == 102 + 2 * Series.capacity, "the oldest go first")
        #expect(series.json(since: 0).count < 64 * Series.capacity, "compact: a full ring of zeros stays small")
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 + 1 == $1 })
    }

    @Test func theServerSamplesEverySecondAndServesTheSeries() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) {
            $0.admin.token = Self.token
            $0.backoff.base = .seconds(30)
        }
        let admin = proxy.server.adminPort
        #expect(try request(port: admin, "GET", "/stats/series").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 200)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 429)
        var summed: [String: Int] = [:]
        let seen = eventually(6) {
            guard let answer = try? request(port: admin, "GET", "/stats/series", headers: bearer),
                  let json = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
                  let columns = json["columns"] as? [String], let points = json["points"] as? [[Int]] else { return false }
            summed = [:]
            for point in points { for (i, name) in columns.enumerated() where name != "t" { summed[name, default: 0] += point[i] } }
            return summed["forwarded"] == 2 && summed["shielded"] == 1
        }
        #expect(seen, "\(summed)")
        #expect(summed["2xx"] == 1 && summed["4xx"] == 1 && summed["windows"] == 1)
        let later = try request(port: admin, "GET", "/stats/series?since=\(Int(Date().timeIntervalSince1970) + 60)", headers: bearer)
        #expect(later.bodyText.contains(#""points":[]"#))
        #expect(try request(port: admin, "POST", "/stats/series", headers: bearer).status == 405)
    }

    @Test func statsSaysWhatThePageShows() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port, Binary.freePort()])
        let stats = try request(port: proxy.server.adminPort, "GET", "/stats")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any])
        #expect(json["version"] as? String == Breakwater.version)
        #expect(((json["now"] as? Double) ?? 0) > 1_700_000_000)
        let servers = try #require(json["upstream_servers"] as? [[String: Any]])
        #expect(servers.map { $0["server"] as? String } == proxy.server.config.upstream.servers.map(\.description))
        #expect(servers.allSatisfy { $0["up"] as? Bool == true })
        let redis = try #require(json["redis"] as? [String: Any])
        #expect(redis["configured"] as? Bool == false)
        #expect((json["tls_certificates"] as? [Any])?.isEmpty == true)
        #expect((json["upstream_responses"] as? [String: Int])?["2xx"] == 0)
        #expect(json["windows_imposed"] as? Int == 0)
        for key in ["uptime_seconds", "requests", "tracked_clients", "blocked_clients", "evictions", "top"] {
            #expect(json[key] != nil, "\(key) is still there")
        }
    }

    @Test func statsSaysRedisFailingOpenAndTheCertificatesServed() throws {
        let dir = try Binary.tempDirectory()
        let cert = dir.appendingPathComponent("cert.pem"), key = dir.appendingPathComponent("key.pem")
        let made = try Tool.run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=api.test",
                                            "-keyout", key.path, "-out", cert.path])
        try #require(made.status == 0, "\(made.stderr)")
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let redis = try RedisTestServer()
        let proxy = try Harness(upstreamPorts: [upstream.port]) {
            $0.tls = TLSConfig(listen: HostPort(host: "127.0.0.1", port: 0), certificates: [.init(cert: cert.path, key: key.path)])
            $0.redis = RedisConfig()
            $0.redis?.url = "redis://127.0.0.1:\(redis.port)"
            $0.clients.hashKey = "a-shared-hash-key-0123"
        }
        func stats() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(request(port: proxy.server.adminPort, "GET", "/stats").body))
                as? [String: Any])
        }
        #expect(eventually(8) { proxy.server.redisConnected })
        let connected = try #require(try stats()["redis"] as? [String: Any])
        #expect(connected["configured"] as? Bool == true && connected["connected"] as? Bool == true)
        #expect(connected["links"] as? Int == 2 && connected["links_connected"] as? Int == 2)
        redis.kill()
        #expect(eventually(8) { ((try? stats())?["redis"] as? [String: Any])?["connected"] as? Bool == false }, "failing open")

        let certificates = try #require(try stats()["tls_certificates"] as? [[String: Any]])
        #expect(certificates.count == 1)
        #expect(certificates.first?["name"] as? String == "api.test")
        let left = Double(certificates.first?["not_after"] as? Int ?? 0) - Date().timeIntervalSince1970
        #expect(abs(left - 30 * 86400) < 3600, "expires in 30 days: \(left)")
    }

    @Test func thePageIsOneSelfContainedDocumentOpenToLoad() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port]) { $0.admin.token = Self.token }
        let page = try request(port: proxy.server.adminPort, "GET", "/")
        #expect(page.status == 200, "the page holds no data and asks for the token")
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        let policy = try #require(page.header("Content-Security-Policy"))
        #expect(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'"))
        let html = page.bodyText
        for external in ["src=", "href=", "@import", "url(", "//cdn", "https://"] {
            #expect(!html.contains(external), "\(external)")
        }
        #expect(html.contains("<svg id=\"traffic\""))
        let script = try #require(html.range(of: "<script>").flatMap { open in
            html.range(of: "</script>", range: open.upperBound..<html.endIndex).map { String(html[open.upperBound..<$0.lowerBound]) }
        })
        #expect(policy.contains("script-src '\(DashboardPage.sha256(script))'"), "the policy allows exactly the page's script")
        #expect(try request(port: proxy.server.adminPort, "POST", "/").status == 405)
    }
}
