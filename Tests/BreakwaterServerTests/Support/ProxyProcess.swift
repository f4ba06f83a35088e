import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The real `breakwater` executable serving a conf file written for one test, watched from
/// outside through /proc: open descriptors, resident memory, CPU time.
final class ProxyProcess: @unchecked Sendable {
    let port: UInt16
    let adminPort: UInt16
    let dir: URL
    let conf: URL
    let log: URL
    private let process: Spawned
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Writes `[server]` (listen, `workers`, then `server`), `[admin]`, `[upstream]` (servers,
    /// then `upstream`) and `rest`, and starts the binary; `openFiles` caps its RLIMIT_NOFILE.
    init(upstreams: [UInt16], server: String = "", upstream: String = "", rest: String = "", openFiles: Int? = nil,
         workers: Int = 2) throws {
        dir = try Binary.tempDirectory()
        conf = dir.appendingPathComponent("breakwater.conf")
        log = dir.appendingPathComponent("breakwater.log")
        port = Binary.freePort()
        adminPort = Binary.freePort()
        try Self.conf(port: port, admin: adminPort, upstreams: upstreams, server: server, upstream: upstream, rest: rest,
                      workers: workers)
            .write(to: conf, atomically: true, encoding: .utf8)
        process = try Self.launch(conf: conf, log: log, openFiles: openFiles)
        try waitUntilReady()
    }

    /// The same conf file, ports and directory as `previous` (which must have stopped), started
    /// again: a restart as an operator makes it. Its output goes to a log file of its own.
    init(restarting previous: ProxyProcess) throws {
        port = previous.port
        adminPort = previous.adminPort
        dir = previous.dir
        conf = previous.conf
        log = dir.appendingPathComponent("breakwater-\(UUID().uuidString.prefix(8)).log")
        process = try Self.launch(conf: conf, log: log, openFiles: nil)
        try waitUntilReady()
    }

    private static func launch(conf: URL, log: URL, openFiles: Int?) throws -> Spawned {
        if let openFiles {
            // A shell sets the limit and execs the binary in place, so the pid is the proxy's.
            return try Tool.start("sh", ["-c", "ulimit -n \(openFiles) && exec \"$0\" \"$@\"", Binary.url.path, "--config", conf.path],
                                  log: log)
        }
        return try Binary.start(["--config", conf.path], log: log)
    }

    private func waitUntilReady() throws {
        // Ready once listening. Signals are blocked from the process's first instruction and taken
        // by its signal thread, so none sent from now on is lost.
        guard eventually(10, { (try? TestSocket(port: port, timeout: 1)) != nil }) else {
            process.terminate()
            throw TestSocket.Failure(description: "breakwater did not start: \(logText)")
        }
    }

    deinit { _ = stop() }

    static func conf(port: UInt16, admin: UInt16, upstreams: [UInt16], server: String, upstream: String, rest: String,
                     workers: Int = 2) -> String {
        """
        [server]
        listen = "127.0.0.1:\(port)"
        workers = \(workers)
        \(server)
        [admin]
        listen = "127.0.0.1:\(admin)"
        [upstream]
        servers = [\(upstreams.map { "\"127.0.0.1:\($0)\"" }.joined(separator: ", "))]
        \(upstream)
        \(rest)
        """
    }

    /// Everything the process wrote to stdout and stderr so far.
    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Open file descriptors, from /proc/<pid>/fd.
    func openFDs() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// Open descriptors once the count holds still for half a second (connections a test just
    /// closed take a moment to be noticed), within `seconds`.
    func settledFDs(within seconds: Double = 5) -> Int {
        var last = openFDs()
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            usleep(500_000)
            let now = openFDs()
            if now == last { return now }
            last = now
        }
        return last
    }

    /// Resident memory in bytes (VmRSS).
    func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kib * 1024
    }

    /// User plus system CPU seconds used so far.
    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return -1 }
        // Fields after "comm)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return -1 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func signal(_ signo: Int32) { kill(pid, signo) }

    /// SIGTERM, then waits up to `grace` seconds (SIGKILL after); returns the exit status.
    @discardableResult
    func stop(grace: Double = 15) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(pid, SIGTERM)
        return waitForExit(grace)
    }

    /// Waits up to `seconds` for the process to exit on its own (SIGKILL after); returns the exit status.
    func waitForExit(_ seconds: Double) -> Int32 {
        if !eventually(seconds, { !process.isRunning }) { kill(pid, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Rewrites the conf file (for SIGHUP tests).
    func rewrite(server: String = "", upstreams: [UInt16], upstream: String = "", rest: String = "") throws {
        try Self.conf(port: port, admin: adminPort, upstreams: upstreams, server: server, upstream: upstream, rest: rest)
            .write(to: conf, atomically: true, encoding: .utf8)
    }
}

/// `breakwater demo-api` as a process of its own, so a test can kill it like a crashing server.
final class DemoAPIProcess: @unchecked Sendable {
    let port: UInt16
    private let process: Spawned

    init(port: UInt16 = Binary.freePort()) throws {
        self.port = port
        let dir = try Binary.tempDirectory()
        process = try Binary.start(["demo-api", "--listen", "127.0.0.1:\(port)"], log: dir.appendingPathComponent("demo.log"))
        guard eventually(10, { (try? TestSocket(port: port, timeout: 1)) != nil }) else {
            process.terminate()
            throw TestSocket.Failure(description: "demo-api did not start on \(port)")
        }
    }

    deinit { kill() }

    /// SIGKILL: the server vanishes mid-whatever, as in a crash.
    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
