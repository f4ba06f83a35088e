import Testing
@testable import BreakwaterCore

/// A conf file that must be refused, and the key its error must name.
struct BadConf: Sendable, CustomTestStringConvertible {
    /// Names the case in test output and the file in the expected error.
    let name: String
    /// The conf file's text.
    let text: String
    /// The exact key the error must name.
    let key: String

    /// A case from its parts.
    init(name: String, text: String, key: String) {
        self.name = name
        self.text = text
        self.key = key
    }

    /// The same, with the text last where it is long.
    init(name: String, key: String, text: String) {
        self.init(name: name, text: text, key: key)
    }

    /// The case's name, so a failure says which file was accepted.
    var testDescription: String { name }
}

@Suite struct ConfigTests {
    /// The repository's conf/breakwater.conf, found from this file so the test runs from any directory.
    static let shippedPath: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/BreakwaterCoreTests/ConfigTests.swift
        return parts.joined(separator: "/") + "/conf/breakwater.conf"
    }()

    @Test func shippedConfIsTheDefaultsPlusTheExampleRoutes() throws {
        let config = try Config.load(path: Self.shippedPath)
        var expected = Config()
        expected.server.listen = HostPort(host: "127.0.0.1", port: 8080)
        var device = RouteConfig(name: "device", path: "/api/v1/device/")
        device.key = [.header("authorization"), .route]
        device.backoff.base = .seconds(1)
        device.backoff.max = .seconds(1800)
        device.rate = Rate(perSecond: 5)
        device.burst = 10
        var health = RouteConfig(name: "health", path: "/healthz")
        health.bypass = true
        expected.routes = [device, health]
        expected.clients.key = [.header("authorization")]
        expected.state.file = Config.directory(of: Self.shippedPath) + "state/breakwater.state"
        #expect(config == expected)
    }

    @Test func theShippedConfHasNoWarningAndAnAddressKeyedRouteCountingFourOhOneHasOne() throws {
        #expect(try Config.load(path: Self.shippedPath).warnings.isEmpty)
        var config = Config()
        #expect(config.warnings.count == 1, "the code's defaults: key ip, on 401 and 403")
        config.backoff.on.statuses = [500, 502]
        #expect(config.warnings.isEmpty)
        config.backoff.on.statuses = [403]
        config.clients.key = [.ip, .header("authorization")]
        #expect(config.warnings.isEmpty)
        var route = RouteConfig(name: "r", path: "/r/")
        route.key = [.route, .ip]
        config.routes = [route]
        #expect(config.warnings.count == 1)
        #expect(config.warnings[0].hasPrefix(#"route "r": 401 and 403"#))
    }

    @Test func shippedRedisSectionUncommentedAsksForAHashKey() throws {
        let text = try readFile(Self.shippedPath)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex(of: "# [redis]"))
        // The shipped hash_key is "": [redis] needs one of its own.
        let uncommented = (lines[..<start] + lines[start...].map { $0.dropFirst(2) }).joined(separator: "\n")
        let error = #expect(throws: ConfigError.self) {
            try Config.parse(uncommented, file: "redis.conf")
        }
        #expect(error?.key == "clients.hash_key")
        let withKey = uncommented
            .replacing("hash_key = \"\"", with: "hash_key = \"0123456789abcdef\"")
        #expect(try Config.parse(withKey, file: "redis.conf").redis == RedisConfig())
    }

    @Test func stateSectionReadsItsKeysAndResolvesTheFileAgainstTheConfsDirectory() throws {
        let text = "[clients]\nhash_key = \"0123456789abcdef\"\n[state]\nfile = \"state/./bw.state\"\nsave_interval = \"30s\"\n"
        let config = try Config.parse(text, file: "/etc/breakwater/breakwater.conf")
        #expect(config.state.file == "/etc/breakwater/state/bw.state")
        #expect(config.state.saveInterval == .seconds(30))
        // Without a hash_key: the key is kept beside the state file (the server's part).
        let keyless = try Config.parse("[state]\nfile = \"bw.state\"\n", file: "/etc/breakwater/breakwater.conf")
        #expect(keyless.clients.hashKey.isEmpty && keyless.state.file == "/etc/breakwater/bw.state")
        let absolute = try Config.parse(text.replacing("state/./bw.state", with: "/srv/bw.state"), file: "x.conf")
        #expect(absolute.state.file == "/srv/bw.state")
        #expect(Config().state == StateConfig())
        #expect(StateConfig().file.isEmpty && StateConfig().saveInterval == .seconds(10))
    }

    @Test func emptyFileGivesTheDefaults() throws {
        #expect(try Config.parse("", file: "empty.conf") == Config())
        #expect(try Config.parse("# nothing\n\n", file: "empty.conf") == Config())
    }

    @Test func renderParsesBackToAnEqualConfig() throws {
        var odd = try Config.load(path: Self.shippedPath)
        odd.server.maxBodyBytes = 1_000_001
        odd.server.headerTimeout = .milliseconds(1500)
        odd.server.accessLog = "/var/log/breakwater \"access\".log"
        odd.upstream.servers = [HostPort(host: "::1", port: 9000), HostPort(host: "api.internal", port: 80)]
        odd.upstream.retryOn = [500, 599]
        odd.upstream.retryBudget = 0
        odd.clients.trustedProxies = [CIDR(parsing: "10.0.0.0/8")!, CIDR(parsing: "fd00::/8")!]
        odd.clients.hashKey = "0123456789abcdef\\\u{1}"
        odd.backoff.on = ErrorSet(statuses: [429], connect: false, timeout: true)
        odd.backoff.factor = 1.5
        odd.backoff.mode = .dryRun
        odd.backoff.strategy = .linear
        odd.routes[0].rate = Rate(parsing: "7r/m")
        odd.routes[0].backoff.on = ErrorSet(statuses: [], connect: true, timeout: false)
        odd.routes[1].backoff = odd.backoff  // a bypass route takes no overrides, only [backoff]
        odd.routes.append(RouteConfig(name: "plain", path: "/plain"))
        odd.server.upgrades = ["websocket", "foo"]
        odd.server.tunnelIdleTimeout = .seconds(5)
        odd.server.h2c = true
        odd.server.h2MaxStreams = 1000
        odd.routes[0].upgrades = []
        odd.redis = RedisConfig()
        odd.redis?.url = "redis://:secret@[::1]:6380/2"
        odd.state.file = "/var/lib/breakwater/a \"state\" file"
        odd.state.saveInterval = .milliseconds(2500)
        for config in [Config(), try Config.load(path: Self.shippedPath), odd] {
            let text = config.render(showingSecrets: true)
            #expect(try Config.parse(text, file: "rendered.conf") == config, "\(text)")
        }
    }

    @Test func renderShowsEveryKeyIncludingDefaults() {
        let text = Config().render()
        for key in ["listen", "workers", "max_header_bytes", "max_body_bytes", "header_timeout", "idle_timeout",
                    "grace_period", "access_log", "servers", "connect_timeout", "timeout", "max_connections",
                    "retries", "retry_base", "retry_on", "retry_budget", "key", "trusted_proxies", "ipv6_prefix",
                    "hash_key", "max_clients", "on", "strategy", "base", "factor", "max", "jitter", "threshold",
                    "reset_after", "mode", "tls", "tls_server_name", "tls_ca", "tls_verify", "upgrades",
                    "tunnel_idle_timeout", "file", "save_interval", "h2c", "h2_max_streams"] {
            #expect(text.contains("\n\(key) = "), "\(key)")
        }
        #expect(text.contains("max_body_bytes = \"10MiB\""))
        #expect(text.contains("# [redis]"))
        #expect(text.contains("# [tls]"))
    }

    @Test func routeBackoffMergesOverTheSectionInAnyOrder() throws {
        let section = "[backoff]\nfactor = 3\njitter = 0.1\non = [401]\n"
        let route = "[[route]]\nname = \"r\"\npath = \"/r/\"\nbackoff = { base = \"1s\", on = [503, \"timeout\"] }\n"
        let before = try Config.parse(section + route, file: "before.conf")
        let after = try Config.parse(route + section, file: "after.conf")
        #expect(before == after)
        let merged = before.routes[0].backoff
        #expect(merged.base == .seconds(1))
        #expect(merged.factor == 3)
        #expect(merged.jitter == 0.1)
        #expect(merged.max == .seconds(600))
        #expect(merged.on == ErrorSet(statuses: [503], connect: false, timeout: true))
        #expect(before.backoff.base == .milliseconds(500))
    }

    @Test func headerNamesAreStoredLowerCase() throws {
        let config = try Config.parse("[clients]\nkey = [\"header:X-Api-Key\", \"ip\"]\n", file: "k.conf")
        #expect(config.clients.key == [.header("x-api-key"), .ip])
    }

    @Test func tlsFingerprintIsAKeyPart() throws {
        let text = "[clients]\nkey = [\"tls:fingerprint\"]\n" + BadConf.route("r", "/r/", "key = [\"route\", \"tls:fingerprint\", \"ip\"]")
        let config = try Config.parse(text, file: "k.conf")
        #expect(config.clients.key == [.tlsFingerprint])
        #expect(config.routes[0].key == [.route, .tlsFingerprint, .ip])
        #expect(KeyPart.tlsFingerprint.description == "tls:fingerprint")
    }

    @Test func aBadValueIsDescribedWithFileKeyValueAndWhatIsAllowed() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[server]\nworkers = -3\n", file: "conf/x.conf")
        }
        #expect(error?.description == "conf/x.conf: server.workers: got -3; allowed: an integer from 0 (one per core) to 1024")
    }

    @Test func aMisspeltKeySuggestsTheRightOne() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[server]\nlistne = \"127.0.0.1:80\"\n", file: "typo.conf")
        }
        #expect(error?.key == "server.listne")
        #expect(error?.message.contains("did you mean \"listen\"") == true)
    }

    @Test func anUnreadableFileIsAFileError() throws {
        let error = #expect(throws: ConfigError.self) { try Config.load(path: "/nonexistent/breakwater.conf") }
        #expect(error?.key == "file")
        #expect(error?.description.contains("/nonexistent/breakwater.conf") == true)
    }

    @Test func aSyntaxErrorNamesTheLine() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[server]\nworkers = 2\nlisten = = \"x\"\n", file: "syntax.conf")
        }
        #expect(error?.key == "syntax")
        #expect(error?.message.hasPrefix("line 3, column ") == true)
    }

    @Test(arguments: BadConf.all)
    func aBadFileIsRefusedNamingTheKey(_ bad: BadConf) throws {
        let file = "conf/bad-\(bad.name).conf"
        let error = #expect(throws: ConfigError.self) { try Config.parse(bad.text, file: file) }
        #expect(error?.key == bad.key, "\(error.map(String.init(describing:)) ?? "")")
        #expect(error?.description.hasPrefix(file + ": " + bad.key + ": ") == true)
        #expect(error?.allowed.isEmpty == false)
    }
}
