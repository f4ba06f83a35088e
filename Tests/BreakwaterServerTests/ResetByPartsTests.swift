import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// `POST /clients/reset` with what an operator knows (an address, a token) instead of the hashed
/// key, sent by curl to the real binary; the token never shows up in its output.
@Suite struct ResetByPartsTests {
    private static let token = "Bearer forgive-me-7f3a9c"

    private static func curl(_ arguments: [String]) throws -> (code: String, body: String) {
        let result = try Tool.run("curl", ["-s", "-w", "\n%{http_code}", "--max-time", "10"] + arguments)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    @Test func aTokenOrAnAddressIsHashedByBreakwaterAndItsClientForgiven() throws {
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 401, reason: "Unauthorized", body: Array("no\n".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: #"access_log = "stderr""#, rest: """
            [backoff]
            base = "30s"
            [[route]]
            name = "tokens"
            path = "/t/"
            key = ["header:Authorization", "route"]
            """)
        let base = "http://127.0.0.1:\(proxy.port)"
        let reset = "http://127.0.0.1:\(proxy.adminPort)/clients/reset"
        func tokenClient() throws -> String { try Self.curl(["-o", "/dev/null", "-H", "Authorization: \(Self.token)", base + "/t/x"]).code }
        func addressClient() throws -> String { try Self.curl(["-o", "/dev/null", base + "/u"]).code }
        #expect(try tokenClient() == "401")
        #expect(try tokenClient() == "429")
        #expect(try addressClient() == "401")
        #expect(try addressClient() == "429")

        // The token in a form body, as curl --data-urlencode sends it: the token's client is forgiven.
        let byToken = try Self.curl(["-X", "POST", "--data-urlencode", "header=Authorization",
                                     "--data-urlencode", "value=\(Self.token)", "--data-urlencode", "route=tokens", reset])
        #expect(byToken.code == "200", "\(byToken.body)")
        #expect(byToken.body.hasPrefix(#"{"reset":""#))
        #expect(try tokenClient() == "401", "forwarded again")
        #expect(try addressClient() == "429", "another client")
        // The address, on the default route, in the query.
        let byAddress = try Self.curl(["-X", "POST", reset + "?ip=127.0.0.1"])
        #expect(byAddress.code == "200", "\(byAddress.body)")
        // Forgiving again finds nothing; a part the route does not key by is refused, saying why.
        #expect(try Self.curl(["-X", "POST", reset + "?ip=127.0.0.1"]).code == "404")
        #expect(try addressClient() == "401")
        let wrongPart = try Self.curl(["-X", "POST", "--data-urlencode", "header=X-Api-Key", "--data-urlencode", "value=v", reset])
        #expect(wrongPart.code == "400")
        #expect(wrongPart.body.contains(#"route "default" keys clients by ["ip"], not header:x-api-key"#))
        let noAddress = try Self.curl(["-X", "POST", reset + "?route=nope"])
        #expect(noAddress.code == "400")
        #expect(!proxy.logText.contains("forgive-me"), "the token is never written out")
    }
}
