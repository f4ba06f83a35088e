import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test func http2KeysDefaultToNoH2cA128StreamLimitAndH2FirstInALPN() throws {
        let config = try Config.parse("", file: "empty.conf")
        #expect(config.server.h2c == false)
        #expect(config.server.h2MaxStreams == 128)
        let tls = try Config.parse("[tls]\ncertificates = [ { cert = \"a.pem\", key = \"a.key\" } ]\n", file: "t.conf")
        #expect(tls.tls?.alpn == ["h2", "http/1.1"])
    }

    @Test func http2KeysParseAndRenderBack() throws {
        let text = """
            [server]
            h2c = true
            h2_max_streams = 16
            [tls]
            certificates = [ { cert = "a.pem", key = "a.key" } ]
            alpn = ["http/1.1", "h2"]
            """
        let config = try Config.parse(text, file: "h2.conf")
        #expect(config.server.h2c)
        #expect(config.server.h2MaxStreams == 16)
        #expect(config.tls?.alpn == ["http/1.1", "h2"])
        let rendered = config.render()
        #expect(rendered.contains("\nh2c = true\n") && rendered.contains("\nh2_max_streams = 16\n"), "\(rendered)")
        #expect(try Config.parse(rendered, file: "rendered.conf") == config)
    }

    @Test func aBadStreamLimitSaysWhatIsAllowed() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[server]\nh2_max_streams = 0\n", file: "conf/x.conf")
        }
        #expect(error?.description == "conf/x.conf: server.h2_max_streams: got 0; allowed: an integer from 1 to 65536")
    }
}
