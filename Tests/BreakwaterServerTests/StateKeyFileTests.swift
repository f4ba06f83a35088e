import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `[state]` without a `hash_key`: a random key is generated beside the state file at the first
/// start, kept private, and read again at every later start.
@Suite struct StateKeyFileTests {
    static let rest = """
        [backoff]
        base = "60s"
        jitter = 0.0
        [state]
        file = "state/bw.state"
        save_interval = "1h"
        """

    @Test func theKeyIsGeneratedOnceKeptPrivateAndReusedSoABlockedClientStaysBlocked() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        let keyFile = proxy.dir.appendingPathComponent("state/bw.state.key").path
        var info = stat()
        #expect(stat(keyFile, &info) == 0, "\(proxy.logText)")
        #expect(info.st_mode & 0o777 == 0o600)
        let key = try String(contentsOfFile: keyFile, encoding: .utf8)
        #expect(key.count == 65 && key.dropLast().allSatisfy(\.isHexDigit), "64 hex digits and a newline")
        #expect(proxy.logText.contains("state: generated the hash key"))
        #expect(!proxy.logText.contains(key.dropLast()), "the key is never logged")
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 401)
        #expect(proxy.stop() == 0)

        let check = try Binary.run(["check", "--config", proxy.conf.path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stderr.contains("the key is read from \(keyFile)"), "\(check.stderr)")
        #expect(!check.stdout.contains(key.dropLast()) && !check.stderr.contains(key.dropLast()))

        let restarted = try ProxyProcess(restarting: proxy)
        #expect(try request(port: restarted.port, "GET", "/api/v1/device/expired-1").status == 429, "\(restarted.logText)")
        #expect(api.requestsServed == 1)
        #expect(restarted.logText.contains("state: hash key read from its file"))
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8) == key, "the key file is read, not replaced")
        #expect(restarted.stop() == 0)
        let inspect = try Binary.run(["state", "inspect", proxy.dir.appendingPathComponent("state/bw.state").path,
                                      "--config", proxy.conf.path])
        #expect(inspect.status == 0, "\(inspect.stdout)\(inspect.stderr)")
        #expect(inspect.stdout.contains("matches the conf's hash_key"))
    }

    @Test func checkSaysTheKeyWillBeGeneratedAndCreatesNothing() throws {
        let dir = try Binary.tempDirectory()
        let conf = dir.appendingPathComponent("bw.conf")
        try "[state]\nfile = \"state/bw.state\"\n".write(to: conf, atomically: true, encoding: .utf8)
        let check = try Binary.run(["check", "--config", conf.path])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stderr.contains("a random key is generated at the first start and kept in "
                                      + dir.appendingPathComponent("state/bw.state.key").path), "\(check.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("state").path))
    }

    @Test func aKeyFileThatHoldsNoKeyIsRefusedByCheckAndByTheStart() throws {
        let dir = try Binary.tempDirectory()
        let conf = dir.appendingPathComponent("bw.conf")
        let port = Binary.freePort()
        try "[server]\nlisten = \"127.0.0.1:\(port)\"\n[admin]\nlisten = \"127.0.0.1:\(Binary.freePort())\"\n[state]\nfile = \"bw.state\"\n"
            .write(to: conf, atomically: true, encoding: .utf8)
        try "short\n".write(to: dir.appendingPathComponent("bw.state.key"), atomically: true, encoding: .utf8)
        let check = try Binary.run(["check", "--config", conf.path])
        #expect(check.status == 1)
        #expect(check.stderr.contains("clients.hash_key") && check.stderr.contains("bw.state.key"), "\(check.stderr)")
        let serve = try Binary.run(["--config", conf.path], timeout: 10)
        #expect(serve.status == 1)
        #expect(serve.stderr.contains("cannot start") && serve.stderr.contains("bw.state.key"), "\(serve.stderr)")
        #expect(try String(contentsOf: dir.appendingPathComponent("bw.state.key"), encoding: .utf8) == "short\n", "never replaced")
    }
}
