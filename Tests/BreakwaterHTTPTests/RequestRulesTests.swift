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

    // MARK: Absolute-form

    @Test func absoluteFormIsReducedToItsPath() throws {
        let head = try Self.parsed("GET http://h:81/x?y=1 HTTP/1.1\r\nHost: h:81\r\n\r\n")
        #expect(Array(head.originTarget) == Array("/x?y=1".utf8))
        #expect(head.path == "/x")
        #expect(String(decoding: head.bytes[head.authority], as: UTF8.self) == "h:81")
        let bare = try Self.parsed("GET HTTPS://H HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(Array(bare.originTarget) == Array("/".utf8))
        let query = try Self.parsed("GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(Array(query.originTarget) == Array("/?q=1".utf8))
        #expect(query.path == "/")
        let origin = try Self.parsed("GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(origin.authority.isEmpty)
        #expect(Array(origin.originTarget) == Array("/a?b".utf8))
    }

    @Test(arguments: [
        "http://user:pw@h:81/x", "http://user@h/x", "http://@h/x", "http://h@/x", "https://u:p@[::1]/",
    ])
    func userinfoIsRefused(target: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: h:81\r\n\r\n") == 400)
    }

    @Test(arguments: [
        ("http://h:81/x", "h:81"), ("http://H/", "h"), ("http://h:/x", "h:"), ("http://[::1]:8080/x", "[::1]:8080"),
        ("https://a-b.example/", "A-B.EXAMPLE"), ("http://127.0.0.1/", "127.0.0.1"),
    ])
    func absoluteFormWithItsHostIsAccepted(target: String, host: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: \(host)\r\n\r\n") == nil)
    }

    /// The authority is held to the host rule, with nginx's narrower reg-name of a request line.
    @Test(arguments: [
        "http:///x", "http://:81/x", "http://h:x/", "http://h:65536/", "http://a..b/", "http://a_b/", "http://a%41/",
        "http://a!b/", "http://a,b/", "http://h#f", "http://[::1/x]", "http://[1.2.3.4]/", "ftp://h/", "http:/h/",
        "http:h/", "httpx://h/", "hxxp://h/",
    ])
    func malformedAuthoritiesAreRefused(target: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
    }

    /// The authority replaces Host (RFC 9112 3.2.2), so the two may differ; Host is still
    /// required in HTTP/1.1 and held to its own rule, as nginx does.
    @Test func theAuthorityNeedNotEqualHost() {
        #expect(Self.refusal("GET http://h/x HTTP/1.1\r\nHost: other\r\n\r\n") == nil)
        #expect(Self.refusal("GET http://h:80/x HTTP/1.1\r\nHost: h\r\n\r\n") == nil)
        #expect(Self.refusal("GET http://h/x HTTP/1.0\r\nHost: g\r\n\r\n") == nil)
        #expect(Self.refusal("GET http://h/x HTTP/1.0\r\n\r\n") == nil)
        #expect(Self.refusal("GET http://h/x HTTP/1.1\r\n\r\n") == 400)
        #expect(Self.refusal("GET http://h/x HTTP/1.1\r\nHost: a b\r\n\r\n") == 400)
    }

    // MARK: Percent-encoding

    @Test(arguments: ["/%00", "/a%00b", "/a/%00/b", "http://h/%00", "/%00?x"])
    func anEncodedNULInThePathIsRefused(target: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
    }

    /// nginx's URI decoder refuses a `%` not followed by two hex digits with 400.
    @Test(arguments: ["/%", "/a%", "/a%0", "/a%0?x", "/a%zz", "/a%4g", "/a%g4", "/%%41", "/a%2", "http://h/%x1"])
    func badPercentEncodingInThePathIsRefused(target: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
    }

    /// The query is not decoded by nginx either, so it is left as it is.
    @Test(arguments: ["/%2f", "/%2F", "/a%41b%7e", "/%FF", "/%01", "/a?q=100%", "/a?q=%zz", "/a?q=%00", "/?%", "http://h/%41"])
    func goodPercentEncodingAndAnyQueryAreAccepted(target: String) {
        #expect(Self.refusal("GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n") == nil)
    }

    // MARK: Asterisk-form and CONNECT

    @Test(arguments: ["GET", "HEAD", "POST", "DELETE", "TRACE"])
    func anAsteriskWithoutOPTIONSIsRefused(method: String) {
        #expect(Self.refusal("\(method) * HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
    }

    /// `OPTIONS *` is refused like nginx refuses it (see `parseRequest`), from its first bytes.
    @Test func optionsAsteriskIsRefused() {
        #expect(Self.refusal("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(Self.refusal("OPTIONS *foo HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(!HTTPHead.isPlausibleRequestStart(Array("OPTIONS *".utf8)[...]))
        #expect(Self.refusal("OPTIONS /things HTTP/1.1\r\nHost: h\r\n\r\n") == nil)
    }

    @Test(arguments: ["/", "http://h:443/"])
    func connectIsRefused(target: String) {
        #expect(Self.refusal("CONNECT \(target) HTTP/1.1\r\nHost: h:443\r\n\r\n") == 400)
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

    // MARK: TRACE and framing

    /// nginx answers TRACE with 405 whatever it carries (see `checkRequest`).
    @Test(arguments: [
        "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n",
        "TRACE / HTTP/1.0\r\n\r\n",
        "TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        "TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "TRACE / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    ])
    func traceIsRefusedWith405(raw: String) {
        #expect(Self.refusal(raw) == 405)
    }

    @Test func brokenFramingIsA400EvenForTrace() {
        #expect(Self.refusal("TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        #expect(Self.refusal("TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n") == 400)
    }

    @Test func checkRequestReturnsTheFraming() throws {
        func framing(_ raw: String) throws -> BodyLength {
            try HTTPHead.parseRequest(Array(raw.utf8)).checkRequest()
        }
        #expect(try framing("GET / HTTP/1.1\r\nHost: h\r\n\r\n") == .none)
        #expect(try framing("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") == .none)
        #expect(try framing("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n") == .length(12))
        #expect(try framing("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") == .chunked)
    }

    // MARK: Consistency

    @Test func regNameCharactersAreRFC3986sButTheComma() {
        let regName = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+;=".utf8))
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPHead.isRegNameChar(byte) == regName.contains(byte), "byte \(byte)")
        }
    }

    @Test func requestLineHostCharactersAreNginxs() {
        let host = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.".utf8))
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPHead.isRequestLineHostChar(byte) == host.contains(byte), "byte \(byte)")
        }
    }

    /// Request lines assembled at random from pieces the rules care about: whatever the parser
    /// accepts must be plausible at every length.
    @Test func randomRequestLinesAcceptedByTheParserArePlausible() {
        let methods = ["GET", "get", "OPTIONS", "CONNECT", "M-SEARCH", "X_1", "TRACE", ""]
        let pieces = ["/", "*", "http://", "HTTPS://", "h", "H", ":", "@", "%", "%0", "%00", "%4a", "0", "?", "[", "]",
                      "::1", ".", "..", "_", ",", "#", "~", " "]
        let starts = ["/", "/", "http://h", "HTTPS://[::1]:8", "*", ""]
        let versions = [" HTTP/1.1", " HTTP/1.0", " HTTP/2.0", " HTTP/1.1 ", ""]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(seed >> 33) % n
        }
        var accepted = 0
        for _ in 0..<20_000 {
            var line = methods[next(methods.count)] + (next(8) == 0 ? "" : " ") + starts[next(starts.count)]
            for _ in 0..<next(6) { line += pieces[next(pieces.count)] }
            line += versions[next(versions.count)]
            let bytes = Array((line + "\r\n\r\n").utf8)
            guard (try? HTTPHead.parseRequest(bytes)) != nil else { continue }
            accepted += 1
            for end in 0...bytes.count where !HTTPHead.isPlausibleRequestStart(bytes[0..<end]) {
                Issue.record("\(line.debugDescription) is parsed but its first \(end) bytes are refused")
                break
            }
        }
        #expect(accepted > 1000)
    }

    /// What the parser accepts is plausible at every length, as the fuzz oracle requires.
    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "M-SEARCH /a%41?q=%zz HTTP/1.0\r\n\r\n",
        "GET http://h:81/x HTTP/1.1\r\nHost: h:81\r\n\r\n", "GET HTTPS://H HTTP/1.1\r\nHost: h\r\n\r\n",
        "X_Y /x HTTP/1.1\r\nHost: [::1]\r\n\r\n",
    ])
    func acceptedRequestsArePlausibleAtEveryLength(raw: String) throws {
        let bytes = Array(raw.utf8)
        _ = try HTTPHead.parseRequest(bytes).checkRequest()
        for end in 0...bytes.count {
            #expect(HTTPHead.isPlausibleRequestStart(bytes[0..<end]), "first \(end) bytes")
        }
    }
}
