import Foundation
import Testing

/// The shield speaks gRPC to a gRPC client (grpcio over h2c): a failed call's `grpc-status` moves
/// the tracker when `on` lists it as `"grpc:N"`, and a blocked call is answered trailers-only with
/// RESOURCE_EXHAUSTED and `grpc-retry-pushback-ms`, which a client with a retry policy waits out.
/// The upstream here answers gRPC's trailers-only form over HTTP/1.1 (its grpc-status in the head).
@Suite struct GRPCShieldTests {
    /// An upstream whose every call fails with `code` (16: UNAUTHENTICATED), trailers-only.
    private static func failing(_ code: Int) throws -> TestUpstream {
        try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 200, reason: "OK",
                                     headers: [("Content-Type", "application/grpc"), ("grpc-status", "\(code)"),
                                               ("grpc-message", "token expired")], body: [])
            return true
        }
    }

    private static func proxy(_ upstream: TestUpstream, backoff: String) throws -> TLSHarness {
        try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true", rest: "[backoff]\n\(backoff)\n")
    }

    @Test func aGRPCStatusInOnBlocksAndTheBlockedCallGetsResourceExhaustedWithTheExactPushback() throws {
        let upstream = try Self.failing(16)
        defer { upstream.stop() }
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"5s\"\njitter = 0.0")
        let result = try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/Call", "3"])
        let calls = GRPCPeer.calls(result.stdout)
        #expect(calls.map(\.code) == ["UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"], "\(result)")
        #expect(calls.first?.line.contains("token expired") == true)
        for call in calls.dropFirst() {
            let pushback = GRPCPeer.field(call.line, "pushback").flatMap { Int($0) } ?? -1
            #expect(pushback > 4_000 && pushback <= 5_000, "\(call.line)")
        }
        #expect(upstream.requestCount == 1)
        let metrics = try proxy.metrics()
        #expect(metricValue(metrics, #"breakwater_requests_total{route="default",outcome="shielded",protocol="h2"}"#) == 2,
                "\(metrics)")
    }

    @Test func theTrailersOnlyAnswerIsHTTP200WithGRPCFieldsAndAPlainClientStillGets429() throws {
        let upstream = try Self.failing(16)
        defer { upstream.stop() }
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"3s\"\njitter = 0.0")
        let grpcHeaders = ["-X", "POST", "-H", "content-type: application/grpc+proto", "-H", "te: trailers",
                           "--data-binary", "@/dev/null"]
        let first = try Curl.run("http://127.0.0.1:\(proxy.port)/pkg.Service/Call", ["--http2-prior-knowledge"] + grpcHeaders)
        #expect(first.status == 200 && first.header("grpc-status") == "16", "\(first)")
        let blocked = try Curl.run("http://127.0.0.1:\(proxy.port)/pkg.Service/Call", ["--http2-prior-knowledge"] + grpcHeaders)
        #expect(blocked.httpVersion == "2" && blocked.status == 200, "\(blocked)")
        #expect(blocked.header("content-type") == "application/grpc")
        #expect(blocked.header("grpc-status") == "8")
        #expect(blocked.header("grpc-message") == "too many requests: backoff")
        let pushback = blocked.header("grpc-retry-pushback-ms").flatMap { Int($0) } ?? -1
        #expect(pushback > 2_000 && pushback <= 3_000, "\(blocked.headers)")
        #expect(blocked.bodyBytes.isEmpty)
        // The same client without gRPC's content-type gets the ordinary 429.
        let plain = try Curl.run("http://127.0.0.1:\(proxy.port)/pkg.Service/Call", ["--http2-prior-knowledge"])
        #expect(plain.status == 429 && plain.header("retry-after") == "3", "\(plain)")
        #expect(upstream.requestCount == 1)
    }

    @Test func aGRPCStatusLeftOutOfOnClearsTheClient() throws {
        let upstream = try Self.failing(5)   // NOT_FOUND: the client's own mistake, not listed
        defer { upstream.stop() }
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"5s\"")
        let calls = GRPCPeer.calls(try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/Call", "3"]).stdout)
        #expect(calls.map(\.code) == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"])
        #expect(upstream.requestCount == 3)
    }

    @Test func aClientWithARetryPolicyWaitsOutThePushbackAndTheUpstreamSeesOneCallPerWindow() throws {
        let upstream = try Self.failing(16)
        defer { upstream.stop() }
        let window = 1.0
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"1s\"\nmax = \"1s\"\njitter = 0.0")
        let seconds = 3.5
        let started = Date()
        let result = try GRPCPeer.run("loop", port: proxy.port, ["/pkg.Service/Call", "\(seconds)"])
        let elapsed = Date().timeIntervalSince(started)
        let calls = GRPCPeer.calls(result.stdout)
        // Each call is refused (RESOURCE_EXHAUSTED) until its pushback has passed, then retried
        // and forwarded: it ends with the upstream's UNAUTHENTICATED. A client that ignored the
        // pushback would spend its 5 attempts (10 to 50 ms apart) inside the window and end with
        // RESOURCE_EXHAUSTED.
        #expect(calls.count >= 3, "\(result)")
        #expect(calls.allSatisfy { $0.code == "UNAUTHENTICATED" }, "\(result)")
        #expect(Double(upstream.requestCount) <= (elapsed / window).rounded(.up) + 1, "\(upstream.requestCount) in \(elapsed) s")
        #expect(upstream.requestCount == calls.count)
        let shielded = metricValue(try proxy.metrics(), #"breakwater_requests_total{route="default",outcome="shielded",protocol="h2"}"#) ?? 0
        #expect(shielded >= Double(calls.count - 1))
    }

    @Test func whileTheCircuitIsOpenACallGetsUnavailableWithThePushback() throws {
        let port = TestUpstream.deadPort()
        let proxy = try TLSHarness(upstreamPorts: [port], tls: nil, server: "h2c = true", upstream: "retries = 0",
                                   rest: "[clients]\nkey = [\"header:authorization\"]\n[circuit]\nbase = \"2s\"\nmax = \"2s\"\njitter = 0.0\n")
        // Three clients meet the refused connection: the route's circuit opens.
        for token in ["a", "b", "c"] {
            let failed = try Curl.run("http://127.0.0.1:\(proxy.port)/pkg.Service/Call",
                                      ["--http2-prior-knowledge", "-H", "authorization: \(token)"])
            #expect(failed.status == 502, "\(failed)")
        }
        let calls = GRPCPeer.calls(try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/Call", "1"]).stdout)
        #expect(calls.map(\.code) == ["UNAVAILABLE"])
        let pushback = calls.first.flatMap { GRPCPeer.field($0.line, "pushback") }.flatMap { Int($0) } ?? -1
        #expect(pushback > 1_000 && pushback <= 2_000, "\(calls)")
    }
}
