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
    private static func parsed(_ raw: String) throws -> HTTPHead {
        let head = try HTTPHead.parseRequest(Array(raw.utf8))
        _ = try head.checkRequest()
        return head
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
}
