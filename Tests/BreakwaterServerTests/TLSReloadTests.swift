import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real binary: certificates reloaded on SIGHUP, descriptors after bad handshakes, and
/// `breakwater check` loading the pairs.
@Suite struct TLSReloadTests {
    /// The binary with `[tls]` on a free port serving `pair`, ready for handshakes.
    private func start(upstream: UInt16, pair: CertificatePair) throws -> (ProxyProcess, UInt16) {
        let tlsPort = Binary.freePort()
        let proxy = try ProxyProcess(upstreams: [upstream], rest: """
            [tls]
            listen = "127.0.0.1:\(tlsPort)"
            \(certificatesKey([pair]))
            """)
        guard eventually(10, { (try? SClient.handshake(port: tlsPort))?.succeeded == true }) else {
            throw TestSocket.Failure(description: "no TLS on \(tlsPort): \(proxy.logText)")
        }
        return (proxy, tlsPort)
    }

    /// The common name of the certificate a new handshake gets.
    private func served(_ port: UInt16) -> String? {
        (try? SClient.handshake(port: port))?.subjectCN
    }

    @Test func sighupServesTheNewCertificateToNewHandshakesAndKeepsOpenConnections() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let pair = try certs.install(certs.localhost, into: dir, as: "server")
        let (proxy, tlsPort) = try start(upstream: upstream.port, pair: pair)
        defer { proxy.stop() }
        #expect(served(tlsPort) == "localhost")
        // Scraped before the reload, as Prometheus would have.
        let expiriesBefore = metricSeries(try request(port: proxy.adminPort, "GET", "/metrics").bodyText,
                                          "breakwater_tls_certificate_expiry_timestamp_seconds")
        #expect(expiriesBefore.map(\.value) == [try TestCertificates.expiry(of: certs.localhost.cert)], "\(expiriesBefore)")

        // One connection opened before the reload, kept open across it.
        let held = try InteractiveTool("openssl", ["s_client", "-connect", "127.0.0.1:\(tlsPort)", "-servername", "localhost",
                                                   "-CAfile", certs.ca.path, "-nocommands", "-ign_eof"])
        defer { held.stop() }
        #expect(held.waitFor("Verify return code"), "\(held.text)")
        held.send("GET /before HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(held.waitFor("HTTP/1.1 200", count: 1), "\(held.text)")

        _ = try certs.install(certs.renewed, into: dir, as: "server")
        proxy.signal(SIGHUP)
        #expect(eventually(10) { served(tlsPort) == "localhost-renewed" }, "\(proxy.logText)")
        let renewed = try Curl.run("https://localhost:\(tlsPort)/after",
                                   ["--cacert", certs.ca.path, "--resolve", "localhost:\(tlsPort):127.0.0.1"])
        #expect(renewed.exitCode == 0 && renewed.status == 200, "\(renewed)")

        held.send("GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(held.waitFor("HTTP/1.1 200", count: 2), "\(held.text)")
        #expect(!held.text.contains("localhost-renewed"))
        #expect(upstream.requests.map(\.target).contains("/held"))
        #expect(proxy.isRunning)

        // The expiry metric shows the certificate now served, and only it: the replaced one's
        // expiry would keep an alert on it firing after the renewal.
        let metrics = try request(port: proxy.adminPort, "GET", "/metrics").bodyText
        let expiries = metricSeries(metrics, "breakwater_tls_certificate_expiry_timestamp_seconds")
        let renewedExpiry = try TestCertificates.expiry(of: certs.renewed.cert)
        #expect(expiries.count == 1 && expiries.allSatisfy { abs($0.value - renewedExpiry) < 1 },
                "one pair served, expiring at \(renewedExpiry): \(expiries)")
    }

    @Test func sighupRefusesAPairThatDoesNotLoadOrDoesNotMatchAndKeepsTheOldOne() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let pair = try certs.install(certs.localhost, into: dir, as: "server")
        let (proxy, tlsPort) = try start(upstream: upstream.port, pair: pair)
        defer { proxy.stop() }

        let garbage = dir.appendingPathComponent("garbage")
        try "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".write(to: garbage, atomically: true, encoding: .utf8)
        let cases: [(String, () throws -> Void)] = [
            ("a certificate that is not PEM", { try TestCertificates.replace(pair.cert, with: garbage) }),
            ("a missing certificate", { try FileManager.default.removeItem(at: pair.cert) }),
            ("a certificate whose key does not match", {
                try TestCertificates.replace(pair.cert, with: certs.renewed.cert)
                try TestCertificates.replace(pair.key, with: certs.strayKey)
            }),
        ]
        for (name, breakFiles) in cases {
            let logged = proxy.logText.count
            try breakFiles()
            proxy.signal(SIGHUP)
            let named = eventually(10) {
                let new = proxy.logText.dropFirst(logged)
                return new.contains("server.crt") || new.contains("server.key")
            }
            #expect(named, "\(name): the log does not name the file: \(proxy.logText.dropFirst(logged))")
            #expect(proxy.isRunning)
            #expect(served(tlsPort) == "localhost", "\(name): the old pair is no longer served")
            let result = try Curl.run("https://localhost:\(tlsPort)/still",
                                      ["--cacert", certs.ca.path, "--resolve", "localhost:\(tlsPort):127.0.0.1"])
            #expect(result.exitCode == 0 && result.status == 200, "\(name): \(result)")
        }

        // After refusals, a good pair is taken.
        _ = try certs.install(certs.renewed, into: dir, as: "server")
        proxy.signal(SIGHUP)
        #expect(eventually(10) { served(tlsPort) == "localhost-renewed" }, "\(proxy.logText)")
    }

    @Test func handshakesThatFailTimeOutOrAreCutOffLeaveNoDescriptorsBehind() throws {
        let certs = try TestCertificates.shared()
        // Every upstream connection closes after its answer, so the pool keeps none open.
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 200, headers: [("Connection", "close")], body: Array("hello".utf8))
            return false
        }
        defer { upstream.stop() }
        let tlsPort = Binary.freePort()
        let proxy = try ProxyProcess(upstreams: [upstream.port], rest: """
            [tls]
            listen = "127.0.0.1:\(tlsPort)"
            \(certificatesKey([certs.localhost]))
            handshake_timeout = "1s"
            """)
        defer { proxy.stop() }
        #expect(eventually(10) { (try? SClient.handshake(port: tlsPort))?.succeeded == true })
        let before = proxy.settledFDs()

        for _ in 0..<10 { #expect(try !SClient.handshake(port: tlsPort, alpn: "spdy/3.1").succeeded) }
        for _ in 0..<10 { #expect(try SClient.handshake(port: tlsPort, extra: ["-tls1_2"]).succeeded) }
        var held: [TestSocket] = []
        for i in 0..<20 {
            let socket = try TestSocket(port: tlsPort)
            // Half send the start of a ClientHello and close; half send nothing and wait for the timeout.
            if i % 2 == 0 {
                try socket.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            } else {
                held.append(socket)
            }
        }
        for _ in 0..<10 {
            let result = try Curl.run("https://localhost:\(tlsPort)/", ["--cacert", certs.ca.path, "--resolve", "localhost:\(tlsPort):127.0.0.1"])
            #expect(result.status == 200, "\(result)")
        }
        for socket in held { #expect(socket.isClosedByPeer()) }
        held.removeAll()
        #expect(proxy.settledFDs() == before, "\(proxy.logText)")
        #expect(proxy.isRunning)
    }

    // MARK: breakwater check

    private func checkConf(_ pairs: String, in dir: URL) throws -> Binary.Result {
        let file = dir.appendingPathComponent("tls.conf")
        try """
            [server]
            listen = "127.0.0.1:\(Binary.freePort())"
            [admin]
            listen = "127.0.0.1:\(Binary.freePort())"
            [upstream]
            servers = ["127.0.0.1:9000"]
            [tls]
            listen = "127.0.0.1:\(Binary.freePort())"
            certificates = [\(pairs)]
            """.write(to: file, atomically: true, encoding: .utf8)
        return try Binary.run(["check", "--config", file.path])
    }

    @Test func checkAcceptsGoodPairsAndPrintsTheTLSSection() throws {
        let certs = try TestCertificates.shared()
        let result = try checkConf([certs.localhost, certs.api].map(\.conf).joined(separator: ", "), in: try Binary.tempDirectory())
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("[tls]"), "\(result.stdout)")
        #expect(!result.stderr.lowercased().contains("expir"), "\(result.stderr)")
    }

    @Test func checkRefusesAMissingOrBrokenFileOrAKeyThatDoesNotMatchNamingTheFile() throws {
        let certs = try TestCertificates.shared()
        let dir = try Binary.tempDirectory()
        let garbageCert = dir.appendingPathComponent("garbage.crt"), garbageKey = dir.appendingPathComponent("garbage.key")
        try "not a certificate\n".write(to: garbageCert, atomically: true, encoding: .utf8)
        try "not a key\n".write(to: garbageKey, atomically: true, encoding: .utf8)
        let cases: [(String, CertificatePair, [String])] = [
            ("missing certificate", CertificatePair(cert: dir.appendingPathComponent("missing.crt"), key: certs.localhost.key), ["missing.crt"]),
            ("missing key", CertificatePair(cert: certs.localhost.cert, key: dir.appendingPathComponent("missing.key")), ["missing.key"]),
            ("garbage certificate", CertificatePair(cert: garbageCert, key: certs.localhost.key), ["garbage.crt"]),
            ("garbage key", CertificatePair(cert: certs.localhost.cert, key: garbageKey), ["garbage.key"]),
            ("key of another certificate", CertificatePair(cert: certs.localhost.cert, key: certs.api.key), ["localhost.crt", "api.key"]),
            ("stray key", CertificatePair(cert: certs.localhost.cert, key: certs.strayKey), ["localhost.crt", "stray.key"]),
        ]
        for (name, pair, names) in cases {
            // The bad pair second, behind a good one: every pair is loaded, not only the default.
            let result = try checkConf("\(certs.api.conf), \(pair.conf)", in: dir)
            #expect(result.status == 1, "\(name): exit \(result.status) \(result.stderr)")
            #expect(names.contains { result.stderr.contains($0) }, "\(name): \(result.stderr)")
        }
    }

    @Test func checkWarnsOfACertificateThatExpiresWithinFourteenDays() throws {
        let certs = try TestCertificates.shared()
        let result = try checkConf("\(certs.localhost.conf), \(certs.shortLived.conf)", in: try Binary.tempDirectory())
        #expect(result.status == 0, "\(result.stderr)")
        // The file is short-lived.crt and its subject CN=short-lived: either names it.
        #expect(result.stderr.contains("short-lived"), "\(result.stderr)")
        #expect(!result.stderr.contains("localhost.crt"), "\(result.stderr)")
    }
}
