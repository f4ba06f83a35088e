import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// TLS termination on `[tls] listen`, with real clients: curl and `openssl s_client`.
@Suite struct TLSTests {
    @Test func tlsRequestsAreProxiedLikePlainOnesAndMarkedHttps() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))

        // A forged X-Forwarded-Proto is replaced, as on the plain listener.
        let get = try proxy.curl("/things/1?q=a", ["-H", "X-Forwarded-Proto: http", "-H", "Via: 1.0 edge"])
        #expect(get.exitCode == 0, "\(get)")
        #expect(get.status == 200)
        #expect(get.header("X-Target") == "/things/1?q=a")
        let seen = try #require(upstream.requests.last)
        #expect(seen.all("X-Forwarded-Proto") == ["https"])
        #expect(seen.header("X-Forwarded-For") == "127.0.0.1")
        #expect(seen.header("Via") == "1.0 edge, 1.1 breakwater")

        // The plain listener stays, and says http.
        #expect(try request(port: proxy.port, "GET", "/plain").status == 200)
        #expect(upstream.requests.last?.all("X-Forwarded-Proto") == ["http"])

        // A body goes through byte for byte both ways.
        let dir = try Binary.tempDirectory()
        var generator = SystemRandomNumberGenerator()
        let body = (0..<512 * 1024).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let file = dir.appendingPathComponent("body")
        try Data(body).write(to: file)
        let post = try proxy.curl("/upload", ["--data-binary", "@\(file.path)", "-H", "Content-Type: application/octet-stream",
                                              "-H", "Expect:"])
        #expect(post.status == 200, "\(post)")
        #expect(post.header("X-Method") == "POST")
        #expect(upstream.requests.last.map { checksum($0.body) } == checksum(body))
        #expect(post.bodyBytes.count == body.count)
        #expect(checksum(post.bodyBytes) == checksum(body))
    }

    /// Plain HTTP sent to the TLS port gets a plain 400 and the connection closes, as nginx
    /// answers it, instead of a handshake failure the client cannot read.
    @Test func plainHTTPToTheTlsPortGetsA400() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))
        let socket = try TestSocket(port: proxy.tlsPort)
        try socket.send("GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        let response = try #require(try socket.readMessage())
        #expect(response.status == 400)
        #expect(String(decoding: response.body, as: UTF8.self).contains("HTTPS port"))
        #expect(socket.isClosedOrReset())
        #expect(upstream.requestCount == 0)
        #expect(try proxy.curl("/after").status == 200)   // TLS clients are still served
    }

    @Test func aTlsConnectionIsKeptAliveForTheNextRequest() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))
        let url = "https://localhost:\(proxy.tlsPort)"
        // Two URLs in one curl: the second reuses the first's connection (0 new connects).
        let result = try Tool.run("curl", ["-sS", "--max-time", "10", "--cacert", certs.ca.path,
                                           "--resolve", "localhost:\(proxy.tlsPort):127.0.0.1",
                                           "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}:%{num_connects} ",
                                           "\(url)/one", "\(url)/two"])
        #expect(result.stdout == "200:1 200:0 ", "\(result.stderr)")
        #expect(upstream.requestCount == 2)
    }

    /// Requests that arrive in one TLS record are all answered: the ones after the first wait in
    /// OpenSSL's buffer, where no socket event announces them.
    @Test func pipelinedRequestsOverTlsAreAllAnswered() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]), workers: 1)
        let client = try InteractiveTool("openssl", ["s_client", "-connect", "127.0.0.1:\(proxy.tlsPort)", "-servername", "localhost",
                                                     "-quiet", "-nocommands"])
        defer { client.stop() }
        client.send((1...3).map { "GET /p/\($0) HTTP/1.1\r\nHost: localhost\r\n\r\n" }.joined())
        #expect(client.waitFor("HTTP/1.1 200", count: 3), "\(client.text)")
        for i in 1...3 { #expect(client.waitFor("X-Target: /p/\(i)"), "\(client.text)") }
        #expect(upstream.requestCount == 3)
    }

    @Test func aSlowTlsClientSendsAndGetsWholeBodies() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))
        var generator = SystemRandomNumberGenerator()
        let body = (0..<(2 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let file = try Binary.tempDirectory().appendingPathComponent("body")
        try Data(body).write(to: file)
        // 4 MB/s each way: the proxy meets a full socket buffer and OpenSSL's retries on both sides.
        let response = try proxy.curl("/slow", ["--data-binary", "@\(file.path)", "-H", "Expect:", "--limit-rate", "4M"])
        #expect(response.status == 200, "\(response)")
        #expect(response.bodyBytes.count == body.count)
        #expect(checksum(response.bodyBytes) == checksum(body))
    }

    @Test func theAccessLogSaysHttpsForTlsRequests() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let log = dir.appendingPathComponent("access.log")
        do {
            let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]),
                                       server: "access_log = \"\(log.path)\"")
            #expect(try request(port: proxy.port, "GET", "/over-plain").status == 200)
            #expect(try proxy.curl("/over-tls").status == 200)
            proxy.server.shutdown()
        }
        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let tls = try #require(lines.first { $0.contains("/over-tls") })
        let plain = try #require(lines.first { $0.contains("/over-plain") })
        #expect(tls.contains("https"), "\(tls)")
        #expect(!plain.contains("https"), "\(plain)")
    }

    @Test func sniPicksTheCertificateWhoseNamesMatchAndTheFirstIsTheDefault() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost, certs.api]))
        for (name, expected) in [("api.example", "api.example"), ("v2.api.example", "api.example"), ("localhost", "localhost"),
                                 ("unknown.example", "localhost")] {
            let handshake = try SClient.handshake(port: proxy.tlsPort, serverName: name, caFile: certs.ca)
            #expect(handshake.succeeded, "\(name): \(handshake)")
            #expect(handshake.subjectCN == expected, "\(name): \(handshake)")
        }
        let noSNI = try SClient.handshake(port: proxy.tlsPort, serverName: nil, caFile: certs.ca)
        #expect(noSNI.subjectCN == "localhost", "\(noSNI)")

        // curl verifies the chosen certificate against the name it asked for.
        for host in ["api.example", "v2.api.example"] {
            let result = try Curl.run("https://\(host):\(proxy.tlsPort)/sni",
                                      ["--cacert", certs.ca.path, "--resolve", "\(host):\(proxy.tlsPort):127.0.0.1"])
            #expect(result.exitCode == 0 && result.status == 200, "\(host): \(result)")
        }
        #expect(try Curl.run("https://127.0.0.1:\(proxy.tlsPort)/ip", ["--cacert", certs.ca.path]).status == 200)
    }

    @Test func sniDoesNotDependOnTheOrderOfThePairs() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.api, certs.localhost]))
        #expect(try SClient.handshake(port: proxy.tlsPort, serverName: "localhost").subjectCN == "localhost")
        #expect(try SClient.handshake(port: proxy.tlsPort, serverName: "unknown.example").subjectCN == "api.example")
        #expect(try SClient.handshake(port: proxy.tlsPort, serverName: nil).subjectCN == "api.example")
    }

    @Test func alpnPrefersH2ThenHttp11AndRefusesAnUnknownProtocol() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        // The default alpn, ["h2", "http/1.1"].
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))
        let http11 = try SClient.handshake(port: proxy.tlsPort, alpn: "http/1.1")
        #expect(http11.succeeded && http11.alpn == "http/1.1", "\(http11)")
        let both = try SClient.handshake(port: proxy.tlsPort, alpn: "http/1.1,h2")
        #expect(both.succeeded && both.alpn == "h2", "\(both)")
        let none = try SClient.handshake(port: proxy.tlsPort)
        #expect(none.succeeded && none.alpn == nil, "\(none)")
        let unknown = try SClient.handshake(port: proxy.tlsPort, alpn: "spdy/3.1")
        #expect(!unknown.succeeded, "\(unknown)")
        let curl = try proxy.curl("/alpn", ["--http2"])
        #expect(curl.exitCode == 0 && curl.status == 200 && curl.httpVersion == "2", "\(curl)")
        let curl11 = try proxy.curl("/alpn", ["--http1.1"])
        #expect(curl11.status == 200 && curl11.httpVersion == "1.1", "\(curl11)")
    }

    @Test func alpnHttp11OnlyRefusesAClientThatOffersOnlyH2() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]) + "\nalpn = [\"http/1.1\"]")
        let http11 = try SClient.handshake(port: proxy.tlsPort, alpn: "http/1.1")
        #expect(http11.succeeded && http11.alpn == "http/1.1", "\(http11)")
        let both = try SClient.handshake(port: proxy.tlsPort, alpn: "h2,http/1.1")
        #expect(both.succeeded && both.alpn == "http/1.1", "\(both)")
        let none = try SClient.handshake(port: proxy.tlsPort)
        #expect(none.succeeded && none.alpn == nil, "\(none)")
        let h2 = try SClient.handshake(port: proxy.tlsPort, alpn: "h2")
        #expect(!h2.succeeded, "\(h2)")

        // curl --http2 offers h2 and http/1.1, and speaks HTTP/1.1 when that is what was agreed.
        let curl = try proxy.curl("/alpn", ["--http2"])
        #expect(curl.exitCode == 0 && curl.status == 200, "\(curl)")
        #expect(curl.httpVersion == "1.1")
        let curl11 = try proxy.curl("/alpn", ["--http1.1"])
        #expect(curl11.status == 200 && curl11.httpVersion == "1.1", "\(curl11)")
    }

    @Test func minVersion13RefusesATls12Client() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let strict = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]) + "\nmin_version = \"1.3\"")
        let tls12 = try SClient.handshake(port: strict.tlsPort, extra: ["-tls1_2"])
        #expect(!tls12.succeeded, "\(tls12)")
        let curl12 = try strict.curl("/old", ["--tlsv1.2", "--tls-max", "1.2"])
        #expect(curl12.exitCode != 0 && curl12.status == 0, "\(curl12)")
        let tls13 = try SClient.handshake(port: strict.tlsPort)
        #expect(tls13.succeeded && tls13.protocolVersion == "TLSv1.3", "\(tls13)")
        #expect(try strict.curl("/new").status == 200)
        #expect(upstream.requestCount == 1)

        // The default accepts TLS 1.2.
        let lenient = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]))
        let accepted = try SClient.handshake(port: lenient.tlsPort, extra: ["-tls1_2"])
        #expect(accepted.succeeded && accepted.protocolVersion == "TLSv1.2", "\(accepted)")
        let curlAccepted = try lenient.curl("/old", ["--tlsv1.2", "--tls-max", "1.2"])
        #expect(curlAccepted.status == 200, "\(curlAccepted)")
    }

    @Test(arguments: ["1.2", "1.3"])
    func requiredClientAuthAdmitsOnlyCertificatesFromTheClientCA(maxVersion: String) throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: """
            \(certificatesKey([certs.localhost]))
            client_ca = "\(certs.clientCA.path)"
            client_auth = "required"
            """)
        let version = ["--tls-max", maxVersion]
        let anonymous = try proxy.curl("/anonymous", version)
        #expect(anonymous.exitCode != 0 && anonymous.status == 0, "no certificate: \(anonymous)")
        for (name, pair) in [("self-signed", certs.selfSigned), ("signed by the server CA", certs.stranger)] {
            let refused = try proxy.curl("/refused", version + ["--cert", pair.cert.path, "--key", pair.key.path])
            #expect(refused.exitCode != 0 && refused.status == 0, "\(name): \(refused)")
        }
        #expect(upstream.requestCount == 0)
        for pair in [certs.clientA, certs.clientB] {
            let admitted = try proxy.curl("/admitted", version + ["--cert", pair.cert.path, "--key", pair.key.path])
            #expect(admitted.exitCode == 0 && admitted.status == 200, "\(admitted)")
        }
        #expect(upstream.requestCount == 2)
    }

    @Test func optionalClientAuthAdmitsClientsWithoutACertificate() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: """
            \(certificatesKey([certs.localhost]))
            client_ca = "\(certs.clientCA.path)"
            client_auth = "optional"
            """)
        let anonymous = try proxy.curl("/anonymous")
        #expect(anonymous.exitCode == 0 && anonymous.status == 200, "\(anonymous)")
        let withCertificate = try proxy.curl("/a", ["--cert", certs.clientA.cert.path, "--key", certs.clientA.key.path])
        #expect(withCertificate.exitCode == 0 && withCertificate.status == 200, "\(withCertificate)")
        #expect(upstream.requestCount == 2)
    }

    /// Both clients come from 127.0.0.1: keyed by their certificates, one's window is not the other's.
    @Test func aRouteKeyedByTheCertificateFingerprintTracksClientsApart() throws {
        let certs = try TestCertificates.shared()
        // 401 when the request says so, else 200.
        let upstream = try TestUpstream { request, socket in
            try TestUpstream.respond(socket, status: request.header("X-Fail") == nil ? 200 : 401, body: [])
            return true
        }
        defer { upstream.stop() }
        func proxy(key: String) throws -> TLSHarness {
            try TLSHarness(upstreamPorts: [upstream.port], tls: """
                \(certificatesKey([certs.localhost]))
                client_ca = "\(certs.clientCA.path)"
                client_auth = "required"
                """, rest: """
                [backoff]
                base = "30s"
                max = "30s"
                jitter = 0.0
                [[route]]
                name = "api"
                path = "/api/"
                key = [\(key)]
                """)
        }
        let a = certs.clientA, b = certs.clientB
        func get(_ proxy: TLSHarness, _ client: CertificatePair, fail: Bool = false) throws -> CurlResult {
            try proxy.curl("/api/thing", ["--cert", client.cert.path, "--key", client.key.path] + (fail ? ["-H", "X-Fail: 1"] : []))
        }

        let byCertificate = try proxy(key: "\"tls:fingerprint\"")
        #expect(try get(byCertificate, a, fail: true).status == 401)
        let blocked = try get(byCertificate, a)
        #expect(blocked.status == 429, "\(blocked)")
        #expect(Int(blocked.header("Retry-After") ?? "") ?? 0 > 20)
        #expect(try get(byCertificate, b).status == 200, "client B has a certificate of its own")
        #expect(try get(byCertificate, b).status == 200)
        #expect(try get(byCertificate, a).status == 429, "client A stays blocked")
        #expect(upstream.requestCount == 3)

        // The same two clients keyed by address are one client.
        let byAddress = try proxy(key: "\"ip\"")
        #expect(try get(byAddress, a, fail: true).status == 401)
        #expect(try get(byAddress, b).status == 429)
    }

    @Test func handshakeTimeoutClosesASilentClientAndAPartialClientHello() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]) + "\nhandshake_timeout = \"1s\"")
        // A TLS record header announcing a 512-byte handshake message, and the first bytes of it.
        let partialHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]
        for (name, bytes) in [("silent", [UInt8]()), ("partial ClientHello", partialHello)] {
            let socket = try TestSocket(port: proxy.tlsPort, timeout: 10)
            if !bytes.isEmpty { try socket.send(bytes) }
            let start = Date()
            // Another client is served while this one hangs.
            #expect(try proxy.curl("/meanwhile").status == 200)
            #expect(socket.isClosedByPeer(), "\(name): still open")
            let elapsed = Date().timeIntervalSince(start)
            #expect(elapsed > 0.5 && elapsed < 5, "\(name): closed after \(elapsed) s")
        }
        var text = ""
        let counted = eventually {
            text = (try? proxy.metrics()) ?? ""
            return metricValue(text, #"breakwater_tls_handshakes_total{result="timeout"}"#) == 2
        }
        #expect(counted, "\(text)")
    }

    @Test func theHandshakeTimeoutEndsWithTheHandshake() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]) + "\nhandshake_timeout = \"1s\"")
        let client = try InteractiveTool("openssl", ["s_client", "-connect", "127.0.0.1:\(proxy.tlsPort)", "-servername", "localhost",
                                                     "-nocommands", "-ign_eof"])
        defer { client.stop() }
        #expect(client.waitFor("Verify return code"), "\(client.text)")
        // Idle past the handshake timeout (well within idle_timeout), then ask.
        usleep(1_800_000)
        client.send("GET /late HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(client.waitFor("HTTP/1.1 200"), "\(client.text)")
        #expect(upstream.requestCount == 1)
    }

    @Test func handshakesAndCertificateExpiriesAreInTheMetrics() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost, certs.shortLived])
                                   + "\nhandshake_timeout = \"1s\"")
        #expect(try proxy.curl("/one").status == 200)
        #expect(try proxy.curl("/two").status == 200)
        #expect(try !SClient.handshake(port: proxy.tlsPort, alpn: "spdy/3.1").succeeded)
        let silent = try TestSocket(port: proxy.tlsPort, timeout: 10)
        #expect(silent.isClosedByPeer())

        let ok = #"breakwater_tls_handshakes_total{result="ok"}"#
        let failed = #"breakwater_tls_handshakes_total{result="failed"}"#
        let timeout = #"breakwater_tls_handshakes_total{result="timeout"}"#
        var text = ""
        let counted = eventually {
            text = (try? proxy.metrics()) ?? ""
            return metricValue(text, timeout) == 1
        }
        #expect(counted, "\(text)")
        #expect(metricValue(text, ok) == 2)
        #expect(metricValue(text, failed) == 1)

        let expiries = metricSeries(text, "breakwater_tls_certificate_expiry_timestamp_seconds")
        #expect(expiries.count == 2, "\(expiries)")
        #expect(expiries.allSatisfy { $0.labels.hasPrefix("name=\"") }, "\(expiries)")
        for cert in [certs.localhost.cert, certs.shortLived.cert] {
            let expected = try TestCertificates.expiry(of: cert)
            #expect(expiries.contains { abs($0.value - expected) < 1 }, "\(cert.lastPathComponent) expires at \(expected): \(expiries)")
        }
        let check = try Tool.run("promtool", ["check", "metrics"], stdin: Array(text.utf8))
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func tlsAlsoListensOnIPv6Loopback() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let port = Binary.freePort()
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, rest: """
            [tls]
            listen = "[::1]:\(port)"
            \(certificatesKey([certs.localhost]))
            """)
        let result = try withExtendedLifetime(proxy) { try Curl.run("https://[::1]:\(port)/v6", ["--cacert", certs.ca.path]) }
        #expect(result.exitCode == 0 && result.status == 200, "\(result)")
    }
}
