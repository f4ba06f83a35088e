import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// RFC 9110/9112 probes where Breakwater was once looser than nginx 1.22 or HAProxy 2.6: each is
/// now refused at least as strictly as the stricter of the two, through the real server, and the
/// upstream never sees it.
@Suite struct HostileConformanceTests {
    @Test(arguments: [
        // Host (RFC 9112 3.2): a list, a space, a path, userinfo, an empty value, two lines.
        ("GET /front HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost:\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("GET /front HTTP/1.1\r\nHost: a:port\r\n\r\n", 400),
        // Absolute-form with userinfo.
        ("GET http://user:pw@t:81/front HTTP/1.1\r\nHost: t:81\r\n\r\n", 400),
        // The request target: an encoded NUL, broken percent-encoding, `*` outside OPTIONS.
        ("GET /front%00x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET /front%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        // Methods are case-sensitive tokens; lower case is refused as nginx does.
        ("get /front HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        // TRACE (with or without a body) and CONNECT.
        ("TRACE /front HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody", 405),
        ("TRACE /front HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        ("CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 400),
        // A request line longer than nginx's 8 KiB buffer, in a head well under max_header_bytes.
        ("GET /front" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        // A bare LF ending a chunked trailer section: refused at once, not after the timeout.
        ("POST /front HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", 400),
    ])
    func probesAreRefusedAndTheUpstreamSeesNothing(raw: String, status: Int) throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        let sent = Date()
        try? socket.send(raw)
        let response = try socket.readMessage()
        #expect(response?.status == status, "\(raw.prefix(80).debugDescription)")
        #expect(Date().timeIntervalSince(sent) < 5, "answered at once, not after a timeout")
        #expect(target.stillServes())
        #expect(target.received("/front").isEmpty)
    }

    /// What both peers accept still goes through: an upper-case method, an IPv6 Host, a port.
    @Test(arguments: [
        "GET /front HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET /front HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        "GET http://t/front HTTP/1.1\r\nHost: t\r\n\r\n",
        "DELETE /front HTTP/1.1\r\nHost: t:80\r\n\r\n",
    ])
    func wellFormedRequestsAreForwarded(raw: String) throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        try socket.send(raw)
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200, "\(raw.debugDescription)")
        #expect(target.received("/front").count == 1)
    }

    /// An absolute-form target's authority replaces Host (RFC 9112 3.2.2): the upstream is sent
    /// that host, in one Host line, whatever Host the client wrote.
    @Test func theAuthorityReplacesHostUpstream() throws {
        let target = try HostileTarget()
        let socket = try TestSocket(port: target.port)
        try socket.send("GET http://api.example:8080/front HTTP/1.1\r\nHost: other.example\r\n\r\n")
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200)
        let seen = try #require(target.received("/front").first)
        #expect(seen.header("host") == "api.example:8080")
        #expect(seen.headers.filter { $0.0.lowercased() == "host" }.count == 1)
    }
}
