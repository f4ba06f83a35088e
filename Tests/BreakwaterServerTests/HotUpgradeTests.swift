import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hot upgrade with the real binary: SIGUSR2 (through `breakwater upgrade`) hands the
/// listening sockets to a new process while clients keep sending.
@Suite struct HotUpgradeTests {
    /// 60 s windows, a state file, and a route that tells clients apart by their token.
    static let rest = """
        [clients]
        hash_key = "upgrade-tests-hash-key-0123"
        [backoff]
        base = "60s"
        jitter = 0.0
        [state]
        file = "state/bw.state"
        save_interval = "1h"
        [[route]]
        name = "device"
        path = "/api/v1/device/"
        key = ["header:Authorization"]
        """

    /// Clients sending back to back until stopped: keep-alive ones, and ones that open a fresh
    /// connection for every request. A keep-alive connection the server closes while idle may
    /// meet the next request on its way (RFC 9112, section 9.3.1): that request goes again once on
    /// a fresh connection, as HTTP clients do, and is counted as retried (a hot upgrade closes no
    /// idle connection, so there should be none). Everything else that is not a complete 200 is a
    /// failure, and a connection that cannot be made is a refusal.
    final class Clients: @unchecked Sendable {
        /// What the clients saw.
        struct Counts: CustomStringConvertible {
            var ok = 0, retried = 0, refused = 0, failed = 0
            var statuses: [Int: Int] = [:]
            var description: String { "ok \(ok), retried \(retried), refused \(refused), failed \(failed), statuses \(statuses)" }
        }

        private let counts = Guarded((Counts(), false))
        private let done = DispatchGroup()
        private let port: UInt16

        /// Starts `keepAlive` keep-alive clients and `fresh` ones that connect for every request.
        init(port: UInt16, keepAlive: Int, fresh: Int) {
            self.port = port
            for i in 0..<(keepAlive + fresh) {
                done.enter()
                let thread = Thread { [self] in
                    run(client: i, keepAlive: i < keepAlive)
                    done.leave()
                }
                thread.stackSize = 512 << 10
                thread.start()
            }
        }

        /// The counts so far.
        var current: Counts { counts.withLock { $0.0 } }

        /// Stops every client after its current request; the final counts.
        func stop() -> Counts {
            counts.withLock { $0.1 = true }
            done.wait()
            return current
        }

        private var stopped: Bool { counts.withLock { $0.1 } }

        private func add(_ change: (inout Counts) -> Void) { counts.withLock { change(&$0.0) } }

        /// One request on `socket` (a fresh one when nil); the response, or nil if the
        /// connection closed or broke before a complete response.
        private func exchange(_ socket: TestSocket, _ target: String) -> TestMessage? {
            guard (try? socket.send(rawRequest("GET", target))) != nil,
                  let response = try? socket.readMessage(), response.complete else { return nil }
            return response
        }

        private func connect() -> TestSocket? {
            if let socket = try? TestSocket(port: port, timeout: 10) { return socket }
            add { $0.refused += 1 }
            return nil
        }

        private func run(client: Int, keepAlive: Bool) {
            let target = "/api/v1/device/valid-\(client)"
            var socket: TestSocket?
            while !stopped {
                let reused = socket != nil
                guard let current = socket ?? connect() else { usleep(10_000); continue }
                var response = exchange(current, target)
                if response == nil && reused {
                    add { $0.retried += 1 }
                    guard let again = connect() else { socket = nil; continue }
                    socket = again
                    response = exchange(again, target)
                } else {
                    socket = current
                }
                guard let response else {
                    add { $0.failed += 1 }
                    socket = nil
                    continue
                }
                add {
                    $0.statuses[response.status, default: 0] += 1
                    if response.status == 200 { $0.ok += 1 } else { $0.failed += 1 }
                }
                if !keepAlive || response.header("Connection")?.lowercased() == "close" { socket = nil }
            }
        }
    }

    /// The pid the old process logged for the new one.
    func newPid(in log: String) -> Int32? {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("upgrade: the new process serves") }),
              let range = line.range(of: "pid=") else { return nil }
        return Int32(line[range.upperBound...].prefix { $0.isNumber })
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet).
    func gone(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    @Test func aHotUpgradeUnderLoadRefusesNoConnectionFailsNoRequestAndKeepsBlockedClientsBlocked() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        let blocked = (0..<5).map { "expired-\($0)" }
        for token in blocked {
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(token)")]).status == 401)
        }
        let clients = Clients(port: proxy.port, keepAlive: 16, fresh: 4)
        #expect(eventually(10) { clients.current.ok >= 500 })

        let upgrade = try Binary.run(["upgrade", "--pid", "\(proxy.pid)", "--timeout", "30"])
        #expect(upgrade.status == 0, "\(upgrade.stdout)\(upgrade.stderr)\n\(proxy.logText)")
        #expect(proxy.waitForExit(5) == 0)
        let pid = try #require(newPid(in: proxy.logText), "\(proxy.logText)")
        defer {
            kill(pid, SIGTERM)
            _ = eventually(15) { gone(pid) }
        }
        let before = clients.current.ok
        #expect(eventually(10) { clients.current.ok >= before + 500 }, "the new process serves: \(clients.current)")
        let counts = clients.stop()
        #expect(counts.refused == 0, "\(counts)")
        #expect(counts.failed == 0, "\(counts)")
        #expect(counts.retried == 0, "\(counts)")
        #expect(counts.statuses.keys.allSatisfy { $0 == 200 }, "\(counts)")

        let served = api.requestsServed
        for token in blocked {
            let response = try request(port: proxy.port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(token)")])
            #expect(response.status == 429, "\(token) after the upgrade")
            #expect((40...60).contains(Int(response.header("Retry-After") ?? "") ?? 0))
        }
        #expect(api.requestsServed == served, "no blocked client reached the upstream")
        #expect(proxy.logText.contains("state received from the previous process"), "\(proxy.logText)")
        let stats = try request(port: proxy.adminPort, "GET", "/metrics").bodyText
        #expect(metricValue(stats, "breakwater_state_loaded_entries") == 5, "\(stats)")
        #expect(metricValue(stats, "breakwater_blocked_clients") == 5)
    }

    @Test func aNewProcessThatFailsAfterTakingTheTrackerLeavesTheOldOneServingWithItsClientsBlocked() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        let blocked = [("Authorization", "Bearer expired-1")]
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1", headers: blocked).status == 401)
        // The conf now moves the admin listener to a port the demo API holds: the new process
        // parses it, takes the listeners and the tracker, then cannot bind and exits.
        let good = try String(contentsOf: proxy.conf, encoding: .utf8)
        try good.replacing("127.0.0.1:\(proxy.adminPort)", with: "127.0.0.1:\(api.port)")
            .write(to: proxy.conf, atomically: true, encoding: .utf8)
        proxy.signal(SIGUSR2)
        #expect(eventually(15) { proxy.logText.contains("upgrade failed, this process keeps serving") }, "\(proxy.logText)")
        let failure = proxy.logText.split(separator: "\n").first { $0.contains("upgrade failed") }.map(String.init) ?? ""
        #expect(failure.contains("exited with status 1"), "\(failure)")
        #expect(proxy.logText.contains("state received from the previous process"), "the tracker had crossed: \(proxy.logText)")
        #expect(proxy.isRunning)
        let served = api.requestsServed
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1", headers: blocked).status == 429)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 200)
        #expect(api.requestsServed == served + 1)
        #expect(try request(port: proxy.adminPort, "GET", "/healthz").status == 200)
    }

    @Test func aNewProcessThatCannotStartLeavesTheOldOneServing() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 200)
        // The conf on disk is broken now: the new process refuses it and exits.
        let good = try String(contentsOf: proxy.conf, encoding: .utf8)
        try (good + "\n[server]\nworkers = -1\n").write(to: proxy.conf, atomically: true, encoding: .utf8)
        proxy.signal(SIGUSR2)
        #expect(eventually(15) { proxy.logText.contains("upgrade failed, this process keeps serving") }, "\(proxy.logText)")
        #expect(proxy.isRunning)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-2").status == 200)
        // Once the conf is fixed, the upgrade goes through.
        try good.write(to: proxy.conf, atomically: true, encoding: .utf8)
        proxy.signal(SIGUSR2)
        #expect(proxy.waitForExit(15) == 0, "\(proxy.logText)")
        let pid = try #require(newPid(in: proxy.logText), "\(proxy.logText)")
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-3").status == 200)
        kill(pid, SIGTERM)
        #expect(eventually(15) { gone(pid) })
    }
}
