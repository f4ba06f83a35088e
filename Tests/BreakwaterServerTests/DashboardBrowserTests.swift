import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// The dashboard page in a real browser: headless Chromium loads it from a running Breakwater
/// during a small storm, and what it shows is compared with `/stats`. The token reaches the page
/// in a `#token=` fragment (never sent to a server; the page moves it to sessionStorage).
/// Screenshots go to `.build/test-output/dashboard/` (or `$BREAKWATER_TEST_OUTPUT/dashboard/`).
@Suite(.serialized) struct DashboardBrowserTests {
    static let token = "browser-test-token-0123456789abcdefgh"
    static let clients = 24

    /// Where this suite leaves its screenshots for a person to look at.
    static var outputDirectory: URL {
        let base = ProcessInfo.processInfo.environment["BREAKWATER_TEST_OUTPUT"].map { URL(fileURLWithPath: $0) }
            ?? Binary.packageRoot.appendingPathComponent(".build/test-output")
        return base.appendingPathComponent("dashboard")
    }

    /// Runs headless Chromium on `url` with `arguments` (a profile of its own, 5 s of virtual time).
    private func chromium(_ arguments: [String], _ url: String, profile: URL) throws -> Binary.Result {
        try Tool.run(Tool.path("chromium"), [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile.path)",
            "--virtual-time-budget=5000",
        ] + arguments + [url], timeout: 45)
    }

    @Test func theBrowserShowsTheNumbersOfStatsDuringAStorm() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) {
            $0.admin.token = Self.token
            $0.backoff.base = .seconds(120)
            $0.backoff.jitter = 0
            $0.routes = [AdminTests.deviceRoute()]
        }
        let admin = proxy.server.adminPort
        let bearer = [("Authorization", "Bearer \(Self.token)")]
        for i in 0..<Self.clients {
            let token = "expired-\(i)"
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(token)")]).status == 401)
        }
        // The storm goes on while the page loads: the blocked clients keep asking (429s), others are served.
        let clients = Self.clients
        let storm = LoadLoop(port: proxy.port, connections: 2) { n in
            n % 2 == 0
                ? rawRequest("GET", "/api/v1/device/expired-\(n % clients)", headers: [("Authorization", "Bearer expired-\(n % clients)")])
                : rawRequest("GET", "/api/v1/device/valid-\(n % 5)")
        }
        storm.start()
        defer { _ = storm.stop() }
        #expect(eventually(5) {
            let series = try? request(port: admin, "GET", "/stats/series", headers: bearer).bodyText
            return (series?.components(separatedBy: "],[").count ?? 0) >= 2
        }, "two seconds of series before the page loads")

        let profile = try Binary.tempDirectory()
        let url = "http://127.0.0.1:\(admin)/#token=\(Self.token)"
        let dump = try chromium(["--window-size=1280,900", "--dump-dom"], url, profile: profile)
        #expect(dump.status == 0, "\(dump.stderr.suffix(2000))")
        let dom = dump.stdout
        let stats = try #require(try JSONSerialization.jsonObject(with: Data(request(port: admin, "GET", "/stats", headers: bearer).body))
            as? [String: Any])

        func shown(_ id: String) -> String? {
            guard let start = dom.range(of: "id=\"\(id)\"") else { return nil }
            guard let open = dom.range(of: ">", range: start.upperBound..<dom.endIndex),
                  let close = dom.range(of: "<", range: open.upperBound..<dom.endIndex) else { return nil }
            return String(dom[open.upperBound..<close.lowerBound])
        }
        #expect(stats["blocked_clients"] as? Int == Self.clients)
        #expect(shown("blocked-now") == "\(Self.clients)", "the page shows /stats' blocked clients")
        #expect(shown("windows-total") == "\(stats["windows_imposed"] as? Int ?? -1)")
        #expect(shown("version") == Breakwater.version)
        #expect(shown("status") == "live")
        #expect(dom.contains("<polyline"), "the charts were drawn")
        let top = try #require(stats["top"] as? [[String: Any]])
        #expect(top.count == 20)
        for offender in top {
            let key = try #require(offender["key"] as? String)
            #expect(dom.contains("data-key=\"\(key)\""), "offender \(key) has its row and forgive button")
        }
        #expect(dom.components(separatedBy: ">forgive</button>").count - 1 == top.count)
        #expect(!dom.contains(Self.token), "the token left the address and the page")

        let directory = Self.outputDirectory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, size) in [("dashboard.png", "1280,900"), ("dashboard-phone.png", "390,1200")] {
            let file = directory.appendingPathComponent(name)
            try? FileManager.default.removeItem(at: file)
            let shot = try chromium(["--window-size=\(size)", "--hide-scrollbars", "--screenshot=\(file.path)"], url, profile: profile)
            #expect(shot.status == 0, "\(shot.stderr.suffix(2000))")
            let bytes = (try? Data(contentsOf: file)) ?? Data()
            #expect(bytes.count > 20_000 && bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(name): a PNG with something on it")
        }
        try? FileManager.default.removeItem(at: profile)
    }

    @Test func forgiveInThePageClearsTheClient() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) {
            $0.admin.token = Self.token
            $0.routes = [AdminTests.deviceRoute()]
        }
        let admin = proxy.server.adminPort
        let bearer = [("Authorization", "Bearer \(Self.token)")]
        func ask(_ i: Int) throws -> Int {
            try request(port: proxy.port, "GET", "/api/v1/device/expired-\(i)", headers: [("Authorization", "Bearer expired-\(i)")]).status
        }
        for i in 0..<5 { #expect(try ask(i) == 401) }
        for i in 0..<5 { #expect(try ask(i) == 429) }

        let profile = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: profile) }
        let page = try DevToolsPage(url: "http://127.0.0.1:\(admin)/#token=\(Self.token)", profile: profile)
        defer { page.close() }
        #expect(eventually(15) { (try? page.evaluate("document.querySelectorAll('#offenders tbody tr').length")) as? Int == 5 },
                "the page lists the five blocked clients")
        let key = try #require(try page.evaluate("document.querySelector('#offenders tbody tr').dataset.key") as? String)
        _ = try page.evaluate("document.querySelector('#offenders tbody tr[data-key=\"\(key)\"] button').click()")
        #expect(eventually(10) {
            let stats = try? request(port: admin, "GET", "/stats", headers: bearer).bodyText
            return stats?.contains(key) == false && stats?.contains(#""blocked_clients":4"#) == true
        }, "forgiven: gone from /stats")
        #expect(eventually(5) { (try? page.evaluate("document.querySelectorAll('#offenders tbody tr').length")) as? Int == 4 })
        let statuses = try (0..<5).map(ask)
        #expect(statuses.sorted() == [401, 429, 429, 429, 429], "the forgiven client's next request is forwarded: \(statuses)")
    }
}
