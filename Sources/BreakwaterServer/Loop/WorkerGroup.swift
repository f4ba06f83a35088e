import BreakwaterHTTP
import BreakwaterCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A fixed set of workers, each an event loop on its own thread.
final class WorkerGroup: @unchecked Sendable {
    let workers: [Worker]
    private let drained = Mutex(false)
    /// Whether the loops were started: a server whose start failed (a listener that would not
    /// bind) has no loop to wait for, and its shutdown must not wait forever.
    private let started = Mutex(false)
    /// Every listening socket, by the endpoint the conf names (port 0 as written): what a hot
    /// upgrade hands over. Filled by `listen` before the loops start, read-only after.
    private(set) var listening: [(endpoint: HostPort, fd: Int32)] = []

    init(count: Int) throws {
        workers = try (0..<max(1, count)).map { try Worker(index: $0) }
    }

    /// One worker per core this process may run on (honours taskset / cpusets).
    static func defaultCount() -> Int {
        var mask = [UInt8](repeating: 0, count: 128)
        if mask.withUnsafeMutableBytes({ schedGetAffinity(0, $0.count, $0.baseAddress!) }) == 0 {
            let count = mask.reduce(0) { $0 + $1.nonzeroBitCount }
            if count > 0 { return count }
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Binds `address` on every worker (SO_REUSEPORT); port 0 becomes the port the first worker got.
    /// A `keepWhileDraining` listener (admin) stays open while the others drain.
    /// With `tls`, the listeners speak TLS.
    ///
    /// With `inherited` sockets (a hot upgrade) nothing is bound: the sockets are adopted, spread
    /// over the workers so that every one of them is accepted from (a worker may get several, a
    /// socket may serve several workers).
    func listen(on endpoint: HostPort, limits: ReaderLimits, onlyFirst: Bool = false, keepWhileDraining: Bool = false,
                tls: TLSEndpoint? = nil, h2: H2Settings? = nil, inherited: [Int32] = [],
                handler: (Worker) throws -> HTTPHandler) throws -> UInt16 {
        if !inherited.isEmpty {
            let targets = onlyFirst ? [workers[0]] : workers
            var handlers: [ObjectIdentifier: HTTPHandler] = [:]
            var port: UInt16 = 0
            for j in 0..<max(targets.count, inherited.count) {
                let worker = targets[j % targets.count]
                let fd = j < inherited.count ? inherited[j]
                    : try syscall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(inherited[j % inherited.count], F_DUPFD_CLOEXEC, 0) }
                let handler = try handlers[ObjectIdentifier(worker)] ?? handler(worker)
                handlers[ObjectIdentifier(worker)] = handler
                let listener = try Listener(worker: worker, adopting: fd, limits: limits, handler: handler,
                                            keepWhileDraining: keepWhileDraining, tls: tls, h2: h2)
                worker.listeners.append(listener)
                listening.append((endpoint, fd))
                port = listener.port
            }
            return port
        }
        var address = try SocketAddress(endpoint)
        if endpoint.port != 0 { try Self.ensureFree(address) }
        var port: UInt16 = 0
        for worker in onlyFirst ? [workers[0]] : workers {
            if port != 0 { address = try SocketAddress(HostPort(host: endpoint.host, port: port)) }
            let listener = try Listener(worker: worker, address: address, limits: limits, handler: try handler(worker),
                                        keepWhileDraining: keepWhileDraining, tls: tls, h2: h2)
            worker.listeners.append(listener)
            listening.append((endpoint, listener.fd))
            port = listener.port
        }
        return port
    }

    /// SO_REUSEPORT lets any process of the same user bind the same port and silently take a
    /// share of its connections. Binding once without it first turns that into a clear error.
    private static func ensureFree(_ address: SocketAddress) throws(SystemCallError) {
        let family = Int32(address.withSockaddr { sa, _ in sa.pointee.sa_family })
        let fd = try syscall("socket") { socket(family, Socket.streamType, 0) }
        defer { close(fd) }
        var one: Int32 = 1
        _ = try syscall("setsockopt(SO_REUSEADDR)") { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        _ = try syscall("bind(\(address))") { address.withSockaddr { sa, length in bind(fd, sa, length) } }
    }

    func start(name: String) {
        started.withLock { $0 = true }
        for worker in workers { worker.start(name: "\(name)-\(worker.index)") }
    }

    /// Stops accepting, lets requests in flight finish within `grace`, and waits for every loop to end.
    /// `closingIdle`: see `Worker.drain`.
    func drain(grace: Duration, closingIdle: Bool = true) {
        guard !drained.withLock({ let was = $0; $0 = true; return was }) else { return }
        guard started.withLock({ $0 }) else { return }
        for worker in workers { worker.drain(grace: grace, closingIdle: closingIdle) }
        for worker in workers { worker.join() }
    }
}

/// Glibc hides sched_getaffinity behind _GNU_SOURCE; its ABI is stable, so it is named directly.
@_silgen_name("sched_getaffinity")
private func schedGetAffinity(_ pid: Int32, _ size: Int, _ mask: UnsafeMutableRawPointer) -> Int32
