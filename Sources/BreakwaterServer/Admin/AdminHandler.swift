import BreakwaterCore
import FoundationEssentials
private import CLibevent

/// The admin listener: the dashboard page at `/`, `/metrics`, `/stats`, `/stats/series`, `/healthz`,
/// `POST /clients/reset` (`key=HASH`, or `ip=`, `header=NAME&value=` and `route=`), nothing else. It runs on the first worker and reads that
/// worker's proxy context and the series, so it needs no lock.
///
/// With `admin.token` set, every request but `/healthz` and the page (static, it holds no data and
/// asks for the token) must carry the token, and `/metrics` too unless `metrics_public`; the token
/// in force is the context's, so a reload can rotate it.
final class AdminHandler: HTTPHandler {
    private let proxy: ProxyHandler
    private let worker: Worker
    private let auth = AdminAuth()
    private let series: Series

    init(proxy: ProxyHandler, worker: Worker, series: Series) {
        self.proxy = proxy
        self.worker = worker
        self.series = series
    }

    func handle(_ request: HTTPRequest, on connection: ClientConnection) {
        let context = proxy.context
        let method = request.head.method
        let path = String(request.head.path)
        let admin = context.config.admin
        let open = path == "/healthz" || path == "/" || (path == "/metrics" && admin.metricsPublic)
        if !admin.token.isEmpty && !open && !auth.authorized(request.head, token: admin.token) {
            return connection.respond(status: 401, reason: "Unauthorized",
                                      headers: [("WWW-Authenticate", #"Bearer realm="breakwater admin""#), ("Content-Type", "text/plain")],
                                      body: Array("401 Unauthorized: send Authorization: Bearer <admin.token>\n".utf8))
        }
        switch path {
        case "/metrics":
            guard method == "GET" || method == "HEAD" else { return notAllowed(connection, "GET") }
            connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                               body: context.metrics.render(tracker: context.tracker))
        case "/stats":
            guard method == "GET" || method == "HEAD" else { return notAllowed(connection, "GET") }
            connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "application/json")],
                               body: stats(context))
        case "/stats/series":
            guard method == "GET" || method == "HEAD" else { return notAllowed(connection, "GET") }
            let query = URLComponents(string: request.head.target)?.queryItems ?? []
            let since = query.first(where: { $0.name == "since" })?.value.flatMap { Int($0) } ?? 0
            connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                               body: series.json(since: since))
        case "/":
            guard method == "GET" || method == "HEAD" else { return notAllowed(connection, "GET") }
            connection.respond(status: 200, reason: "OK", headers: DashboardPage.headers, body: DashboardPage.bytes)
        case "/healthz":
            if worker.draining {
                connection.respond(status: 503, reason: "Service Unavailable", headers: [("Content-Type", "text/plain")],
                                   body: Array("draining\n".utf8))
            } else {
                connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "text/plain")], body: Array("ok\n".utf8))
            }
        case "/clients/reset":
            guard method == "POST" else { return notAllowed(connection, "POST") }
            if let why = AdminAuth.crossOrigin(request.head) {
                return connection.respond(status: 403, reason: "Forbidden", headers: [("Content-Type", "text/plain")],
                                          body: Array("403 Forbidden: cross-origin request refused (\(why))\n".utf8))
            }
            reset(request, context, connection)
        default:
            connection.respond(status: 404, reason: "Not Found", headers: [("Content-Type", "text/plain")],
                               body: Array("404 Not Found\n".utf8))
        }
    }

    private func notAllowed(_ connection: ClientConnection, _ allowed: String) {
        connection.respond(status: 405, reason: "Method Not Allowed", headers: [("Allow", allowed), ("Content-Type", "text/plain")],
                           body: Array("405 Method Not Allowed\n".utf8))
    }

    private func reset(_ request: HTTPRequest, _ context: ProxyContext, _ connection: ClientConnection) {
        let items = (URLComponents(string: request.head.target)?.queryItems ?? []) + Self.formItems(request.body)
        let form = ResetForm(items: items.map { (name: $0.name, value: $0.value) })
        let key: ClientKey
        switch form.key(routes: context.routes, identity: context.identity) {
        case .success(let found):
            key = found
        case .failure(let problem):
            connection.respond(status: 400, reason: "Bad Request", headers: [("Content-Type", "text/plain")],
                               body: Array("\(problem.message)\n".utf8))
            return
        }
        proxy.store.forget(key) { known in
            if known {
                connection.respond(status: 200, reason: "OK", headers: [("Content-Type", "application/json")],
                                   body: Array(#"{"reset":"\#(key)"}"#.utf8))
            } else {
                connection.respond(status: 404, reason: "Not Found", headers: [("Content-Type", "application/json")],
                                   body: Array(#"{"error":"unknown key","key":"\#(key)"}"#.utf8))
            }
        }
    }

    /// The fields of an `application/x-www-form-urlencoded` body (`curl --data-urlencode`), so a
    /// token need not go in the URL; at most 8 KiB of it is read.
    private static func formItems(_ body: OpaquePointer?) -> [URLQueryItem] {
        guard let body else { return [] }
        let length = min(evbuffer_get_length(body), 8192)
        guard length > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: length)
        guard evbuffer_copyout(body, &bytes, length) == length else { return [] }
        let text = String(decoding: bytes, as: UTF8.self).replacing("+", with: "%20")
        return URLComponents(string: "/?" + text)?.queryItems ?? []
    }

    private struct Stats: Encodable {
        struct Offender: Encodable {
            var key: String
            var route: String
            var level: Int
            var consecutive_errors: Int
            var window_remaining_seconds: Double
            var probe_in_flight: Bool
        }
        struct Server: Encodable {
            var server: String
            var up: Bool
        }
        struct Redis: Encodable {
            var configured: Bool
            var connected: Bool
            var links_connected: Int
            var links: Int
        }
        struct Certificate: Encodable {
            var name: String
            var not_after: Int64
        }
        var version: String
        var now: Double
        var uptime_seconds: Double
        var requests: [String: Int]
        var upstream_responses: [String: Int]
        var windows_imposed: Int
        var tracked_clients: Int
        var blocked_clients: Int
        var evictions: Int
        var upstream_servers: [Server]
        var redis: Redis
        var tls_certificates: [Certificate]
        var top: [Offender]
    }

    private func stats(_ context: ProxyContext) -> [UInt8] {
        let now = LoopClock().nanoseconds()
        let routes = context.routes.routes
        let uptime = context.metrics.started.duration(to: LoopClock().now)
        let top = context.tracker.top(20).map { client in
            Stats.Offender(key: client.key.description,
                           route: routes.indices.contains(client.routeIndex) ? routes[client.routeIndex].name : "?",
                           level: client.level, consecutive_errors: client.consecutiveErrors,
                           window_remaining_seconds: Double(max(0, client.windowEnd - now)) / 1e9,
                           probe_in_flight: client.probeInFlight)
        }
        let metrics = context.metrics
        let redis = metrics.redisState()
        let stats = Stats(
            version: Breakwater.version, now: Series.wallClock(),
            uptime_seconds: Double(uptime.clampedNanoseconds) / 1e9,
            requests: Dictionary(uniqueKeysWithValues: RequestOutcome.allCases.map { ($0.rawValue, metrics.totals.value($0)) }),
            upstream_responses: Dictionary(uniqueKeysWithValues: UpstreamClass.allCases.map { ($0.rawValue, metrics.totals.value($0)) }),
            windows_imposed: metrics.totals.windowsImposed,
            tracked_clients: context.tracker.trackedCount, blocked_clients: context.tracker.blockedCount,
            evictions: context.tracker.evictions,
            upstream_servers: metrics.upstreamServers().map { Stats.Server(server: $0.server, up: $0.up) },
            redis: Stats.Redis(configured: redis != nil, connected: redis.map { $0.links > 0 && $0.connected == $0.links } ?? false,
                               links_connected: redis?.connected ?? 0, links: redis?.links ?? 0),
            tls_certificates: metrics.certificates().map { Stats.Certificate(name: $0.name, not_after: $0.notAfter) },
            top: top)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(stats)) ?? Data("{}".utf8)) + [0x0a]
    }
}
