import Testing
@testable import BreakwaterCore

@Suite struct RouteTableTests {
    func config() -> Config {
        var config = Config()
        config.clients.key = [.ip]
        config.backoff.base = .seconds(2)
        var device = RouteConfig(name: "device", path: "/api/v1/device/")
        device.key = [.header("Authorization"), .route]
        device.backoff.max = .seconds(1_800)
        device.rate = Rate(perSecond: 5)
        device.burst = 10
        var api = RouteConfig(name: "api", path: "/api/")
        api.backoff.on = ErrorSet(statuses: [500], connect: true, timeout: false)
        var health = RouteConfig(name: "health", path: "/healthz")
        health.bypass = true
        config.routes = [device, api, health]
        return config
    }

    @Test func firstMatchingPrefixWins() {
        let table = RouteTable(config: config())
        #expect(table.match("/api/v1/device/abc").name == "device")
        #expect(table.match("/api/v1/other").name == "api")
        #expect(table.match("/api/").name == "api")
        #expect(table.match("/healthz").bypass)
        #expect(table.match("/api/v1/device/abc").rate == Rate(perSecond: 5))
        #expect(table.match("/api/v1/device/abc").burst == 10)
    }

    @Test func unmatchedPathsGetTheDefaultRoute() {
        let table = RouteTable(config: config())
        let route = table.match("/other")
        #expect(route.name == "default")
        #expect(route.index == 3)
        #expect(route.index == table.routes.count - 1)
        #expect(route.keyParts == [.ip])
        #expect(route.policy.base == .seconds(2))
        #expect(route.rate == nil)
        #expect(!route.bypass)
        #expect(table.match("/ap").name == "default")
        #expect(table.match("").name == "default")
        #expect(table.defaultRoute.name == "default")
    }

    @Test func indexesFollowFileOrder() {
        let table = RouteTable(config: config())
        #expect(table.routes.map(\.name) == ["device", "api", "health", "default"])
        #expect(table.routes.map(\.index) == [0, 1, 2, 3])
    }

    @Test func routeWithoutKeyUsesClientsKeyAndHeaderNamesAreLowerCased() {
        let table = RouteTable(config: config())
        #expect(table.match("/api/v1/device/x").keyParts == [.header("authorization"), .route])
        #expect(table.match("/api/x").keyParts == [.ip])
    }

    @Test func routeClassifiesWithItsOwnErrorSet() {
        let table = RouteTable(config: config())
        let api = table.match("/api/x")
        #expect(api.classify(status: 500) == .error)
        #expect(api.classify(status: 401) == .success)
        let device = table.match("/api/v1/device/x")
        #expect(device.classify(status: 401) == .error)
        #expect(device.classify(status: 200) == .success)
    }

    @Test func matchesRawBytesAndSubstrings() {
        let table = RouteTable(config: config())
        let target = "/api/v1/device/abc?x=1"
        let path = target[..<target.firstIndex(of: "?")!]
        #expect(table.match(path).name == "device")
        let byBytes = Array("/healthz".utf8).withUnsafeBytes { table.match(pathBytes: $0) }
        #expect(byBytes.name == "health")
    }

    @Test func emptyConfigHasOnlyTheDefault() {
        let table = RouteTable(config: Config())
        #expect(table.routes.count == 1)
        #expect(table.match("/anything").index == 0)
    }
}
