import BreakwaterCore
import Foundation
import Logging
@testable import BreakwaterServer

/// A Breakwater proxy running in-process, configured from conf-file text as an operator would
/// write it: plain listener on a free loopback port, admin listener, `upstreamPorts`, and, when
/// `tls` is given, a `[tls]` section listening on `tlsPort` with `tls` as the rest of its keys.
final class TLSHarness {
    let server: ProxyServer
    /// The `[tls] listen` port (0 without `[tls]`).
    let tlsPort: UInt16
    let text: String
    var port: UInt16 { server.port }
    var adminPort: UInt16 { server.adminPort }

    init(upstreamPorts: [UInt16], tls: String?, workers: Int = 2, server serverKeys: String = "", upstream: String = "",
         rest: String = "") throws {
        tlsPort = tls == nil ? 0 : Binary.freePort()
        var text = """
            [server]
            listen = "127.0.0.1:0"
            workers = \(workers)
            grace_period = "2s"
            \(serverKeys)
            [admin]
            listen = "127.0.0.1:0"
            [upstream]
            servers = [\(upstreamPorts.map { "\"127.0.0.1:\($0)\"" }.joined(separator: ", "))]
            \(upstream)

            """
        if let tls {
            text += """
                [tls]
                listen = "127.0.0.1:\(tlsPort)"
                \(tls)

                """
        }
        text += rest
        self.text = text
        let config = try Config.parse(text, file: "tls-test.conf")
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["BREAKWATER_TEST_LOG"] == nil ? .critical : .debug
        server = try ProxyServer(config: config, logger: logger)
        try server.start()
    }

    deinit { server.shutdown() }

    /// The admin listener's `/metrics` text.
    func metrics() throws -> String {
        try request(port: adminPort, "GET", "/metrics").bodyText
    }

    /// https://localhost:tlsPort`path`, trusting the test CA, through curl.
    func curl(_ path: String = "/", _ arguments: [String] = []) throws -> CurlResult {
        let certificates = try TestCertificates.shared()
        return try Curl.run("https://localhost:\(tlsPort)\(path)",
                            ["--cacert", certificates.ca.path, "--resolve", "localhost:\(tlsPort):127.0.0.1"] + arguments)
    }
}

/// `[tls] certificates = [...]` for `pairs`.
func certificatesKey(_ pairs: [CertificatePair]) -> String {
    "certificates = [\(pairs.map(\.conf).joined(separator: ", "))]"
}

/// Every series of `metric` in Prometheus text, as (labels, value).
func metricSeries(_ text: String, _ metric: String) -> [(labels: String, value: Double)] {
    text.split(separator: "\n").compactMap { line in
        guard line.hasPrefix(metric + "{"), let close = line.lastIndex(of: "}"),
              let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)) else { return nil }
        return (String(line[line.index(line.startIndex, offsetBy: metric.count + 1)..<close]), value)
    }
}
