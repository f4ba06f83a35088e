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
    private let logger: Logger
    private let group: WorkerGroup
    private var handlers: [ProxyHandler] = []
    private let hasher: KeyedHasher
    private let tracker: ErrorTracker<SystemClock>
    private let rateLimiter: RateLimiter<SystemClock>

    /// Prepares workers and the shared tracker; nothing listens until `start`.
    public init(config: Config, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let workers = config.server.workers == 0 ? WorkerGroup.defaultCount() : config.server.workers
        group = try WorkerGroup(count: workers)
        hasher = KeyedHasher(secret: config.clients.hashKey)
        var random = SystemRandomNumberGenerator()
        let seed = random.next()
        tracker = ErrorTracker(maxClients: config.clients.maxClients, clock: SystemClock(), seed: seed)
        rateLimiter = RateLimiter(maxKeys: config.clients.maxClients, clock: SystemClock())
    }

    /// Binds the listeners and starts the loops.
    public func start() throws {
        signal(SIGPIPE, SIG_IGN)
        let context = makeContext(config)
        port = try group.listen(on: config.server.listen, limits: Self.limits(config.server)) { worker in
            let handler = try ProxyHandler(worker: worker, context: context)
            handlers.append(handler)
            return handler
        }
        group.start(name: "breakwater")
        logger.info("breakwater listening", metadata: [
            "listen": "\(HostPort(host: config.server.listen.host, port: port))",
            "workers": "\(group.workers.count)",
            "upstreams": "\(config.upstream.servers.map(\.description).joined(separator: ","))",
        ])
    }

    /// Applies a new config to new requests; the tracker's state carries over. Returns the keys
    /// that changed but need a restart to take effect (listen addresses, workers, upstream pool).
    @discardableResult
    public func reload(_ newConfig: Config) -> [String] {
        var needsRestart: [String] = []
        if newConfig.server.listen != config.server.listen { needsRestart.append("server.listen") }
        if newConfig.server.workers != config.server.workers { needsRestart.append("server.workers") }
        if newConfig.admin.listen != config.admin.listen { needsRestart.append("admin.listen") }
        if newConfig.upstream != config.upstream { needsRestart.append("upstream") }
        if newConfig.clients.maxClients != config.clients.maxClients { needsRestart.append("clients.max_clients") }
        if newConfig.clients.hashKey != config.clients.hashKey { needsRestart.append("clients.hash_key") }
        config = newConfig
        let context = makeContext(newConfig)
        for (worker, handler) in zip(group.workers, handlers) {
            worker.execute { handler.context = context }
        }
        return needsRestart
    }

    /// Stops accepting, lets in-flight requests finish (up to `server.grace_period`), and returns when all loops ended.
    public func shutdown() {
        group.drain(grace: config.server.gracePeriod)
    }

    private func makeContext(_ config: Config) -> ProxyContext {
        ProxyContext(config: config, hasher: hasher, tracker: tracker, rateLimiter: rateLimiter)
    }

    static func limits(_ server: ServerConfig) -> ConnectionLimits {
        ConnectionLimits(maxHeaderBytes: server.maxHeaderBytes, maxBodyBytes: server.maxBodyBytes,
                         headerTimeout: server.headerTimeout, idleTimeout: server.idleTimeout)
    }
}
