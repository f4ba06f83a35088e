import Testing
@testable import BreakwaterCore

struct GRPCStatusTests {
    @Test func onTakesGRPCEntriesBesideStatusesAndRendersThemBack() throws {
        let text = """
            [backoff]
            on = [401, "connect", "grpc:16", "grpc:14"]
            [[route]]
            name = "rpc"
            path = "/pkg.Service/"
            backoff = { on = ["grpc:7"] }
            """
        let config = try Config.parse(text, file: "grpc.conf")
        #expect(config.backoff.on == ErrorSet(statuses: [401], connect: true, timeout: false, grpcStatuses: [14, 16]))
        #expect(config.routes[0].backoff.on == ErrorSet(statuses: [], connect: false, timeout: false, grpcStatuses: [7]))
        let rendered = config.render()
        #expect(rendered.contains(#"on = [401, "connect", "grpc:14", "grpc:16"]"#), "\(rendered)")
        #expect(try Config.parse(rendered, file: "rendered.conf") == config)
    }

    @Test(arguments: [#""grpc:0""#, #""grpc:17""#, #""grpc:""#, #""grpc:x""#, #""grpc:+5""#, #""grpc:016""#, #""grpc: 5""#])
    func aBadGRPCEntryIsRefusedWithWhatIsAllowed(entry: String) throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse("[backoff]\non = [\(entry)]\n", file: "conf/x.conf")
        }
        #expect(error?.description.hasPrefix("conf/x.conf: backoff.on: got \(entry); allowed: ") == true, "\(String(describing: error))")
        #expect(error?.description.contains(#""grpc:N" (N from 1 to 16"#) == true)
    }

    @Test func aRouteCountsAGRPCStatusOnlyWhenOnListsIt() throws {
        let config = try Config.parse("[backoff]\non = [401, \"grpc:16\"]\n", file: "c.conf")
        let route = RouteTable(config: config).match("/pkg.Service/Call")
        #expect(route.classify(status: 200, grpcStatus: 16) == .error)
        #expect(route.classify(status: 200, grpcStatus: 0) == .success)
        #expect(route.classify(status: 200, grpcStatus: 14) == .success)
        #expect(route.classify(status: 200, grpcStatus: nil) == .success)
        // The HTTP status still counts on its own.
        #expect(route.classify(status: 401, grpcStatus: 0) == .error)
        #expect(route.classify(status: 401, grpcStatus: nil) == .error)
    }

    @Test func parsesOnlyDecimalCodes() {
        #expect(GRPCStatus.parse("0") == 0)
        #expect(GRPCStatus.parse("16") == 16)
        #expect(GRPCStatus.parse("123") == 123)
        #expect(GRPCStatus.parse("") == nil)
        #expect(GRPCStatus.parse("1234") == nil)
        #expect(GRPCStatus.parse(" 8") == nil)
        #expect(GRPCStatus.parse("-1") == nil)
        #expect(GRPCStatus.parse("8a") == nil)
    }

    @Test func knowsGRPCContentTypes() {
        #expect(GRPCStatus.isGRPC(contentType: "application/grpc"))
        #expect(GRPCStatus.isGRPC(contentType: "application/grpc+proto"))
        #expect(GRPCStatus.isGRPC(contentType: "Application/GRPC+json"))
        #expect(GRPCStatus.isGRPC(contentType: "application/grpc;charset=utf-8"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/grpc-web"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/grpcx"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/json"))
        #expect(!GRPCStatus.isGRPC(contentType: "application/grp"))
    }

    @Test func pushbackIsTheWindowInWholeMillisecondsRoundedUp() {
        #expect(GRPCStatus.pushbackMilliseconds(.seconds(8)) == 8_000)
        #expect(GRPCStatus.pushbackMilliseconds(.milliseconds(1_500)) == 1_500)
        #expect(GRPCStatus.pushbackMilliseconds(.microseconds(1_500_001)) == 1_501)
        #expect(GRPCStatus.pushbackMilliseconds(.nanoseconds(1)) == 1)
        #expect(GRPCStatus.pushbackMilliseconds(.zero) == 1)
        #expect(GRPCStatus.pushbackMilliseconds(.seconds(600)) == 600_000)
    }
}
