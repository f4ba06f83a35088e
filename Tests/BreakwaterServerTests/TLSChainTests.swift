import Foundation
import Testing

/// The certificate chain the TLS listener sends: the cert file's, as written, never one OpenSSL
/// builds from a store (the client CA bundle is one) in each full handshake.
@Suite struct TLSChainTests {
    /// The certificates `openssl s_client -showcerts` received in one full handshake.
    private func certificatesSent(port: UInt16) throws -> Int {
        let handshake = try SClient.handshake(port: port, extra: ["-showcerts"])
        #expect(handshake.succeeded, "\(handshake)")
        return handshake.output.components(separatedBy: "-----BEGIN CERTIFICATE-----").count - 1
    }

    @Test func aLeafAloneIsSentAloneEvenWhenTheClientCABundleHoldsItsIssuer() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        // The client CA bundle is the CA that signed the server's certificate: OpenSSL's automatic
        // chain would find the issuer there and send it too.
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: """
            \(certificatesKey([certs.localhost]))
            client_ca = "\(certs.ca.path)"
            client_auth = "optional"
            """)
        #expect(try certificatesSent(port: proxy.tlsPort) == 1)
        #expect(try proxy.curl("/leaf").status == 200)   // a client that trusts the CA still verifies
    }

    @Test func theChainInTheCertFileIsSentAsWritten() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let chained = CertificatePair(cert: dir.appendingPathComponent("chained.crt"), key: certs.localhost.key)
        try Data(try Data(contentsOf: certs.localhost.cert) + Data(contentsOf: certs.ca)).write(to: chained.cert)
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([chained]))
        #expect(try certificatesSent(port: proxy.tlsPort) == 2)
        #expect(try proxy.curl("/chain").status == 200)
    }
}
