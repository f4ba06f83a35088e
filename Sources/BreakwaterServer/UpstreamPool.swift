import BreakwaterCore

/// One configured upstream server, resolved once.
final class UpstreamServer {
    let endpoint: HostPort
    let address: SocketAddress
    /// Position in `upstream.servers`.
    let index: Int
    /// While in the future, new connections avoid this server (it refused or timed out).
    var downUntil: ContinuousClock.Instant?
    var consecutiveFailures = 0

    init(endpoint: HostPort, index: Int) throws {
        self.endpoint = endpoint
        self.address = try SocketAddress(endpoint)
        self.index = index
    }
}

/// Upstream settings a pool needs, copied out of the config.
struct UpstreamSettings {
    var connectTimeout: Duration
    var timeout: Duration
    var maxConnections: Int
    /// A parked connection unused this long is closed, before the server's own keep-alive timer races us.
    var idleTimeout: Duration = .seconds(4)

    init(_ config: UpstreamConfig) {
        connectTimeout = config.connectTimeout
        timeout = config.timeout
        maxConnections = config.maxConnections
    }
}

/// A caller waiting for a connection to a server.
protocol UpstreamWaiter: AnyObject {
    /// A connection is ready (fresh or reused); the waiter now owns it for one exchange.
    func connectionReady(_ connection: UpstreamConnection)
    /// No connection could be made.
    func connectionFailed(_ failure: UpstreamFailure)
}

/// Keep-alive connections to the upstream servers, for one worker. Parked connections are reused
/// most-recently-used first; at `max_connections` per server, callers queue.
final class UpstreamPool {
    unowned let worker: Worker
    let settings: UpstreamSettings
    let servers: [UpstreamServer]
    private var next = 0
    private var idle: [[UpstreamConnection]]
    private var idleSince: [ObjectIdentifier: ContinuousClock.Instant] = [:]
    private var open: [Int]
    private var connecting: [ObjectIdentifier: (UpstreamConnection, UpstreamWaiter)] = [:]
    private var queues: [[UpstreamWaiter]]
    private var sweeping = false

    init(worker: Worker, config: UpstreamConfig) throws {
        self.worker = worker
        settings = UpstreamSettings(config)
        servers = try config.servers.enumerated().map { try UpstreamServer(endpoint: $1, index: $0) }
        idle = Array(repeating: [], count: servers.count)
        open = Array(repeating: 0, count: servers.count)
        queues = Array(repeating: [], count: servers.count)
    }

    /// The next server in round-robin order, skipping servers marked down while another is up.
    func pickServer(excluding excluded: UpstreamServer? = nil) -> UpstreamServer {
        let now = ContinuousClock.now
        for _ in 0..<servers.count {
            let server = servers[next % servers.count]
            next &+= 1
            if server === excluded && servers.count > 1 { continue }
            if let until = server.downUntil, until > now { continue }
            return server
        }
        return servers[next % servers.count]
    }

    /// Hands `waiter` a connection to `server`: parked, new, or (at the limit) when one frees up.
    /// `fresh` skips parked connections: after one was found closed, others may be stale too.
    func acquire(_ server: UpstreamServer, for waiter: UpstreamWaiter, fresh: Bool = false) {
        if !fresh, let connection = idle[server.index].popLast() {
            idleSince[ObjectIdentifier(connection)] = nil
            waiter.connectionReady(connection)
            return
        }
        guard open[server.index] < settings.maxConnections else {
            queues[server.index].append(waiter)
            return
        }
        do {
            let connection = try UpstreamConnection(server: server, pool: self)
            open[server.index] += 1
            connecting[ObjectIdentifier(connection)] = (connection, waiter)
        } catch {
            waiter.connectionFailed(.connect)
        }
    }

    /// Forgets a waiter that no longer wants a connection (its client left).
    func cancel(_ waiter: UpstreamWaiter) {
        for i in queues.indices { queues[i].removeAll { $0 === waiter } }
        for (id, entry) in connecting where entry.1 === waiter {
            connecting[id] = nil
            entry.0.close()
        }
    }

    func connected(_ connection: UpstreamConnection) {
        let server = connection.server
        server.consecutiveFailures = 0
        server.downUntil = nil
        guard let (_, waiter) = connecting.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        waiter.connectionReady(connection)
    }

    func connectFailed(_ connection: UpstreamConnection, timedOut: Bool) {
        let server = connection.server
        server.consecutiveFailures += 1
        let backoff = Duration.milliseconds(250 * (1 << min(server.consecutiveFailures - 1, 6)))
        server.downUntil = .now + backoff
        if let (_, waiter) = connecting.removeValue(forKey: ObjectIdentifier(connection)) {
            waiter.connectionFailed(timedOut ? .timeout : .connect)
        }
    }

    /// Takes back a connection whose exchange ended cleanly.
    func release(_ connection: UpstreamConnection) {
        let index = connection.server.index
        if let waiter = queues[index].first {
            queues[index].removeFirst()
            waiter.connectionReady(connection)
            return
        }
        connection.parked()
        idle[index].append(connection)
        idleSince[ObjectIdentifier(connection)] = .now
        scheduleSweep()
    }

    /// A connection closed; a queued caller, if any, gets a new one.
    func closed(_ connection: UpstreamConnection, wasIdle: Bool) {
        let index = connection.server.index
        let id = ObjectIdentifier(connection)
        open[index] -= 1
        if wasIdle {
            idle[index].removeAll { $0 === connection }
            idleSince[id] = nil
        }
        if let entry = connecting.removeValue(forKey: id) {
            entry.1.connectionFailed(.connect)
        }
        if let waiter = queues[index].first {
            queues[index].removeFirst()
            acquire(connection.server, for: waiter)
        }
    }

    /// Closes parked connections idle past `idleTimeout`, checking twice per period.
    private func scheduleSweep() {
        guard !sweeping else { return }
        sweeping = true
        worker.schedule(after: settings.idleTimeout / 2) { [weak self] in
            guard let self else { return }
            sweeping = false
            let cutoff = ContinuousClock.now - settings.idleTimeout
            for list in idle {
                for connection in list where (idleSince[ObjectIdentifier(connection)] ?? .now) < cutoff {
                    connection.close()
                }
            }
            if idle.contains(where: { !$0.isEmpty }) { scheduleSweep() }
        }
    }

    /// Closes every parked connection (shutdown).
    func closeIdle() {
        for list in idle { list.forEach { $0.close() } }
    }
}
