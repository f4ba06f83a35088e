import BreakwaterHTTP
private import CLibevent
import BreakwaterCore

/// How an upstream exchange failed.
enum UpstreamFailure: Equatable {
    /// The connection could not be made (refused, unreachable).
    case connect
    /// Connecting, or waiting for the response, took longer than allowed.
    case timeout
    /// The connection closed or broke before any response byte arrived.
    case closedBeforeResponse
    /// The response head was malformed or too large.
    case badResponse
    /// The connection broke after the response had started.
    case brokenResponse

    init(_ failure: ResponseReader.Failure) {
        switch failure {
        case .closedBeforeResponse: self = .closedBeforeResponse
        case .badResponse: self = .badResponse
        case .brokenResponse: self = .brokenResponse
        }
    }
}

/// The side of an upstream exchange that consumes the response.
protocol UpstreamExchange: AnyObject {
    /// The response head arrived; `framing` says whether a body follows.
    func upstreamHead(_ head: HTTPHead, framing: BodyFraming)
    /// Body bytes arrived in `buffer`; the receiver must take them all.
    func upstreamBody(_ buffer: OpaquePointer)
    /// The response is complete.
    func upstreamEnd()
    /// The server switched protocols (101) to an upgrade request: `socket` is the exchange's
    /// now, with any bytes that came after the head in its input; the connection is gone.
    func upstreamSwitched(_ head: HTTPHead, socket: Socket)
    /// The exchange failed; no further calls follow.
    func upstreamFailed(_ failure: UpstreamFailure)
}

/// One keep-alive connection to an upstream server, carrying one exchange at a time: the I/O
/// shell around a `ResponseReader`, which holds the HTTP/1 rules of reading responses.
final class UpstreamConnection: SocketDelegate {
    private enum State { case connecting, idle, busy, closed }

    let server: UpstreamServer
    unowned let pool: UpstreamPool
    private let socket: Socket
    private var state = State.connecting
    private var exchange: UpstreamExchange?
    private var reader = ResponseReader()
    /// Response body bytes on their way to the exchange.
    private var bodyChunk: OpaquePointer?
    /// Whether this connection carried an exchange before the current one.
    private(set) var reused = false
    /// When it was last parked, for the pool's idle sweep.
    private(set) var parkedAt = LoopClock.Instant(nanoseconds: 0)

    init(server: UpstreamServer, pool: UpstreamPool) throws(SystemCallError) {
        self.server = server
        self.pool = pool
        let settings = pool.settings
        socket = try Socket.connect(to: server.address, base: pool.worker.base, tls: settings.tls.map { context in
            let name = settings.tlsServerName.isEmpty ? server.endpoint.host : settings.tlsServerName
            return { fd in context.makeSession(fd: fd, serverName: name) }
        })
        socket.delegate = self
        socket.setTimeout(pool.settings.connectTimeout)
    }

    /// Sends a request, its head written by `writeHead`; the response is delivered to `exchange`.
    /// `upgrading`: the request asks to switch protocols, so a 101 may answer it.
    func send(body requestBody: OpaquePointer?, expectNoBody: Bool, upgrading: Bool = false, to exchange: UpstreamExchange,
              reserving size: Int, head writeHead: (inout EvbufferWriter) -> Void) {
        self.exchange = exchange
        reader.requestSent(answeringHEAD: expectNoBody, upgrading: upgrading)
        if state == .idle {
            state = .busy
            socket.setTimeout(nanoseconds: pool.settings.timeoutNanoseconds)
        }
        EvbufferWriter.write(into: socket.output, reserving: size, writeHead)
        if let requestBody { evbuffer_add_buffer_reference(socket.output, requestBody) }
        socket.setReading(true)
        socket.flush()
    }

    /// Stops reading the response (the client is slow).
    func pause() { socket.setReading(false) }

    /// Resumes reading the response.
    func resume() { if state == .busy { socket.setReading(true) } }

    /// Abandons the exchange: the connection cannot be reused mid-response.
    func cancel() {
        exchange = nil
        close()
    }

    /// Parked in the pool: any byte or EOF now means the server closed it.
    func parked() {
        parkedAt = LoopClock.coarseNow
        state = .idle
        reused = true
        socket.setTimeout(nil)
    }

    // MARK: SocketDelegate

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        if event == .connected {
            state = .busy
            socket.setTimeout(nanoseconds: pool.settings.timeoutNanoseconds)
            pool.connected(self)
            return
        }
        if state == .connecting {
            let failure = event == .timeout ? UpstreamFailure.timeout : .connect
            pool.connectFailed(self, timedOut: failure == .timeout)
            return fail(failure)
        }
        if event == .timeout { return fail(.timeout) }
        if event == .eof { relay() }   // what arrived before the close is part of the response
        guard exchange != nil else { return close() }
        carryOut(reader.peerClosed(cleanly: event == .eof))
    }

    func socketDrained(_ socket: Socket) {}

    func socketReadable(_ socket: Socket) {
        guard exchange != nil, state == .busy else {
            close()   // bytes from an idle server are out of protocol
            return
        }
        relay()
    }

    // MARK: reading the response

    /// Hands the reader what the input holds and carries out its actions until it waits.
    private func relay() {
        let input = socket.input
        while exchange != nil {
            let buffered = evbuffer_get_length(input)
            var chunk = iovec()
            let action: ResponseReader.Action
            if evbuffer_peek(input, -1, nil, &chunk, 1) >= 1, let base = chunk.iov_base {
                action = reader.read(UnsafeRawBufferPointer(start: base, count: chunk.iov_len), buffered: buffered)
            } else {
                action = reader.read(UnsafeRawBufferPointer(start: nil, count: 0), buffered: buffered)
            }
            if case .wait = action { return }
            carryOut(action)
        }
    }

    private func carryOut(_ action: ResponseReader.Action) {
        let input = socket.input
        switch action {
        case .wait:
            break
        case .needContiguous(let n):
            if evbuffer_pullup(input, n) == nil { fail(.badResponse) }
        case .discard(let n):
            evbuffer_drain(input, n)
        case .head(let head, let length, let body):
            evbuffer_drain(input, length)
            let framing: BodyFraming = switch body {
            case .none: .none
            case .length(let n): .length(n)
            case .chunked, .untilClose: .stream
            }
            exchange?.upstreamHead(head, framing: framing)
        case .body(let n):
            guard let chunk = takeBodyChunk() else { return fail(.brokenResponse) }
            evbuffer_remove_buffer(input, chunk, n)
            exchange?.upstreamBody(chunk)
        case .complete(let reusable):
            finish(reusable: reusable)
        case .switched(let head, let length):
            evbuffer_drain(input, length)
            handOver(head)
        case .fail(let failure):
            fail(UpstreamFailure(failure))
        }
    }

    private func takeBodyChunk() -> OpaquePointer? {
        if bodyChunk == nil { bodyChunk = evbuffer_new() }
        return bodyChunk
    }

    private func finish(reusable: Bool) {
        guard let exchange else { return }
        self.exchange = nil
        if reusable && state == .busy {
            pool.release(self)
        } else {
            close()
        }
        exchange.upstreamEnd()
    }

    /// Gives the socket to the exchange for a tunnel; the pool counts the connection as closed.
    private func handOver(_ head: HTTPHead) {
        guard let exchange, state == .busy else { return fail(.badResponse) }
        self.exchange = nil
        state = .closed
        if let bodyChunk { evbuffer_free(bodyChunk) }
        bodyChunk = nil
        socket.delegate = nil
        socket.setTimeout(nil)
        pool.closed(self, wasIdle: false)
        exchange.upstreamSwitched(head, socket: socket)
    }

    private func fail(_ failure: UpstreamFailure) {
        let exchange = self.exchange
        self.exchange = nil
        close()
        exchange?.upstreamFailed(failure)
    }

    func close() {
        guard state != .closed else { return }
        let wasIdle = state == .idle
        state = .closed
        socket.close()
        if let bodyChunk { evbuffer_free(bodyChunk) }
        bodyChunk = nil
        pool.closed(self, wasIdle: wasIdle)
    }
}
