import BreakwaterCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import BreakwaterServer

/// What contrib/ ships for operators: the Prometheus alerting rules (checked and unit-tested by
/// promtool) and the Grafana dashboard, whose every query is run against a real Prometheus that
/// scraped a real Breakwater.
@Suite struct ContribTests {
    static var contrib: URL { Binary.packageRoot.appendingPathComponent("contrib") }

    @Test func promtoolChecksAndTestsTheAlertingRules() throws {
        let rules = Self.contrib.appendingPathComponent("prometheus")
        let check = try Tool.run("promtool", ["check", "rules", rules.appendingPathComponent("alerts.yml").path])
        #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        let test = try Tool.run("promtool", ["test", "rules", rules.appendingPathComponent("alerts.test.yml").path])
        #expect(test.status == 0, "\(test.stdout) \(test.stderr)")
        let text = try String(contentsOf: rules.appendingPathComponent("alerts.yml"), encoding: .utf8)
        for alert in ["BreakwaterStormInProgress", "BreakwaterRedisFailingOpen", "BreakwaterUpstreamServerOut",
                      "BreakwaterCertificateExpiring", "BreakwaterEvictingClients", "BreakwaterRouteCircuitOpen"] {
            #expect(text.contains("- alert: \(alert)\n"), "\(alert)")
        }
    }

    /// Every `expr` of the dashboard's panels.
    static func dashboardQueries() throws -> [(panel: String, expr: String)] {
        let data = try Data(contentsOf: contrib.appendingPathComponent("grafana/breakwater.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(json["panels"] as? [[String: Any]])
        return panels.flatMap { panel in
            ((panel["targets"] as? [[String: Any]]) ?? []).compactMap { target in
                (target["expr"] as? String).map { (panel["title"] as? String ?? "?", $0) }
            }
        }
    }

    @Test func everyDashboardQueryRunsOnARealPrometheusScrapingBreakwater() throws {
        let queries = try Self.dashboardQueries()
        #expect(queries.count >= 10)
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.admin.metricsPublic = true }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 200)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 429)
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
            if !eventually(5, { !prometheus.isRunning }) { kill(prometheus.processIdentifier, SIGKILL) }
            prometheus.waitUntilExit()
        }
        func query(_ expr: String) -> (status: String, results: Int)? {
            let promql = expr.replacingOccurrences(of: "$__rate_interval", with: "10s")
                .replacingOccurrences(of: "$instance", with: ".*")
            var components = URLComponents()
            components.path = "/api/v1/query"
            components.queryItems = [URLQueryItem(name: "query", value: promql)]
            let target = components.percentEncodedQuery.map { "/api/v1/query?" + $0.replacingOccurrences(of: "+", with: "%2B") } ?? ""
            guard let answer = try? request(port: webPort, "GET", target),
                  let json = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any] else { return nil }
            let results = ((json["data"] as? [String: Any])?["result"] as? [Any])?.count ?? 0
            return (json["status"] as? String ?? "?", results)
        }
        // Three scrapes at least, so that rates over 10 s have points to work with.
        #expect(eventually(30) { (query(#"count_over_time(breakwater_build_info[10s])"#)?.results ?? 0) > 0
            && (query(#"rate(breakwater_requests_total{outcome="forwarded"}[10s])"#)?.results ?? 0) > 0 })
        for (panel, expr) in queries {
            let answer = query(expr)
            #expect(answer?.status == "success", "\(panel): \(expr)")
            if !expr.contains("tls_certificate") {
                #expect((answer?.results ?? 0) > 0, "\(panel): \(expr) returned nothing")
            }
        }
    }
}
