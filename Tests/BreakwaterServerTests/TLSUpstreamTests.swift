import Foundation
import Testing

/// `[upstream] tls = true`: Breakwater speaks TLS to the upstream and verifies it.
@Suite struct TLSUpstreamTests {
    private let connectErrors = #"breakwater_upstream_responses_total{route="default",class="connect_error"}"#
    private let successes = #"breakwater_upstream_responses_total{route="default",class="2xx"}"#

    @Test func theUpstreamIsReachedOverTLSVerifiedByTheCAAndTheHostInServers() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.localhost)
        defer { upstream.stop() }
        // servers = ["127.0.0.1:port"]: the certificate names IP 127.0.0.1.
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            """)
        let response = try request(port: proxy.port, "GET", "/over-tls")
        #expect(response.status == 200, "\(response.startLine) \(response.bodyText)")
        #expect(response.bodyText == "tls upstream")
        #expect(response.header("X-Upstream-TLS")?.hasPrefix("TLSv1.") == true)
        #expect(response.header("X-Seen-Proto") == "http")
        #expect(try metricValue(proxy.metrics(), successes) == 1)
    }

    @Test func tlsServerNameIsSentAndVerified() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.api)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            tls_server_name = "api.example"
            """)
        for path in ["/one", "/two"] {
            let response = try request(port: proxy.port, "GET", path)
            #expect(response.status == 200, "\(response.startLine) \(response.bodyText)")
            #expect(response.header("X-Seen-SNI") == "api.example")
        }
    }

    @Test func upstreamTlsConnectionsAreReusedAndOneTheUpstreamClosedIsNotUsed() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.localhost, idleTimeout: 1)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, workers: 1, upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            """)
        let first = try (1...3).map { try request(port: proxy.port, "GET", "/pooled/\($0)") }
        #expect(first.map(\.status) == [200, 200, 200])
        #expect(Set(first.map { $0.header("X-Connection") }).count == 1, "one TLS connection for the three")
        // The upstream closes the parked connection after 1 s, before the proxy's own 4 s.
        usleep(1_500_000)
        let later = try request(port: proxy.port, "GET", "/after-close")
        #expect(later.status == 200, "\(later.startLine) \(later.bodyText)")
        #expect(later.header("X-Connection") != first[0].header("X-Connection"))
        #expect(try metricValue(proxy.metrics(), connectErrors) == 0)
    }

    @Test func tlsEndToEndMarksTheRequestHttps() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.localhost)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]), upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            tls_server_name = "localhost"
            """)
        let response = try proxy.curl("/secure", ["--data-binary", "payload"])
        #expect(response.status == 200, "\(response)")
        #expect(response.header("X-Seen-Proto") == "https")
        #expect(response.header("X-Seen-SNI") == "localhost")
    }

    @Test func aCertificateForAnotherNameIsA502CountedAsAConnectError() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.localhost)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            tls_server_name = "api.example"
            retries = 0
            """)
        #expect(try request(port: proxy.port, "GET", "/wrong-name").status == 502)
        let text = try proxy.metrics()
        #expect(metricValue(text, connectErrors) == 1, "\(text)")
        #expect(metricValue(text, successes) == 0)
    }

    @Test func aCertificateFromAnotherCAIsA502UnlessVerificationIsOff() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.selfSigned)
        defer { upstream.stop() }
        let verifying = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            retries = 0
            """)
        #expect(try request(port: verifying.port, "GET", "/self-signed").status == 502)
        #expect(try metricValue(verifying.metrics(), connectErrors) == 1)

        let trusting = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_verify = false
            """)
        let response = try request(port: trusting.port, "GET", "/self-signed")
        #expect(response.status == 200, "\(response.startLine) \(response.bodyText)")
        #expect(response.bodyText == "tls upstream")
    }

    @Test func withoutTlsCaTheSystemBundleDoesNotTrustTheTestCA() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TLSUpstream(pair: certs.localhost)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, upstream: """
            tls = true
            tls_server_name = "localhost"
            retries = 0
            """)
        #expect(try request(port: proxy.port, "GET", "/system-bundle").status == 502)
        #expect(try metricValue(proxy.metrics(), connectErrors) == 1)
    }
}
