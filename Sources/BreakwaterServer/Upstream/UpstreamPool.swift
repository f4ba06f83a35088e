import BreakwaterCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whether an upstream server is in rotation; shared by every worker, so one worker's discovery
/// spares the others. A server that refuses a connection or times out is skipped for a window
/// that grows exponentially with jitter (the shield's own backoff, applied to upstream hosts),
/// and is back on its first success.
final class UpstreamHealth: Sendable {
    let endpoint: HostPort
    /// Atomics stored in the object itself: every response reads `failures`, and a separate
    /// atomic object would be retained and reached through calls for it.
    private let failures = Atomic<Int>(0)
    private let downUntil = Atomic<Int64>(0)
    private static let policy = BackoffPolicy(base: .seconds(1), max: .seconds(30), jitter: 0.2)

    init(endpoint: HostPort) { self.endpoint = endpoint }

    /// True unless a recent failure put the server out of rotation.
    func isUp(now: Int64 = LoopClock().nanoseconds()) -> Bool { downUntil.load(ordering: .relaxed) <= now }

    /// A response or a connection: back in rotation, backoff forgotten.
    func succeeded() {
        if failures.load(ordering: .relaxed) != 0 {
            failures.store(0, ordering: .relaxed)
            downUntil.store(0, ordering: .relaxed)
        }
    }

    /// A refused connection or a timeout: out of rotation for the next window.
    func failed() {
        let level = failures.wrappingAdd(1, ordering: .relaxed).newValue
        let window = Self.policy.window(level: level, u: Double.random(in: 0..<1))
        downUntil.store(LoopClock().nanoseconds().addingClamped(window.clampedNanoseconds), ordering: .relaxed)
    }
}

/// One configured upstream server as one worker's pool sees it: resolved once.
final class UpstreamServer {
    let endpoint: HostPort
    let address: SocketAddress
    /// Position in `upstream.servers`.
    let index: Int
    let health: UpstreamHealth
    /// `host:port`, the Host header for a request that came without one.
    let hostHeader: String

    init(health: UpstreamHealth, index: Int) throws {
        self.endpoint = health.endpoint
        self.hostHeader = health.endpoint.description
        self.address = try SocketAddress(health.endpoint)
        self.index = index
        self.health = health
    }
}

/// Upstream settings a pool needs, copied out of the config.
struct UpstreamSettings {
    var connectTimeout: Duration
    var timeout: Duration {
        didSet { timeoutNanoseconds = timeout.clampedNanoseconds }
    }
    /// `timeout` in nanoseconds, converted once: every request sets it on its connection.
    private(set) var timeoutNanoseconds: Int64
    var maxConnections: Int
    /// A parked connection unused this long is closed, before the server's own keep-alive timer races us.
    var idleTimeout: Duration = .seconds(4)
    /// TLS to the servers, nil for plain HTTP, and the name to verify ("" : each server's host).
    var tls: TLSClientContext?
    var tlsServerName: String

    init(_ config: UpstreamConfig, tls: TLSClientContext?) {
        connectTimeout = config.connectTimeout
        timeout = config.timeout
        timeoutNanoseconds = config.timeout.clampedNanoseconds
        maxConnections = config.maxConnections
        self.tls = tls
        tlsServerName = config.tlsServerName
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
    private var open: [Int]
    private var connecting: [ObjectIdentifier: (UpstreamConnection, UpstreamWaiter)] = [:]
    private var queues: [[UpstreamWaiter]]
    /// The idle sweep's timer, made with the first parked connection.
    private var sweepTimer: LoopEvent?
    /// The HTTP/2 connections to the same servers (`upstream_protocol = "h2"`, gRPC), made with
    /// the first request that needs one.
    private(set) lazy var h2 = UpstreamH2Pool(worker: worker, settings: settings, servers: servers.count)

    init(worker: Worker, config: UpstreamConfig, health: [UpstreamHealth], tls: TLSClientContext? = nil) throws {
        self.worker = worker
        settings = UpstreamSettings(config, tls: tls)
        servers = try health.enumerated().map { try UpstreamServer(health: $1, index: $0) }
        idle = Array(repeating: [], count: servers.count)
        open = Array(repeating: 0, count: servers.count)
        queues = Array(repeating: [], count: servers.count)
    }

    /// The next server in round-robin order, skipping `excluded` and servers out of rotation
    /// while another is in; when all are out, round-robin over all of them.
    func pickServer(excluding excluded: UpstreamServer? = nil) -> UpstreamServer {
        if servers.count == 1 { return servers[0] }   // in rotation or not, it is the only one
        let now = LoopClock().nanoseconds()
        for _ in 0..<servers.count {
            let server = servers[next % servers.count]
            next &+= 1
            if server === excluded && servers.count > 1 { continue }
            if server.health.isUp(now: now) { return server }
        }
        let fallback = servers[next % servers.count]
        next &+= 1
        return fallback
    }

    /// Hands `waiter` a connection to `server`: parked, new, or (at the limit) when one frees up.
    /// `fresh` skips parked connections: after one was found closed, others may be stale too.
    func acquire(_ server: UpstreamServer, for waiter: UpstreamWaiter, fresh: Bool = false) {
        if !fresh, let connection = idle[server.index].popLast() {
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
        connection.server.health.succeeded()
        guard let (_, waiter) = connecting.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        waiter.connectionReady(connection)
    }

    func connectFailed(_ connection: UpstreamConnection, timedOut: Bool) {
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
        scheduleSweep()
    }

    /// A connection closed; a queued caller, if any, gets a new one.
    func closed(_ connection: UpstreamConnection, wasIdle: Bool) {
        let index = connection.server.index
        let id = ObjectIdentifier(connection)
        open[index] -= 1
        if wasIdle {
            idle[index].removeAll { $0 === connection }
        }
        if let entry = connecting.removeValue(forKey: id) {
            entry.1.connectionFailed(.connect)
        }
        if let waiter = queues[index].first {
            queues[index].removeFirst()
            acquire(connection.server, for: waiter)
        }
    }

    /// Closes parked connections idle past `idleTimeout`, checking twice per period. The timer is
    /// the pool's own event, freed with the pool: no closure holds the pool (a strong one would
    /// keep a replaced pool alive, a weak one would give it a side table, which sends every
    /// retain and release of it on the request path down the slow path).
    private func scheduleSweep() {
        if sweepTimer == nil {
            // Without a timer the parked connections are still closed by the server or reused.
            sweepTimer = try? LoopEvent(base: worker.base) { [unowned(unsafe) self] in sweep() }
        }
        guard let sweepTimer, !sweepTimer.isPending else { return }
        sweepTimer.add(after: (settings.idleTimeout / 2).clampedNanoseconds)
    }

    /// Closes at most `closesPerTurn` expired connections (the oldest: each list is in parking
    /// order), and comes back on the next turn of the loop while more have expired.
    private func sweep() {
        let cutoff = LoopClock.coarseNow.advanced(by: .zero - settings.idleTimeout)
        var budget = Self.closesPerTurn
        for index in idle.indices {
            let expired = idle[index].prefix { $0.parkedAt < cutoff }.prefix(budget)
            guard !expired.isEmpty else { continue }
            idle[index].removeFirst(expired.count)
            for connection in expired { connection.close() }
            budget -= expired.count
            if budget == 0 { break }
        }
        if budget == 0 {
            sweepTimer?.add(after: 0)   // more may have expired: the next turn, after other events
        } else if idle.contains(where: { !$0.isEmpty }) {
            scheduleSweep()
        }
    }

    /// Connections closed in one turn of the loop at most: closing one costs a FIN, its
    /// processing by the kernel and the peer's reply, and hundreds at once held every other
    /// connection of the worker for about 100 ms.
    static let closesPerTurn = 32

    deinit { sweepTimer?.close() }

    /// Closes every parked connection (a pool replaced by a reload, or shutdown): `closesPerTurn`
    /// now and as many on each following turn of the loop; the pool stays alive until done.
    func closeIdle() {
        h2.closeIdle()
        var budget = Self.closesPerTurn
        for index in idle.indices where budget > 0 {
            let batch = idle[index].prefix(budget)
            idle[index].removeFirst(batch.count)
            for connection in batch { connection.close() }
            budget -= batch.count
        }
        guard idle.contains(where: { !$0.isEmpty }) else { return }
        worker.execute { [self] in closeIdle() }
    }
}
