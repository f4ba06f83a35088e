import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real executable, as an operator runs it.
@Suite struct CommandLineTests {
    @Test func checkAcceptsTheShippedConfAndPrintsTheEffectiveConfig() throws {
        let conf = Binary.packageRoot.appendingPathComponent("conf/breakwater.conf").path
        let result = try Binary.run(["check", "--config", conf])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("[server]"))
        #expect(result.stdout.contains("[[route]]"))
        #expect(!result.stderr.contains("warning"), "the shipped conf keys clients by token: \(result.stderr)")
    }

    @Test func checkWarnsWhenAFourOhOneCountsAgainstAnAddressAlone() throws {
        let dir = try Binary.tempDirectory()
        let file = dir.appendingPathComponent("ip.conf")
        try """
            [[route]]
            name = "api"
            path = "/api/"
            key = ["ip", "route"]
            [[route]]
            name = "tokens"
            path = "/tokens/"
            key = ["ip", "header:Authorization"]
            """.write(to: file, atomically: true, encoding: .utf8)
        let result = try Binary.run(["check", "--config", file.path])
        #expect(result.status == 0, "a warning, not an error")
        let warnings = result.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        #expect(warnings.count == 2, "\(result.stderr)")
        #expect(warnings.contains { $0.contains(#"route "api": 401 and 403 count against a client known by its address alone"#) })
        #expect(warnings.contains { $0.contains("the default route") })
        #expect(!warnings.contains { $0.contains("tokens") })
    }

    @Test func checkPrintsNoSecret() throws {
        let dir = try Binary.tempDirectory()
        let file = dir.appendingPathComponent("secrets.conf")
        let (hashKey, password, token) = ("hash-key-0123456789-abcdef", "redis-pass-9876543210", String(repeating: "t0k", count: 12))
        try """
            [admin]
            token = "\(token)"
            [clients]
            hash_key = "\(hashKey)"
            [redis]
            url = "redis://:\(password)@127.0.0.1:6379"
            """.write(to: file, atomically: true, encoding: .utf8)
        let result = try Binary.run(["check", "--config", file.path])
        #expect(result.status == 0, "\(result.stderr)")
        for secret in [hashKey, password, token] {
            #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret), "\(secret) printed")
        }
        #expect(result.stdout.contains("hash_key = \"<redacted>\""))
    }

    /// `make run`'s script, stopped as a terminal's Ctrl-C stops it: SIGINT to its whole process
    /// group. Breakwater drains, the demo API stops, and the script exits 0 (so `make` reports no error).
    @Test func theDemoScriptEndsWithStatusZeroOnCtrlC() throws {
        let dir = try Binary.tempDirectory()
        let (port, demo, admin) = (Binary.freePort(), Binary.freePort(), Binary.freePort())
        let conf = dir.appendingPathComponent("demo.conf")
        try """
            [server]
            listen = "127.0.0.1:\(port)"
            [upstream]
            servers = ["127.0.0.1:\(demo)"]
            [admin]
            listen = "127.0.0.1:\(admin)"
            """.write(to: conf, atomically: true, encoding: .utf8)
        // A session of its own (its pid is its group), with the signals a terminal would leave
        // unblocked: a process started from a test thread inherits a mask that blocks them.
        let launcher = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
            + "os.getpgid(0) == os.getpid() or os.setsid(); "
            + "os.environ['DEMO_LISTEN'] = '127.0.0.1:\(demo)'; os.execvp('bash', ['bash'] + sys.argv[1:])"
        let script = Binary.packageRoot.appendingPathComponent("scripts/run-demo.sh").path
        let process = try Tool.start("python3", ["-c", launcher, script, Binary.url.path, conf.path],
                                     log: dir.appendingPathComponent("run.log"))
        defer { if process.isRunning { kill(-process.processIdentifier, SIGKILL) } }
        #expect(eventually(10) { (try? request(port: port, "GET", "/api/v1/device/valid-1").status) == 200 })
        kill(-process.processIdentifier, SIGINT)
        #expect(eventually(10) { !process.isRunning })
        process.waitUntilExit()
        let log = (try? String(contentsOf: dir.appendingPathComponent("run.log"), encoding: .utf8)) ?? ""
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(log)")
        #expect(log.contains("stopped"))
        #expect((try? TestSocket(port: demo, timeout: 1)) == nil, "the demo API stopped too")
    }

    @Test func checkRejectsABadFileNamingTheKey() throws {
        let dir = try Binary.tempDirectory()
        let file = dir.appendingPathComponent("bad.conf")
        try "[server]\nworkers = -3\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try Binary.run(["check", "--config", file.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("bad.conf"))
        #expect(result.stderr.contains("server.workers"))
    }

    @Test func serveRefusesABadFileWithANonZeroExit() throws {
        let dir = try Binary.tempDirectory()
        let file = dir.appendingPathComponent("typo.conf")
        try "[server]\nlisten_addr = \"127.0.0.1:1\"\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try Binary.run(["--config", file.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("server.listen_addr"))
    }

    @Test func versionIsPrinted() throws {
        let result = try Binary.run(["--version"])
        #expect(result.status == 0)
        #expect(!result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    @Test func sigtermLetsASlowRequestFinishThenExitsZero() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(1_000_000)
            try TestUpstream.respond(socket, status: 200, body: Array("finished".utf8))
            return true
        }
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let port = Binary.freePort()
        let conf = dir.appendingPathComponent("b.conf")
        try """
        [server]
        listen = "127.0.0.1:\(port)"
        workers = 2
        grace_period = "5s"
        [admin]
        listen = "127.0.0.1:\(Binary.freePort())"
        [upstream]
        servers = ["127.0.0.1:\(upstream.port)"]
        """.write(to: conf, atomically: true, encoding: .utf8)
        let process = try Binary.start(["--config", conf.path], log: dir.appendingPathComponent("log"))
        defer { if process.isRunning { process.terminate() } }
        #expect(eventually(10) { (try? TestSocket(port: port)) != nil })
        let socket = try TestSocket(port: port)
        try socket.send(rawRequest("GET", "/slow"))
        #expect(eventually { upstream.requestCount == 1 })
        kill(process.processIdentifier, SIGTERM)
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200)
        #expect(response.bodyText == "finished")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect((try? TestSocket(port: port)) == nil, "no longer accepting")
    }
}
