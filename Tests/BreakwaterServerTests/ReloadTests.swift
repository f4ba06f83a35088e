import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP on the real binary: new settings for new requests, tracker state kept, bad files refused.
@Suite struct ReloadTests {
    private func conf(port: UInt16, admin: UInt16, upstream: UInt16, max: String) -> String {
        """
        [server]
        listen = "127.0.0.1:\(port)"
        workers = 2
        [admin]
        listen = "127.0.0.1:\(admin)"
        [upstream]
        servers = ["127.0.0.1:\(upstream)"]
        [backoff]
        base = "\(max)"
        max = "\(max)"
        jitter = 0.0
        [[route]]
        name = "device"
        path = "/api/v1/device/"
        key = ["header:Authorization", "route"]
        """
    }

    private func retryAfter(_ port: UInt16, token: String) throws -> (Int, String?) {
        let response = try request(port: port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(token)")])
        return (response.status, response.header("Retry-After"))
    }

    @Test func sighupChangesNewWindowsKeepsBlockedClientsAndRefusesABrokenFile() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let dir = try Binary.tempDirectory()
        let port = Binary.freePort(), admin = Binary.freePort()
        let file = dir.appendingPathComponent("breakwater.conf")
        try conf(port: port, admin: admin, upstream: api.port, max: "40s").write(to: file, atomically: true, encoding: .utf8)
        let log = dir.appendingPathComponent("log")
        let process = try Binary.start(["--config", file.path], log: log)
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        #expect(eventually(10) { (try? TestSocket(port: port)) != nil })

        #expect(try retryAfter(port, token: "expired-a").0 == 401)
        #expect(try retryAfter(port, token: "expired-a") == (429, "40"))

        // A good reload: new windows use the new max; the blocked client stays blocked.
        try conf(port: port, admin: admin, upstream: api.port, max: "3s").write(to: file, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        #expect(eventually(5) { (try? String(contentsOf: log, encoding: .utf8))?.contains("reloaded") == true })
        #expect(try retryAfter(port, token: "expired-b").0 == 401)
        #expect(try retryAfter(port, token: "expired-b") == (429, "3"))
        let stillBlocked = try retryAfter(port, token: "expired-a")
        #expect(stillBlocked.0 == 429)
        #expect(Int(stillBlocked.1 ?? "0")! > 30)

        // A broken reload: refused, logged with the key, and the running config stays.
        try conf(port: port, admin: admin, upstream: api.port, max: "3s").replacingOccurrences(of: "jitter = 0.0", with: "jitter = 7.5")
            .write(to: file, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        #expect(eventually(5) { (try? String(contentsOf: log, encoding: .utf8))?.contains("backoff.jitter") == true })
        #expect(process.isRunning)
        #expect(try retryAfter(port, token: "valid-1").0 == 200)
        #expect(try retryAfter(port, token: "expired-c").0 == 401)
        #expect(try retryAfter(port, token: "expired-c") == (429, "3"))
        #expect(try request(port: admin, "GET", "/healthz").status == 200)
    }
}
