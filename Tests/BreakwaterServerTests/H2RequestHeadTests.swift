@testable import BreakwaterServer
import BreakwaterCore
import BreakwaterHTTP
import Testing

/// An HTTP/2 request's fields go through the HTTP/1.1 rules: the same request sent as HTTP/1.1
/// text and as HTTP/2 fields must reach the upstream as the same bytes, and a request that
/// breaks a rule must be refused with the same status and reason either way. Forwarded to an
/// HTTP/2 upstream, a request gets the fields of the HTTP/1.1 upstream head, by the same rule.
@Suite struct H2RequestHeadTests {
    /// A request both ways: its HTTP/1.1 text (field names in lower case, as HTTP/2 has them),
    /// and its HTTP/2 fields.
    struct Case: CustomStringConvertible {
        let text: String
        let fields: [(String, String)]
        var description: String { String(text.prefix(40)) }
    }

    private static let same: [Case] = [
        Case(text: "GET /ok HTTP/1.1\r\nHost: api.example\r\nuser-agent: h2load\r\naccept: */*\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "api.example"), (":path", "/ok"),
                      ("user-agent", "h2load"), ("accept", "*/*")]),
        // The pseudo-header fields in another order; a Host beside :authority is not sent twice.
        Case(text: "POST /a/../b?x=1 HTTP/1.1\r\nHost: h:8443\r\ncontent-type: application/json\r\n\r\n",
             fields: [(":path", "/a/../b?x=1"), (":authority", "h:8443"), (":method", "POST"), (":scheme", "https"),
                      ("host", "h:8443"), ("content-type", "application/json")]),
        // Forwarding fields from the client are merged, its X-Forwarded-Proto and names with `_` dropped.
        Case(text: "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 10.0.0.1\r\nvia: 1.1 edge\r\nx-forwarded-proto: ftp\r\nx_forwarded_for: 1.2.3.4\r\nauthorization: Bearer t\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/"),
                      ("x-forwarded-for", "10.0.0.1"), ("via", "1.1 edge"), ("x-forwarded-proto", "ftp"),
                      ("x_forwarded_for", "1.2.3.4"), ("authorization", "Bearer t")]),
        // Cookie fields are joined into one line.
        Case(text: "GET /c HTTP/1.1\r\nHost: h\r\naccept: a\r\nCookie: a=1; b=2\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/c"),
                      ("cookie", "a=1"), ("accept", "a"), ("cookie", "b=2")]),
        // No :authority: the Host field is the host.
        Case(text: "DELETE /x HTTP/1.1\r\nhost: only-host\r\n\r\n",
             fields: [(":method", "DELETE"), (":scheme", "http"), (":path", "/x"), ("host", "only-host")]),
    ]

    private static let refused: [Case] = [
        Case(text: "GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/a%00b")]),
        Case(text: "GET / HTTP/1.1\r\nHost: h\r\nauthorization: a\r\nauthorization: b\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "h"), (":path", "/"),
                      ("authorization", "a"), ("authorization", "b")]),
        Case(text: "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n",
             fields: [(":method", "TRACE"), (":scheme", "https"), (":authority", "h"), (":path", "/")]),
        Case(text: "POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
             fields: [(":method", "POST"), (":scheme", "https"), (":authority", "h"), (":path", "/"),
                      ("content-length", "1"), ("content-length", "2")]),
        Case(text: "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":authority", "bad host"), (":path", "/")]),
        Case(text: "get / HTTP/1.1\r\nHost: h\r\n\r\n",
             fields: [(":method", "get"), (":scheme", "https"), (":authority", "h"), (":path", "/")]),
        Case(text: "GET / HTTP/1.1\r\n\r\n",
             fields: [(":method", "GET"), (":scheme", "https"), (":path", "/")]),
    ]

    private static func viaH2(_ c: Case) throws(HTTPError) -> HTTPHead {
        var head = H2RequestHead()
        for (name, value) in c.fields { head.add(Array(name.utf8), Array(value.utf8)) }
        return try head.finish()
    }

    private static func viaHTTP1(_ c: Case) throws(HTTPError) -> HTTPHead {
        let head = try HTTPHead.parseRequest(Array(c.text.utf8))
        _ = try head.checkRequest()
        return head
    }

    private static func upstreamBytes(_ head: HTTPHead) -> String {
        let request = HTTPRequest(head: head, body: nil, peer: IPAddress(ipv4: 0x7f00_0001))
        var out: [UInt8] = []
        ProxyHeaders.upstreamRequest(request, clientAddress: Array("127.0.0.1".utf8), defaultHost: "upstream", into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test(arguments: same)
    func theUpstreamGetsTheSameBytes(_ c: Case) throws {
        let h1 = try Self.viaHTTP1(c)
        let h2 = try Self.viaH2(c)
        #expect(Self.upstreamBytes(h2) == Self.upstreamBytes(h1))
        #expect(Self.upstreamBytes(h2).contains("\r\nVia: "))
    }

    @Test(arguments: refused)
    func aBrokenRuleIsRefusedTheSameWay(_ c: Case) {
        var h1: HTTPError?
        var h2: HTTPError?
        do throws(HTTPError) { _ = try Self.viaHTTP1(c) } catch { h1 = error }
        do throws(HTTPError) { _ = try Self.viaH2(c) } catch { h2 = error }
        #expect(h1 != nil)
        #expect(h2?.status == h1?.status)
        #expect(h2?.reason == h1?.reason)
    }

    @Test(arguments: same, [false, true])
    func anHTTP2UpstreamGetsTheHTTP1UpstreamHeadsFields(_ c: Case, teTrailers: Bool) throws {
        let request = HTTPRequest(head: try Self.viaH2(c), body: nil, peer: IPAddress(ipv4: 0x7f00_0001))
        var writer = H2Headers.RequestFields(scheme: "https", teTrailers: teTrailers)
        ProxyHeaders.upstreamRequest(request, clientAddress: Array("127.0.0.1".utf8), defaultHost: "upstream", into: &writer)
        let got = writer.fields.pairs.map { String(decoding: $0.name, as: UTF8.self) + ": " + String(decoding: $0.value, as: UTF8.self) }

        let text = try HTTPHead.parseRequest(Array(Self.upstreamBytes(request.head).utf8))
        var expected = [":method: " + String(decoding: text.bytes[text.first], as: UTF8.self), ":scheme: https",
                        ":authority: " + (text.combined("host") ?? ""),
                        ":path: " + String(decoding: text.originTarget, as: UTF8.self)]
        for f in text.fields where !text.nameIs(f, "host") && !text.nameIs(f, "content-length") {
            expected.append(text.name(f).lowercased() + ": " + text.value(f))
        }
        if teTrailers { expected.append("te: trailers") }
        #expect(got == expected)
        #expect(got.contains { $0.hasPrefix("via: ") && $0.hasSuffix("1.1 breakwater") })
        #expect(got.contains { $0.hasPrefix("x-forwarded-for: ") && $0.hasSuffix("127.0.0.1") })
        #expect(got.prefix(4).map { $0.prefix { $0 != " " } } == [":method:", ":scheme:", ":authority:", ":path:"])
    }
}
