import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// HTTP/2 to clients, with real clients: curl (`--http2-prior-knowledge` on the plain listener
/// with `h2c = true`, `--http2` through ALPN on the TLS listener), nghttp and h2load. Every stream
/// takes the path of an HTTP/1.1 request: the same route, identity and shield, the upstream
/// reached over HTTP/1.1.
@Suite struct HTTP2Tests {
    private static func h2c(_ port: UInt16, _ path: String, _ arguments: [String] = []) throws -> CurlResult {
        try Curl.run("http://127.0.0.1:\(port)\(path)", ["--http2-prior-knowledge"] + arguments)
    }

    private static func http11(_ port: UInt16, _ path: String, _ arguments: [String] = []) throws -> CurlResult {
        try Curl.run("http://127.0.0.1:\(port)\(path)", ["--http1.1"] + arguments)
    }

    private static let deviceRoute = """
        [[route]]
        name = "device"
        path = "/api/v1/device/"
        key = ["header:Authorization", "route"]

        """

    @Test func priorKnowledgeOnThePlainListenerBesideHTTP11() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try TLSHarness(upstreamPorts: [api.port], tls: nil, server: "h2c = true")
        let h2 = try Self.h2c(proxy.port, "/api/v1/device/valid-1")
        #expect(h2.exitCode == 0 && h2.httpVersion == "2", "\(h2)")
        #expect(h2.status == 200)
        #expect(h2.body == #"{"device":"ok"}"#)
        #expect(h2.header("Content-Type") == "application/json")
        // The same port still speaks HTTP/1.1 to a client that does not open with the preface.
        let h1 = try Self.http11(proxy.port, "/api/v1/device/valid-1")
        #expect(h1.httpVersion == "1.1" && h1.status == 200, "\(h1)")
    }

    @Test func withoutH2cThePrefaceIsRefusedAsHTTP11() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try TLSHarness(upstreamPorts: [api.port], tls: nil)
        let result = try PythonH2.run("bad-preface", port: proxy.port)
        let h2 = try Self.h2c(proxy.port, "/healthz")
        #expect(h2.exitCode != 0 || h2.httpVersion != "2", "\(h2)")
        #expect(result.stdout.contains("HTTP1 HTTP/1.1 400"), "\(result.stdout)\(result.stderr)")
        #expect(try Self.http11(proxy.port, "/healthz").status == 200)
    }

    @Test func alpnChoosesH2OnTheTLSListener() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port],
                                   tls: certificatesKey([certs.localhost]) + "\nalpn = [\"h2\", \"http/1.1\"]")
        let h2 = try proxy.curl("/things/1?q=a", ["--http2", "-b", "a=1; b=2", "-H", "X-Forwarded-Proto: http"])
        #expect(h2.exitCode == 0 && h2.httpVersion == "2", "\(h2)")
        #expect(h2.status == 200)
        #expect(h2.header("X-Target") == "/things/1?q=a")
        // What the upstream got is an HTTP/1.1 request: Host from :authority, one Cookie line,
        // the forwarding fields of a TLS request, no pseudo-header.
        let seen = try #require(upstream.requests.last)
        #expect(seen.startLine == "GET /things/1?q=a HTTP/1.1")
        #expect(seen.all("Host") == ["localhost:\(proxy.tlsPort)"])
        #expect(seen.all("Cookie") == ["a=1; b=2"])
        #expect(seen.all("X-Forwarded-Proto") == ["https"])
        #expect(seen.header("Via") == "1.1 breakwater")
        #expect(!seen.headers.contains { $0.name.hasPrefix(":") })
        // A client that asks for HTTP/1.1 gets it.
        let h1 = try proxy.curl("/h1", ["--http1.1"])
        #expect(h1.httpVersion == "1.1" && h1.status == 200, "\(h1)")
        // nghttp, nghttp2's own client, over TLS.
        let nghttp = try Tool.run("nghttp", ["-v", "https://127.0.0.1:\(proxy.tlsPort)/nghttp"])
        #expect(nghttp.status == 0, "\(nghttp.stderr)")
        #expect(nghttp.stdout.contains(":status: 200"), "\(nghttp.stdout)")
        #expect(nghttp.stdout.contains("x-target: /nghttp"))
    }

    @Test func theShieldAnswersAStreamAsItAnswersAnHTTP11Request() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try TLSHarness(upstreamPorts: [api.port], tls: nil,
                                   server: "h2c = true\ncors_origins = [\"https://app.example\"]",
                                   rest: "[backoff]\nbase = \"5s\"\njitter = 0.0\n" + Self.deviceRoute)
        let auth = ["-H", "Authorization: Bearer expired-1"]
        // The upstream's 401 reaches the client unchanged.
        let first = try Self.h2c(proxy.port, "/api/v1/device/expired-1", auth)
        #expect(first.status == 401 && first.httpVersion == "2", "\(first)")
        #expect(first.header("WWW-Authenticate") == #"Bearer error="invalid_token""#)
        // Then the shield answers, over HTTP/2 and over HTTP/1.1 alike: one client, one window.
        let h2 = try Self.h2c(proxy.port, "/api/v1/device/expired-1", auth)
        let h1 = try Self.http11(proxy.port, "/api/v1/device/expired-1", auth)
        #expect(h2.status == 429 && h1.status == 429, "\(h2) \(h1)")
        #expect(h2.body == h1.body)
        #expect(h2.body.hasPrefix(#"{"title":"Too Many Requests","status":429,"reason":"backoff","retry_after":"#), "\(h2.body)")
        for name in ["Retry-After", "RateLimit", "Content-Type", "Cache-Control", "Content-Length"] {
            #expect(h2.header(name) != nil && h2.header(name) == h1.header(name), "\(name)")
        }
        #expect(h2.header("Retry-After") == "5")
        #expect(h2.header("Date") != nil && first.header("Date") != nil, "own and relayed answers are dated")
        // A body-carrying request of the blocked client is answered from its head, before any body
        // byte is sent, and the client is told to stop sending it (RST_STREAM NO_ERROR, RFC 9113
        // 8.1). Frames written by hand: curl 7.88 reports such an early answer as an error when it
        // has not finished its upload.
        let early = try PythonH2.run("early", port: proxy.port, ["/api/v1/device/expired-1", "Bearer expired-1"])
        #expect(early.stdout.contains("STATUS 429 BODY {\"title\":\"Too Many Requests\""), "\(early.stdout)\(early.stderr)")
        #expect(early.stdout.contains("RESET 0"), "\(early.stdout)")
        // Another client is not blocked.
        let other = try Self.h2c(proxy.port, "/api/v1/device/valid-2", ["-H", "Authorization: Bearer valid-2"])
        #expect(other.status == 200)
        // Counted by protocol: two streams and one HTTP/1.1 request shielded, two streams forwarded.
        let metrics = try proxy.metrics()
        #expect(metricValue(metrics, #"breakwater_requests_total{route="device",outcome="shielded",protocol="h2"}"#) == 2, "\(metrics)")
        #expect(metricValue(metrics, #"breakwater_requests_total{route="device",outcome="shielded",protocol="http1"}"#) == 1)
        #expect(metricValue(metrics, #"breakwater_requests_total{route="device",outcome="forwarded",protocol="h2"}"#) == 2)
        #expect(metricValue(metrics, #"breakwater_requests_total{route="device",outcome="forwarded",protocol="http1"}"#) == 0)
        // Every stream and connection closed again (curl is gone).
        #expect(eventually(5) {
            let text = (try? proxy.metrics()) ?? ""
            return metricValue(text, "breakwater_h2_streams_active") == 0 && metricValue(text, "breakwater_h2_connections_active") == 0
        })
        // A page of a listed origin can read the 429 over HTTP/2 too.
        let page = try Self.h2c(proxy.port, "/api/v1/device/expired-1", auth + ["-H", "Origin: https://app.example"])
        #expect(page.status == 429 && page.header("Access-Control-Allow-Origin") == "https://app.example", "\(page)")
        #expect(page.header("Access-Control-Expose-Headers") == "Retry-After, RateLimit")
    }

    @Test func bodiesGoThroughByteForByteBothWays() throws {
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true")
        let dir = try Binary.tempDirectory()
        var generator = SystemRandomNumberGenerator()
        let body = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let file = dir.appendingPathComponent("body")
        try Data(body).write(to: file)
        let post = try Self.h2c(proxy.port, "/upload", ["--data-binary", "@\(file.path)", "-H", "Content-Type: application/octet-stream"])
        #expect(post.status == 200 && post.httpVersion == "2", "\(post)")
        #expect(post.header("X-Method") == "POST")
        #expect(upstream.requests.last.map { checksum($0.body) } == checksum(body))
        #expect(upstream.requests.last?.header("Content-Length") == "\(body.count)")
        #expect(checksum(post.bodyBytes) == checksum(body))
    }

    @Test func limitsOfHTTP11ApplyToStreams() throws {
        let upstream = try TestUpstream { request, socket in
            // HEAD: the length of what a GET would get, and no body.
            guard request.method == "HEAD" else { return try TestUpstream.echo(request, socket) }
            try socket.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            return true
        }
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true\nmax_body_bytes = \"64KB\"")
        let big = [UInt8](repeating: 0x61, count: 100_000)
        let dir = try Binary.tempDirectory()
        let file = dir.appendingPathComponent("body")
        try Data(big).write(to: file)
        let tooLarge = try Self.h2c(proxy.port, "/upload", ["--data-binary", "@\(file.path)"])
        #expect(tooLarge.status == 413, "\(tooLarge)")
        // The same path rules: an encoded slash is refused, TRACE too.
        #expect(try Self.h2c(proxy.port, "/a%2Fb").status == 400)
        #expect(try Self.h2c(proxy.port, "/x", ["-X", "TRACE"]).status == 405)
        #expect(upstream.requestCount == 0)
        // HEAD gets the headers, the upstream's Content-Length among them, and no body (curl, told
        // 5 bytes follow, reports the stream's end before them as exit 18).
        let head = try Self.h2c(proxy.port, "/head", ["-X", "HEAD"])
        #expect(head.status == 200 && head.bodyBytes.isEmpty, "\(head)")
        #expect(head.header("Content-Length") == "5")
        // A dead upstream is a 502, over HTTP/2 too.
        let dead = try TLSHarness(upstreamPorts: [TestUpstream.deadPort()], tls: nil, server: "h2c = true",
                                  upstream: "retries = 0")
        #expect(try Self.h2c(dead.port, "/down").status == 502)
    }

    @Test func h2loadMultiplexesAHundredStreamsPerConnection() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try TLSHarness(upstreamPorts: [api.port], tls: nil, server: "h2c = true")
        let result = try Tool.run("h2load", ["-n", "4000", "-c", "2", "-m", "100", "http://127.0.0.1:\(proxy.port)/api/v1/device/valid-1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed"), "\(result.stdout)")
        #expect(result.stdout.contains("status codes: 4000 2xx"), "\(result.stdout)")
        // Served as HTTP/1.1 upstream, over the keep-alive pool.
        #expect(try Self.http11(proxy.port, "/api/v1/device/valid-1").status == 200)
    }
}
