import BreakwaterHTTP
private import CLibevent
import BreakwaterCore

/// One accepted client connection: the I/O shell around a `RequestReader`. It feeds the reader
/// the bytes, deadlines and closes the socket reports, and carries out what the reader decides
/// (parse a head, buffer a body, hand a request over, refuse, linger, close). The HTTP rules
/// themselves live in BreakwaterHTTP; writing responses is in ClientConnection+Response.swift.
/// The worker's connection table owns the object.
final class ClientConnection: SocketDelegate, ClientResponder, WorkerConnection {
    let peer: IPAddress
    /// The peer's address as text, made once per connection (it goes into every X-Forwarded-For).
    private(set) lazy var peerText: [UInt8] = Array(peer.description.utf8)
    /// Strong: a draining worker drops its listeners while their connections finish.
    let listener: Listener
    var worker: Worker { listener.worker }
    let socket: Socket
    /// The connection's life, and every HTTP/1 rule of reading requests.
    let reader: RequestReader<LoopClock>
    /// The reader's deadline, on the loop.
    private var timer: DeadlineTimer!
    /// Inside `process` (a response written synchronously must not re-enter it).
    private var processing = false
    /// Whether a request has arrived on this connection: a drain closes idle connections at
    /// once only when they have served one, so a connection accepted just before the listeners
    /// closed (a hot upgrade) still gets its first request answered.
    private var hadRequest = false
    /// When the connection was accepted (coarse monotonic nanoseconds).
    private let openedAt = LoopClock.coarseNow.nanoseconds
    /// The order of acceptance on its worker (0 for the first).
    let serial: UInt64
    /// The body of the request being read.
    private var body: OpaquePointer?
    /// How the response being written is framed for this client.
    var framing = ResponseFraming.refusal
    /// The handler's side of the current exchange, told when the client leaves or drains.
    var exchange: ClientExchange?
    /// The request's `Origin` when `[server] cors_origins` lists it: Breakwater's own answer to
    /// the request carries the CORS headers that let that page read it. Cleared after each response.
    var corsOrigin: String?
    /// The socket went to an `H2Connection`.
    private var handedOver = false
    /// Bytes of the body being read that are counted in the worker's body budget.
    private var bodyHeld = 0
    /// Reading is stopped until the body budget has room.
    private var waitingForBudget = false
    /// The body being read counts in the budget (the worker knows it as in progress).
    private var inBodyBudget = false
    /// The tunnel this connection became after a 101; it owns the socket's callbacks then.
    private var tunnel: Tunnel?

    var wireProtocol: WireProtocol { .http1 }

    /// Output above this many bytes makes `sendBody` report back-pressure.
    static let highWater = 1 << 20

    private init(socket: Socket, peer: IPAddress, listener: Listener) {
        self.socket = socket
        self.peer = peer
        self.listener = listener
        serial = listener.worker.accepted
        listener.worker.accepted &+= 1
        reader = RequestReader(limits: listener.limits, now: LoopClock.coarseNow)
    }

    /// Wraps an accepted socket and starts reading from it.
    /// With `tls`, the handshake comes first, within the listener's `handshake_timeout`.
    static func open(fd: Int32, peer: IPAddress, listener: Listener, tls: TLSSession? = nil) throws(SystemCallError) {
        let worker = listener.worker
        let connection = ClientConnection(socket: try Socket(fd: fd, base: worker.base, tls: tls), peer: peer, listener: listener)
        connection.socket.delegate = connection
        do {
            connection.timer = try DeadlineTimer(base: worker.base) { [unowned(unsafe) connection] in connection.timerFired() }
        } catch {
            connection.socket.close()
            throw error
        }
        worker.connections[ObjectIdentifier(connection)] = connection
        connection.timer.set(at: connection.reader.deadline)
        if let endpoint = listener.tls { connection.socket.setTimeout(endpoint.handshakeTimeout) }
    }

    // MARK: socket and timer events

    func socketReadable(_ socket: Socket) {
        process()
    }

    func socketDrained(_ socket: Socket) {
        if case .closing = reader.state {
            perform(reader.outputDrained(inputPending: evbuffer_get_length(socket.input) > 0,
                                         draining: worker.draining, now: LoopClock.coarseNow))
        } else {
            exchange?.clientDrained()
        }
    }

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        if let tls = socket.tls, tls.handshaking, let endpoint = listener.tls {
            endpoint.count(event == .timeout ? .timeout : .failed)
        }
        perform(reader.peerClosed())
    }

    func socketSecured(_ socket: Socket) {
        socket.setTimeout(nil)
        listener.tls?.count(.ok)
        if let h2 = listener.h2, socket.tls?.negotiatedProtocol() == "h2" { handOver(to: h2) }
    }

    // MARK: HTTP/2

    /// The connection preface of HTTP/2 (RFC 9113 3.4).
    private static let h2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Whether the input begins with the HTTP/2 preface: true, false, or nil while the bytes
    /// received so far are a beginning of it.
    private static func startsWithPreface(_ input: OpaquePointer) -> Bool? {
        var first = [UInt8](repeating: 0, count: h2Preface.count)
        let n = first.withUnsafeMutableBytes { Int(evbuffer_copyout(input, $0.baseAddress, h2Preface.count)) }
        guard n > 0, first[..<n].elementsEqual(h2Preface[..<n]) else { return false }
        return n == h2Preface.count ? true : nil
    }

    /// The connection speaks HTTP/2: the socket, with what it has received, goes to an
    /// `H2Connection`, and this object is done.
    private func handOver(to settings: H2Settings) {
        // The socket's reference to this object goes with its delegate; one more is kept until the
        // loop's next turn, as the calls that led here still run on this object.
        let keep = self
        worker.schedule(after: .zero) { withExtendedLifetime(keep) {} }
        handedOver = true
        timer.free()
        _ = reader.peerClosed()
        worker.connections[ObjectIdentifier(self)] = nil
        H2Connection.open(socket: socket, peer: peer, listener: listener, settings: settings)
    }

    private func timerFired() {
        guard timer.expired() else { return }
        perform(reader.deadlinePassed(now: LoopClock.coarseNow))
    }

    // MARK: reading requests

    /// Hands the reader what the input holds and carries out its actions until it waits.
    private func process() {
        guard !processing, !handedOver else { return }
        if !hadRequest, reader.isIdle, let h2 = listener.h2, h2.priorKnowledge {
            switch Self.startsWithPreface(socket.input) {
            case true?: return handOver(to: h2)
            case nil: return timer.set(at: reader.deadline)
            case false?: break
            }
        }
        processing = true
        defer { processing = false }
        let input = socket.input
        let now = LoopClock.coarseNow   // one reading for the whole turn: the loop is quick
        while true {
            let buffered = evbuffer_get_length(input)
            if buffered > 0, reader.isReadingBody, worker.mustWaitForBodyBudget(self) {
                // Bodies being received hold the whole budget: this one waits, its bytes in the kernel.
                waitingForBudget = true
                socket.setReading(false)
                worker.waitForBodyBudget(self)
                return
            }
            if buffered == 0, reader.isIdle || reader.isResponding {
                // Nothing to read between requests: the reader would only wait for its deadline.
                // (A body may still complete with no bytes left, so the reader hears of those.)
                timer.set(at: reader.deadline)
                return
            }
            let action = Self.withFirstChunk(of: input) { reader.read($0, buffered: buffered, now: now) }
            switch action {
            case .needContiguous(let n):
                guard evbuffer_pullup(input, n) != nil else { return close() }
            case .discard(let n):
                evbuffer_drain(input, n)
            case .body(let n):
                evbuffer_remove_buffer(input, body, n)
                if inBodyBudget {
                    worker.bodyBudget?.take(n)
                    bodyHeld += n
                }
            case .head(let length, let sendContinue):
                evbuffer_drain(input, length)
                if let head = reader.headOfBody,
                   let answer = listener.handler.bodyAhead(HTTPRequest(head: head, body: nil, peer: peer, tls: socket.tls), on: self) {
                    // Answered from the head: no 100 Continue, no body byte kept.
                    reader.answeredBeforeBody()
                    timer.clear()
                    framing = .closing(request: head)
                    answer(self)
                    continue
                }
                body = evbuffer_new()
                guard body != nil else { return close() }
                if worker.bodyBudget != nil {
                    inBodyBudget = true
                    worker.bodyStarted(self)
                }
                if sendContinue {
                    writeRaw("HTTP/1.1 100 Continue\r\n\r\n")
                    socket.flush()
                }
            case .request(let length):
                evbuffer_drain(input, length)
                dispatch(reader.takeHead(), body: nil)
            case .complete(let discard):
                evbuffer_drain(input, discard)
                let complete = body
                body = nil
                releaseBody()
                dispatch(reader.takeHead(), body: complete)
            case .refuse(let error):
                refuse(error)
            case .stopReading:
                socket.setReading(false)
                return
            case .wait(let deadline):
                timer.set(at: deadline)
                return
            case .linger, .close:
                return perform(action)
            }
        }
    }

    /// The body being read is complete, refused or abandoned: its bytes leave the budget.
    private func releaseBody() {
        guard inBodyBudget else { return }
        inBodyBudget = false
        waitingForBudget = false
        let held = bodyHeld
        bodyHeld = 0
        worker.bodyEnded(self, bytes: held)
    }

    /// The body budget has room again: reading resumes.
    func bodyBudgetAvailable() {
        guard waitingForBudget else { return }
        waitingForBudget = false
        socket.setReading(true)
        process()
    }

    /// Carries out an action that came from an event other than bytes arriving.
    private func perform(_ action: RequestReader<LoopClock>.Action) {
        switch action {
        case .wait(let deadline):
            timer.set(at: deadline)
        case .refuse(let error):
            refuse(error)
        case .linger(let deadline):
            socket.shutdownWrite()
            evbuffer_drain(socket.input, evbuffer_get_length(socket.input))
            timer.set(at: deadline)
            socket.setReading(true)
        case .close:
            close()
        case .needContiguous, .discard, .body, .head, .request, .complete, .stopReading:
            process()
        }
    }

    /// Calls `body` with the input's first contiguous bytes (empty when there are none).
    private static func withFirstChunk<R>(of input: OpaquePointer, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var chunk = iovec()
        guard evbuffer_peek(input, -1, nil, &chunk, 1) >= 1, let base = chunk.iov_base else {
            return body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return body(UnsafeRawBufferPointer(start: base, count: chunk.iov_len))
    }

    private func dispatch(_ head: consuming HTTPHead, body: OpaquePointer?) {
        hadRequest = true
        timer.clear()
        framing = ResponseFraming(request: head)
        listener.handler.handle(HTTPRequest(head: head, body: body, peer: peer, tls: socket.tls), on: self)
    }

    /// Answers a request the reader refused; the connection closes after the answer is written.
    private func refuse(_ error: HTTPError) {
        listener.handler.rejected(status: error.status, peer: peer, secure: socket.tls != nil, over: .http1)
        evbuffer_drain(socket.input, evbuffer_get_length(socket.input))   // never to be parsed
        if let body { evbuffer_free(body) }
        body = nil
        releaseBody()
        timer.clear()
        framing = .refusal
        respond(status: error.status, reason: error.reason, headers: [("Content-Type", "text/plain")],
                body: Array("\(error.status) \(error.reason)\n".utf8))
    }

    /// The response was written out (queued): on to the next request, or towards closing.
    func responseEnded() {
        let keepAlive = framing.keepAlive
        socket.flush()
        perform(reader.responseEnded(keepAlive: keepAlive, now: LoopClock.coarseNow))
        if keepAlive {
            socket.setReading(true)
            if evbuffer_get_length(socket.input) > 0 { process() }
        } else {
            socket.setReading(false)
            if evbuffer_get_length(socket.output) == 0 { socketDrained(socket) }
        }
    }

    /// The response broke off mid-body: deliver what was written, then close.
    func responseAborted() {
        socket.flush()
        guard reader.isResponding, evbuffer_get_length(socket.output) > 0 else { return close() }
        socket.setReading(false)
        perform(reader.responseAborted(now: LoopClock.coarseNow))
    }

    // MARK: tunnels

    /// The upstream switched protocols: writes its 101 head (`writeHead`, with the Upgrade and
    /// `Connection: upgrade` fields) and joins this connection and `upstream` into a tunnel.
    func startTunnel(upstream: Socket, idleTimeout: Duration, metrics: ProxyMetrics,
                     head writeHead: (inout EvbufferWriter) -> Void, onClose: @escaping (Duration, Int, Int) -> Void) {
        guard reader.isResponding else {
            upstream.close()
            return
        }
        exchange = nil
        timer.clear()
        reader.tunnelStarted()
        EvbufferWriter.write(into: socket.output, reserving: 512, writeHead)
        socket.flush()
        let tunnel = Tunnel(owner: self, client: socket, upstream: upstream, buffer: worker.relayBuffer,
                            idleTimeout: idleTimeout, metrics: metrics, onClose: onClose)
        self.tunnel = tunnel
        tunnel.start()
    }

    /// The tunnel closed both connections.
    func tunnelClosed() {
        if let tunnel { releaseLater(tunnel) }
        tunnel = nil
        close()
    }

    /// Drops `tunnel` on the loop's next turn, not now: its sockets call it without retaining it
    /// (`Socket.readItself(by:)`), and it may be closing inside such a call.
    private func releaseLater(_ tunnel: Tunnel) {
        worker.schedule(after: .zero) { withExtendedLifetime(tunnel) {} }
    }

    // MARK: closing

    /// Closes now if no request is in progress (used while draining), except a connection
    /// accepted less than a second ago that has not sent its first request yet: it may have
    /// been accepted just as the listeners closed (a hot upgrade), and its request, coming,
    /// is answered with `Connection: close`. The worker asks again until it is.
    func closeIfIdle() {
        guard reader.isIdle else { return }
        if hadRequest || LoopClock.coarseNow.nanoseconds - openedAt > 1_000_000_000 { close() }
    }

    /// Closes the socket and forgets the connection; a pending exchange is told.
    func close() {
        if handedOver { return }
        if case .closed = reader.state, socket.closed { return }
        _ = reader.peerClosed()
        if let tunnel {
            self.tunnel = nil
            releaseLater(tunnel)
            tunnel.close()
        }
        if let exchange {
            self.exchange = nil
            exchange.clientClosed()
        }
        socket.close()
        timer.free()
        if let body { evbuffer_free(body) }
        body = nil
        releaseBody()
        let worker = self.worker
        worker.connections[ObjectIdentifier(self)] = nil
        worker.checkDrained()
    }
}
