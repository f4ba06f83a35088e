import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The TLS listener under many connections on the real binary: handshakes that stall, and a
/// certificate replaced while clients keep coming.
@Suite struct TLSLoadTests {
    /// 2,000 connections that send nothing or the start of a ClientHello and stall do not stop a
    /// new client from being served at once, and each is closed at `handshake_timeout`.
    @Test func twoThousandHalfOpenHandshakesDoNotStopNewClients() throws {
        #expect(raiseOpenFileLimit(to: 8192) >= 4500, "the test holds 2,000 sockets on each side")
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let tlsPort = Binary.freePort()
        let proxy = try ProxyProcess(upstreams: [upstream.port], rest: """
            [tls]
            listen = "127.0.0.1:\(tlsPort)"
            \(certificatesKey([certs.localhost]))
            handshake_timeout = "3s"
            """, openFiles: 8192)
        defer { proxy.stop() }
        #expect(eventually(10) { (try? SClient.handshake(port: tlsPort))?.succeeded == true })
        // A record header announcing a 512-byte ClientHello, then its first bytes only.
        let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a]
        var stalled: [TestSocket] = []
        let opened = Date()
        for i in 0..<2000 {
            let socket = try TestSocket(port: tlsPort, timeout: 10)
            if i % 2 == 1 { try socket.send(partialHello) }
            stalled.append(socket)
        }
        let openingTook = Date().timeIntervalSince(opened)

        for round in 0..<10 {
            let started = Date()
            let result = try Curl.run("https://localhost:\(tlsPort)/fresh/\(round)",
                                      ["--cacert", certs.ca.path, "--resolve", "localhost:\(tlsPort):127.0.0.1"])
            #expect(result.exitCode == 0 && result.status == 200, "\(result)")
            #expect(Date().timeIntervalSince(started) < 1.5, "round \(round) took \(Date().timeIntervalSince(started)) s")
        }

        // Each stalled socket is closed by the proxy at the handshake timeout (3 s from its accept).
        #expect(stalled[0].waitReadable(8))
        let firstClosedAfter = Date().timeIntervalSince(opened)
        #expect(firstClosedAfter >= 2.8, "the first stalled socket was closed \(firstClosedAfter) s after it opened")
        var closed = 0
        for socket in stalled where socket.waitReadable(8) && socket.isClosedOrReset() { closed += 1 }
        let closedBy = Date().timeIntervalSince(opened)
        #expect(closed == 2000)
        #expect(closedBy < openingTook + 3 + 5, "the last stalled socket closed \(closedBy) s after the first opened")
        let metrics = try request(port: proxy.adminPort, "GET", "/metrics").bodyText
        #expect(metricValue(metrics, #"breakwater_tls_handshakes_total{result="timeout"}"#) == 2000, "\(metrics)")
        #expect(upstream.requests.allSatisfy { $0.target.hasPrefix("/fresh/") })
        #expect(proxy.isRunning)
    }

    /// Certificate files replaced and SIGHUP sent while a bounded load runs over new and kept-alive
    /// TLS connections: no request fails, and new connections get the new certificate's serial.
    @Test func aCertificateRotatedUnderLoadFailsNoRequest() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let pair = try certs.install(certs.localhost, into: dir, as: "server")
        let tlsPort = Binary.freePort()
        let proxy = try ProxyProcess(upstreams: [upstream.port], rest: """
            [tls]
            listen = "127.0.0.1:\(tlsPort)"
            \(certificatesKey([pair]))
            """)
        defer { proxy.stop() }
        #expect(eventually(10) { (try? SClient.handshake(port: tlsPort))?.succeeded == true })
        let oldSerial = try serial(of: certs.localhost.cert)
        let newSerial = try serial(of: certs.renewed.cert)

        let load = try TLSLoadClient(port: tlsPort, ca: certs.ca, threads: 4, seconds: 4)
        #expect(eventually(10) { load.started })
        usleep(500_000)   // some requests on the old certificate first
        _ = try certs.install(certs.renewed, into: dir, as: "server")
        proxy.signal(SIGHUP)
        let report = try load.finish()

        #expect(report.statuses == ["200": report.total], "\(report)")
        #expect(report.total >= 50, "\(report)")
        #expect(report.serials[oldSerial, default: 0] > 0 && report.serials[newSerial, default: 0] > 0, "\(report)")
        #expect(report.lastNewSerial == newSerial, "\(report)")
        #expect(proxy.logText.contains("reloaded"), "\(proxy.logText)")

        // Afterwards, openssl s_client sees the new serial too.
        let handshake = try SClient.handshake(port: tlsPort, caFile: certs.ca)
        #expect(try serial(ofPEMIn: handshake.output) == newSerial, "\(handshake)")
        #expect(proxy.isRunning)
    }

    /// `openssl x509 -serial` of a certificate file, upper-case hex.
    private func serial(of cert: URL) throws -> String {
        try serial(ofPEMIn: String(contentsOf: cert, encoding: .utf8))
    }

    /// The serial of the first PEM certificate in `text`, upper-case hex without leading zeros.
    private func serial(ofPEMIn text: String) throws -> String {
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex) else {
            throw TestSocket.Failure(description: "no certificate in: \(text)")
        }
        let pem = String(text[begin.lowerBound..<end.upperBound]) + "\n"
        let result = try Tool.run("openssl", ["x509", "-noout", "-serial"], stdin: Array(pem.utf8))
        let hex = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        let trimmed = hex.drop { $0 == "0" }
        return String(trimmed.isEmpty ? "0" : trimmed).uppercased()
    }
}
