import Foundation
import Testing

/// Every input a fuzzer ever crashed or tripped an oracle with, kept in Fuzz/Regressions/<target>/
/// and run through the same oracles (Support/FuzzOracles.swift) on every `make test`; the seed
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

    @Test(arguments: ["config", "identity", "http-head"])
    func storedInputsPassTheirOracle(target: String) {
        let oracle: ([UInt8]) -> String? = switch target {
        case "config": configOracle
        case "identity": identityOracle
        default: httpHeadOracle
        }
        let inputs = Self.inputs(target)
        #expect(!inputs.isEmpty, "no stored inputs for \(target)")
        for (name, bytes) in inputs {
            if let problem = oracle(bytes) { Issue.record("\(name): \(problem)") }
        }
    }

    /// Conf files that made the conf fuzzer's process abort inside TOMLKit's bundled toml++ 3.4.0
    /// (see abortsTOMLParser): a table header that does not start with a key (`[`, `[#]`, `[,x]`,
    /// `[éx]`, `[[ é ]]`) or `}` where an array expects a value (`[502, 503}`). Its assertions
    /// fire in release builds too. Run through the real binary, so an abort fails one test rather
    /// than the test process: `breakwater check` must refuse each with exit 1 and the file named,
    /// as DESIGN.md promises for a bad file. Sent with SIGHUP, the same file kills a running proxy.
    @Test func confFilesThatAbortedTheParserAreRefusedCleanly() throws {
        let dir = Self.fuzzDirectory.appendingPathComponent("Regressions/config-aborts")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!names.isEmpty)
        for name in names {
            let path = dir.appendingPathComponent(name).path
            #expect(abortsTOMLParser(try String(contentsOfFile: path, encoding: .utf8)), "\(name)")
            let result = try Binary.run(["check", "--config", path])
            withKnownIssue("Config.parse hands the text to TOMLKit, whose toml++ 3.4.0 aborts on these shapes instead of reporting them") {
                #expect(result.status == 1, "\(name): exit \(result.status)")
                #expect(result.stderr.contains(name), "\(name): \(result.stderr.prefix(300))")
            }
        }
    }
}
