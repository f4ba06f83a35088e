import BreakwaterHTTP
import BreakwaterCore
import Logging
import Synchronization

/// A small API to stand behind Breakwater in demos, tests and benchmarks:
/// `/api/v1/device/<token>` answers 200 for tokens starting with "valid", else 401 (an expired
/// token); `/echo` answers with the request body; `/healthz` says ok; `/demo/requests` tells how
/// many requests the API has served, so a storm's load on it can be measured from outside.
public final class DemoAPI: @unchecked Sendable {
    /// The port the API listens on.
    public private(set) var port: UInt16 = 0
    private let group: WorkerGroup
    private let served = Atomic<Int>(0)
    private let logger: Logger

    /// An API with one event loop per `workers`.
    public init(workers: Int = 1, logger: Logger) throws {
        group = try WorkerGroup(count: workers)
        self.logger = logger
    }

    /// Binds and starts serving.
    public func start(listen: HostPort) throws {
        var limits = ReaderLimits()
        limits.maxBodyBytes = 1 << 30
        port = try group.listen(on: listen, limits: limits) { _ in Handler(api: self) }
        group.start(name: "demo-api")
        logger.info("demo API listening", metadata: ["listen": "\(HostPort(host: listen.host, port: port))"])
    }

    /// Requests served so far (not counting `/demo/requests` itself).
    public var requestsServed: Int { served.load(ordering: .relaxed) }

    /// Stops serving.
    public func shutdown(grace: Duration = .seconds(1)) { group.drain(grace: grace) }

    private final class Handler: HTTPHandler {
        let api: DemoAPI
        init(api: DemoAPI) { self.api = api }

        func handle(_ request: HTTPRequest, on connection: ClientConnection) {
            let path = request.head.path
            let json = [("Content-Type", "application/json")]
            if path == "/demo/requests" {
                connection.respond(status: 200, reason: "OK", headers: json,
                                   body: Array(#"{"requests":\#(api.requestsServed)}"#.utf8))
                return
            }
            api.served.add(1, ordering: .relaxed)
            let prefix = "/api/v1/device/"
            if path.hasPrefix(prefix) {
                let token = path.dropFirst(prefix.count)
                if token.hasPrefix("valid") {
                    connection.respond(status: 200, reason: "OK", headers: json,
                                       body: Array(#"{"device":"ok"}"#.utf8))
                } else {
                    connection.respond(status: 401, reason: "Unauthorized",
                                       headers: json + [("WWW-Authenticate", "Bearer error=\"invalid_token\"")],
                                       body: Array(#"{"error":"invalid or expired token"}"#.utf8))
                }
            } else if path == "/echo" {
                let type = request.head.combined("content-type") ?? "application/octet-stream"
                connection.beginResponse(Array("HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\n".utf8),
                                         framing: .length(request.bodyLength))
                if let body = request.body { connection.sendBody(body) }
                connection.endResponse()
            } else if path == "/healthz" {
                connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "text/plain")], body: Array("ok\n".utf8))
            } else {
                connection.respond(status: 404, reason: "Not Found", headers: [("Content-Type", "text/plain")],
                                   body: Array("404 Not Found\n".utf8))
            }
        }
    }
}
