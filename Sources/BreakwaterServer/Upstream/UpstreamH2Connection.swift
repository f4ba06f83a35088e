import BreakwaterHTTP
private import CLibevent
internal import CNGHTTP2

/// The side of an exchange that an upstream HTTP/2 stream reports to.
protocol UpstreamH2Exchange: AnyObject {
    /// The response head arrived; `endStream`: it is the whole response (trailers-only, say).
    func h2Head(_ head: HTTPHead, endStream: Bool)
    /// Response body bytes in `buffer`, which the receiver must take whole. True asks the stream
    /// to hold its flow-control window shut until `UpstreamH2Connection.consumed` is called.
    func h2Data(_ buffer: OpaquePointer) -> Bool
    /// The response ended, with the trailer fields (lower-case names) when there were any.
    func h2End(trailers: [(name: [UInt8], value: [UInt8])])
    /// The stream failed; no further calls follow.
    func h2Failed(_ failure: UpstreamFailure)
}

/// One HTTP/2 connection to an upstream server (h2c, or h2 over TLS by ALPN) on an nghttp2
/// client session, carrying many exchanges at once, one stream each. As on the client side,
/// nghttp2 gets bytes through `mem_recv` and makes frames through `mem_send`; what its callbacks
/// report is carried out after `mem_recv` returns, so an exchange may act on the connection.
final class UpstreamH2Connection: SocketDelegate {
    private enum State { case connecting, ready, closed }

    /// One request on the connection.
    final class Stream {
        let exchange: UpstreamH2Exchange
        /// The request body: bytes that arrive (a pipe) or the whole buffered body.
        let pipe: RequestBodyPipe?
        let body: OpaquePointer?
        /// The fields of the header block being received.
        var fields: [(name: [UInt8], value: [UInt8])] = []
        var status = 0
        /// The final head arrived (callback side): a HEADERS frame after it is the trailers.
        var headSeen = false
        /// The head went to the exchange.
        var headDelivered = false
        var incoming: OpaquePointer?
        /// DATA bytes the exchange has not let go yet: the window opens by these on `consumed`.
        var owed = 0
        var done = false
        /// When the response head is due (coarse monotonic nanoseconds), nil: no limit.
        var headDeadline: Int64?

        init(exchange: UpstreamH2Exchange, pipe: RequestBodyPipe?, body: OpaquePointer?) {
            self.exchange = exchange
            self.pipe = pipe
            self.body = body
        }

        deinit { if let incoming { evbuffer_free(incoming) } }
    }

    private enum Event {
        case head(Int32, status: Int, fields: [(name: [UInt8], value: [UInt8])], endStream: Bool)
        case data(Int32)
        case end(Int32, trailers: [(name: [UInt8], value: [UInt8])])
        case closed(Int32, code: UInt32)
    }

    let server: UpstreamServer
    /// Weak: a reload replaces the pool, which closes its connections when it goes.
    private weak var pool: UpstreamH2Pool?
    private let socket: Socket
    private var state = State.connecting
    private var session: OpaquePointer?
    private var streams: [Int32: Stream] = [:]
    /// Exchanges waiting for the connection to be made.
    private var waiting: [(UpstreamH2Exchange, (UpstreamH2Connection) -> Void)] = []
    private var events: [Event] = []
    private var busy = false
    private var flushPending = false
    private var flushEvent: LoopEvent!
    /// Checks the streams' head deadlines, at most once a second: one timer for the connection,
    /// not one per request.
    private var timer: DeadlineTimer!
    /// The server sent GOAWAY: no new stream goes on this connection.
    var goingAway: Bool {
        guard let session else { return true }
        return state == .ready && nghttp2_session_check_request_allowed(session) == 0
    }

    /// Open streams, and how many the server allows at once.
    var load: Int { streams.count }
    var capacity: Int {
        guard let session else { return 0 }
        return Int(min(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 1_000))
    }
    var isUsable: Bool { state != .closed && !goingAway }
    var hasRoom: Bool { isUsable && (state == .connecting ? waiting.count < 100 : streams.count < capacity) }

    init(server: UpstreamServer, pool: UpstreamH2Pool) throws {
        self.server = server
        self.pool = pool
        let settings = pool.settings
        socket = try Socket.connect(to: server.address, base: pool.worker.base, tls: settings.tls.map { context in
            let name = settings.tlsServerName.isEmpty ? server.endpoint.host : settings.tlsServerName
            return { fd in context.makeSession(fd: fd, serverName: name, alpn: "h2") }
        })
        flushEvent = try LoopEvent(base: pool.worker.base) { [unowned(unsafe) self] in
            flushPending = false
            flush()
        }
        timer = try DeadlineTimer(base: pool.worker.base) { [unowned(unsafe) self] in headTimerFired() }
        session = try UpstreamH2Session.makeClient(for: self)
        socket.delegate = self
        socket.setTimeout(settings.connectTimeout)
    }

    static func from(_ user: UnsafeMutableRawPointer) -> UpstreamH2Connection {
        Unmanaged<UpstreamH2Connection>.fromOpaque(user).takeUnretainedValue()
    }

    /// Runs `start` with the connection once it is made (at once when it is).
    func whenReady(for exchange: UpstreamH2Exchange, _ start: @escaping (UpstreamH2Connection) -> Void) {
        if state == .ready { return start(self) }
        waiting.append((exchange, start))
    }

    /// Forgets an exchange still waiting for the connection.
    func cancelWaiting(_ exchange: UpstreamH2Exchange) {
        waiting.removeAll { $0.0 === exchange }
    }

    /// Opens a stream for a request with header fields `fields` (pseudo-fields first) and its body
    /// from `pipe` (streaming) or `body` (whole; nil or empty: none). Nil when nghttp2 refused it.
    /// `headTimeout`: the exchange fails with `.timeout` when no response head came by then
    /// (checked about once a second).
    func submit(_ fields: H2Headers.Fields, pipe: RequestBodyPipe?, body: OpaquePointer?, headTimeout: Duration?,
                for exchange: UpstreamH2Exchange) -> Int32? {
        guard let session, state == .ready, !goingAway else { return nil }
        let hasBody = pipe != nil || (body.map { evbuffer_get_length($0) > 0 } ?? false)
        let stream = Stream(exchange: exchange, pipe: pipe, body: body)
        let id: Int32
        if hasBody {
            var provider = UpstreamH2Session.bodyProvider
            id = fields.withNameValues { nghttp2_submit_request(session, nil, $0.baseAddress, $0.count, &provider, nil) }
        } else {
            id = fields.withNameValues { nghttp2_submit_request(session, nil, $0.baseAddress, $0.count, nil, nil) }
        }
        guard id > 0 else { return nil }
        streams[id] = stream
        if let headTimeout {
            let deadline = LoopClock.coarseNow.nanoseconds.addingClamped(headTimeout.clampedNanoseconds)
            stream.headDeadline = deadline
            if timer.deadline == nil { timer.set(at: LoopClock.Instant(nanoseconds: deadline)) }
        }
        scheduleFlush()
        return id
    }

    /// More request body arrived (or it ended): nghttp2 asks for it again.
    func bodyArrived(_ id: Int32) {
        guard let session, streams[id] != nil else { return }
        _ = nghttp2_session_resume_data(session, id)
        scheduleFlush()
    }

    /// The exchange let go of the response bytes it held: the stream's window opens by them.
    func consumed(_ id: Int32) {
        guard let session, let stream = streams[id], stream.owed > 0 else { return }
        _ = nghttp2_session_consume(session, id, stream.owed)
        stream.owed = 0
        scheduleFlush()
    }

    /// The exchange no longer wants the stream (its client left): RST_STREAM CANCEL.
    func cancel(_ id: Int32) {
        guard let session, let stream = streams[id] else { return }
        stream.done = true
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_CANCEL.rawValue)
        scheduleFlush()
    }

    /// Fails the streams whose head is overdue, then waits for the next deadline (a second at least).
    private func headTimerFired() {
        guard timer.expired(), state != .closed else { return }
        let now = LoopClock.coarseNow.nanoseconds
        var next: Int64?
        for (id, stream) in streams where !stream.done && !stream.headDelivered {
            guard let deadline = stream.headDeadline else { continue }
            if deadline <= now {
                cancel(id)
                stream.exchange.h2Failed(.timeout)
            } else {
                next = min(next ?? deadline, deadline)
            }
        }
        if let next, state != .closed {
            timer.set(at: LoopClock.Instant(nanoseconds: max(next, now.addingClamped(1_000_000_000))))
        }
    }

    // MARK: SocketDelegate

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        if event == .connected {
            if let tls = socket.tls, tls.negotiatedProtocol() != "h2" { return fail(.connect) }
            state = .ready
            socket.setTimeout(nil)
            server.health.succeeded()
            let ready = waiting
            waiting.removeAll()
            flush()
            for (_, start) in ready where state == .ready { start(self) }
            return
        }
        if state == .connecting {
            server.health.failed()
            return fail(event == .timeout ? .timeout : .connect)
        }
        if event == .eof { receive() }
        fail(.closedBeforeResponse)
    }

    func socketReadable(_ socket: Socket) { receive() }

    func socketDrained(_ socket: Socket) { flush() }

    // MARK: receiving

    private func receive() {
        guard let session, state == .ready else { return }
        let input = socket.input
        busy = true
        while evbuffer_get_length(input) > 0 {
            var chunk = iovec()
            guard evbuffer_peek(input, -1, nil, &chunk, 1) >= 1, let base = chunk.iov_base else { break }
            let n = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), chunk.iov_len)
            if n < 0 {
                busy = false
                return fail(.badResponse)
            }
            evbuffer_drain(input, n)
        }
        busy = false
        runEvents()
        flush()
    }

    private func runEvents() {
        while !events.isEmpty, state != .closed {
            let batch = events
            events.removeAll(keepingCapacity: true)
            for event in batch where state != .closed { run(event) }
        }
    }

    private func run(_ event: Event) {
        switch event {
        case .head(let id, let status, let fields, let endStream):
            guard let stream = streams[id], !stream.done else { return }
            var text = Array("HTTP/1.1 \(status) -\r\n".utf8)
            for (name, value) in fields {
                text.append(contentsOf: name)
                text.append(contentsOf: ": ".utf8)
                text.append(contentsOf: value)
                text.append(contentsOf: "\r\n".utf8)
            }
            text.append(contentsOf: "\r\n".utf8)
            guard let head = try? HTTPHead.parseResponse(text) else {
                stream.done = true
                cancel(id)
                return stream.exchange.h2Failed(.badResponse)
            }
            stream.headDelivered = true
            stream.exchange.h2Head(head, endStream: endStream)
            if endStream { finish(id, stream, trailers: []) }
        case .data(let id):
            guard let stream = streams[id], !stream.done, let incoming = stream.incoming else { return }
            let n = evbuffer_get_length(incoming)
            guard n > 0 else { return }
            if stream.exchange.h2Data(incoming) { stream.owed += n } else if let session {
                _ = nghttp2_session_consume(session, id, n)
            }
        case .end(let id, let trailers):
            guard let stream = streams[id], !stream.done, stream.headDelivered else { return }
            finish(id, stream, trailers: trailers)
        case .closed(let id, let code):
            guard let stream = streams.removeValue(forKey: id) else { return }
            if !stream.done {
                stream.done = true
                // REFUSED_STREAM: the server took none of it (RFC 9113 8.7).
                stream.exchange.h2Failed(stream.headDelivered ? .brokenResponse
                                         : code == NGHTTP2_REFUSED_STREAM.rawValue ? .closedBeforeResponse : .badResponse)
            }
            // A connection the server is leaving closes with its last stream.
            if goingAway, streams.isEmpty { close() }
        }
    }

    private func finish(_ id: Int32, _ stream: Stream, trailers: [(name: [UInt8], value: [UInt8])]) {
        stream.done = true
        stream.exchange.h2End(trailers: trailers)
    }

    // MARK: the callbacks' side

    func header(_ id: Int32, _ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[id] else { return }
        if name.elementsEqual(":status".utf8) {
            stream.status = Int(String(decoding: value, as: UTF8.self)) ?? 0
            return
        }
        // Pseudo-fields of trailers are a protocol error nghttp2 already refuses; the others
        // stay on their hop as they would over HTTP/1.1.
        if name.first == UInt8(ascii: ":") { return }
        stream.fields.append((Array(name), Array(value)))
    }

    func frameReceived(_ id: Int32, headers: Bool, endStream: Bool) {
        guard let stream = streams[id] else { return }
        if headers && !stream.headSeen {
            let fields = stream.fields
            stream.fields = []
            // An interim 1xx head is dropped: the final one follows.
            if (100...199).contains(stream.status) { return }
            stream.headSeen = true
            events.append(.head(id, status: stream.status, fields: fields, endStream: endStream))
            return
        }
        guard endStream else { return }
        events.append(.end(id, trailers: headers ? stream.fields : []))
        stream.fields = []
    }

    func dataReceived(_ id: Int32, _ data: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[id], !stream.done else {
            if let session { _ = nghttp2_session_consume(session, id, data.count) }
            return
        }
        if stream.incoming == nil { stream.incoming = evbuffer_new() }
        evbuffer_add(stream.incoming, data.baseAddress, data.count)
        events.append(.data(id))
    }

    func streamClosed(_ id: Int32, code: UInt32) {
        events.append(.closed(id, code: code))
    }

    func readRequestBody(_ id: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ length: Int,
                         _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n: Int, ended: Bool, left: Int
        if let pipe = stream.pipe {
            n = pipe.take(into: buffer, count: length)
            ended = pipe.ended
            left = pipe.buffered
        } else {
            n = stream.body.map { Int(evbuffer_remove($0, buffer, length)) } ?? 0
            ended = true
            left = stream.body.map { evbuffer_get_length($0) } ?? 0
        }
        if ended && left == 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return max(n, 0)
        }
        if n <= 0 { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        return n
    }

    // MARK: sending

    func scheduleFlush() {
        guard !flushPending, state != .closed else { return }
        flushPending = true
        flushEvent.activate(0)
    }

    /// Bytes queued for the socket beyond which no more frames are made until it drains.
    private static let outputHighWater = 256 * 1024

    private func flush() {
        guard let session, state == .ready, !busy else { return }
        let output = socket.output
        var full: Bool
        repeat {
            busy = true
            while evbuffer_get_length(output) < Self.outputHighWater {
                var data: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &data)
                if n < 0 {
                    busy = false
                    return fail(.brokenResponse)
                }
                guard n > 0, let data else { break }
                evbuffer_add(output, data, n)
            }
            full = evbuffer_get_length(output) >= Self.outputHighWater
            busy = false
            runEvents()
            guard state == .ready else { return }
            socket.flush()
            // Frames stopped at the mark and the kernel took them all: no drain will be announced
            // (the socket never waited), so the rest is made now.
        } while full && evbuffer_get_length(output) < Self.outputHighWater
    }

    // MARK: closing

    /// The connection failed or ended: every exchange on it is told.
    private func fail(_ failure: UpstreamFailure) {
        guard state != .closed else { return }
        let wasConnecting = state == .connecting
        close()
        for (exchange, _) in waiting { exchange.h2Failed(failure) }
        waiting.removeAll()
        let open = streams
        streams.removeAll()
        for stream in open.values where !stream.done {
            stream.done = true
            stream.exchange.h2Failed(wasConnecting ? failure : stream.headDelivered ? .brokenResponse : .closedBeforeResponse)
        }
    }

    /// Closes the socket and the session; the pool forgets the connection.
    func close() {
        guard state != .closed else { return }
        state = .closed
        socket.delegate = nil
        socket.close()
        if let session { nghttp2_session_del(session) }
        session = nil
        flushEvent.close()
        timer.free()
        pool?.closed(self)
    }
}
