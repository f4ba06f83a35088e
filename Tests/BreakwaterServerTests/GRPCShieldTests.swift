import Foundation
import Testing

/// The shield speaks gRPC to a gRPC client (grpcio over h2c, a grpcio server upstream): a failed
/// call's `grpc-status` moves the tracker when `on` lists it as `"grpc:N"`, and a blocked call is
/// answered trailers-only with RESOURCE_EXHAUSTED and `grpc-retry-pushback-ms`, which a client with
/// a retry policy waits out.
@Suite struct GRPCShieldTests {
    private static func proxy(_ upstream: GRPCServer, backoff: String) throws -> TLSHarness {
        try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true", rest: "[backoff]\n\(backoff)\n")
    }

    @Test func aGRPCStatusInOnBlocksAndTheBlockedCallGetsResourceExhaustedWithTheExactPushback() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"5s\"\njitter = 0.0")
        let result = try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/Auth", "3"])
        let calls = GRPCPeer.calls(result.stdout)
        #expect(calls.map(\.code) == ["UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"], "\(result)")
        #expect(calls.first?.line.contains("token expired") == true)
        for call in calls.dropFirst() {
            let pushback = GRPCPeer.field(call.line, "pushback").flatMap { Int($0) } ?? -1
            #expect(pushback > 4_000 && pushback <= 5_000, "\(call.line)")
        }
        #expect(upstream.served("Auth") == 1)
        let metrics = try proxy.metrics()
        #expect(metricValue(metrics, #"breakwater_requests_total{route="default",outcome="shielded",protocol="h2"}"#) == 2,
                "\(metrics)")
    }

    @Test func theTrailersOnlyAnswerIsHTTP200WithGRPCFieldsAndAPlainClientStillGets429() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"3s\"\njitter = 0.0")
        // One empty message, framed as gRPC frames it: no compression, length 0. nghttp sends it
        // right behind the HEADERS (curl may be told RST_STREAM NO_ERROR after the answer, as RFC
        // 9113 8.1 allows, while it still uploads, and then fails the transfer).
        let message = try Binary.tempDirectory().appendingPathComponent("message")
        try Data([0, 0, 0, 0, 0]).write(to: message)
        func call() throws -> [String: String] {
            let result = try Tool.run("nghttp", ["-v", "-d", message.path, "-H", "content-type: application/grpc+proto",
                                                 "-H", "te: trailers", "http://127.0.0.1:\(proxy.port)/pkg.Service/Auth"])
            var fields: [String: String] = [:]
            for line in result.stdout.split(separator: "\n") {
                guard let at = line.range(of: ") "), line.contains("recv (stream_id=") else { continue }
                let field = line[at.upperBound...]
                guard let colon = field.dropFirst().firstIndex(of: ":") else { continue }
                fields[String(field[..<colon])] = field[field.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return fields
        }
        let first = try call()
        #expect(first[":status"] == "200" && first["grpc-status"] == "16", "\(first)")
        let blocked = try call()
        #expect(blocked[":status"] == "200", "\(blocked)")
        #expect(blocked["content-type"] == "application/grpc")
        #expect(blocked["grpc-status"] == "8")
        #expect(blocked["grpc-message"] == "too many requests: backoff")
        #expect(blocked["content-length"] == "0")
        let pushback = blocked["grpc-retry-pushback-ms"].flatMap { Int($0) } ?? -1
        #expect(pushback > 2_000 && pushback <= 3_000, "\(blocked)")
        // The same client without gRPC's content-type gets the ordinary 429.
        let plain = try Curl.run("http://127.0.0.1:\(proxy.port)/pkg.Service/Auth", ["--http2-prior-knowledge"])
        #expect(plain.status == 429 && plain.header("retry-after") == "3", "\(plain)")
        #expect(upstream.served("Auth") == 1)
    }

    @Test func aGRPCStatusLeftOutOfOnClearsTheClient() throws {
        let upstream = try GRPCServer()
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"5s\"")
        // NOT_FOUND: the client's own mistake, not listed.
        let calls = GRPCPeer.calls(try GRPCPeer.run("call", port: proxy.port, ["/pkg.Service/NotFound", "3"]).stdout)
        #expect(calls.map(\.code) == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"])
        #expect(upstream.served("NotFound") == 3)
    }

    @Test func aClientWithARetryPolicyWaitsOutThePushbackAndTheUpstreamSeesOneCallPerWindow() throws {
        let upstream = try GRPCServer()
        let window = 1.0
        let proxy = try Self.proxy(upstream, backoff: #"on = ["grpc:16"]"# + "\nbase = \"1s\"\nmax = \"1s\"\njitter = 0.0")
        let seconds = 3.5
        let started = Date()
        let result = try GRPCPeer.run("loop", port: proxy.port, ["/pkg.Service/Auth", "\(seconds)"])
        let elapsed = Date().timeIntervalSince(started)
        let calls = GRPCPeer.calls(result.stdout)
        // Each call is refused (RESOURCE_EXHAUSTED) until its pushback has passed, then retried
        // and forwarded: it ends with the upstream's UNAUTHENTICATED. A client that ignored the
        // pushback would spend its 5 attempts (10 to 50 ms apart) inside the window and end with
        // RESOURCE_EXHAUSTED.
        #expect(calls.count >= 3, "\(result)")
        #expect(calls.allSatisfy { $0.code == "UNAUTHENTICATED" }, "\(result)")
        let served = upstream.served("Auth")
        #expect(Double(served) <= (elapsed / window).rounded(.up) + 1, "\(served) in \(elapsed) s")
        #expect(served == calls.count)
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
