import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test func upstreamProtocolDefaultsToHTTP1AndAnH2RouteRendersBack() throws {
        let text = """
            [[route]]
            name = "rpc"
            path = "/pkg.Service/"
            upstream_protocol = "h2"
            [[route]]
            name = "rest"
            path = "/api/"
            """
        let config = try Config.parse(text, file: "grpc.conf")
        #expect(config.routes.map(\.upstreamProtocol) == [.h2, .http1])
        let table = RouteTable(config: config)
        #expect(table.match("/pkg.Service/Call").upstreamH2)
        #expect(!table.match("/api/x").upstreamH2)
        #expect(!table.match("/other").upstreamH2)
        let rendered = config.render()
        #expect(rendered.contains("upstream_protocol = \"h2\""), "\(rendered)")
        #expect(try Config.parse(rendered, file: "rendered.conf") == config)
    }

    @Test func aBadUpstreamProtocolSaysWhatIsAllowed() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[[route]]\nname = \"a\"\npath = \"/a\"\nupstream_protocol = \"h3\"\n", file: "conf/x.conf")
        }
        #expect(error?.description == #"conf/x.conf: route[0].upstream_protocol: got "h3"; allowed: "http1" or "h2""#)
    }
}
