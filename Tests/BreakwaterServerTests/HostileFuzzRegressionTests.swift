import BreakwaterCore
import BreakwaterFuzzOracles
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every input a fuzzer ever crashed or tripped an oracle with, kept in Fuzz/Regressions/<target>/
/// and run through the same oracles (Sources/BreakwaterFuzzOracles) on every `make test`; the seed
/// corpora in Fuzz/Corpus/<target>/ run too, so the oracles stay true on well-formed input.
@Suite struct HostileFuzzRegressionTests {
    static let fuzzDirectory = Binary.packageRoot.appendingPathComponent("Fuzz")

    static func inputs(_ target: String) -> [(String, [UInt8])] {
        ["Regressions", "Corpus"].flatMap { kind -> [(String, [UInt8])] in
            let dir = fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return names.sorted().compactMap { name in
                guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else { return nil }
                return ("\(kind)/\(target)/\(name)", [UInt8](data))
            }
        }
    }

    @Test(arguments: ["config", "identity", "http-head", "chunked"])
    func storedInputsPassTheirOracle(target: String) {
        let oracle: ([UInt8]) -> String? = switch target {
        case "config": configOracle
        case "identity": identityOracle
        case "chunked": chunkedOracle
        default: httpHeadOracle
        }
        let inputs = Self.inputs(target)
        #expect(!inputs.isEmpty, "no stored inputs for \(target)")
        for (name, bytes) in inputs {
            if let problem = oracle(bytes) { Issue.record("\(name): \(problem)") }
        }
    }

    /// Conf files that made the conf fuzzer's process abort inside TOMLKit's bundled toml++ 3.4.0,
    /// whose assertions fire in release builds too: a table header that does not start with a key
    /// (`[`, `[#]`, `[,x]`, `[éx]`, `[[ é ]]`), `}` where an array expects a value (`[502, }`), a
    /// date-time without its hour. TOMLPrecheck refuses them before TOMLKit sees them. Run through
    /// the real binary, so a regression fails one test rather than the test process:
    /// `breakwater check` must refuse each with exit 1 and the file named, as the README promises.
    @Test func confFilesThatAbortedTheParserAreRefusedCleanly() throws {
        for (name, path) in try Self.abortingConfFiles() {
            #expect(TOMLPrecheck.refusal(in: try String(contentsOfFile: path, encoding: .utf8)) != nil, "\(name)")
            let result = try Self.runAborting(["check", "--config", path])
            #expect(result.status == 1, "\(name): exit \(result.status)")
            #expect(result.stderr.contains(name), "\(name): \(result.stderr.prefix(300))")
            #expect(result.stderr.contains(": syntax: line "), "\(name): \(result.stderr.prefix(300))")
        }
    }

    /// The same files swapped in under a running proxy and sent with SIGHUP: each reload is refused
    /// and logged, and the proxy keeps serving with the config it had.
    @Test func aRunningProxyRefusesTheSameFilesOnReload() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        defer { proxy.stop() }
        let good = try String(contentsOf: proxy.conf, encoding: .utf8)
        for (i, (name, path)) in try Self.abortingConfFiles().enumerated() {
            try Data(contentsOf: URL(fileURLWithPath: path)).write(to: proxy.conf)
            proxy.signal(SIGHUP)
            let refused = eventually(10) {
                proxy.logText.components(separatedBy: "reload refused").count - 1 == i + 1 || !proxy.isRunning
            }
            #expect(refused, "\(name): \(proxy.logText.suffix(500))")
            #expect(proxy.isRunning, "\(name)")
            guard proxy.isRunning else { return }
            #expect(proxy.logText.contains("\(proxy.conf.path): syntax: line "), "\(name)")
            #expect(try request(port: proxy.port, "GET", "/anything").status == 200, "\(name)")
        }
        // The original file still loads: the proxy was never left without a config.
        try good.write(to: proxy.conf, atomically: true, encoding: .utf8)
        proxy.signal(SIGHUP)
        #expect(eventually(10) { proxy.logText.contains("reloaded") })
        #expect(try request(port: proxy.port, "GET", "/anything").status == 200)
    }

    /// Fuzz/Regressions/config-aborts/*: (file name, path).
    static func abortingConfFiles() throws -> [(String, String)] {
        let dir = fuzzDirectory.appendingPathComponent("Regressions/config-aborts")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!names.isEmpty)
        return names.map { ($0, dir.appendingPathComponent($0).path) }
    }

    /// Runs the binary with its output in a file, spawned and reaped here rather than through
    /// Foundation's Process: under the sanitizers an aborting child can stay unreaped by Process
    /// (waitUntilExit never returns) and its pipes can be held open by llvm-symbolizer.
    static func runAborting(_ arguments: [String], timeout: Double = 30) throws -> Binary.Result {
        let log = try Binary.tempDirectory().appendingPathComponent("output")
        let out = open(log.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(out); close(null) }
        let env = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"]) { $1 }
        let pid = try Tool.spawn(Binary.url, arguments, environment: env, stdin: null, stdout: out, stderr: out)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL) }
            usleep(10_000)
        }
        // Exit code when it exited, 128 + signal when a signal ended it (as a shell reports).
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return Binary.Result(status: code, stdout: output, stderr: output)
    }
}
