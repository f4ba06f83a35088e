import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `[state]` with the real binary: a blocked client stays blocked across a stop and a start, a
/// damaged file never stops the proxy from starting, and `breakwater state inspect` reads files.
@Suite struct StateTests {
    static let hashKey = "state-tests-hash-key-0123"
    /// Windows of exactly 60 s, a state file relative to the conf's directory, saved only at a
    /// clean stop (the interval is long), so the test knows when the file is written.
    static let rest = """
        [clients]
        hash_key = "\(hashKey)"
        [backoff]
        base = "60s"
        jitter = 0.0
        [state]
        file = "state/bw.state"
        save_interval = "1h"
        """

    func metrics(_ proxy: ProxyProcess) throws -> String {
        try request(port: proxy.adminPort, "GET", "/metrics").bodyText
    }

    @Test func aBlockedClientIsStillBlockedAfterARestartAndTheUpstreamSeesNoHit() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        let target = "/api/v1/device/expired-1"
        #expect(try request(port: proxy.port, "GET", target).status == 401)
        #expect(try request(port: proxy.port, "GET", target).status == 429)
        #expect(api.requestsServed == 1)
        #expect(proxy.stop() == 0)
        let file = proxy.dir.appendingPathComponent("state/bw.state")
        #expect(FileManager.default.fileExists(atPath: file.path), "\(proxy.logText)")

        let restarted = try ProxyProcess(restarting: proxy)
        let blocked = try request(port: restarted.port, "GET", target)
        #expect(blocked.status == 429, "\(restarted.logText)")
        let retryAfter = Int(blocked.header("Retry-After") ?? "") ?? 0
        #expect((50...60).contains(retryAfter), "Retry-After \(retryAfter): the 60 s window goes on")
        #expect(api.requestsServed == 1, "the upstream saw no request after the restart")
        let text = try metrics(restarted)
        #expect(metricValue(text, "breakwater_state_loaded_entries") == 1, "\(text)")
        #expect(metricValue(text, "breakwater_blocked_clients") == 1)
        #expect(restarted.logText.contains("state loaded"))
        #expect(restarted.stop() == 0)
        // The second stop saved the same client again.
        let inspect = try Binary.run(["state", "inspect", file.path])
        #expect(inspect.status == 0, "\(inspect.stdout)\(inspect.stderr)")
        #expect(inspect.stdout.contains("format: 1"))
        #expect(inspect.stdout.contains("entries: 1"))
    }

    @Test func savesEveryIntervalAndReportsItInMetrics() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest.replacing("\"1h\"", with: "\"200ms\""))
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-2").status == 401)
        #expect(eventually(10) { (try? metricValue(metrics(proxy), "breakwater_state_saved_entries")) == 1 })
        let seconds = try #require(metricValue(try metrics(proxy), "breakwater_state_save_seconds"))
        #expect(seconds > 0 && seconds < 5)
        let file = proxy.dir.appendingPathComponent("state/bw.state").path
        let inspect = try Binary.run(["state", "inspect", file, "--config", proxy.conf.path])
        #expect(inspect.status == 0, "\(inspect.stdout)\(inspect.stderr)")
        #expect(inspect.stdout.contains("matches the conf's hash_key"))
        #expect(proxy.stop() == 0)
    }

    @Test func aDamagedFileIsRefusedInOneLineAndTheProxyStartsEmpty() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let first = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        #expect(try request(port: first.port, "GET", "/api/v1/device/expired-3").status == 401)
        #expect(first.stop() == 0)
        let file = first.dir.appendingPathComponent("state/bw.state")
        var bytes = try [UInt8](Data(contentsOf: file))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: file)

        let restarted = try ProxyProcess(restarting: first)
        #expect(try request(port: restarted.port, "GET", "/api/v1/device/expired-3").status == 401, "the tracker started empty")
        #expect(api.requestsServed == 2)
        let refusals = restarted.logText.split(separator: "\n").filter { $0.contains("state file refused") }
        #expect(refusals.count == 1, "\(restarted.logText)")
        #expect(refusals.first?.contains("checksum") == true)
        let inspect = try Binary.run(["state", "inspect", file.path])
        #expect(inspect.status == 1)
        #expect(inspect.stdout.contains("refused: checksum mismatch"))
        #expect(restarted.stop() == 0)
    }

    @Test func aFileOfAnotherHashKeyIsRefusedAsForeign() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let first = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        #expect(try request(port: first.port, "GET", "/api/v1/device/expired-4").status == 401)
        #expect(first.stop() == 0)
        let text = try String(contentsOf: first.conf, encoding: .utf8)
        try text.replacing(Self.hashKey, with: "another-hash-key-456789").write(to: first.conf, atomically: true, encoding: .utf8)
        let restarted = try ProxyProcess(restarting: first)
        #expect(try request(port: restarted.port, "GET", "/api/v1/device/expired-4").status == 401)
        let refusals = restarted.logText.split(separator: "\n").filter { $0.contains("state file refused") }
        #expect(refusals.count == 1 && refusals[0].contains("another clients.hash_key"), "\(restarted.logText)")
        #expect(restarted.stop() == 0)
    }

    @Test func inspectRefusesMissingAndForeignFiles() throws {
        let dir = try Binary.tempDirectory()
        let missing = try Binary.run(["state", "inspect", dir.appendingPathComponent("none").path])
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("refused: no such file"))
        let garbage = dir.appendingPathComponent("garbage")
        try Data("not a state file".utf8).write(to: garbage)
        let refused = try Binary.run(["state", "inspect", garbage.path])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("refused: not a Breakwater state file"))
    }
}
