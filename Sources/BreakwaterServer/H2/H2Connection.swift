import BreakwaterHTTP
import BreakwaterCore
private import CLibevent
internal import CNGHTTP2

/// One client connection speaking HTTP/2, beside `ClientConnection` (HTTP/1.1): nghttp2 does the
/// framing, HPACK, flow control and the protocol's state rules; this carries bytes between it and
/// the socket and turns each stream into a request on the same path as HTTP/1.1 (`H2Stream`).
/// nghttp2 is driven without callbacks into the socket: bytes received go in through
/// `nghttp2_session_mem_recv`, frames to send come out of `nghttp2_session_mem_send` into the
/// socket's output buffer, and no more are made while that holds `outputHighWater` bytes.
/// The worker's connection table owns the object.
final class H2Connection: SocketDelegate, WorkerConnection {
    let peer: IPAddress
    /// The peer's address as text, made once per connection.
    private(set) lazy var peerText: [UInt8] = Array(peer.description.utf8)
    /// Strong: a draining worker drops its listeners while their connections finish.
    let listener: Listener
    var worker: Worker { listener.worker }
    let socket: Socket
    let settings: H2Settings
    /// The nghttp2 server session; nil once closed.
    private(set) var session: OpaquePointer?
    /// Open streams by id.
    private(set) var streams: [Int32: H2Stream] = [:]
    /// The open stream looked up last: nghttp2 calls back about one stream several times in a
    /// row (each field of its header block, its frames, its body), and this spares the dictionary.
    private var lastStream: H2Stream?
    /// Inside `runEvents`.
    private var runningEvents = false
    /// Storage reused from one stream to the next: the header lines of a request head being
    /// parsed, and the fields of a response being submitted (nghttp2 copies them).
    var headFields: [HeaderField] = []
    var responseFields = H2Headers.Fields()
    /// Emptied response body queues of closed streams, for the next streams to take.
    private var spareQueues: [OpaquePointer] = []
    private static let maxSpareQueues = 16
    /// What the callbacks of one `mem_recv` found, carried out once it has returned: nghttp2
    /// must not be re-entered, and a handler may answer (or close) synchronously.
    var events: [H2Event] = []
    /// Streams whose queued body fell below the high-water mark while frames were made.
    var drainedStreams: [H2Stream] = []
    /// Inside nghttp2 (receiving or making frames): a flush asked for meanwhile is made after.
    private var busy = false
    private var flushAgain = false
    /// GOAWAY was sent because of a protocol error or a flood: the connection closes once it is out.
    private var failing = false
    private var shutDown = false
    /// Set by `closeIfIdle` while draining: a GOAWAY was submitted, no new stream is taken.
    private var goingAway = false
    private var closed = false
    /// When the connection was accepted, and whether a stream was opened on it: a drain lets a
    /// connection accepted less than a second ago send its first request first (as HTTP/1.1).
    private let openedAt = LoopClock.coarseNow.nanoseconds
    private var hadStream = false
    /// Closes the connection after `idle_timeout` without an open stream.
    private var timer: DeadlineTimer!
    /// Runs `flush` once the loop has handled what is ready now: the responses of many streams
    /// (and a response's head, body and end) leave in one write, not one each.
    private var flushEvent: LoopEvent!
    private var flushPending = false
    /// `idle_timeout` in nanoseconds, converted once: the timer is set twice per stream.
    private let idleTimeout: Int64
    /// The one-second step of `checkDeadlines`.
    private static let second: Int64 = 1_000_000_000

    private init(socket: Socket, peer: IPAddress, listener: Listener, settings: H2Settings) {
        self.socket = socket
        self.peer = peer
        self.listener = listener
        self.settings = settings
        idleTimeout = listener.limits.idleTimeout.clampedNanoseconds
    }

    /// Takes over an accepted socket whose first bytes (already in its input, maybe) are HTTP/2:
    /// the client's preface on the plain listener, or anything after ALPN chose "h2".
    static func open(socket: Socket, peer: IPAddress, listener: Listener, settings: H2Settings) {
        let connection = H2Connection(socket: socket, peer: peer, listener: listener, settings: settings)
        socket.delegate = connection
        do {
            connection.timer = try DeadlineTimer(base: listener.worker.base) { [unowned(unsafe) connection] in connection.timerFired() }
            connection.flushEvent = try LoopEvent(base: listener.worker.base) { [unowned(unsafe) connection] in
                connection.flushPending = false
                connection.flush()
            }
            connection.session = try H2Session.makeServer(for: connection)
        } catch {
            connection.timer?.free()
            connection.flushEvent?.close()
            socket.close()
            return
        }
        listener.worker.connections[ObjectIdentifier(connection)] = connection
        listener.handler.h2Connections(+1)
        connection.timer.set(afterNanoseconds: connection.idleTimeout)
        connection.receive()
    }

    // MARK: socket events

    func socketReadable(_ socket: Socket) {
        receive()
    }

    func socketDrained(_ socket: Socket) {
        flush()
    }

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        close()
    }

    /// Idle for `idle_timeout`, or draining with its last stream done: GOAWAY, then close once it
    /// is out (asked again every 100 ms); a failed connection closes at once.
    private func timerFired() {
        guard timer.expired() else { return }
        if failing { return close() }
        guard streams.isEmpty else { return checkDeadlines() }
        closeIfIdle()
        if !closed { timer.set(after: .milliseconds(100)) }
    }

    /// Once a second while streams are open: a request body that is too slow gets 408 on
    /// its stream (as over HTTP/1.1); a header block that never ends closes the connection (its
    /// HPACK state cannot be left half-decoded).
    private func checkDeadlines() {
        let now = LoopClock.coarseNow.nanoseconds
        for stream in Array(streams.values) where !closed {
            switch stream.deadline(now: now, limits: listener.limits) {
            case .none, .waiting: break
            case .bodyLate: stream.refuse(HTTPError(408, "HTTP/2 request body too slow"))
            case .lingerOver: reset(stream, code: NGHTTP2_NO_ERROR)
            case .headersLate:
                fail(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
                return flush()
            }
        }
        if !streams.isEmpty { timer.set(after: .seconds(1)) }
        flush()
    }

    // MARK: receiving

    /// Hands nghttp2 what the input holds, then carries out what its callbacks found.
    private func receive() {
        guard let session, !closed else { return }
        let input = socket.input
        if failing {
            evbuffer_drain(input, evbuffer_get_length(input))
            return
        }
        busy = true
        while evbuffer_get_length(input) > 0 {
            var chunk = iovec()
            guard evbuffer_peek(input, -1, nil, &chunk, 1) >= 1, let base = chunk.iov_base else { break }
            let n = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), chunk.iov_len)
            if n < 0 {
                // A bad preface, a protocol error nghttp2 could not answer on one stream, or a
                // flood (of SETTINGS, PING, resets): GOAWAY, then close.
                evbuffer_drain(input, evbuffer_get_length(input))
                fail(Int32(n))
                break
            }
            evbuffer_drain(input, n)
        }
        busy = false
        runEvents()
        flush()
    }

    /// Carries out what the callbacks of the last `mem_recv` found, in order.
    private func runEvents() {
        // A receive made while they run (a handler that resumes reading) adds its events to
        // this loop's.
        guard !runningEvents else { return }
        runningEvents = true
        defer { runningEvents = false }
        // By index, events added meanwhile included: the array is not copied, and its storage
        // is kept for the next batch.
        var next = 0
        while next < events.count, !closed {
            let event = events[next]
            next += 1
            switch event {
            case .headers(let stream): stream.headersComplete()
            case .complete(let stream): stream.requestComplete()
            case .refuse(let stream, let error): stream.refuse(error)
            }
        }
        events.removeAll(keepingCapacity: true)
    }

    /// A connection error: GOAWAY with `code`'s reason goes out, then the connection closes.
    private func fail(_ code: Int32) {
        guard let session, !failing else { return }
        failing = true
        let reason: nghttp2_error_code = code == NGHTTP2_ERR_FLOODED.rawValue || code == NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR
        _ = nghttp2_session_terminate_session(session, reason.rawValue)
        listener.handler.rejected(status: 400, peer: peer, secure: socket.tls != nil, over: .h2)
        timer.set(after: .seconds(1))
    }

    /// A GOAWAY with an error went out (ours, or nghttp2's own on a protocol breach): no more
    /// frames are read, and the connection closes once the output is sent.
    func goawaySent() {
        guard !failing else { return }
        failing = true
        timer.set(after: .seconds(1))
    }

    // MARK: sending

    /// Makes the frames nghttp2 has to send, up to the output's high-water mark, and sends them.
    func flush() {
        guard let session, !closed else { return }
        if busy {
            flushAgain = true
            return
        }
        busy = true
        let output = socket.output
        repeat {
            flushAgain = false
            while evbuffer_get_length(output) < settings.outputHighWater {
                var data: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &data)
                if n < 0 {
                    busy = false
                    return close()
                }
                guard n > 0, let data else { break }
                evbuffer_add(output, data, n)
            }
            if !drainedStreams.isEmpty {
                let drained = drainedStreams
                drainedStreams.removeAll()
                busy = false
                for stream in drained { stream.exchange?.clientDrained() }
                busy = true
            }
            if !flushAgain, !closed, evbuffer_get_length(output) >= settings.outputHighWater {
                socket.flush()
                // Frames stopped at the mark and the kernel took them all: no drain will be
                // announced (the socket never waited), so the rest is made now.
                flushAgain = evbuffer_get_length(output) < settings.outputHighWater
            }
        } while flushAgain && !closed
        busy = false
        guard !closed else { return }
        socket.flush()
        if failing {
            // The GOAWAY is out: the end of the stream follows it, and what the client still sends
            // is read and dropped until it closes (or the timer), so that no reset destroys the GOAWAY.
            if evbuffer_get_length(output) == 0, !shutDown {
                shutDown = true
                socket.shutdownWrite()
            }
            return
        }
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0,
           evbuffer_get_length(output) == 0 {
            close()
        }
    }

    /// A flush at the end of this turn of the loop.
    func scheduleFlush() {
        guard !flushPending, !closed else { return }
        flushPending = true
        flushEvent.activate(0)
    }

    /// Body bytes were queued for `stream`: nghttp2 is told to ask for them again.
    func resume(_ stream: H2Stream) {
        guard let session else { return }
        _ = nghttp2_session_resume_data(session, stream.id)
    }

    /// `count` bytes of stream `id`'s request body were taken (or dropped): its flow-control
    /// window opens by them, WINDOW_UPDATE going out once half of it is open again.
    func consumed(_ count: Int, of id: Int32) {
        guard let session, count > 0 else { return }
        _ = nghttp2_session_consume_stream(session, id, count)
    }

    /// Sends RST_STREAM for `stream` with `code`.
    func reset(_ stream: H2Stream, code: nghttp2_error_code) {
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, code.rawValue)
    }

    /// The open stream `id`; nil when it is not open (or no longer).
    func stream(_ id: Int32) -> H2Stream? {
        if let lastStream, lastStream.id == id { return lastStream }
        let stream = streams[id]
        if stream != nil { lastStream = stream }
        return stream
    }

    /// An empty evbuffer for a stream's response body: a spare one when there is.
    func takeQueue() -> OpaquePointer {
        spareQueues.popLast() ?? evbuffer_new()!
    }

    /// A closed stream's body queue, emptied, kept for the next stream (or freed).
    func recycle(_ queue: OpaquePointer) {
        evbuffer_drain(queue, evbuffer_get_length(queue))
        if closed || spareQueues.count >= Self.maxSpareQueues { evbuffer_free(queue) } else { spareQueues.append(queue) }
    }

    /// A stream opened: the idle timer stops.
    func streamOpened(_ stream: H2Stream) {
        streams[stream.id] = stream
        lastStream = stream
        hadStream = true
        // The first stream ends the idle wait; from then on deadlines are checked every second.
        if streams.count == 1 { timer.set(afterNanoseconds: Self.second) }
        listener.handler.h2Streams(+1)
    }

    /// A stream closed (nghttp2 is done with it): forgotten, and the idle timer starts when it was the last.
    func streamClosed(_ id: Int32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        if lastStream === stream { lastStream = nil }
        listener.handler.h2Streams(-1)
        stream.closed()
        if streams.isEmpty {
            if goingAway { timer.set(after: .milliseconds(1)) } else { timer.set(afterNanoseconds: idleTimeout) }
        }
    }

    // MARK: closing

    /// While draining: a GOAWAY tells the client that no new stream will be served; the open ones
    /// finish, and the connection closes once none is left.
    func closeIfIdle() {
        guard let session, !closed else { return }
        // Accepted just as the listeners closed (a hot upgrade, say): its first request is coming.
        guard hadStream || LoopClock.coarseNow.nanoseconds - openedAt > 1_000_000_000 else { return }
        if !goingAway {
            goingAway = true
            _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                                      NGHTTP2_NO_ERROR.rawValue, nil, 0)
            flush()
        }
        if streams.isEmpty, !closed, evbuffer_get_length(socket.output) == 0 { close() }
    }

    /// Closes the socket and forgets the connection; the exchanges of open streams are told.
    func close() {
        guard !closed else { return }
        closed = true
        let open = streams
        streams.removeAll()
        lastStream = nil
        for stream in open.values {
            listener.handler.h2Streams(-1)
            stream.closed()
        }
        events.removeAll()
        drainedStreams.removeAll()
        if let session { nghttp2_session_del(session) }
        session = nil
        socket.close()
        timer.free()
        flushEvent.close()
        for queue in spareQueues { evbuffer_free(queue) }
        spareQueues.removeAll()
        listener.handler.h2Connections(-1)
        let worker = self.worker
        worker.connections[ObjectIdentifier(self)] = nil
        worker.checkDrained()
    }
}

/// What a callback of `nghttp2_session_mem_recv` found, carried out after it returns.
enum H2Event {
    /// A request's header block is complete (its body may follow).
    case headers(H2Stream)
    /// A request is complete, body included.
    case complete(H2Stream)
    /// A request broke a rule before the handler saw it.
    case refuse(H2Stream, HTTPError)
}
