import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// gRPC end to end: grpcio clients over h2c to Breakwater (`[server] h2c = true`), Breakwater to a
/// grpcio server over HTTP/2 (h2c, or h2 by ALPN with `[upstream] tls = true`). Messages stream
/// both ways, trailers come back, deadlines hold, and an upstream that dies is UNAVAILABLE.
@Suite struct GRPCTests {
    private static func proxy(_ upstream: GRPCServer, serverKeys: String = "", upstreamKeys: String = "",
                              rest: String = "") throws -> TLSHarness {
        try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true\n" + serverKeys, upstream: upstreamKeys,
                       rest: rest)
    }

    /// A route under /h2/ that goes to the upstream over HTTP/2 whatever the request.
    private static let h2Route = """
        [[route]]
        name = "h2"
        path = "/h2/"
        upstream_protocol = "h2"

        """

    @Test func aUnaryCallGoesThroughWithItsTrailers() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream)
        let small = GRPCPeer.calls(try GRPCPeer.run("echo", port: proxy.port, ["/pkg.Service/Echo", "10"]).stdout)
        #expect(small.map(\.line) == ["CALL OK length=10 trailer=10"])
        // 3 MB each way: more than every flow-control window on the path.
        let large = GRPCPeer.calls(try GRPCPeer.run("echo", port: proxy.port, ["/pkg.Service/Echo", "3000000"]).stdout)
        #expect(large.map(\.line) == ["CALL OK length=3000000 trailer=3000000"])
        #expect(upstream.served("Echo") == 2)
        let metrics = try proxy.metrics()
        #expect(metricValue(metrics, #"breakwater_requests_total{route="default",outcome="forwarded",protocol="h2"}"#) == 2)
        #expect(metricValue(metrics, #"breakwater_upstream_responses_total{route="default",class="2xx"}"#) == 2)
    }

    @Test func concurrentCallsShareAFewUpstreamConnections() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream)
        let calls = GRPCPeer.calls(try GRPCPeer.run("parallel", port: proxy.port, ["/pkg.Service/Echo", "100"]).stdout)
        #expect(calls.count == 100 && calls.allSatisfy { $0.code == "OK" }, "\(calls.filter { $0.code != "OK" })")
        #expect(upstream.served("Echo") == 100)
        // One client connection lands on one worker: its 100 streams go over at most the
        // worker's 4 connections to the server.
        let peers = upstream.peers("Echo")
        #expect(!peers.isEmpty && peers.count <= 4, "\(peers)")
    }

    @Test func aBidirectionalStreamTakesTurns() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream)
        // Each message goes only after the answer to the one before: a proxy that waited for the
        // end of the request body would never pass the first.
        let result = try GRPCPeer.run("bidi", port: proxy.port, ["/pkg.Service/Chat", "5"])
        #expect(result.stdout.contains("REPLY echo:m0\nREPLY echo:m1\nREPLY echo:m2\nREPLY echo:m3\nREPLY echo:m4\n"), "\(result)")
        #expect(result.stdout.contains("DONE OK 5"), "\(result)")
        #expect(upstream.served("Chat") == 1)
    }

    @Test func theClientsDeadlineHoldsAndTheProxyGoesOn() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream)
        let result = try GRPCPeer.run("deadline", port: proxy.port, ["/pkg.Service/Slow", "1", "3"])
        let call = try #require(GRPCPeer.calls(result.stdout).first, "\(result)")
        #expect(call.code == "DEADLINE_EXCEEDED")
        let elapsed = GRPCPeer.field(call.line, "elapsed").flatMap { Double($0) } ?? 99
        #expect(elapsed >= 0.9 && elapsed < 2.5, "\(call.line)")
        // The next call is served.
        let next = GRPCPeer.calls(try GRPCPeer.run("echo", port: proxy.port, ["/pkg.Service/Echo", "5"]).stdout)
        #expect(next.map(\.code) == ["OK"])
    }

    @Test func aCallTheClientCancelsIsCancelledUpstream() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream)
        // No deadline: only the client's RST_STREAM, passed on by Breakwater, can end the call
        // upstream before the server wakes after 2 s.
        let result = try GRPCPeer.run("cancel", port: proxy.port, ["/pkg.Service/Slow", "2", "0.5"])
        #expect(result.stdout.contains("CANCELLED True"), "\(result)")
        #expect(eventually(5) { upstream.output.contains("SLOW cancelled") }, "\(upstream.output)")
    }

    @Test func anUpstreamThatDiesIsUnavailable() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream, upstreamKeys: "retries = 0")
        #expect(GRPCPeer.calls(try GRPCPeer.run("echo", port: proxy.port, ["/pkg.Service/Echo", "5"]).stdout).map(\.code) == ["OK"])
        upstream.stop()
        let result = try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/Echo", "2"])
        let calls = GRPCPeer.calls(result.stdout)
        #expect(calls.map(\.code) == ["UNAVAILABLE", "UNAVAILABLE"], "\(result)")
        let metrics = try proxy.metrics()
        #expect((metricValue(metrics, #"breakwater_upstream_responses_total{route="default",class="connect_error"}"#) ?? 0)
                + (metricValue(metrics, #"breakwater_upstream_responses_total{route="default",class="5xx"}"#) ?? 0) == 2,
                "\(metrics)")
    }

    @Test func anH2RouteTakesPlainRequestsOverHTTP2WithTheirTrailers() throws {
        let upstream = try GRPCServer(plain: true)
        let proxy = try Self.proxy(upstream, rest: Self.h2Route)
        let url = "http://127.0.0.1:\(proxy.port)/h2/echo"
        let h1 = try Curl.run(url, ["--http1.1", "-d", "from h1"])
        #expect(h1.status == 200 && h1.body == "POST /h2/echo from h1", "\(h1) \(h1.body)")
        // curl prints the trailers after the body, in its header dump.
        let h2 = try Tool.run("curl", ["-sS", "--max-time", "10", "--http2-prior-knowledge", "-d", "from h2", "-D", "-", url])
        let text = h2.stdout.replacingOccurrences(of: "\r\n", with: "\n")
        #expect(text.hasPrefix("HTTP/2 200"), "\(text)")
        let body = text.range(of: "\n\nPOST /h2/echo from h2"), trailer = text.range(of: "x-checksum: 21\n")
        #expect(body != nil && trailer != nil && body!.upperBound <= trailer!.lowerBound, "\(text)")
        #expect(upstream.served("POST") == 2)
    }

    /// The upstream reads nothing while the whole body waits in the proxy, then opens its windows
    /// once by far more than the proxy puts on the socket in one go (256 KiB), and never again:
    /// the proxy must go on making frames after a write the kernel took whole, with nothing more
    /// to read from either side to wake it.
    @Test func aBodyWaitingForTheUpstreamsWindowGoesWholeWhenItOpensOnce() throws {
        let upstream = try GRPCServer(plain: true)
        let proxy = try Self.proxy(upstream, rest: Self.h2Route)
        let result = try Self.uploadHeld(through: proxy, file: "body-3mb")
        #expect(result.stdout == "POST /h2/hold 3000000 200", "\(result)")
        #expect(upstream.served("POST") == 1)
    }

    /// curl posts 3 MB to the upstream's /h2/hold (read only after a second) through `proxy`,
    /// over h2c; its output is the answer's body, a space and the status.
    private static func uploadHeld(through proxy: TLSHarness, file name: String) throws -> Binary.Result {
        let file = try Binary.tempDirectory().appendingPathComponent(name)
        try Data(repeating: UInt8(ascii: "b"), count: 3_000_000).write(to: file)
        return try Tool.run("curl", ["-sS", "--max-time", "10", "--http2-prior-knowledge", "--data-binary", "@\(file.path)",
                                     "-w", " %{http_code}", "http://127.0.0.1:\(proxy.port)/h2/hold"])
    }

    /// The same held body, through a proxy that may keep only 1 MB of it waiting for the
    /// upstream: the client is slowed down by flow control (its stream's window opens as the
    /// upstream takes the bytes) instead of the proxy buffering what the upstream does not read
    /// yet and giving up with 413 past 1 MB.
    @Test func aBodyStreamingFasterThanTheUpstreamReadsIsSlowedNotBuffered() throws {
        let upstream = try GRPCServer(plain: true)
        let proxy = try Self.proxy(upstream, serverKeys: "max_body_bytes = \"1MB\"", rest: Self.h2Route)
        let result = try Self.uploadHeld(through: proxy, file: "body-3mb-slowed")
        #expect(result.stdout == "POST /h2/hold 3000000 200", "\(result)")
        #expect(upstream.served("POST") == 1)
    }

    @Test func anH2UpstreamThatNeverAnswersTimesOutWith504() throws {
        let upstream = try GRPCServer(plain: true)
        let proxy = try Self.proxy(upstream, upstreamKeys: "timeout = \"1s\"", rest: Self.h2Route)
        let started = Date()
        let stalled = try Curl.run("http://127.0.0.1:\(proxy.port)/h2/stall", ["--http2-prior-knowledge"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(stalled.status == 504, "\(stalled)")
        #expect(elapsed >= 0.9 && elapsed < 5, "\(elapsed) s")
        // The connection goes on carrying other streams.
        let next = try Tool.run("curl", ["-sS", "--max-time", "10", "--http2-prior-knowledge", "http://127.0.0.1:\(proxy.port)/h2/next"])
        #expect(next.stdout == "GET /h2/next ", "\(next)")
        #expect(metricValue(try proxy.metrics(), #"breakwater_upstream_responses_total{route="h2",class="timeout"}"#) == 1)
    }

    @Test func theUpstreamIsReachedOverTLSWithALPN() throws {
        let certs = try TestCertificates.shared()
        let upstream = try GRPCServer(tls: certs.localhost)
        let proxy = try Self.proxy(upstream, upstreamKeys: """
            tls = true
            tls_ca = "\(certs.ca.path)"
            """)
        let calls = GRPCPeer.calls(try GRPCPeer.run("echo", port: proxy.port, ["/pkg.Service/Echo", "100"]).stdout)
        #expect(calls.map(\.line) == ["CALL OK length=100 trailer=100"])
        let bidi = try GRPCPeer.run("bidi", port: proxy.port, ["/pkg.Service/Chat", "3"])
        #expect(bidi.stdout.contains("DONE OK 3"), "\(bidi)")
    }
}
