import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Digest, Basic, NTLM and Negotiate through the shield with real clients (curl for the first
/// three): the 401 that opens or continues a handshake is not counted, so the authenticated
/// request that follows is served; a rejected password still is, and the next request gets 429.
/// Every client here shares one address, keyed by `ip`: what an office behind NAT looks like.
@Suite struct AuthHandshakeTests {
    private static func proxy(_ upstream: AuthUpstream) throws -> Harness {
        try Harness(upstreamPorts: [upstream.port]) {
            $0.backoff.base = .seconds(30)
            $0.backoff.max = .seconds(30)
        }
    }

    /// The final status curl reports for one run with `options`.
    private static func curl(_ proxy: Harness, _ path: String, _ options: [String]) throws -> String {
        let result = try Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"] + options
                                  + ["http://127.0.0.1:\(proxy.port)\(path)"])
        return result.stdout
    }

    @Test func curlDigestIsServedAndAWrongPasswordStillCounts() throws {
        let upstream = try AuthUpstream()
        let proxy = try Self.proxy(upstream)
        for _ in 0..<3 { #expect(try Self.curl(proxy, "/digest", ["--digest", "-u", "user:pass"]) == "200") }
        #expect(try Self.curl(proxy, "/digest", ["--digest", "-u", "user:wrong"]) == "401")
        #expect(try Self.curl(proxy, "/digest", ["--digest", "-u", "user:pass"]) == "429")
    }

    @Test func basicsOpeningChallengeDoesNotCountButARejectedPasswordDoes() throws {
        let upstream = try AuthUpstream()
        let proxy = try Self.proxy(upstream)
        #expect(try Self.curl(proxy, "/basic", []) == "401")
        #expect(try Self.curl(proxy, "/basic", ["--anyauth", "-u", "user:pass"]) == "200")
        #expect(try Self.curl(proxy, "/basic", ["--basic", "-u", "user:pass"]) == "200")
        #expect(try Self.curl(proxy, "/basic", ["--basic", "-u", "user:wrong"]) == "401")
        #expect(try Self.curl(proxy, "/basic", ["--basic", "-u", "user:pass"]) == "429")
    }

    @Test func curlNTLMsThreeMessagesGoThroughAndAnUnknownUserCounts() throws {
        let upstream = try AuthUpstream()
        let proxy = try Self.proxy(upstream)
        for _ in 0..<3 { #expect(try Self.curl(proxy, "/ntlm", ["--ntlm", "-u", "user:pass"]) == "200") }
        #expect(try Self.curl(proxy, "/ntlm", ["--ntlm", "-u", "nobody:pass"]) == "401")
        #expect(try Self.curl(proxy, "/ntlm", ["--ntlm", "-u", "user:pass"]) == "429")
    }

    @Test func negotiatesContinuedChallengeDoesNotCountButARejectedTokenDoes() throws {
        let upstream = try AuthUpstream()
        let proxy = try Self.proxy(upstream)
        func negotiate(_ token: String?) throws -> TestMessage {
            try request(port: proxy.port, "GET", "/negotiate",
                        headers: token.map { [("Authorization", "Negotiate " + Data($0.utf8).base64EncodedString())] } ?? [])
        }
        for _ in 0..<3 {
            let opening = try negotiate(nil)
            #expect(opening.status == 401)
            #expect(opening.header("WWW-Authenticate") == "Negotiate")
            let continued = try negotiate("first")
            #expect(continued.status == 401)
            #expect(continued.header("WWW-Authenticate")?.hasPrefix("Negotiate ") == true)
            #expect(try negotiate("final").status == 200)
        }
        #expect(try negotiate("forged").status == 401)
        #expect(try negotiate("final").status == 429)
    }

    @Test func aBearerChallengeStillCountsAtOnce() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try Harness(upstreamPorts: [api.port]) { $0.backoff.base = .seconds(30) }
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/expired-1").status == 401)
        #expect(try request(port: proxy.port, "GET", "/api/v1/device/valid-1").status == 429)
    }
}
