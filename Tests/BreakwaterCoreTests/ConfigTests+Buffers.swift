import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test func maxBufferedBytesDefaultsToOneHundredMebibytesAndParsesSizes() throws {
        #expect(try Config.parse("", file: "empty.conf").server.maxBufferedBytes == 100 << 20)
        let config = try Config.parse("[server]\nmax_buffered_bytes = \"64MB\"\n", file: "b.conf")
        #expect(config.server.maxBufferedBytes == 64 << 20)
        #expect(try Config.parse("[server]\nmax_buffered_bytes = 1000\n", file: "b.conf").server.maxBufferedBytes == 1000)
        // The effective config spells it, and reads back the same.
        let rendered = config.render()
        #expect(rendered.contains("max_buffered_bytes = \"64MiB\""), "\(rendered)")
        #expect(try Config.parse(rendered, file: "rendered.conf").server.maxBufferedBytes == 64 << 20)
    }
}
