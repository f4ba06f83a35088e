import BreakwaterCore
import Foundation
import Logging
import Testing
@testable import BreakwaterServer

/// The admin listener as an operator and Prometheus use it.
@Suite struct AdminTests {

    static func deviceRoute() -> RouteConfig {
        var route = RouteConfig(name: "device", path: "/api/v1/device/")
        route.key = [.header("authorization"), .route]
        route.backoff.base = .seconds(30)
        return route
    }

    private func metric(_ text: String, _ series: String) -> Double? { metricValue(text, series) }

    @Test func countersFollowAScriptedSequenceAndPromtoolAcceptsTheText() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.backoff.base = .seconds(30) }
        for _ in 0..<3 { #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 200) }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 401)
        for _ in 0..<4 { #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 429) }
        let text = try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText
        #expect(metric(text, #"breakwater_requests_total{route="default",outcome="forwarded",protocol="http1"}"#) == 4)
        #expect(metric(text, #"breakwater_requests_total{route="default",outcome="shielded",protocol="http1"}"#) == 4)
        #expect(metric(text, #"breakwater_upstream_responses_total{route="default",class="2xx"}"#) == 3)
        #expect(metric(text, #"breakwater_upstream_responses_total{route="default",class="4xx"}"#) == 1)
        #expect(metric(text, #"breakwater_upstream_request_duration_seconds_count{route="default"}"#) == 4)
        #expect(metric(text, #"breakwater_backoff_window_seconds_count{route="default"}"#) == 1)
        #expect(metric(text, "breakwater_tracked_clients") == 1)
        #expect(metric(text, "breakwater_blocked_clients") == 1)
        #expect(metric(text, "breakwater_evictions_total") == 0)
        #expect(metric(text, #"breakwater_upstream_retries_total{route="default",reason="status"}"#) == 0)
        #expect(metric(text, "breakwater_redis_errors_total") == 0)
        #expect(metric(text, #"breakwater_build_info{version="\#(Breakwater.version)"}"#) == 1)
        #expect((metric(text, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((metric(text, "process_open_fds") ?? 0) > 3)
        #expect((metric(text, "process_start_time_seconds") ?? 0) > 1_700_000_000)
        let check = try Tool.run("promtool", ["check", "metrics"], stdin: Array(text.utf8))
        #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
    }

    @Test func aRealPrometheusServerScrapesTheEndpoint() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        #expect(try request(port: proxy.port, "GET", "/").status == 200)
        let dir = try Binary.tempDirectory()
        try """
        global:
          scrape_interval: 1s
        scrape_configs:
          - job_name: breakwater
            static_configs:
              - targets: ["127.0.0.1:\(proxy.server.adminPort)"]
        """.write(to: dir.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        let webPort = Binary.freePort()
        let prometheus = try Tool.start("prometheus", [
            "--config.file=\(dir.path)/prometheus.yml", "--storage.tsdb.path=\(dir.path)/data",
            "--web.listen-address=127.0.0.1:\(webPort)",
        ], log: dir.appendingPathComponent("prometheus.log"))
        defer {
            prometheus.terminate()
            prometheus.waitUntilExit()
        }
        let found = eventually(30) {
            guard let answer = try? request(port: webPort, "GET", "/api/v1/query?query=breakwater_requests_total") else { return false }
            return answer.bodyText.contains(#""outcome":"forwarded""#)
        }
        #expect(found, "Prometheus never returned breakwater_requests_total")
    }

    @Test func statsListsTheOffendersByHashedKeyNeverTheToken() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.routes = [Self.deviceRoute()] }
        for i in 0..<25 {
            let token = "secret-token-\(i)"
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(token)")]).status == 401)
        }
        let stats = try request(port: proxy.server.adminPort, "GET", "/stats")
        #expect(stats.status == 200)
        #expect(!stats.bodyText.contains("secret-token"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any])
        #expect(json["tracked_clients"] as? Int == 25)
        #expect(json["blocked_clients"] as? Int == 25)
        let top = try #require(json["top"] as? [[String: Any]])
        #expect(top.count == 20)
        #expect(top.allSatisfy { $0["route"] as? String == "device" && ($0["key"] as? String)?.count == 16 })
        let requests = try #require(json["requests"] as? [String: Int])
        #expect(requests["forwarded"] == 25)
    }

    @Test func healthzAndResetForgiveOneClient() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.backoff.base = .seconds(30) }
        let admin = proxy.server.adminPort
        #expect(try request(port: admin, "GET", "/healthz").status == 200)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 429)
        let stats = try JSONSerialization.jsonObject(with: Data(try request(port: admin, "GET", "/stats").body)) as? [String: Any]
        let key = try #require((stats?["top"] as? [[String: Any]])?.first?["key"] as? String)
        #expect(try request(port: admin, "GET", "/clients/reset?key=\(key)").status == 405)
        #expect(try request(port: admin, "POST", "/clients/reset?key=\(key)").status == 200)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired").status == 401, "forgiven: forwarded again")
        #expect(try request(port: admin, "POST", "/clients/reset?key=0123456789abcdef").status == 404)
        #expect(try request(port: admin, "POST", "/clients/reset?key=nothex").status == 400)
    }

    @Test func adminAndProxyListenersAnswerOnlyTheirOwnRoutes() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try Harness(upstreamPorts: [upstream.port])
        let onProxy = try request(port: proxy.port, "GET", "/metrics")
        #expect(onProxy.bodyText == "hello", "the proxy port forwards /metrics to the upstream")
        #expect(upstream.requests.first?.target == "/metrics")
        #expect(try request(port: proxy.server.adminPort, "GET", "/api/v1/device/valid-1").status == 404)
        #expect(try request(port: proxy.server.adminPort, "GET", "/nowhere").status == 404)
        #expect(try request(port: proxy.server.adminPort, "GET", "/").header("Content-Type") == "text/html; charset=utf-8",
                "/ on the admin listener is the dashboard page")
        #expect(upstream.requestCount == 1)
    }

    @Test func accessLogHasOneLinePerRequestAndNoSecrets() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let dir = try Binary.tempDirectory()
        let log = dir.appendingPathComponent("access.log")
        do {
            let proxy = try Harness(upstreamPorts: [api.port]) {
                $0.server.accessLog = log.path
                $0.routes = [Self.deviceRoute()]
            }
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-tok", headers: [("Authorization", "Bearer expired-tok")]).status == 401)
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-tok", headers: [("Authorization", "Bearer expired-tok")]).status == 429)
            #expect(try request(port: proxy.port, "POST", "/echo?x=1", body: Array("abc".utf8)).status == 200)
            proxy.server.shutdown()
        }
        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(!lines.joined().contains("expired-tok"))
        // Each worker buffers its own lines, so the file is ordered per worker, not overall.
        #expect(lines.contains { $0.contains("\"GET /api/v1/device/…\" 401 forwarded route=device") })
        #expect(lines.contains { $0.contains("\"GET /api/v1/device/…\" 429 shielded route=device upstream=- bytes=0") })
        #expect(lines.contains { $0.contains("127.0.0.1 \"POST /echo\" 200 forwarded route=default") && $0.hasSuffix("bytes=3 scheme=http") })
    }
}
