@testable import BreakwaterHTTP
import Testing

/// One spelling per path: what routes match and what goes upstream.
@Suite struct NormalizedPathTests {
    private static func normal(_ path: String) throws -> String? {
        try NormalizedPath.of(ArraySlice(path.utf8)).map { String(decoding: $0.path, as: UTF8.self) }
    }

    private static func matched(_ path: String) throws -> String {
        guard let n = try NormalizedPath.of(ArraySlice(path.utf8)) else { return path }
        return String(decoding: n.matchPath, as: UTF8.self)
    }

    @Test func aNormalPathIsLeftAlone() throws {
        for path in ["/", "/device/", "/api/v1/device/abc", "/a.b/c..d/.e", "/x-y_z~"] {
            #expect(try Self.normal(path) == nil, "\(path)")
        }
    }

    @Test func everySpellingOfARouteIsTheRoute() throws {
        for path in ["/%64evice/", "/./device/", "/x/../device/", "//device/", "/device/./", "/%2e/device/",
                     "/x/%2E%2E/device/", "///device//"] {
            #expect(try Self.matched(path) == "/device/", "\(path)")
        }
        #expect(try Self.matched("/device;x=1/") == "/device/")
        #expect(try Self.normal("/device;x=1/") == "/device;x=1/")   // parameters go upstream as sent
        #expect(try Self.normal("/a/b/..") == "/a/")
        #expect(try Self.normal("/a/.") == "/a/")
    }

    @Test func escapesThatAreNotUnreservedKeepTheirEncodingInUpperCase() throws {
        #expect(try Self.normal("/a%20b/%7e/%3f") == "/a%20b/~/%3F")
    }

    @Test func whatCannotBeNormalisedIsRefused() {
        for path in ["/a%2Fb/", "/a%2fb", "/../x", "/a/../../x", "/%zz", "/%4"] {
            #expect(throws: HTTPError.self, "\(path)") { try NormalizedPath.of(ArraySlice(path.utf8)) }
        }
    }
}
