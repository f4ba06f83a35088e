import Foundation
import Testing
@testable import BreakwaterCore

/// `breakwater check` prints the effective config: none of the conf's secrets may appear in it,
/// and what it prints in their place must not run if pasted back.
@Suite struct ConfigSecretsTests {
    static let hashKey = "hash-key-0123456789-abcdef"
    static let password = "redis-pass-9876543210"
    static let text = """
        [clients]
        hash_key = "\(hashKey)"
        [redis]
        url = "redis://app:\(password)@127.0.0.1:6380/2"
        """

    @Test func renderHidesTheHashKeyAndTheRedisPassword() throws {
        let config = try Config.parse(Self.text, file: "b.conf")
        let rendered = config.render()
        #expect(!rendered.contains(Self.hashKey))
        #expect(!rendered.contains(Self.password))
        #expect(rendered.contains("\nhash_key = \"<redacted>\"\n"))
        #expect(rendered.contains("\nurl = \"redis://app:<redacted>@127.0.0.1:6380/2\"\n"))
        #expect(try Config.parse(config.render(showingSecrets: true), file: "b.conf") == config)
    }

    @Test func thePlaceholdersAreRefusedWhereTheyStand() throws {
        let rendered = try Config.parse(Self.text, file: "b.conf").render()
        let hashKey = #expect(throws: ConfigError.self) { try Config.parse(rendered, file: "b.conf") }
        #expect(hashKey?.key == "clients.hash_key")
        #expect(hashKey?.message.contains("placeholder") == true)

        let withKey = rendered.replacingOccurrences(of: "hash_key = \"<redacted>\"", with: "hash_key = \"\(Self.hashKey)\"")
        let url = #expect(throws: ConfigError.self) { try Config.parse(withKey, file: "b.conf") }
        #expect(url?.key == "redis.url")
        #expect(url?.message.contains("placeholder") == true)
    }

    @Test func aMalformedRedisURLIsQuotedWithoutItsPassword() throws {
        let text = "[clients]\nhash_key = \"\(Self.hashKey)\"\n[redis]\nurl = \"redis://app:\(Self.password)@127.0.0.1:99999\"\n"
        let error = #expect(throws: ConfigError.self) { try Config.parse(text, file: "b.conf") }
        #expect(error?.key == "redis.url")
        #expect(error?.description.contains(Self.password) == false)
        #expect(error?.description.contains("redis://app:<redacted>@127.0.0.1:99999") == true)
    }

    @Test func urlsWithoutAPasswordAreLeftAsTheyAre() {
        for url in ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/3", "redis://user@127.0.0.1", "not a url"] {
            #expect(RedisURL.redactingPassword(url) == url)
        }
        #expect(RedisURL.redactingPassword("redis://:p@ss@h:1") == "redis://:<redacted>@h:1")
    }
}
