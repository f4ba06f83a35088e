private import CLibevent

/// Two connections joined after a `101 Switching Protocols`: bytes go both ways unparsed until
/// either side has closed both halves, an error, or `idleTimeout` passes with no byte either way.
///
/// Backpressure: a side's output holds at most `highWater` bytes; past that, reading from the
/// other side stops until it drains, so a peer that does not read makes the other wait instead of
/// growing memory. A half-close travels: the side that ends its stream makes the tunnel end the
/// other side's (after what is queued), and the tunnel closes once both have ended.
final class Tunnel: SocketDelegate {
    /// Bytes either direction may queue for a slow reader before the other side is paused.
    static let highWater = 1 << 20

    /// The client's connection, which owns the tunnel and closes with it.
    private unowned(unsafe) let owner: ClientConnection
    /// The two sockets, held here; the relay uses the unowned views below, so that moving a
    /// message costs no reference counting.
    private let sockets: (client: Socket, upstream: Socket)
    private unowned(unsafe) let client: Socket
    private unowned(unsafe) let upstream: Socket
    /// The same two, for passing one as a relay's sink without reference counting.
    private let sinks: (client: Unmanaged<Socket>, upstream: Unmanaged<Socket>)
    /// The worker's relay buffer: a plain socket's bytes are read into it and sent from it at
    /// once, so a message is copied only between the kernel and this buffer (see `relay`).
    private let buffer: UnsafeMutableRawBufferPointer
    /// Whether each side has ended its stream, and whether the other was told (FIN sent).
    private var clientEnded = false
    private var upstreamEnded = false
    private var clientShutDown = false
    private var upstreamShutDown = false
    private(set) var closed = false
    /// Bytes relayed so far, client to upstream and upstream to client.
    private(set) var bytesToUpstream = 0
    private(set) var bytesToClient = 0
    private let started = LoopClock().now
    private let metrics: ProxyMetrics
    /// Told once when the tunnel closes: how long it lived and what it carried.
    private let onClose: (Duration, Int, Int) -> Void

    init(owner: ClientConnection, client: Socket, upstream: Socket, buffer: UnsafeMutableRawBufferPointer,
         idleTimeout: Duration, metrics: ProxyMetrics, onClose: @escaping (Duration, Int, Int) -> Void) {
        self.owner = owner
        sockets = (client, upstream)
        self.client = client
        self.upstream = upstream
        sinks = (Unmanaged.passUnretained(client), Unmanaged.passUnretained(upstream))
        self.buffer = buffer
        self.metrics = metrics
        self.onClose = onClose
        client.delegate = self
        upstream.delegate = self
        client.setTimeout(idleTimeout)
        upstream.setTimeout(idleTimeout)
        metrics.tunnelOpened()
    }

    /// Relays what each side sent before the tunnel existed (bytes that came with the 101, or
    /// right after the request), then waits for more. A plain (not TLS) socket is read by the
    /// tunnel itself from then on.
    func start() {
        client.setReading(true)
        upstream.setReading(true)
        relayBuffered(from: upstream, to: client)
        relayBuffered(from: client, to: upstream)
        client.readItself(by: self)
        upstream.readItself(by: self)
        // What reached the kernel before the tunnel read edge-triggered is read now.
        if upstream.readsItself { relay(from: upstream, to: client) }
        if client.readsItself { relay(from: client, to: upstream) }
    }

    // MARK: SocketDelegate

    func socketReadable(_ socket: Socket) {
        // The sink is borrowed from its unmanaged view: an `unowned(unsafe)` socket passed as an
        // argument is retained and released around the call, twice per message otherwise.
        (socket === client ? sinks.upstream : sinks.client)._withUnsafeGuaranteedRef { sink in
            if socket.readsItself { relay(from: socket, to: sink) } else { relayBuffered(from: socket, to: sink) }
        }
    }

    func socketDrained(_ socket: Socket) {
        let other = socket === client ? upstream : client
        if socket === client, upstreamEnded, !clientShutDown { shutDown(client) }
        if socket === upstream, clientEnded, !upstreamShutDown { shutDown(upstream) }
        // The slow side caught up: read from the other again (unless it has ended).
        if !(other === client ? clientEnded : upstreamEnded) {
            other.setReading(true)
            if other.readsItself { relay(from: other, to: socket) } else { relayBuffered(from: other, to: socket) }
        }
        closeIfDone()
    }

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        guard event == .eof else { return close() }   // an error, or idle past the timeout
        relayBuffered(from: socket, to: socket === client ? upstream : client)
        ended(socket)
    }

    // MARK: relaying

    /// Reads what `source` holds into the relay buffer and sends it to `sink` at once: one recv
    /// and one send per message when the sink keeps up, no buffer allocated or freed. Readiness
    /// is edge-triggered (`Socket.readItself(by:)`), so reading goes on until a read comes back short
    /// (the socket is drained; once the peer's end is announced, until the end is read), and a
    /// read that fills the buffer is followed by another, four at
    /// most a turn so that one busy tunnel cannot hold the loop: then the socket is reported
    /// again on the next turn. What the sink does not take is queued in its output; past
    /// `highWater` reading stops until it drains.
    private func relay(from source: Socket, to sink: Socket) {
        let toUpstream = source === client
        for _ in 0..<4 {
            guard !closed else { return }
            let n = source.receive(into: buffer.baseAddress!, count: buffer.count)
            if n == 0 { return ended(source) }
            guard n > 0 else { return }
            count(n, toUpstream: toUpstream)
            sink.send(buffer.baseAddress!, count: n)
            if evbuffer_get_length(sink.output) > Self.highWater {
                source.setReading(false)
                return
            }
            if n < buffer.count, !source.peerEnding { return }
        }
        source.readAgainSoon()
    }

    /// Moves what `source`'s input buffer holds to `sink` (bytes read before the tunnel
    /// started, and everything a TLS socket reads).
    private func relayBuffered(from source: Socket, to sink: Socket) {
        guard !closed else { return }
        let n = evbuffer_get_length(source.input)
        guard n > 0 else { return }
        evbuffer_add_buffer(sink.output, source.input)
        count(n, toUpstream: source === client)
        sink.flush()
        if evbuffer_get_length(sink.output) > Self.highWater { source.setReading(false) }
    }

    @inline(__always)
    private func count(_ n: Int, toUpstream: Bool) {
        if toUpstream { bytesToUpstream &+= n } else { bytesToClient &+= n }
        metrics.countTunnelBytes(n, toUpstream: toUpstream)
    }

    /// `socket` ended its stream: the other side's write side ends after what is queued.
    private func ended(_ socket: Socket) {
        let other = socket === client ? upstream : client
        if socket === client { clientEnded = true } else { upstreamEnded = true }
        if evbuffer_get_length(other.output) == 0 { shutDown(other) }
        closeIfDone()
    }

    /// Ends `socket`'s write side: the other side of the tunnel has ended its stream.
    private func shutDown(_ socket: Socket) {
        if socket === client { clientShutDown = true } else { upstreamShutDown = true }
        socket.shutdownWrite()
    }

    private func closeIfDone() {
        if clientEnded, upstreamEnded, clientShutDown, upstreamShutDown { close() }
    }

    /// Closes both connections; the owner forgets the client's.
    func close() {
        guard !closed else { return }
        closed = true
        sockets.upstream.close()
        sockets.client.close()
        metrics.tunnelClosed()
        onClose(started.duration(to: LoopClock().now), bytesToUpstream, bytesToClient)
        owner.tunnelClosed()
    }
}
