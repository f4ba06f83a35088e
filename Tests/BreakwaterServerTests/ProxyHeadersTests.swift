@testable import BreakwaterServer
import BreakwaterCore
import BreakwaterHTTP
import Testing

/// The head `ProxyHeaders.upstreamRequest` writes for a request: a Host when the client sent
/// none, the authority of an absolute-form target in place of Host, and a Content-Length exactly
/// when the client framed a body or one is sent.
@Suite struct ProxyHeadersTests {
    private static func upstream(_ text: String) throws -> String {
        let head = try HTTPHead.parseRequest(Array(text.utf8))
        let request = HTTPRequest(head: head, body: nil, peer: IPAddress(ipv4: 0x7f00_0001))
        var out: [UInt8] = []
        ProxyHeaders.upstreamRequest(request, clientAddress: Array("127.0.0.1".utf8), defaultHost: "upstream:8080", into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static let forwarding = "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nVia: 1.1 breakwater\r\n"

    @Test func aRequestWithoutHostGetsTheDefaultHost() throws {
        #expect(try Self.upstream("GET /a HTTP/1.0\r\nAccept: */*\r\n\r\n")
            == "GET /a HTTP/1.1\r\nAccept: */*\r\nHost: upstream:8080\r\n" + Self.forwarding + "\r\n")
    }

    @Test func aRequestsOwnHostGoesAsItCame() throws {
        #expect(try Self.upstream("GET /a HTTP/1.1\r\nhost: example\r\n\r\n")
            == "GET /a HTTP/1.1\r\nhost: example\r\n" + Self.forwarding + "\r\n")
    }

    @Test func anAbsoluteTargetsAuthorityReplacesHost() throws {
        #expect(try Self.upstream("GET http://example:81/a?q HTTP/1.1\r\nHost: other\r\n\r\n")
            == "GET /a?q HTTP/1.1\r\nHost: example:81\r\n" + Self.forwarding + "\r\n")
    }

    @Test(arguments: ["Content-Length: 0", "content-length: 0", "Transfer-Encoding: chunked", "TRANSFER-ENCODING: chunked"])
    func aFramedEmptyBodyGoesWithContentLengthZero(_ framing: String) throws {
        #expect(try Self.upstream("POST /a HTTP/1.1\r\nHost: h\r\n\(framing)\r\nX-A: 1\r\n\r\n")
            == "POST /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n" + Self.forwarding + "Content-Length: 0\r\n\r\n")
    }

    @Test func anUnframedRequestGoesWithoutContentLength() throws {
        #expect(try Self.upstream("DELETE /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n")
            == "DELETE /a HTTP/1.1\r\nHost: h\r\n" + Self.forwarding + "\r\n")
    }

    @Test func proxyFieldsAndNamesWithAnUnderscoreStayBehind() throws {
        let request = "GET /a HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic eA==\r\nPROXY-X: 1\r\nProxyish: 2\r\n"
            + "P: 3\r\nX_Forwarded_For: 10.0.0.1\r\nx-forwarded_proto: https\r\n_: 4\r\nX-Y: 5\r\n\r\n"
        #expect(try Self.upstream(request)
            == "GET /a HTTP/1.1\r\nHost: h\r\nProxyish: 2\r\nP: 3\r\nX-Y: 5\r\n" + Self.forwarding + "\r\n")
    }
}
