import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Malformed and oversized request heads: each gets the answer the README's "Bad input" table gives it, none
/// reaches the upstream, and the proxy goes on serving well-formed requests afterwards.
/// (RequestLimitTests covers the first shapes; these are the rest of the hostile catalogue.)
@Suite struct HostileInputTests {
    /// Request lines, bare LF and CR, NUL bytes, methods, versions and header lines that are not HTTP/1.1.
    @Test(arguments: [
        // Request lines.
        "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: t\r\n\r\n",
        " GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET\t/\tHTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET example.com/ HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET HTTP/1.1\r\nHost: t\r\n\r\n",
        "/ HTTP/1.1\r\nHost: t\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        // Invalid methods.
        "G@T / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GE(T) / HTTP/1.1\r\nHost: t\r\n\r\n",
        "G\u{0}T / HTTP/1.1\r\nHost: t\r\n\r\n",
        "\u{1}GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "GËT / HTTP/1.1\r\nHost: t\r\n\r\n",
        // Bare LF and bare CR in every position.
        "GET / HTTP/1.1\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\n\r\n",
        "GET / HTTP/1.1\rHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r2\r\n\r\n",
        // NUL bytes.
        "GET /\u{0} HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\u{0}\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-\u{0}A: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\u{0}\r\n\r\n",
        "\u{0}\u{0}\u{0}\u{0}\r\n\r\n",
        // Absurd versions.
        "GET / HTTP/1.1000\r\nHost: t\r\n\r\n",
        "GET / HTTP/1\r\nHost: t\r\n\r\n",
        "GET / HTTP/\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/-1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.x\r\nHost: t\r\n\r\n",
        "GET / HTTP/11.1\r\nHost: t\r\n\r\n",
        "GET / http/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTPS/1.1\r\nHost: t\r\n\r\n",
        "GET / FTP/1.0\r\nHost: t\r\n\r\n",
        // Header lines.
        "GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\n: no-name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX(A): 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\tfolded with a tab\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: \u{7f}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: \u{1b}[31m\r\n\r\n",
    ])
    func malformedHeadsGet400AndTheProxyKeepsServing(raw: String) throws {
        let target = try HostileTarget()
        let response = try target.answer(raw)
        #expect(response?.status == 400, "\(raw.debugDescription)")
        #expect(response?.header("Connection") == "close")
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
        #expect(try target.metric(#"breakwater_requests_total{route="none",outcome="rejected",protocol="http1"}"#) == 1)
    }

    @Test(arguments: ["GET / HTTP/2.0\r\nHost: t\r\n\r\n", "GET / HTTP/0.9\r\nHost: t\r\n\r\n", "GET / HTTP/9.9\r\nHost: t\r\n\r\n"])
    func otherMajorVersionsGet505(raw: String) throws {
        let target = try HostileTarget()
        #expect(try target.answer(raw)?.status == 505)
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    /// A TLS handshake, or any bytes that cannot start a request line, is refused at once rather
    /// than after `header_timeout`, and an unsupported version as soon as the request line is in.
    @Test(arguments: [
        [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03] + [UInt8](repeating: 0xaa, count: 32),
        Array("SSH-2.0-OpenSSH_9.6\r\n".utf8),
        Array("GET / HTTP/2.0\r\nHost: t\r\n".utf8),
        Array("GET / HTTP/1.1\nHost:".utf8),
        Array("PRI * HTTP/2.0\r\n".utf8),
    ])
    func nonHTTPBytesAreRefusedWithoutWaitingForTheHeadToEnd(raw: [UInt8]) throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(10) }
        let started = Date()
        let response = try target.answer(raw, timeout: 5)
        #expect(response?.status == 400 || response?.status == 505)
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    /// A request line alone over `max_header_bytes` is 414, whether the head ends or not.
    @Test(arguments: [true, false])
    func aVeryLongURIGets414(headEnds: Bool) throws {
        let target = try HostileTarget()
        let uri = "/" + String(repeating: "a", count: 20_000)
        let raw = "GET \(uri) HTTP/1.1" + (headEnds ? "\r\nHost: t\r\n\r\n" : "")
        let response = try target.answer(raw)
        #expect(response?.status == 414)
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    @Test func aURIJustUnderTheLimitIsForwarded() throws {
        let target = try HostileTarget { $0.server.maxHeaderBytes = 4096 }
        let uri = "/" + String(repeating: "b", count: 4096 - 40)
        let response = try request(port: target.port, "GET", uri)
        #expect(response.status == 200)
        #expect(target.received(uri).count == 1)
    }

    /// 10,000 header lines: over the byte limit with the default, over the line limit (256) when
    /// the byte limit is raised to let them in; 431 either way.
    @Test(arguments: [16_384, 1 << 20])
    func tenThousandHeadersGet431(maxHeaderBytes: Int) throws {
        let target = try HostileTarget { $0.server.maxHeaderBytes = maxHeaderBytes }
        let lines = (0..<10_000).map { "X-H\($0): v\r\n" }.joined()
        let response = try target.answer("GET / HTTP/1.1\r\nHost: t\r\n" + lines + "\r\n")
        #expect(response?.status == 431)
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    /// The byte limit is exact: a head of `max_header_bytes` passes, one byte more is 431.
    @Test func theHeaderLimitIsExactToTheByte() throws {
        let limit = 2048
        let target = try HostileTarget { $0.server.maxHeaderBytes = limit }
        func head(size: Int) -> String {
            let fixed = "GET /edge HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n"
            return "GET /edge HTTP/1.1\r\nHost: t\r\nX-Pad: " + String(repeating: "p", count: size - fixed.utf8.count) + "\r\n\r\n"
        }
        #expect(try target.answer(head(size: limit))?.status == 200)
        #expect(try target.answer(head(size: limit + 1))?.status == 431)
        #expect(target.received("/edge").count == 1)
        #expect(target.stillServes())
    }

    @Test func oneHeaderOverTheLimitGets431EvenWhenItNeverEnds() throws {
        let target = try HostileTarget { $0.server.maxHeaderBytes = 4096 }
        let response = try target.answer("GET / HTTP/1.1\r\nHost: t\r\nCookie: " + String(repeating: "c", count: 10_000))
        #expect(response?.status == 431)
        #expect(target.stillServes())
    }

    /// Every refusal closes only its own connection: keep-alive neighbours, and requests that
    /// arrive while refusals stream in, are served.
    @Test func aStreamOfBadRequestsDoesNotDisturbOtherClients() throws {
        let target = try HostileTarget()
        let neighbour = try TestSocket(port: target.port)
        let bad = ["GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/7.0\r\nHost: t\r\n\r\n",
                   "GET / HTTP/1.1\r\nHost: t\r\nX: " + String(repeating: "x", count: 20_000) + "\r\n\r\n"]
        for round in 0..<50 {
            let response = try target.answer(bad[round % bad.count])
            #expect(response.map { $0.status >= 400 && $0.status < 600 } == true)
            try neighbour.send(rawRequest("GET", "/neighbour/\(round)"))
            #expect(try neighbour.readMessage()?.status == 200)
        }
        #expect(target.upstream.requests.allSatisfy { $0.target.hasPrefix("/neighbour/") })
        #expect(target.upstream.requestCount == 50)
    }
}
