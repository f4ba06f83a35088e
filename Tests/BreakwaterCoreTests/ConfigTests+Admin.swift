import Foundation
import Testing
@testable import BreakwaterCore

extension ConfigTests {
    static let adminToken = "0123456789abcdef0123456789abcdef"

    @Test func adminKeysDefaultToNoTokenOnLoopback() throws {
        let config = try Config.parse("", file: "empty.conf")
        #expect(config.admin.token == "")
        #expect(config.admin.tokenFile == "")
        #expect(!config.admin.metricsPublic)
        #expect(config.admin.listen.isLoopback)
    }

    @Test func loopbackIsTheLoopbackAddressesAndLocalhost() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost"] {
            #expect(HostPort(host: host, port: 1).isLoopback, "\(host)")
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::2", "admin.internal", "::ffff:10.0.0.1"] {
            #expect(!HostPort(host: host, port: 1).isLoopback, "\(host)")
        }
    }

    @Test func aNonLoopbackAdminWithoutATokenIsRefusedNamingTheKey() throws {
        for listen in ["0.0.0.0:9901", "[::]:9901", "10.1.2.3:9901"] {
            let error = #expect(throws: ConfigError.self) {
                try Config.parse("[admin]\nlisten = \"\(listen)\"\n", file: "open.conf")
            }
            #expect(error?.key == "admin.token")
            #expect(error?.message.contains("not a loopback address") == true)
        }
        let config = try Config.parse("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"\(Self.adminToken)\"\nmetrics_public = true\n",
                                      file: "ok.conf")
        #expect(config.admin.token == Self.adminToken)
        #expect(config.admin.metricsPublic)
    }

    @Test func aShortOrSpacedTokenIsRefusedWhereverTheAdminListens() throws {
        for token in ["short", String(Self.adminToken.dropLast()), "0123456789abcdef 0123456789abcdef", "0123456789abcdef0123456789abcdeé"] {
            let error = #expect(throws: ConfigError.self) {
                try Config.parse("[admin]\ntoken = \(quote(token))\n", file: "weak.conf")
            }
            #expect(error?.key == "admin.token", "\(token)")
        }
    }

    @Test func theTokenFileIsReadWithoutItsNewlineAndNamedInErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("breakwater-conf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try (Self.adminToken + "\r\n").write(to: dir.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        let conf = dir.appendingPathComponent("b.conf").path
        let text = "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"token\"\n"
        let config = try Config.parse(text, file: conf)
        #expect(config.admin.token == Self.adminToken)
        #expect(config.admin.tokenFile == dir.appendingPathComponent("token").path)
        let rendered = config.render()
        #expect(!rendered.contains(Self.adminToken))
        #expect(try Config.parse(rendered, file: "elsewhere.conf") == config, "a token file round-trips: it is read again")

        let missing = #expect(throws: ConfigError.self) {
            try Config.parse("[admin]\ntoken_file = \"nope\"\n", file: conf)
        }
        #expect(missing?.key == "admin.token_file")
        try "short\n".write(to: dir.appendingPathComponent("short"), atomically: true, encoding: .utf8)
        let short = #expect(throws: ConfigError.self) {
            try Config.parse("[admin]\ntoken_file = \"short\"\n", file: conf)
        }
        #expect(short?.key == "admin.token_file")
        let both = #expect(throws: ConfigError.self) {
            try Config.parse("[admin]\ntoken = \"\(Self.adminToken)\"\ntoken_file = \"token\"\n", file: conf)
        }
        #expect(both?.key == "admin.token_file")
    }

    @Test func renderHidesTheTokenBehindAPlaceholderThatParseRefuses() throws {
        var config = Config()
        config.admin.listen = HostPort(host: "0.0.0.0", port: 9901)
        config.admin.token = Self.adminToken
        config.admin.metricsPublic = true
        let text = config.render()
        #expect(!text.contains(Self.adminToken))
        #expect(text.contains("\ntoken = \"<redacted>\"\n"))
        let error = #expect(throws: ConfigError.self) { try Config.parse(text, file: "rendered.conf") }
        #expect(error?.key == "admin.token")
        #expect(error?.message.contains("placeholder") == true)
        #expect(try Config.parse(config.render(showingSecrets: true), file: "rendered.conf") == config)
        #expect(Config().render().contains("\ntoken = \"\"\ntoken_file = \"\"\nmetrics_public = false\n"))
    }
}
