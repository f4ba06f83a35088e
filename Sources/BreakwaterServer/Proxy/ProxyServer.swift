import BreakwaterHTTP
import BreakwaterCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A running Breakwater: the proxy listener on every worker, sharing one tracker.
public final class ProxyServer: @unchecked Sendable {
    /// The config in force.
    public private(set) var config: Config
    /// The port the proxy listens on (the real one when the config asked for port 0).
    public private(set) var port: UInt16 = 0
    /// The port of the admin listener.
    public private(set) var adminPort: UInt16 = 0
    /// The port of the TLS listener; 0 without `[tls]`.
    public private(set) var tlsPort: UInt16 = 0
    /// The TLS listener's certificates and counters; nil without `[tls]`.
    private var tlsEndpoint: TLSEndpoint?
    /// TLS towards the upstream servers; nil unless `[upstream] tls = true`.
    private var upstreamTLS: TLSClientContext?
    private let logger: Logger
    private let group: WorkerGroup
    private var handlers: [ProxyHandler] = []
    private let hasher: KeyedHasher
    private let tracker: ErrorTracker<LoopClock>
    private let rateLimiter: RateLimiter<LoopClock>
    let metrics = ProxyMetrics()
    /// `[server] max_buffered_bytes`, shared by the workers.
    private let bodyBudget = BodyBudget(limit: ServerConfig().maxBufferedBytes)
    /// The last 15 minutes at one-second steps, sampled and served on the first worker.
    private let series = Series()
    /// Health of each upstream server, shared by all workers; kept by endpoint across reloads.
    private var health: [UpstreamHealth] = []
    /// One Redis-backed tracker store per worker while `[redis]` is set; touched only by the
    /// thread that calls start, reload and shutdown (each store itself lives on its worker).
    private var redisStores: [RedisStore] = []
    /// Saves and loads the tracker while `[state] file` is set.
    private(set) var state: StateKeeper?
    /// Set once a hot upgrade handed the listeners to a new process, which now owns the state file.
    private var handedOver = false

    /// Prepares workers and the shared tracker; nothing listens until `start`. `handedKey` is the
    /// hash key of the process this one replaces (a hot upgrade): taken when the conf sets no
    /// `hash_key` and `[state]` keeps no key file, so the tracker handed over stays readable.
    public init(config: Config, logger: Logger, handedKey: KeyedHasher? = nil) throws {
        self.config = config
        self.logger = logger
        let workers = config.server.workers == 0 ? WorkerGroup.defaultCount() : config.server.workers
        group = try WorkerGroup(count: workers)
        hasher = try Self.hasher(for: config, handed: handedKey, logger: logger)
        var random = SystemRandomNumberGenerator()
        let seed = random.next()
        tracker = ErrorTracker(maxClients: config.clients.maxClients, clock: LoopClock(), seed: seed)
        rateLimiter = RateLimiter(maxKeys: config.clients.maxClients, clock: LoopClock())
        upstreamTLS = try Self.upstreamTLS(config.upstream)
        if let tls = config.tls {
            let tickets = TLSTicketKeys(interval: tls.sessionTicketRotation)
            tlsEndpoint = TLSEndpoint(context: try TLSServerContext(Self.tlsSettings(tls), tickets: tickets), tickets: tickets,
                                      handshakeTimeout: tls.handshakeTimeout)
        }
    }

    /// Binds the listeners (or adopts those `inherited` from the process this one replaces) and
    /// starts the loops.
    public func start(inherited: HotUpgrade.Inherited = HotUpgrade.Inherited()) throws {
        var sockets = inherited.sockets
        func adopt(_ endpoint: HostPort) -> [Int32] { sockets.removeValue(forKey: endpoint) ?? [] }
        signal(SIGPIPE, SIG_IGN)
        let context = makeContext(config)
        health = Self.health(for: config.upstream, keeping: [])
        metrics.watch(health)
        let health = self.health
        bodyBudget.limit = config.server.maxBufferedBytes
        for worker in group.workers { worker.bodyBudget = bodyBudget }
        metrics.watch(bodies: bodyBudget)
        let sink = try config.server.accessLog.map { try AccessLogSink(target: $0) }
        // Before the listeners open: the first request already meets the saved windows.
        let received = inherited.isUpgrade && receiveState(inherited)
        if !config.state.file.isEmpty {
            let keeper = StateKeeper(config: config.state, tracker: tracker, hasher: hasher, metrics: metrics, logger: logger)
            if !received { keeper.load() }
            state = keeper
        }
        port = try group.listen(on: config.server.listen, limits: Self.limits(config.server),
                                h2: config.server.h2c ? Self.h2Settings(config.server, priorKnowledge: true) : nil,
                                inherited: adopt(config.server.listen)) { worker in
            let handler = try ProxyHandler(worker: worker, context: context, accessLog: sink.map { AccessLog(sink: $0, worker: worker) },
                                           logger: logger, health: health)
            handlers.append(handler)
            return handler
        }
        if let tls = config.tls, let tlsEndpoint {
            metrics.watch(tls: tlsEndpoint)
            tlsPort = try group.listen(on: tls.listen, limits: Self.limits(config.server), tls: tlsEndpoint,
                                       h2: Self.h2Settings(config.server, priorKnowledge: false), inherited: adopt(tls.listen)) { handlers[$0.index] }
        }
        adminPort = try group.listen(on: config.admin.listen, limits: ReaderLimits(), onlyFirst: true, keepWhileDraining: true,
                                     inherited: adopt(config.admin.listen)) {
            AdminHandler(proxy: handlers[0], worker: $0, series: series)
        }
        // Sockets of listeners the conf no longer names are not ours to keep.
        for fd in sockets.values.joined() { close(fd) }
        installStores(config.redis)
        group.start(name: "breakwater")
        schedulePurge(on: group.workers[0])
        state?.start()
        scheduleSample(on: group.workers[0])
        var listening: Logger.Metadata = [
            "listen": "\(HostPort(host: config.server.listen.host, port: port))",
            "admin": "\(HostPort(host: config.admin.listen.host, port: adminPort))",
            "workers": "\(group.workers.count)",
            "upstreams": "\(config.upstream.servers.map(\.description).joined(separator: ","))",
        ]
        if let tls = config.tls { listening["tls"] = "\(HostPort(host: tls.listen.host, port: tlsPort))" }
        logger.info("breakwater listening", metadata: listening)
    }

    /// Applies a new config to new requests; the tracker's state and open connections carry over.
    /// Returns the keys that changed but need a restart to take effect (listeners, workers, the
    /// tracker's size and hash key); those keep their running values. Throws, changing nothing,
    /// when an upstream server cannot be resolved, or when the new admin token would leave the
    /// running (non-loopback) admin listener without one.
    @discardableResult
    public func reload(_ newConfig: Config) throws -> [String] {
        var applied = newConfig
        var needsRestart: [String] = []
        func keep<T: Equatable>(_ name: String, _ path: WritableKeyPath<Config, T>) {
            if applied[keyPath: path] != config[keyPath: path] {
                needsRestart.append(name)
                applied[keyPath: path] = config[keyPath: path]
            }
        }
        keep("server.listen", \.server.listen)
        keep("server.workers", \.server.workers)
        keep("server.h2c", \.server.h2c)
        keep("server.h2_max_streams", \.server.h2MaxStreams)
        keep("admin.listen", \.admin.listen)
        // The listener stays where it is, so the new token is judged against the running address.
        try applied.validateAdminToken(file: "the reloaded conf")
        keep("clients.max_clients", \.clients.maxClients)
        keep("clients.hash_key", \.clients.hashKey)
        keep("state.file", \.state.file)
        keep("state.save_interval", \.state.saveInterval)
        if (applied.tls == nil) != (config.tls == nil) {
            needsRestart.append("tls")
            applied.tls = config.tls
        } else if var tls = applied.tls, let running = config.tls {
            if tls.listen != running.listen { needsRestart.append("tls.listen") }
            if tls.handshakeTimeout != running.handshakeTimeout { needsRestart.append("tls.handshake_timeout") }
            tls.listen = running.listen
            tls.handshakeTimeout = running.handshakeTimeout
            applied.tls = tls
        }
        // Certificates are read again on every reload (the files may have been replaced under the
        // same names). Whatever does not load refuses the whole reload, so nothing has changed yet.
        var tlsContext: TLSServerContext?
        if let tls = applied.tls, let tlsEndpoint {
            tlsContext = try TLSServerContext(Self.tlsSettings(tls), tickets: tlsEndpoint.tickets)
        }
        let upstreamChanged = applied.upstream != config.upstream
        var newUpstreamTLS = upstreamTLS
        if upstreamChanged { newUpstreamTLS = try Self.upstreamTLS(applied.upstream) }
        if upstreamChanged {
            for server in applied.upstream.servers { _ = try SocketAddress(server) }
            health = Self.health(for: applied.upstream, keeping: health)
            metrics.watch(health)
        }
        let health = self.health
        let logChanged = applied.server.accessLog != config.server.accessLog
        let redisChanged = applied.redis != config.redis
        let sink = logChanged ? try applied.server.accessLog.map { try AccessLogSink(target: $0) } : nil
        config = applied
        bodyBudget.limit = applied.server.maxBufferedBytes
        upstreamTLS = newUpstreamTLS
        if let tlsContext, let tls = applied.tls {
            // A reload rotates the ticket keys once: tickets of the key in use still resume.
            tlsEndpoint?.tickets.setInterval(tls.sessionTicketRotation)
            tlsEndpoint?.tickets.rotate()
            tlsEndpoint?.replace(with: tlsContext)
        }
        let context = makeContext(applied)
        for (worker, handler) in zip(group.workers, handlers) {
            worker.execute {
                handler.context = context
                handler.retryBudget.fraction = applied.upstream.retryBudget
                if logChanged {
                    handler.accessLog?.flush()
                    handler.accessLog = sink.map { AccessLog(sink: $0, worker: worker) }
                }
                if upstreamChanged, let pool = try? UpstreamPool(worker: worker, config: applied.upstream, health: health,
                                                                 tls: context.upstreamTLS) {
                    handler.pool.closeIdle()
                    handler.pool = pool
                }
            }
        }
        if redisChanged { installStores(applied.redis) }
        return needsRestart
    }

    /// Stops accepting, lets in-flight requests finish (up to `server.grace_period`), saves the
    /// tracker when `[state] file` is set, and returns when all loops ended and the file is written.
    /// `closingIdle`: idle keep-alive connections are closed at once (a stop); false after a hot
    /// upgrade: each is answered once more, with `Connection: close`, so no client meets a
    /// connection closed under its next request.
    public func shutdown(closingIdle: Bool = true) {
        installStores(nil)
        group.drain(grace: config.server.gracePeriod, closingIdle: closingIdle)
        for handler in handlers { handler.accessLog?.flush() }
        // After the drain, so the outcomes of the last requests are in the file; after a hot
        // upgrade the new process owns the file, and this one's last view would overwrite it.
        state?.stop(save: !handedOver)
    }

    /// A hot upgrade: starts the binary now on disk with `arguments`, hands it every listening
    /// socket and, when it asks (just before it opens its listeners), the tracker, and waits up to
    /// `timeout` for it to report ready. Then the caller drains this process with
    /// `shutdown(closingIdle: false)` (the new one accepts meanwhile from the same sockets).
    /// Throws, still serving, when the new process cannot start.
    public func upgrade(arguments: [String], timeout: Duration = .seconds(30)) throws(HotUpgrade.Failure) -> HotUpgrade.Handover {
        guard !handedOver else { throw HotUpgrade.Failure(description: "already handed over to another process") }
        let tracker = self.tracker
        let fingerprint = StateFile.fingerprint(of: hasher)
        let handover = try HotUpgrade.spawn(executable: HotUpgrade.executablePath, arguments: arguments,
                                            sockets: group.listening, key: hasher.keyBytes, timeout: timeout) {
            tracker.saveState(fingerprint: fingerprint, clocks: StateKeeper.clocks())
        }
        handedOver = true
        // The new process owns the state file now: this one's later view would overwrite it.
        state?.stop(save: false)
        return handover
    }

    /// Takes the tracker from the process this one replaces; false when none came (the state
    /// file is read instead). A tracker in a bad shape is refused in one line: it starts empty.
    private func receiveState(_ inherited: HotUpgrade.Inherited) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try inherited.receiveState()
        } catch {
            logger.warning("upgrade: no tracker from the previous process, reading the state file if any: \(error)")
            return false
        }
        do {
            let (header, taken) = try tracker.loadState(bytes, fingerprint: StateFile.fingerprint(of: hasher), clocks: StateKeeper.clocks())
            logger.info("state received from the previous process", metadata: ["entries": "\(header.count)", "loaded": "\(taken)"])
            metrics.stateLoaded(taken)
        } catch {
            logger.warning("state from the previous process refused, starting with an empty tracker: \(error)")
            metrics.stateLoaded(0)
        }
        return true
    }

    /// The keyed hasher: the conf's `hash_key`; else, with `[state]`, the key file beside the
    /// state file (created at the first start); else the previous process's key (hot upgrade);
    /// else a random key for this process.
    static func hasher(for config: Config, handed: KeyedHasher?, logger: Logger) throws -> KeyedHasher {
        if !config.clients.hashKey.isEmpty { return KeyedHasher(secret: config.clients.hashKey) }
        if !config.state.file.isEmpty {
            let path = HashKeyFile.path(forStateFile: config.state.file)
            let (secret, created) = try HashKeyFile.loadOrCreate(path)
            logger.info(created ? "state: generated the hash key (clients.hash_key is empty)" : "state: hash key read from its file",
                        metadata: ["file": "\(path)"])
            if HashKeyFile.isExposed(path) { logger.warning("state: the hash key file is readable by others; chmod 600 it", metadata: ["file": "\(path)"]) }
            return KeyedHasher(secret: secret)
        }
        return handed ?? KeyedHasher(secret: "")
    }

    /// Gives every worker its tracker store: the local tracker, or a new Redis-backed store
    /// connecting from its loop. Replaced stores are closed on their own thread.
    private func installStores(_ redis: RedisConfig?) {
        let old = redisStores
        redisStores = redis.map { redis in
            group.workers.map { RedisStore(config: redis, local: tracker, worker: $0, errors: metrics.redisErrors, logger: logger) }
        } ?? []
        metrics.watch(redis: redis == nil ? nil : redisStores.map(\.link))
        for (index, (worker, handler)) in zip(group.workers, handlers).enumerated() {
            let fresh = redisStores.isEmpty ? nil : redisStores[index]
            let previous = old.isEmpty ? nil : old[index]
            let local = tracker
            worker.execute {
                handler.store = fresh ?? local
                previous?.close()
                fresh?.start()
            }
        }
    }

    /// Whether every worker's Redis connection is up (false without `[redis]`); for tests and logs.
    var redisConnected: Bool {
        !redisStores.isEmpty && redisStores.allSatisfy { $0.link.isReadyFlag.load(ordering: .relaxed) }
    }

    private static func health(for upstream: UpstreamConfig, keeping old: [UpstreamHealth]) -> [UpstreamHealth] {
        upstream.servers.map { endpoint in old.first { $0.endpoint == endpoint } ?? UpstreamHealth(endpoint: endpoint) }
    }

    /// Adds a row to the series just after each whole second, on the worker that serves it, until draining.
    private func scheduleSample(on worker: Worker) {
        worker.schedule(after: Series.delayToNextSecond()) { [weak self] in
            guard let self, !worker.draining else { return }
            series.sample(time: Int(Series.wallClock().rounded(.down)), totals: metrics.totals,
                          tracked: tracker.trackedCount, blocked: tracker.blockedCount)
            scheduleSample(on: worker)
        }
    }

    /// Drops expired tracker entries every few seconds so the gauges stay exact between requests.
    private func schedulePurge(on worker: Worker) {
        worker.schedule(after: .seconds(5)) { [weak self] in
            guard let self, !worker.draining else { return }
            tracker.purgeExpired()
            schedulePurge(on: worker)
        }
    }

    private func makeContext(_ config: Config) -> ProxyContext {
        ProxyContext(config: config, hasher: hasher, tracker: tracker, rateLimiter: rateLimiter, metrics: metrics,
                     upstreamTLS: upstreamTLS)
    }

    /// The client TLS context for `[upstream] tls = true`; nil for plain HTTP.
    static func upstreamTLS(_ upstream: UpstreamConfig) throws(TLSError) -> TLSClientContext? {
        guard upstream.tls else { return nil }
        return try TLSClientContext(ca: upstream.tlsCA, verify: upstream.tlsVerify)
    }

    /// The server TLS settings of `[tls]`.
    static func tlsSettings(_ tls: TLSConfig) -> TLSServerContext.Settings {
        TLSServerContext.Settings(
            pairs: tls.certificates.map { ($0.cert, $0.key) }, minimumVersion13: tls.minVersion == .v1_3, alpn: tls.alpn,
            clientCA: tls.clientCA,
            clientCertificateRequired: tls.clientAuth == .off ? nil : tls.clientAuth == .required,
            sessionTickets: tls.sessionTickets, ticketsPerHandshake: tls.sessionTicketsPerHandshake)
    }

    /// HTTP/2 on a proxy listener. The TLS listener always has them: whether a client gets HTTP/2
    /// there is decided by `[tls] alpn`, which a reload may change.
    static func h2Settings(_ server: ServerConfig, priorKnowledge: Bool) -> H2Settings {
        H2Settings(priorKnowledge: priorKnowledge, maxStreams: server.h2MaxStreams)
    }

    static func limits(_ server: ServerConfig) -> ReaderLimits {
        ReaderLimits(maxHeaderBytes: server.maxHeaderBytes, maxRequestLineBytes: min(server.maxRequestLineBytes, server.maxHeaderBytes),
                     maxBodyBytes: server.maxBodyBytes, headerTimeout: server.headerTimeout, idleTimeout: server.idleTimeout,
                     minBodyRate: server.minBodyRate)
    }
}
