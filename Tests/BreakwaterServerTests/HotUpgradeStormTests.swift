import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A hot upgrade at the scale of the storm it exists for: hundreds of expired-token clients that
/// ignore Retry-After, a thousand keep-alive clients, and no state file: the tracker crosses over
/// the upgrade socket, with the key it was hashed with.
@Suite struct HotUpgradeStormTests {
    static let storm = 300
    static let keepAlive = 1000
    /// 60 s windows, one client per token, no [state] and no hash_key (a random key per process).
    static let rest = """
        [backoff]
        base = "60s"
        jitter = 0.0
        [[route]]
        name = "device"
        path = "/api/v1/device/"
        key = ["header:Authorization"]
        """

    func metric(_ proxy: ProxyProcess, _ name: String) -> Double? {
        (try? request(port: proxy.adminPort, "GET", "/metrics")).flatMap { metricValue($0.bodyText, name) }
    }

    @Test func aStormAndAThousandKeepAliveClientsCrossAHotUpgradeWithNothingRefusedResetOrFailed() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        let storm = PollingClients(port: proxy.port, requests: (0..<Self.storm).map { ("/api/v1/device/expired-\($0)", "expired-\($0)") },
                                   interval: 0.25)
        let steady = PollingClients(port: proxy.port, requests: (0..<Self.keepAlive).map { ("/api/v1/device/valid-\($0)", "valid-\($0)") },
                                    interval: 1.0)
        var stopped = false
        defer { if !stopped { _ = storm.stop(); _ = steady.stop() } }
        #expect(eventually(30) { metric(proxy, "breakwater_blocked_clients") == Double(Self.storm) }, "\(storm.current)")
        #expect(eventually(30) { steady.current.responses >= Self.keepAlive }, "\(steady.current)")
        let blockedBefore = metric(proxy, "breakwater_blocked_clients")

        let upgrade = try Binary.run(["upgrade", "--pid", "\(proxy.pid)", "--timeout", "30"])
        #expect(upgrade.status == 0, "\(upgrade.stdout)\(upgrade.stderr)\n\(proxy.logText)")
        #expect(proxy.waitForExit(5) == 0)
        let pid = try #require(HotUpgradeTests().newPid(in: proxy.logText), "\(proxy.logText)")
        defer {
            kill(pid, SIGTERM)
            _ = eventually(15) { HotUpgradeTests().gone(pid) }
        }
        // Every keep-alive client is served by the new process, then the storm goes on a while.
        let served = steady.current.responses
        #expect(eventually(30) { steady.current.responses >= served + 2 * Self.keepAlive }, "\(steady.current)")
        let blockedAfter = metric(proxy, "breakwater_blocked_clients")
        let stormCounts = storm.stop()
        let steadyCounts = steady.stop()
        stopped = true

        for counts in [stormCounts, steadyCounts] {
            #expect(counts.refused == 0, "\(counts)")
            #expect(counts.failed == 0, "\(counts)")
            #expect(counts.closedIdle == 0, "\(counts)")
        }
        #expect(steadyCounts.statuses.keys.sorted() == [200], "\(steadyCounts)")
        // One 401 per storm client, before the upgrade; 429s ever since, from both processes.
        #expect(stormCounts.statuses[401] == Self.storm, "\(stormCounts)")
        #expect(Set(stormCounts.statuses.keys) == [401, 429], "\(stormCounts)")
        #expect(blockedBefore == Double(Self.storm))
        #expect(blockedAfter == blockedBefore, "blocked clients before \(String(describing: blockedBefore)), after \(String(describing: blockedAfter))")
        #expect(proxy.logText.contains("clients=\(Self.storm)"), "\(proxy.logText)")
        #expect(metric(proxy, "breakwater_state_loaded_entries") == Double(Self.storm))
    }
}
