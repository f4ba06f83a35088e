import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The storm [state] exists for: hundreds of expired-token clients that ignore Retry-After keep
/// polling while Breakwater is stopped and started again. With the state file the upstream sees
/// nothing in the two seconds after the restart; without it, every client at once.
@Suite struct StateStormTests {
    static let clients = 200

    /// 30 s windows, one client per token; `[state]` without a hash_key (the key file is used).
    static func rest(state: Bool) -> String {
        """
        [backoff]
        base = "30s"
        jitter = 0.2
        [[route]]
        name = "device"
        path = "/api/v1/device/"
        key = ["header:Authorization"]
        \(state ? "[state]\nfile = \"state/bw.state\"\nsave_interval = \"1h\"" : "")
        """
    }

    /// Upstream requests in the two seconds after a restart in the middle of the storm.
    func hitsAfterRestart(state: Bool) throws -> (hits: Int, storm: PollingClients.Counts, blockedBefore: Double?) {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest(state: state))
        let storm = PollingClients(port: proxy.port, requests: (0..<Self.clients).map { ("/api/v1/device/expired-\($0)", "expired-\($0)") },
                                   interval: 0.1)
        var counts: PollingClients.Counts?
        defer { if counts == nil { _ = storm.stop() } }
        func blocked(_ p: ProxyProcess) -> Double? {
            (try? request(port: p.adminPort, "GET", "/metrics")).flatMap { metricValue($0.bodyText, "breakwater_blocked_clients") }
        }
        #expect(eventually(20) { blocked(proxy) == Double(Self.clients) }, "\(storm.current)")
        let blockedBefore = blocked(proxy)
        #expect(api.requestsServed == Self.clients, "one 401 per client before the restart")
        #expect(proxy.stop() == 0, "\(proxy.logText)")
        let before = api.requestsServed
        let restarted = try ProxyProcess(restarting: proxy)
        usleep(2_000_000)
        let hits = api.requestsServed - before
        counts = storm.stop()
        #expect(restarted.stop() == 0)
        return (hits, counts!, blockedBefore)
    }

    @Test func aRestartDuringTheStormReleasesNothingWithStateAndEveryClientWithout() throws {
        let with = try hitsAfterRestart(state: true)
        let without = try hitsAfterRestart(state: false)
        #expect(with.blockedBefore == Double(Self.clients) && without.blockedBefore == Double(Self.clients))
        #expect(with.hits == 0, "upstream hits in the 2 s after a restart with [state]: \(with.hits); \(with.storm)")
        #expect(without.hits >= Self.clients * 9 / 10, "without [state]: \(without.hits) (the storm reaches the upstream); \(without.storm)")
        // The clients kept polling throughout, through the restart.
        #expect(with.storm.statuses[429, default: 0] > Self.clients * 10, "\(with.storm)")
    }
}
