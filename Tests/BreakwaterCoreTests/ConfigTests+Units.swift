import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("2s", .seconds(2)), ("1.5s", .milliseconds(1500)),
        ("1.1s", .milliseconds(1100)), ("10m", .seconds(600)), ("1h", .seconds(3600)), ("250us", .microseconds(250)),
        ("250µs", .microseconds(250)), ("1d", .seconds(86_400)), ("3ns", .nanoseconds(3)), ("0s", .zero),
        ("0.5m", .seconds(30)), ("1.000000001s", .nanoseconds(1_000_000_001)),
    ])
    func durationsParse(_ text: String, _ expected: Duration) {
        #expect(Duration(parsing: text) == expected)
    }

    @Test(arguments: ["", "-5s", "+5s", "5", "5x", "5S", "s", ".5s", "1.s", "1.5.5s", " 5s", "5 s", "5s ",
                      "1.0000000001s", "1.5ns", "999999999999d", "1e3s", "５s"])
    func malformedDurationsAreRefused(_ text: String) {
        #expect(Duration(parsing: text) == nil)
    }

    @Test(arguments: [Duration.zero, .nanoseconds(7), .milliseconds(1500), .seconds(90), .seconds(600),
                      .seconds(86_400 * 3), .microseconds(1001)])
    func durationTextReadsBackExactly(_ d: Duration) {
        #expect(Duration(parsing: d.confText) == d)
    }

    @Test func durationTextUsesTheLargestExactUnit() {
        #expect(Duration.seconds(600).confText == "10m")
        #expect(Duration.milliseconds(1500).confText == "1500ms")
        #expect(Duration.seconds(86_400).confText == "1d")
    }

    @Test(arguments: [
        ("10MB", 10 << 20), ("512KB", 512 << 10), ("1GiB", 1 << 30), ("16k", 16 << 10), ("16K", 16 << 10),
        ("2g", 2 << 30), ("3MiB", 3 << 20), ("100", 100), ("1b", 1), ("0", 0),
    ])
    func sizesUseNginxBinaryUnits(_ text: String, _ bytes: Int) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "MB", "1.5MB", "-1", "10XB", "10 MB", "1TB", "99999999999GB", " 1k"])
    func malformedSizesAreRefused(_ text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test func sizesAcceptPlainIntegersAndStrings() throws {
        let config = try Config.parse("[server]\nmax_header_bytes = 8192\nmax_body_bytes = \"1MB\"\n", file: "s.conf")
        #expect(config.server.maxHeaderBytes == 8192)
        #expect(config.server.maxBodyBytes == 1_048_576)
        #expect(ByteSize.format(10 << 20) == "10MiB")
        #expect(ByteSize.format(1_000_000) == "1000000")
    }

    @Test(arguments: [("10r/s", 10.0), ("600r/m", 10.0), ("1r/m", 1.0 / 60), ("0.5r/s", 0.5), ("5r/s", 5.0)])
    func ratesParse(_ text: String, _ perSecond: Double) {
        #expect(Rate(parsing: text) == Rate(perSecond: perSecond))
    }

    @Test(arguments: ["", "10", "10r/h", "0r/s", "-1r/s", "r/s", "10 r/s", "10R/S", "infr/s", "nanr/s"])
    func malformedRatesAreRefused(_ text: String) {
        #expect(Rate(parsing: text) == nil)
    }

    @Test func rateTextReadsBackExactly() {
        for n in 1...2000 {
            let perMinute = Rate(perSecond: Double(n) / 60)
            #expect(Rate(parsing: perMinute.confText) == perMinute, "\(n)r/m")
        }
        for rate in [Rate(perSecond: 1e-6), Rate(perSecond: 2.5), Rate(perSecond: 10_000)] {
            #expect(Rate(parsing: rate.confText) == rate, "\(rate.confText)")
        }
        #expect(Rate(perSecond: 7.0 / 60).confText == "7r/m")
    }

    @Test func redisURLsParseWithDefaults() throws {
        let plain = try #require(RedisURL(parsing: "redis://cache.internal"))
        #expect(plain.address == HostPort(host: "cache.internal", port: 6379))
        #expect(plain.password == nil && plain.user == nil && plain.database == 0)
        let full = try #require(RedisURL(parsing: "redis://app:s3cret@10.0.0.5:6380/3"))
        #expect(full.address == HostPort(host: "10.0.0.5", port: 6380))
        #expect(full.user == "app" && full.password == "s3cret" && full.database == 3)
        let v6 = try #require(RedisURL(parsing: "redis://:pw@[::1]:7000"))
        #expect(v6.address == HostPort(host: "::1", port: 7000) && v6.user == nil && v6.password == "pw")
        for bad in ["http://h:1", "redis://", "redis://h:0", "redis://h:x", "redis://h:1/x", "redis://pw@h:1", "redis://h:"] {
            #expect(RedisURL(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func routesAreCheckedForShadowingOnlyAtSegmentBoundaries() throws {
        let text = BadConf.route("a", "/api") + BadConf.route("b", "/api2/")
        #expect(try Config.parse(text, file: "ok.conf").routes.count == 2)
        #expect(Config.covers("/api/", "/api/v1"))
        #expect(Config.covers("/", "/x"))
        #expect(!Config.covers("/api/v1", "/api/"))
    }

    @Test func listenersClashOnlyOnTheSameSocket() {
        let any = HostPort(host: "0.0.0.0", port: 80), lo = HostPort(host: "127.0.0.1", port: 80)
        #expect(Config.clash(any, lo))
        #expect(!Config.clash(lo, HostPort(host: "127.0.0.2", port: 80)))
        #expect(!Config.clash(HostPort(host: "127.0.0.1", port: 0), HostPort(host: "127.0.0.1", port: 0)))
        #expect(Config.loopsBack(any, HostPort(host: "localhost", port: 80)))
        #expect(!Config.loopsBack(any, HostPort(host: "10.0.0.9", port: 80)))
    }
}
