import BreakwaterCore
import Logging
@testable import BreakwaterServer

/// The demo API, in-process on a free loopback port, as the real upstream of a test.
func startDemoAPI() throws -> DemoAPI {
    var logger = Logger(label: "demo")
    logger.logLevel = .warning
    let api = try DemoAPI(logger: logger)
    try api.start(listen: HostPort(host: "127.0.0.1", port: 0))
    return api
}
