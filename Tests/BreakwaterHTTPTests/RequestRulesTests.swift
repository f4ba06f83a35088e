@testable import BreakwaterHTTP
import Testing

/// The request rules of `parseRequest` and `checkRequest`: each case is one place where nginx 1.22
/// or HAProxy 2.6 refuses a request, and Breakwater must refuse it too.
@Suite struct RequestRulesTests {
    /// The status a request is refused with by the parser or `checkRequest`; nil when accepted.
    private static func refusal(_ raw: String) -> Int? {
        do {
            _ = try HTTPHead.parseRequest(Array(raw.utf8)).checkRequest()
            return nil
        } catch {
            return error.status
        }
    }

    /// A GET of `/` with `value` as its one Host.
    private static func withHost(_ value: String) -> String {
        "GET / HTTP/1.1\r\nHost: \(value)\r\n\r\n"
    }

    private static func parsed(_ raw: String) throws -> HTTPHead {
        let head = try HTTPHead.parseRequest(Array(raw.utf8))
        _ = try head.checkRequest()
        return head
    }

    // MARK: Host

    @Test(arguments: [
        "example.com", "EXAMPLE.com", "example.com:8080", "example.com.", "example.com:", "a", "a_b",
        "xn--bcher-kva.example", "127.0.0.1", "127.0.0.1:80", "999.1.1.1", "a%41b", "a!$&'()*+;=~b",
        "[::1]", "[::1]:8443", "[::]", "[1::]", "[2001:db8::ffff:1.2.3.4]", "[1:2:3:4:5:6:7:8]",
        "[1:2:3:4:5:6:1.2.3.4]", "[v1.fe80:x]", "[V7.a]", "h:65535", "h:0",
    ])
    func validHostsAreAccepted(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == nil)
    }

    @Test(arguments: ["a, b", "a,b", "a,", ",a"])
    func aListOfHostsIsRefused(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    @Test(arguments: ["a b", "a\tb", "a :80"])
    func aHostWithSpaceIsRefused(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    @Test(arguments: ["a/b", "a/", "/a", "a?b", "a#b", "a:80/b", "[::1]/a"])
    func aHostWithPathIsRefused(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    /// Empty hosts (nginx refuses them: `host_len == 0`), two dots in a row (nginx too), and what
    /// is not `uri-host [":" port]`.
    @Test(arguments: [
        "", ":80", ":", ".", ".:80", "a..b", "a.b..", "user@a", "user:pw@a", "a\"b", "a<b", "a\\b", "a[b]",
        "a%00b", "a%zz", "a%4", "a%", "é.example",
    ])
    func malformedHostsAreRefused(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    @Test(arguments: ["a:b", "a:8o", "a:-1", "a:+80", "a:80:80", "a:65536", "a:123456", "a:99999", "[::1]:x"])
    func aPortMustBeDigitsUpTo65535(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    @Test(arguments: [
        "[::1", "::1]", "[::1]x", "[::1]]", "[]", "[1.2.3.4]", "[::1%25eth0]", "[12345::]", "[1:2:3:4:5:6:7]",
        "[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[1:::2]", "[:1]", "[1:]", "[::g]", "[::1.2.3]", "[::1.2.3.256]",
        "[::01.2.3.4]", "[1.2.3.4::]", "[::1.2.3.4:1]", "[1:2:3:4:5:6:7:1.2.3.4]", "[v.a]", "[v1]", "[v1.]",
        "[vg.a]", "[v1.a,b]", "[v1.a..b]",
    ])
    func malformedIPLiteralsAreRefused(host: String) {
        #expect(Self.refusal(Self.withHost(host)) == 400)
    }

    @Test func hostLinesAreCounted() {
        #expect(Self.refusal("GET / HTTP/1.1\r\n\r\n") == 400)
        #expect(Self.refusal("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == 400)
        #expect(Self.refusal("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
        #expect(Self.refusal("GET / HTTP/1.0\r\n\r\n") == nil)
        #expect(Self.refusal("GET / HTTP/1.0\r\nHost: a\r\n\r\n") == nil)
        #expect(Self.refusal("GET / HTTP/1.0\r\nHost: a b\r\n\r\n") == 400)
    }

    // MARK: Methods

    /// nginx takes `A`-`Z`, `_` and `-` only; methods are case-sensitive, so `get` is not GET and
    /// is refused rather than forwarded as an unknown method.
    @Test(arguments: ["get", "Get", "gET", "head", "post", "GET1", "G.T", "G!T", "G~T", "GET~", "1GET", "X*"])
    func methodsOutsideNginxsAlphabetAreRefused(method: String) {
        #expect(Self.refusal("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(!HTTPHead.isPlausibleRequestStart(Array("\(method) /".utf8)[...]))
    }

    @Test(arguments: ["GET", "HEAD", "M-SEARCH", "VERSION-CONTROL", "X_CUSTOM", "PROPFIND", "-", "_"])
    func upperCaseMethodsAreAcceptedAsWritten(method: String) throws {
        let head = try Self.parsed("\(method) / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(head.method == method)
    }

    @Test func methodIsComparesExactly() throws {
        let head = try Self.parsed("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(head.methodIs("HEAD"))
        #expect(!head.methodIs("head"))
        #expect(!head.methodIs("HEADX"))
        #expect(!head.methodIs("HEA"))
        #expect(!head.methodIs("GET"))
    }

    @Test func methodCharactersAreNginxs() {
        let allowed = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ_-".utf8))
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPHead.isMethodChar(byte) == allowed.contains(byte), "byte \(byte)")
        }
    }

    // MARK: Consistency

    @Test func regNameCharactersAreRFC3986sButTheComma() {
        let regName = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+;=".utf8))
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPHead.isRegNameChar(byte) == regName.contains(byte), "byte \(byte)")
        }
    }
}
