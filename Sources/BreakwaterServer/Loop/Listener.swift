import BreakwaterHTTP
private import CLibevent
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A listening socket on one worker's loop. Several workers listen on the same port
/// (SO_REUSEPORT) and the kernel spreads new connections over them.
final class Listener {
    /// Strong, like the other back references on the request path (an unowned one costs a checked
    /// retain at every use): the worker drops its listeners when it drains or stops, which ends
    /// the cycle.
    let worker: Worker
    let handler: HTTPHandler
    let limits: ReaderLimits
    /// The TLS state of a TLS listener; nil for plain HTTP.
    let tls: TLSEndpoint?
    /// HTTP/2: with prior knowledge (the plain listener, `h2c`) or through ALPN (TLS); nil: never.
    let h2: H2Settings?
    /// The listening socket, and its readiness event (nil once closed).
    let fd: Int32
    private var acceptEvent: LoopEvent!
    private var closed = false
    /// The port actually bound (useful when asked for port 0).
    private(set) var port: UInt16 = 0
    /// Stays open while the worker drains (the admin listener keeps answering /healthz with 503).
    let keepWhileDraining: Bool
    /// Set while accepting is paused because the process ran out of file descriptors.
    private var acceptPaused = false
    /// When the last accept warning was logged (monotonic seconds), shared by every listener so a
    /// descriptor shortage is reported once per interval, not once per worker.
    private static let lastAcceptWarning = Atomic<Int64>(Int64.min / 2)

    /// How many connections one wake-up of the listener accepts at most.
    static let acceptsPerTurn = 64
    /// How long accepting pauses after accept() fails for want of descriptors (nginx waits 500 ms).
    static let acceptPause: Duration = .milliseconds(250)
    private static let logger = Logger(label: "breakwater") { StreamLogHandler.standardError(label: $0) }

    init(worker: Worker, address: SocketAddress, limits: ReaderLimits, handler: HTTPHandler,
         keepWhileDraining: Bool = false, tls: TLSEndpoint? = nil, h2: H2Settings? = nil) throws(SystemCallError) {
        self.worker = worker
        self.tls = tls
        self.h2 = h2
        self.keepWhileDraining = keepWhileDraining
        self.limits = limits
        self.handler = handler
        let family = Int32(address.withSockaddr { sa, _ in sa.pointee.sa_family })
        fd = try syscall("socket") {
            Glibc.socket(family, Socket.streamType | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do {
            // Every worker binds the same port (SO_REUSEPORT) and the kernel spreads connections.
            for option in [SO_REUSEADDR, SO_REUSEPORT] {
                var one: Int32 = 1
                _ = try syscall("setsockopt") { setsockopt(fd, SOL_SOCKET, option, &one, socklen_t(MemoryLayout<Int32>.size)) }
            }
            _ = try syscall("bind(\(address))") { address.withSockaddr { Glibc.bind(fd, $0, $1) } }
            _ = try syscall("listen(\(address))") { Glibc.listen(fd, 1024) }
            port = try SocketAddress(localOf: fd).port
            acceptEvent = try LoopEvent.readiness(base: worker.base, fd: fd, read: true) { [unowned(unsafe) self] in acceptReady() }
        } catch {
            Glibc.close(fd)
            throw error
        }
        acceptEvent.add()
    }

    /// A listener on a socket already bound and listening, handed over by the process this one
    /// replaces (a hot upgrade): no bind, so no connection waiting in its backlog is lost.
    init(worker: Worker, adopting fd: Int32, limits: ReaderLimits, handler: HTTPHandler,
         keepWhileDraining: Bool = false, tls: TLSEndpoint? = nil, h2: H2Settings? = nil) throws(SystemCallError) {
        self.worker = worker
        self.tls = tls
        self.h2 = h2
        self.keepWhileDraining = keepWhileDraining
        self.limits = limits
        self.handler = handler
        self.fd = fd
        do {
            let flags = try syscall("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
            _ = try syscall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
            _ = try syscall("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
            port = try SocketAddress(localOf: fd).port
            acceptEvent = try LoopEvent.readiness(base: worker.base, fd: fd, read: true) { [unowned(unsafe) self] in acceptReady() }
        } catch {
            Glibc.close(fd)
            throw error
        }
        acceptEvent.add()
    }

    deinit { close() }

    /// Accepts what the backlog holds, a bounded number per turn of the loop so one busy
    /// listener cannot starve the connections already open.
    private func acceptReady() {
        for _ in 0..<Self.acceptsPerTurn {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if client < 0 {
                let code = errno
                if code == EAGAIN || code == EINTR || code == ECONNABORTED { return }
                if code == EMFILE || code == ENFILE, worker.closeIdleConnections() > 0 {
                    // Idle connections made room: the waiting client is accepted now.
                    countReclaim()
                    continue
                }
                acceptFailed(errno: code)
                return
            }
            let peer = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0, length: length).ip }
            }
            do {
                try Socket.setNoDelay(client)
                var session: TLSSession?
                if let tls {
                    session = tls.context.makeSession(fd: client)
                    if session == nil { throw SystemCallError("SSL_new", .unspecified) }
                }
                try ClientConnection.open(fd: client, peer: peer, listener: self, tls: session)
            } catch {
                Glibc.close(client)
            }
        }
    }

    /// Idle connections were closed for a new one: logged at most once per 10 s over all
    /// listeners, with how many since the last line.
    private func countReclaim() {
        let reclaims = Self.reclaims.wrappingAdd(1, ordering: .relaxed).newValue
        let now = LoopClock().nanoseconds() / 1_000_000_000
        let last = Self.lastReclaimWarning.load(ordering: .relaxed)
        guard now - last >= 10,
              Self.lastReclaimWarning.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        Self.logger.warning("out of file descriptors; closing idle connections for new ones", metadata: [
            "reclaims": "\(reclaims)", "port": "\(port)",
        ])
    }
    private static let reclaims = Atomic<Int>(0)
    private static let lastReclaimWarning = Atomic<Int64>(Int64.min / 2)

    /// accept() failed with an error libevent does not retry by itself. Out of descriptors
    /// (EMFILE, ENFILE) or memory, the listening socket stays readable, so without a pause the
    /// loop would spin on it at full CPU; pausing lets connections close and the backlog wait.
    private func acceptFailed(errno code: Int32) {
        guard !closed, !acceptPaused else { return }
        acceptPaused = true
        acceptEvent.delete()
        let now = LoopClock().nanoseconds() / 1_000_000_000
        let last = Self.lastAcceptWarning.load(ordering: .relaxed)
        if now - last >= 10,
           Self.lastAcceptWarning.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            Self.logger.warning("accept failed; pausing new connections", metadata: [
                "error": "\(String(cString: strerror(code)))", "pause": "\(Self.acceptPause)", "port": "\(port)",
            ])
        }
        worker.schedule(after: Self.acceptPause) { [weak self] in
            guard let self, !closed else { return }
            acceptPaused = false
            acceptEvent.add()
        }
    }

    /// Stops accepting; connections already accepted go on.
    func close() {
        guard !closed else { return }
        closed = true
        acceptEvent?.close()
        Glibc.close(fd)
    }
}
