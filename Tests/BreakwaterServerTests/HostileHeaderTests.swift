import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Header tricks: CRLF injection that would add headers upstream or downstream, and forged
/// X-Forwarded-For that would let a client evade the shield or frame another client.
@Suite struct HostileHeaderTests {
    /// A raw CR or LF inside a value would end the line for a lenient parser and start a new
    /// header; it is refused with 400 and nothing reaches the upstream.
    @Test(arguments: [
        "X-A: a\rInjected: yes",
        "X-A: a\nInjected: yes",
        "X-A: a\r\nInjected: yes\r",
        "X-A: a\u{0}\r\nInjected: yes",
        "X-A: a\r\n\rInjected: yes",
    ])
    func rawLineBreaksInAValueAreRefused(line: String) throws {
        let target = try HostileTarget()
        let response = try target.answer("GET /inject HTTP/1.1\r\nHost: t\r\n\(line)\r\n\r\n")
        #expect(response?.status == 400)
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    /// Encoded line breaks (percent-encoding, Unicode line and paragraph separators, NEL) are
    /// only bytes: forwarded inside the one header or target they came in, never split into another.
    @Test func encodedLineBreaksStayInsideTheirHeader() throws {
        let target = try HostileTarget()
        let values = ["a%0d%0aInjected: yes", "a\u{2028}Injected: yes", "a\u{85}Injected: yes", "a\\r\\nInjected: yes"]
        var headers = values.enumerated().map { ("X-V\($0.offset)", $0.element) }
        headers.append(("X-Forwarded-For", "198.51.100.1%0d%0aInjected: yes"))
        let response = try request(port: target.port, "GET", "/inject?h=%0d%0aInjected:%20yes", headers: headers)
        #expect(response.status == 200)
        let seen = try #require(target.upstream.requests.first)
        #expect(seen.header("Injected") == nil)
        #expect(seen.target == "/inject?h=%0d%0aInjected:%20yes")
        for (i, value) in values.enumerated() { #expect(seen.header("X-V\(i)") == value) }
        #expect(seen.header("X-Forwarded-For") == "198.51.100.1%0d%0aInjected: yes, 127.0.0.1")
    }

    /// The same tricks from the upstream's side: a response header with a bare line break is
    /// refused (502), so nothing the upstream smuggles becomes a header the client sees.
    @Test(arguments: ["X-A: a\nInjected: yes", "X-A: a\rInjected: yes", "X-A: a\r\n Injected: folded"])
    func upstreamResponseHeadersCannotInjectEither(line: String) throws {
        let target = try HostileTarget(handler: { _, socket in
            try socket.send("HTTP/1.1 200 OK\r\n\(line)\r\nContent-Length: 2\r\n\r\nok")
            return false
        })
        let response = try request(port: target.port, "GET", "/")
        #expect(response.status == 502)
        #expect(response.header("Injected") == nil)
    }

    private static func shieldedProxy(trusted: [String] = []) throws -> HostileTarget {
        try HostileTarget(configure: {
            $0.clients.trustedProxies = trusted.map { CIDR(parsing: $0)! }
            $0.backoff.base = .seconds(30)
            $0.backoff.max = .seconds(30)
        }, handler: { request, socket in
            try TestUpstream.respond(socket, status: request.target.hasPrefix("/fail") ? 401 : 200, body: [])
            return true
        })
    }

    private static func stats(_ target: HostileTarget) throws -> (tracked: Int, blocked: Int) {
        let body = try request(port: target.proxy.server.adminPort, "GET", "/stats").body
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        return (json["tracked_clients"] as? Int ?? -1, json["blocked_clients"] as? Int ?? -1)
    }

    /// From an untrusted peer, X-Forwarded-For is ignored: the attacker at 127.0.0.2 who names
    /// 127.0.0.3 blocks only itself, cannot escape by naming someone else, and 127.0.0.3 is served.
    @Test func aForgedForwardedForNeitherEvadesNorFrames() throws {
        let target = try Self.shieldedProxy()
        let attacker = "127.0.0.2", victim = "127.0.0.3"
        #expect(try request(from: attacker, port: target.port, "/fail", headers: [("X-Forwarded-For", victim)]).status == 401)
        for forged in [victim, "198.51.100.7", "127.0.0.1", "::1", "unknown", "127.0.0.3, 127.0.0.4", "999.1.1.1"] {
            let evasion = try request(from: attacker, port: target.port, "/ok", headers: [("X-Forwarded-For", forged)])
            #expect(evasion.status == 429, "X-Forwarded-For: \(forged) evaded the shield")
        }
        let evasion = try request(from: attacker, port: target.port, "/ok",
                                  headers: [("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "203.0.113.2"),
                                            ("Forwarded", "for=203.0.113.3"), ("X-Real-IP", "203.0.113.4")])
        #expect(evasion.status == 429)
        #expect(try request(from: victim, port: target.port, "/ok").status == 200, "the victim was framed")
        #expect(try Self.stats(target) == (1, 1))
        #expect(target.upstream.requests.map(\.target) == ["/fail", "/ok"])
    }

    /// Behind a trusted proxy the right-most untrusted address is the client: what a client
    /// writes to the left of it changes nothing, and a trusted proxy's clients are told apart.
    @Test func behindATrustedProxyTheClientCannotChooseItsKeyEither() throws {
        let target = try Self.shieldedProxy(trusted: ["127.0.0.2/32", "10.0.0.0/8"])
        let proxy = "127.0.0.2"
        #expect(try request(from: proxy, port: target.port, "/fail", headers: [("X-Forwarded-For", "203.0.113.9")]).status == 401)
        for forgedLeft in ["198.51.100.1", "127.0.0.3", "garbage", "203.0.113.10, 10.1.1.1"] {
            let response = try request(from: proxy, port: target.port, "/ok",
                                       headers: [("X-Forwarded-For", "\(forgedLeft), 203.0.113.9, 10.0.0.5")])
            #expect(response.status == 429, "\(forgedLeft) evaded")
        }
        #expect(try request(from: proxy, port: target.port, "/ok", headers: [("X-Forwarded-For", "203.0.113.10")]).status == 200)
        #expect(try request(from: proxy, port: target.port, "/ok").status == 200, "the trusted proxy itself is not blocked")
        #expect(try Self.stats(target) == (1, 1))
    }

    /// Found by this suite, in ProxyHeaders (not the parser).
    @Test func anHTTP10RequestWithoutHostReachesTheUpstreamWithAHost() throws {
        let target = try HostileTarget()
        #expect(try target.answer("GET /old HTTP/1.0\r\n\r\n")?.status == 200)
        let seen = try #require(target.received("/old").first)
        #expect(seen.startLine == "GET /old HTTP/1.1")
        #expect(seen.header("Host") == "127.0.0.1:\(target.upstream.port)")
    }

    @Test func underscoreSpellingsOfForwardingHeadersDoNotReachTheUpstream() throws {
        let target = try HostileTarget()
        _ = try request(port: target.port, "GET", "/", headers: [("X-Forwarded_For", "203.0.113.66"), ("X_Forwarded_Proto", "https")])
        let seen = try #require(target.upstream.requests.first)
        #expect(seen.header("X-Forwarded-For") == "127.0.0.1")
        #expect(seen.header("X-Forwarded_For") == nil)
        #expect(seen.header("X_Forwarded_Proto") == nil)
    }
}
