private import CLibevent
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
    unowned let worker: Worker
    let handler: HTTPHandler
    let limits: ConnectionLimits
    private var listener: OpaquePointer?
    /// The port actually bound (useful when asked for port 0).
    private(set) var port: UInt16 = 0
    /// Stays open while the worker drains (the admin listener keeps answering /healthz with 503).
    let keepWhileDraining: Bool

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
    }

    deinit { close() }

    private func accept(fd: Int32, address: UnsafeMutablePointer<sockaddr>, length: socklen_t) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let peer = SocketAddress(address, length: length).ip
        ClientConnection.open(fd: fd, peer: peer, listener: self)
    }

    /// Stops accepting; connections already accepted go on.
    func close() {
        if let listener { evconnlistener_free(listener) }
        listener = nil
    }
}
