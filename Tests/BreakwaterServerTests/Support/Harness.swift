import BreakwaterCore
import Foundation
import Logging
@testable import BreakwaterServer

/// A Breakwater proxy running in-process on a free loopback port in front of `upstreamPorts`.
final class Harness {
    let server: ProxyServer
    var port: UInt16 { server.port }

    init(upstreamPorts: [UInt16], workers: Int = 2, configure: (inout Config) -> Void = { _ in }) throws {
        var config = Config()
        config.server.listen = HostPort(host: "127.0.0.1", port: 0)
        config.server.workers = workers
        config.admin.listen = HostPort(host: "127.0.0.1", port: 0)
        config.upstream.servers = upstreamPorts.map { HostPort(host: "127.0.0.1", port: $0) }
        config.server.gracePeriod = .seconds(2)
        configure(&config)
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["BREAKWATER_TEST_LOG"] == nil ? .critical : .debug
        server = try ProxyServer(config: config, logger: logger)
        try server.start()
    }

    deinit { server.shutdown() }
}

/// Polls `condition` every 10 ms for at most `seconds`.
func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
