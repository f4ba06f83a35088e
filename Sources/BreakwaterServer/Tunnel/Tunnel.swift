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
    private let client: Socket
    private let upstream: Socket
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

    init(owner: ClientConnection, client: Socket, upstream: Socket, idleTimeout: Duration, metrics: ProxyMetrics,
         onClose: @escaping (Duration, Int, Int) -> Void) {
        self.owner = owner
        self.client = client
        self.upstream = upstream
        self.metrics = metrics
        self.onClose = onClose
        client.delegate = self
        upstream.delegate = self
        client.setTimeout(idleTimeout)
        upstream.setTimeout(idleTimeout)
        metrics.tunnelOpened()
    }

    /// Relays what each side sent before the tunnel existed (bytes that came with the 101, or
    /// right after the request), then waits for more.
    func start() {
        client.setReading(true)
        upstream.setReading(true)
        relay(from: upstream, to: client)
        relay(from: client, to: upstream)
    }

    // MARK: SocketDelegate

    func socketReadable(_ socket: Socket) {
        relay(from: socket, to: socket === client ? upstream : client)
    }

    func socketDrained(_ socket: Socket) {
        let other = socket === client ? upstream : client
        if socket === client, upstreamEnded, !clientShutDown { shutDown(client) }
        if socket === upstream, clientEnded, !upstreamShutDown { shutDown(upstream) }
        // The slow side caught up: read from the other again (unless it has ended).
        if !(other === client ? clientEnded : upstreamEnded) {
            other.setReading(true)
            relay(from: other, to: socket)
        }
        closeIfDone()
    }

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        guard event == .eof else { return close() }   // an error, or idle past the timeout
        let other = socket === client ? upstream : client
        relay(from: socket, to: other)
        if socket === client { clientEnded = true } else { upstreamEnded = true }
        if evbuffer_get_length(other.output) == 0 { shutDown(other) }
        closeIfDone()
    }

    // MARK: relaying

    private func relay(from source: Socket, to sink: Socket) {
        guard !closed else { return }
        let n = evbuffer_get_length(source.input)
        guard n > 0 else { return }
        evbuffer_add_buffer(sink.output, source.input)
        if source === client { bytesToUpstream += n } else { bytesToClient += n }
        metrics.countTunnelBytes(n, toUpstream: source === client)
        sink.flush()
        if evbuffer_get_length(sink.output) > Self.highWater { source.setReading(false) }
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
        upstream.close()
        client.close()
        metrics.tunnelClosed()
        onClose(started.duration(to: LoopClock().now), bytesToUpstream, bytesToClient)
        owner.tunnelClosed()
    }
}
