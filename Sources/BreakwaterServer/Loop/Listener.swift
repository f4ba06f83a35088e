private import CLibevent
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Limits a listener applies to every connection it accepts.
struct ConnectionLimits: Sendable {
    var maxHeaderBytes = 16_384
    var maxBodyBytes = 10_000_000
    var headerTimeout: Duration = .seconds(10)
    var idleTimeout: Duration = .seconds(60)
    /// A request body must average at least this many bytes a second, after a grace of
    /// `headerTimeout`: it is cut off (408) once more than `headerTimeout + received / minBodyRate`
    /// has passed since its head, or `headerTimeout` passes without a byte. A client that
    /// trickles a body cannot hold a connection for longer than it pays for in bandwidth.
    var minBodyRate = 16_384
}

/// A listening socket on one worker's loop. Several workers listen on the same port
/// (SO_REUSEPORT) and the kernel spreads new connections over them.
final class Listener {
    /// Strong, like the other back references on the request path (an unowned one costs a checked
    /// retain at every use): the worker drops its listeners when it drains or stops, which ends
    /// the cycle.
    let worker: Worker
    let handler: HTTPHandler
    let limits: ConnectionLimits
    private var listener: OpaquePointer?
    /// The port actually bound (useful when asked for port 0).
    private(set) var port: UInt16 = 0
    /// Stays open while the worker drains (the admin listener keeps answering /healthz with 503).
    let keepWhileDraining: Bool
    /// Set while accepting is paused because the process ran out of file descriptors.
    private var acceptPaused = false
    /// When the last accept warning was logged (monotonic seconds), shared by every listener so a
    /// descriptor shortage is reported once per interval, not once per worker.
    private static let lastAcceptWarning = Atomic<Int64>(Int64.min / 2)

    /// How long accepting pauses after accept() fails for want of descriptors (nginx waits 500 ms).
    static let acceptPause: Duration = .milliseconds(250)
    private static let logger = Logger(label: "breakwater") { StreamLogHandler.standardError(label: $0) }

    init(worker: Worker, address: SocketAddress, limits: ConnectionLimits, handler: HTTPHandler,
         keepWhileDraining: Bool = false) throws {
        self.worker = worker
        self.keepWhileDraining = keepWhileDraining
        self.limits = limits
        self.handler = handler
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC)
        let context = Unmanaged.passUnretained(self).toOpaque()
        listener = try address.withSockaddr { sa, length in
            try check(evconnlistener_new_bind(worker.base, { _, fd, address, length, context in
                let me = Unmanaged<Listener>.fromOpaque(context!).takeUnretainedValue()
                me.accept(fd: fd, address: address!, length: socklen_t(length))
            }, context, flags, 1024, sa, Int32(length)), "evconnlistener_new_bind(\(address))")
        }
        port = SocketAddress(localOf: evconnlistener_get_fd(listener)).port
        evconnlistener_set_error_cb(listener) { _, context in
            Unmanaged<Listener>.fromOpaque(context!).takeUnretainedValue().acceptFailed(errno: Glibc.errno)
        }
    }

    deinit { close() }

    private func accept(fd: Int32, address: UnsafeMutablePointer<sockaddr>, length: socklen_t) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let peer = SocketAddress(address, length: length).ip
        ClientConnection.open(fd: fd, peer: peer, listener: self)
    }

    /// accept() failed with an error libevent does not retry by itself. Out of descriptors
    /// (EMFILE, ENFILE) or memory, the listening socket stays readable, so without a pause the
    /// loop would spin on it at full CPU; pausing lets connections close and the backlog wait.
    private func acceptFailed(errno code: Int32) {
        guard let listener, !acceptPaused else { return }
        acceptPaused = true
        evconnlistener_disable(listener)
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let last = Self.lastAcceptWarning.load(ordering: .relaxed)
        if Int64(now.tv_sec) - last >= 10,
           Self.lastAcceptWarning.compareExchange(expected: last, desired: Int64(now.tv_sec), ordering: .relaxed).exchanged {
            Self.logger.warning("accept failed; pausing new connections", metadata: [
                "error": "\(String(cString: strerror(code)))", "pause": "\(Self.acceptPause)", "port": "\(port)",
            ])
        }
        worker.schedule(after: Self.acceptPause) { [weak self] in
            guard let self else { return }
            acceptPaused = false
            if let listener = self.listener { evconnlistener_enable(listener) }
        }
    }

    /// Stops accepting; connections already accepted go on.
    func close() {
        if let listener { evconnlistener_free(listener) }
        listener = nil
    }
}
