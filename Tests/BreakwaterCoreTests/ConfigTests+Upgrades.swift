import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test func upgradeKeysDefaultToWebSocketAndAnHour() throws {
        let config = try Config.parse("", file: "empty.conf")
        #expect(config.server.upgrades == ["websocket"])
        #expect(config.server.tunnelIdleTimeout == .seconds(3600))
        #expect(RouteConfig(name: "r", path: "/r/").upgrades == nil)
    }

    @Test func upgradeKeysParseAndTokensAreStoredLowerCase() throws {
        let text = """
            [server]
            upgrades = ["WebSocket", "foo", "TLS-1.3_x!#$%&'*+^`|~"]
            tunnel_idle_timeout = "90s"
            [[route]]
            name = "chat"
            path = "/chat/"
            upgrades = ["Foo"]
            [[route]]
            name = "plain"
            path = "/plain/"
            upgrades = []
            [[route]]
            name = "health"
            path = "/healthz"
            bypass = true
            upgrades = ["websocket"]
            [[route]]
            name = "other"
            path = "/other/"
            """
        let config = try Config.parse(text, file: "u.conf")
        #expect(config.server.upgrades == ["websocket", "foo", "tls-1.3_x!#$%&'*+^`|~"])
        #expect(config.server.tunnelIdleTimeout == .seconds(90))
        #expect(config.routes.map(\.upgrades) == [["foo"], [], ["websocket"], nil])
    }

    @Test func theServerListCanAllowNone() throws {
        let config = try Config.parse("[server]\nupgrades = []\n", file: "u.conf")
        #expect(config.server.upgrades == [])
        let table = RouteTable(config: config)
        #expect(table.defaultRoute.upgrades == [])
        #expect(!table.defaultRoute.allowsUpgrade("websocket"))
    }

    @Test func h2cIsRefusedSayingWhy() throws {
        for text in ["[server]\nupgrades = [\"websocket\", \"H2C\"]\n", BadConf.route("r", "/r/", "upgrades = [\"h2c\"]")] {
            let error = #expect(throws: ConfigError.self) { try Config.parse(text, file: "h2c.conf") }
            #expect(error?.message.contains("h2c upgrades are not supported") == true, "\(error.map(String.init(describing:)) ?? "")")
            #expect(error?.key.hasSuffix("upgrades") == true)
        }
    }

    @Test func aTokenTwiceInAnyCaseIsRefused() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[server]\nupgrades = [\"websocket\", \"WEBSOCKET\"]\n", file: "twice.conf")
        }
        #expect(error?.description == "twice.conf: server.upgrades: got \"websocket\" twice; allowed: "
                + "an array of distinct Upgrade protocol names, each an HTTP token (RFC 9110), such as [\"websocket\"]; [] allows none")
    }

    @Test func aConfigBuiltInCodeIsHeldToTheSameRules() throws {
        var config = Config()
        config.server.upgrades = ["WebSocket"]
        #expect(throws: ConfigError.self) { try config.validate(file: "code") }
        config.server.upgrades = ["websocket"]
        config.server.tunnelIdleTimeout = .zero
        let error = #expect(throws: ConfigError.self) { try config.validate(file: "code") }
        #expect(error?.key == "server.tunnel_idle_timeout")
        config.server.tunnelIdleTimeout = .seconds(1)
        var route = RouteConfig(name: "r", path: "/r/")
        route.upgrades = ["web socket"]
        config.routes = [route]
        #expect(throws: ConfigError.self) { try config.validate(file: "code") }
        config.routes[0].upgrades = ["foo"]
        try config.validate(file: "code")
    }

    @Test func renderWritesTheUpgradeKeysAndParsesBack() throws {
        var config = try Config.load(path: Self.shippedPath)
        config.server.upgrades = ["foo", "websocket"]
        config.server.tunnelIdleTimeout = .milliseconds(1500)
        config.routes[0].upgrades = []
        config.routes[1].upgrades = ["bar"]  // a bypass route may set its own list
        var plain = RouteConfig(name: "plain", path: "/plain")
        plain.backoff = config.backoff
        config.routes.append(plain)
        var none = Config()
        none.server.upgrades = []
        for c in [config, none, Config()] {
            let text = c.render()
            #expect(try Config.parse(text, file: "rendered.conf") == c, "\(text)")
        }
        let text = config.render()
        #expect(text.contains("\nupgrades = [\"foo\", \"websocket\"]\ntunnel_idle_timeout = \"1500ms\"\n"))
        #expect(text.contains("\nupgrades = []\n"))
        #expect(text.contains("\nupgrades = [\"bar\"]\n"))
        #expect(text.contains("\n# upgrades: not set, so [server] upgrades = [\"foo\", \"websocket\"] applies\n"))
    }

    @Test func resolvedRoutesCarryTheEffectiveLowerCaseList() throws {
        var config = Config()
        config.server.upgrades = ["websocket", "foo"]
        var own = RouteConfig(name: "own", path: "/own/")
        own.upgrades = ["bar"]
        var none = RouteConfig(name: "none", path: "/none/")
        none.upgrades = []
        config.routes = [own, none, RouteConfig(name: "inherits", path: "/inherits/")]
        try config.validate(file: "code")
        let table = RouteTable(config: config)
        #expect(table.match("/own/x").upgrades == ["bar"])
        #expect(table.match("/none/x").upgrades == [])
        #expect(table.match("/inherits/x").upgrades == ["websocket", "foo"])
        #expect(table.defaultRoute.upgrades == ["websocket", "foo"])

        let route = table.match("/x")
        for asked in ["websocket", "WebSocket", "FOO"] { #expect(route.allowsUpgrade(asked), "\(asked)") }
        for asked in ["", "websocke", "websockets", "bar", "h2c", "websocket/13"] { #expect(!route.allowsUpgrade(asked), "\(asked)") }
        #expect(table.match("/own/").allowsUpgrade("BAR"))
        #expect(!table.match("/own/").allowsUpgrade("websocket"))

        // Built from parts, the list is lower-cased too; the default is WebSocket.
        let parts = ResolvedRoute(index: 0, name: "p", path: "/", keyParts: [.ip], policy: BackoffPolicy(), rate: nil, burst: 0,
                                  bypass: false, upgrades: ["WebSocket"])
        #expect(parts.upgrades == ["websocket"])
        #expect(ResolvedRoute(index: 0, name: "p", path: "/", keyParts: [.ip], policy: BackoffPolicy(), rate: nil, burst: 0,
                              bypass: false).upgrades == ["websocket"])
    }

    @Test func shippedConfSetsTheUpgradeDefaults() throws {
        let text = try readFile(Self.shippedPath)
        #expect(text.contains("\nupgrades = [\"websocket\"]\n"))
        #expect(text.contains("\ntunnel_idle_timeout = \"1h\"\n"))
    }
}
