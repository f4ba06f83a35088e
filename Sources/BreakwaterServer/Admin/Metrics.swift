import BreakwaterCore
import Prometheus
import Atomics
import Synchronization

/// What happened to a request at the proxy (the `outcome` label).
enum RequestOutcome: String, CaseIterable {
    case forwarded, shielded, probe_wait, rate_limited, bypassed, rejected, circuit_open
}

/// What the upstream did (the `class` label).
enum UpstreamClass: String, CaseIterable {
    case c2xx = "2xx", c3xx = "3xx", c4xx = "4xx", c5xx = "5xx", connect_error, timeout

    init(status: Int) {
        switch status {
        case ..<300: self = .c2xx
        case ..<400: self = .c3xx
        case ..<500: self = .c4xx
        default: self = .c5xx
        }
    }
}

/// The metric handles of one route, created once so the hot path never looks anything up.
final class RouteMetrics: Sendable {
    let name: String
    private let requests: [Counter]
    private let upstream: [Counter]
    /// `requests` and `upstream` again, held without reference counting (the arrays above keep
    /// the counters alive): a request counted retains and releases no counter.
    private let requestHandles: [CounterHandle]
    private let upstreamHandles: [CounterHandle]
    private let dryRun: Counter
    private let retries: [Counter]
    /// Tunnels opened on this route (`breakwater_tunnels_total{route}`).
    let tunnels: Counter
    /// 1 while the route's circuit is open (`breakwater_route_circuit_open{route}`).
    let circuitOpen: Gauge
    let upstreamDuration: DurationHistogram
    let backoffWindow: DurationHistogram
    /// The process-wide totals that `/stats` and the series read back.
    let totals: Totals

    init(name: String, registry: PrometheusCollectorRegistry, totals: Totals) {
        self.name = name
        self.totals = totals
        // Indexed by protocol, then outcome: `requestIndex`.
        requests = WireProtocol.allCases.flatMap { wire in
            RequestOutcome.allCases.map {
                registry.makeCounter(descriptor: .breakwater("requests", "total", "Requests by route, what the proxy did with them, and the protocol they came in on."),
                                     labels: [("route", name), ("outcome", $0.rawValue), ("protocol", wire.rawValue)])
            }
        }
        upstream = UpstreamClass.allCases.map {
            registry.makeCounter(descriptor: .breakwater("upstream_responses", "total", "Upstream outcomes by route: status class, connect_error or timeout."),
                                 labels: [("route", name), ("class", $0.rawValue)])
        }
        requestHandles = requests.map { CounterHandle(counter: $0) }
        upstreamHandles = upstream.map { CounterHandle(counter: $0) }
        retries = RetryPolicy.Reason.allCases.map {
            registry.makeCounter(descriptor: .breakwater("upstream_retries", "total", "Requests sent to the upstream again after a transient failure."),
                                 labels: [("route", name), ("reason", $0.rawValue)])
        }
        dryRun = registry.makeCounter(descriptor: .breakwater("dry_run", "total", "Requests forwarded in dry-run mode that enforce mode would have answered with 429."),
                                      labels: [("route", name)])
        tunnels = registry.makeCounter(descriptor: .breakwater("tunnels", "total", "Upgraded connections (WebSocket and other protocols) tunnelled, by route."),
                                       labels: [("route", name)])
        circuitOpen = registry.makeGauge(descriptor: .breakwater("route_circuit", "open", "1 while the route's circuit is open: its upstream fails for every client, one probe a window goes through, the rest get 503."),
                                         labels: [("route", name)])
        upstreamDuration = registry.makeDurationHistogram(
            descriptor: .breakwater("upstream_request_duration", "seconds", "Time from forwarding a request to the upstream's response head."),
            labels: [("route", name)],
            buckets: [.milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                      .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)])
        backoffWindow = registry.makeDurationHistogram(
            descriptor: .breakwater("backoff_window", "seconds", "Backoff windows imposed on clients."), labels: [("route", name)],
            buckets: [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30),
                      .seconds(60), .seconds(120), .seconds(300), .seconds(600), .seconds(1800)])
    }

    func count(_ outcome: RequestOutcome, over wire: WireProtocol, totals: Totals) {
        requestHandles[(wire == .http1 ? 0 : RequestOutcome.allCases.count) + outcome.index].increment()
        totals.add(outcome)
    }

    func count(_ upstreamClass: UpstreamClass) {
        upstreamHandles[upstreamClass.index].increment()
        totals.add(upstreamClass)
    }

    func countDryRun() { dryRun.increment() }

    func countRetry(_ reason: RetryPolicy.Reason) {
        retries[RetryPolicy.Reason.allCases.firstIndex(of: reason)!].increment()
    }
}

/// A counter held without reference counting, by an owner that also keeps it strongly.
struct CounterHandle: @unchecked Sendable {
    private let counter: Unmanaged<Counter>

    init(counter: Counter) { self.counter = .passUnretained(counter) }

    /// `Counter.increment`, the counter borrowed rather than retained for the call.
    @inline(__always)
    func increment() { counter._withUnsafeGuaranteedRef { $0.increment() } }
}

/// Totals since start for `/stats` and the series (Prometheus counters cannot be read back):
/// requests per outcome, upstream responses per class, backoff windows imposed.
final class Totals: Sendable {
    /// Atomics in storage of their own, freed by `deinit`: an element is a pointer, so a request
    /// counted retains and releases nothing (an element of an array of `ManagedAtomic`s is an
    /// object, retained around each increment).
    private let counts = RequestOutcome.allCases.map { _ in UnsafeAtomic<Int>.create(0) }
    private let classes = UpstreamClass.allCases.map { _ in UnsafeAtomic<Int>.create(0) }
    private let windows = ManagedAtomic<Int>(0)

    deinit {
        for count in counts { _ = count.destroy() }
        for count in classes { _ = count.destroy() }
    }

    /// One request had `outcome`.
    func add(_ outcome: RequestOutcome) { counts[outcome.index].wrappingIncrement(ordering: .relaxed) }

    /// Requests with `outcome` so far.
    func value(_ outcome: RequestOutcome) -> Int { counts[outcome.index].load(ordering: .relaxed) }

    /// One upstream attempt ended in `upstreamClass`.
    func add(_ upstreamClass: UpstreamClass) { classes[upstreamClass.index].wrappingIncrement(ordering: .relaxed) }

    /// Upstream attempts that ended in `upstreamClass` so far.
    func value(_ upstreamClass: UpstreamClass) -> Int { classes[upstreamClass.index].load(ordering: .relaxed) }

    /// One backoff window was imposed on a client.
    func addWindow() { windows.wrappingIncrement(ordering: .relaxed) }

    /// Backoff windows imposed so far.
    var windowsImposed: Int { windows.load(ordering: .relaxed) }
}

extension RequestOutcome {
    /// Position in `allCases` (a switch: `allCases` builds an array on every use).
    var index: Int {
        switch self {
        case .forwarded: 0
        case .shielded: 1
        case .probe_wait: 2
        case .rate_limited: 3
        case .bypassed: 4
        case .rejected: 5
        case .circuit_open: 6
        }
    }
}

extension UpstreamClass {
    /// Position in `allCases`.
    var index: Int {
        switch self {
        case .c2xx: 0
        case .c3xx: 1
        case .c4xx: 2
        case .c5xx: 3
        case .connect_error: 4
        case .timeout: 5
        }
    }
}

/// Every metric of one proxy process: the registry, per-route handles, and process gauges
/// refreshed at scrape time.
final class ProxyMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let totals = Totals()
    private let routes = Mutex<[String: RouteMetrics]>([:])
    private let trackedClients: Gauge
    private let blockedClients: Gauge
    private let evictions: Counter
    private let evictionsSeen = Mutex(0)
    let redisErrors: Counter
    /// Upstream servers and their health, for `breakwater_upstream_server_up`.
    private let servers = Mutex<[(UpstreamHealth, Gauge)]>([])
    /// The upstream servers of the config in force, for `/stats`.
    private let currentServers = Mutex<[UpstreamHealth]>([])
    /// The Redis links of the stores in force; nil without `[redis]`.
    private let redisLinks = Mutex<RedisLinks?>(nil)
    private let residentMemory: Gauge
    private let openFDs: Gauge
    private let startTime: Gauge
    /// Tunnels open now, and the bytes tunnels relayed each way.
    private let tunnelsActive = Atomic<Int>(0)
    private let tunnelBytes: (toUpstream: Counter, toClient: Counter)
    /// The bytes counted by the relays (a relaxed atomic add each), and how much of them the
    /// counters above were given: they catch up when the metrics are rendered.
    private let tunnelBytesToUpstream = Atomic<Int>(0)
    private let tunnelBytesToClient = Atomic<Int>(0)
    private let tunnelBytesSeen = Mutex((toUpstream: 0, toClient: 0))
    private let tunnelsActiveGauge: Gauge
    /// HTTP/2 connections and streams open now.
    private let h2Connections = Atomic<Int>(0)
    private let h2Streams = Atomic<Int>(0)
    private let h2ConnectionsGauge: Gauge
    private let h2StreamsGauge: Gauge
    /// The bound on bodies being received, shown by `breakwater_buffered_body_bytes`.
    private let bodies = Mutex<BodyBudget?>(nil)
    private let bufferedBodyBytes: Gauge
    /// The TLS listener whose handshakes and certificates are shown, and the handshakes counted so far.
    private let tls = Mutex<(endpoint: TLSEndpoint, seen: [Int])?>(nil)
    /// The expiry gauges shown, by certificate name: a certificate no longer served (replaced by
    /// a reload) loses its gauge, or an alert on it would fire for nothing.
    private let expiryGauges = Mutex<[String: Gauge]>([:])
    let started = LoopClock().now
    /// `[state]`: entries written by the last save, how long it took, and entries loaded at start.
    private let stateSavedEntries: Gauge
    private let stateSaveSeconds: Gauge
    private let stateLoadedEntries: Gauge

    init() {
        trackedClients = registry.makeGauge(descriptor: .breakwater("tracked", "clients", "Clients in the tracker table."))
        blockedClients = registry.makeGauge(descriptor: .breakwater("blocked", "clients", "Clients inside a backoff window."))
        evictions = registry.makeCounter(descriptor: .breakwater("evictions", "total", "Tracker entries evicted to stay within max_clients."))
        redisErrors = registry.makeCounter(descriptor: .breakwater("redis_errors", "total", "Redis calls that failed or timed out (the local tracker decided)."))
        residentMemory = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "resident_memory", unitName: "bytes", helpText: "Resident memory size in bytes."))
        openFDs = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "open", unitName: "fds", helpText: "Number of open file descriptors."))
        startTime = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "start_time", unitName: "seconds", helpText: "Start time of the process since the Unix epoch in seconds."))
        startTime.set(Double(ProcessStats.startTime()))
        tunnelsActiveGauge = registry.makeGauge(descriptor: .breakwater("tunnels", "active", "Tunnels open now."))
        h2ConnectionsGauge = registry.makeGauge(descriptor: .breakwater("h2_connections", "active", "HTTP/2 client connections open now."))
        h2StreamsGauge = registry.makeGauge(descriptor: .breakwater("h2_streams", "active", "HTTP/2 streams open now, over all client connections."))
        bufferedBodyBytes = registry.makeGauge(descriptor: .breakwater("buffered_body", "bytes",
                                                                       "Bytes of request bodies being received, held in memory (bounded by max_buffered_bytes)."))
        let bytes = MetricNameDescriptor.breakwater("tunnel_bytes", "total", "Bytes relayed through tunnels, by direction.")
        tunnelBytes = (registry.makeCounter(descriptor: bytes, labels: [("direction", "to_upstream")]),
                       registry.makeCounter(descriptor: bytes, labels: [("direction", "to_client")]))
        stateSavedEntries = registry.makeGauge(descriptor: .breakwater("state_saved", "entries", "Tracker entries written to the state file by the last save."))
        stateSaveSeconds = registry.makeGauge(descriptor: .breakwater("state_save", "seconds", "How long the last save of the state file took."))
        stateLoadedEntries = registry.makeGauge(descriptor: .breakwater("state_loaded", "entries", "Tracker entries loaded at start, from the state file or handed over by a hot upgrade."))
        registry.makeGauge(descriptor: .breakwater("build", "info", "Always 1; the version label says which build runs."),
                           labels: [("version", Breakwater.version)]).set(Int64(1))
    }

    /// The handles of route `name`, created on first use (at start and reload, not per request).
    func route(_ name: String) -> RouteMetrics {
        routes.withLock { table in
            if let existing = table[name] { return existing }
            let made = RouteMetrics(name: name, registry: registry, totals: totals)
            table[name] = made
            return made
        }
    }

    /// Adds upstream servers to the `breakwater_upstream_server_up` gauge; they are the servers in force.
    func watch(_ health: [UpstreamHealth]) {
        currentServers.withLock { $0 = health }
        servers.withLock { list in
            for h in health where !list.contains(where: { $0.0 === h }) {
                let gauge = registry.makeGauge(descriptor: .breakwater("upstream_server", "up", "1 while the upstream server is in rotation, 0 while it is skipped after failures."),
                                               labels: [("server", h.endpoint.description)])
                list.append((h, gauge))
            }
        }
    }

    /// Shows the TLS listener's handshakes (`breakwater_tls_handshakes_total{result}`) and the
    /// expiry of the certificates it serves (`breakwater_tls_certificate_expiry_timestamp_seconds{name}`).
    func watch(tls endpoint: TLSEndpoint) {
        tls.withLock { watched in
            watched = (endpoint, watched?.seen ?? TLSEndpoint.Result.allCases.map { _ in 0 })
        }
    }

    /// Shows whether the Redis links of the stores in force are connected; nil without `[redis]`.
    func watch(redis links: [RedisLink]?) {
        let view = links.map(RedisLinks.init)
        redisLinks.withLock { $0 = view }
    }

    /// Each upstream server in force and whether it is in rotation.
    func upstreamServers() -> [(server: String, up: Bool)] {
        currentServers.withLock { $0 }.map { ($0.endpoint.description, $0.isUp()) }
    }

    /// With `[redis]`: how many workers' links are connected, out of how many; nil without it.
    func redisState() -> (connected: Int, links: Int)? {
        guard let view = redisLinks.withLock({ $0 }) else { return nil }
        return (view.links.filter { $0.isReadyFlag.load(ordering: .relaxed) }.count, view.links.count)
    }

    /// The certificates the TLS listener serves: name and expiry (seconds since the epoch).
    func certificates() -> [(name: String, notAfter: Int64)] {
        tls.withLock { $0?.endpoint.context.certificates.map { ($0.name, $0.notAfter) } } ?? []
    }

    private func renderTLS() {
        tls.withLock { watched in
            guard let (endpoint, seen) = watched else { return }
            var now = seen
            for (i, result) in TLSEndpoint.Result.allCases.enumerated() {
                let counter = registry.makeCounter(descriptor: .breakwater("tls_handshakes", "total", "TLS handshakes by how they ended."),
                                                   labels: [("result", result.rawValue)])
                let total = endpoint.total(result)
                if total > seen[i] { counter.increment(by: Int64(total - seen[i])) }
                now[i] = max(seen[i], total)
            }
            watched = (endpoint, now)
            let served = endpoint.context.certificates
            expiryGauges.withLock { gauges in
                for (name, gauge) in gauges where !served.contains(where: { $0.name == name }) {
                    registry.unregisterGauge(gauge)
                    gauges[name] = nil
                }
                for certificate in served {
                    let gauge = gauges[certificate.name] ?? registry.makeGauge(
                        descriptor: .breakwater("tls_certificate_expiry_timestamp", "seconds",
                                                "When each served certificate expires, since the Unix epoch."),
                        labels: [("name", certificate.name)])
                    gauges[certificate.name] = gauge
                    gauge.set(Double(certificate.notAfter))
                }
            }
        }
    }

    /// A save of the state file wrote `entries` in `seconds`.
    func stateSaved(entries: Int, seconds: Double) {
        stateSavedEntries.set(Double(entries))
        stateSaveSeconds.set(seconds)
    }

    /// `entries` were loaded from the state file at start.
    func stateLoaded(_ entries: Int) { stateLoadedEntries.set(Double(entries)) }

    /// HTTP/2 client connections opened (+1) or closed (-1).
    func h2ConnectionsChanged(by delta: Int) { h2Connections.wrappingAdd(delta, ordering: .relaxed) }

    /// HTTP/2 streams opened (+1) or closed (-1).
    func h2StreamsChanged(by delta: Int) { h2Streams.wrappingAdd(delta, ordering: .relaxed) }
    /// Shows the bytes of bodies being received (`breakwater_buffered_body_bytes`).
    func watch(bodies budget: BodyBudget) { bodies.withLock { $0 = budget } }

    /// A tunnel opened.
    func tunnelOpened() { tunnelsActive.wrappingAdd(1, ordering: .relaxed) }

    /// A tunnel closed.
    func tunnelClosed() { tunnelsActive.wrappingSubtract(1, ordering: .relaxed) }

    /// `n` bytes went through a tunnel.
    func countTunnelBytes(_ n: Int, toUpstream: Bool) {
        if toUpstream {
            tunnelBytesToUpstream.wrappingAdd(n, ordering: .relaxed)
        } else {
            tunnelBytesToClient.wrappingAdd(n, ordering: .relaxed)
        }
    }

    private func renderTunnelBytes() {
        let (up, down) = (tunnelBytesToUpstream.load(ordering: .relaxed), tunnelBytesToClient.load(ordering: .relaxed))
        tunnelBytesSeen.withLock { seen in
            if up > seen.toUpstream { tunnelBytes.toUpstream.increment(by: Int64(up - seen.toUpstream)) }
            if down > seen.toClient { tunnelBytes.toClient.increment(by: Int64(down - seen.toClient)) }
            seen = (max(seen.toUpstream, up), max(seen.toClient, down))
        }
    }

    /// The exposition text, with gauges refreshed from the tracker and the process.
    func render(tracker: ErrorTracker<LoopClock>) -> [UInt8] {
        tunnelsActiveGauge.set(Int64(tunnelsActive.load(ordering: .relaxed)))
        h2ConnectionsGauge.set(Int64(h2Connections.load(ordering: .relaxed)))
        h2StreamsGauge.set(Int64(h2Streams.load(ordering: .relaxed)))
        renderTunnelBytes()
        if let budget = bodies.withLock({ $0 }) { bufferedBodyBytes.set(Int64(budget.bytes)) }
        renderTLS()
        for (health, gauge) in servers.withLock({ $0 }) { gauge.set(Int64(health.isUp() ? 1 : 0)) }
        trackedClients.set(Double(tracker.trackedCount))
        blockedClients.set(Double(tracker.blockedCount))
        let total = tracker.evictions
        evictionsSeen.withLock { seen in
            if total > seen { evictions.increment(by: Int64(total - seen)) }
            seen = max(seen, total)
        }
        residentMemory.set(Double(ProcessStats.residentBytes()))
        openFDs.set(Double(ProcessStats.openFileDescriptors()))
        return registry.emitToBuffer()
    }
}

/// The Redis links of the stores in force, read from any thread only through their atomic
/// `isReadyFlag`; each link is otherwise used on its own worker.
final class RedisLinks: @unchecked Sendable {
    /// The links, one per worker.
    let links: [RedisLink]

    /// A view of `links`.
    init(_ links: [RedisLink]) { self.links = links }
}

extension MetricNameDescriptor {
    /// `breakwater_NAME_UNIT` with its help text.
    static func breakwater(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "breakwater", metricName: name, unitName: unit, helpText: help)
    }
}
