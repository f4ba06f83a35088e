import BreakwaterHTTP
import BreakwaterCore
private import CLibevent
internal import CNGHTTP2

/// One HTTP/2 stream: a request on the same path as an HTTP/1.1 one, and its response.
///
/// The request's header fields are written into an HTTP/1.1 head (`H2RequestHead`: `:method`,
/// `:path` and `:authority` as its request line and Host) and parsed and checked by the same rules
/// (`HTTPHead.parseRequest`, `checkRequest`), so routes, identity and the shield see the same
/// request whichever protocol carried it. The body is buffered up to `max_body_bytes`, as for
/// HTTP/1.1. The response goes out as HEADERS and DATA frames; its body is queued here and nghttp2
/// takes it as the client's flow-control window allows. The connection owns the stream while it is
/// open; an exchange may hold it a little longer.
final class H2Stream: ClientResponder, RequestBodySource {
    let id: Int32
    let connection: H2Connection
    var exchange: ClientExchange?
    var peerText: [UInt8] { connection.peerText }
    var wireProtocol: WireProtocol { .h2 }
    var corsOrigin: String?

    // The request.
    /// The header block, as the HTTP/1.1 head the rules read.
    private var head: H2RequestHead? = H2RequestHead()
    /// RFC 9113 6.5.2's measure of the header list: names, values and 32 bytes a field.
    private var headerListSize = 0
    private var tooLarge = false
    private var request: HTTPRequest?
    private var body: OpaquePointer?
    private var bodyLength = 0
    /// The client ended its side of the stream (END_STREAM received).
    var requestEnded = false
    /// Answered before the request was complete: what else arrives is dropped.
    private var discarding = false
    /// When the answer to a refused request went out while its body was still coming: the rest
    /// is read and dropped for a moment instead of the stream being reset at once (see `linger`).
    private var lingeringSince: Int64?
    private var lingeredBytes = 0
    /// When the stream opened, its header block completed, and its last body bytes came
    /// (coarse monotonic nanoseconds): the deadlines of `overdue`.
    private let opened = LoopClock.coarseNow.nanoseconds
    private var headAt: Int64 = 0
    private var lastByteAt: Int64 = 0

    // The response.
    /// HEADERS were submitted.
    private var responding = false
    /// The response's body is complete (it may still be queued).
    private var ended = false
    /// The response's last frame went out, or the stream is gone: nothing more is sent.
    private var finished = false
    private var answeringHEAD = false
    /// Body bytes waiting for nghttp2 to take them (the client's window).
    private var queued: OpaquePointer?
    /// `sendBody` reported back-pressure; the exchange waits for `clientDrained`.
    private var paused = false
    /// The response's trailers, sent after its last DATA frame.
    private var trailerFields: H2Headers.Fields?
    /// The request body streams to the upstream through this instead of being buffered.
    private(set) var bodyPipe: RequestBodyPipe?

    init(id: Int32, connection: H2Connection) {
        self.id = id
        self.connection = connection
    }

    deinit {
        if let body { evbuffer_free(body) }
        if let queued { evbuffer_free(queued) }
    }

    // MARK: the request

    /// One field of the request's header block.
    func header(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>, limit: Int) {
        headerListSize += name.count + value.count + 32
        if headerListSize > limit {
            tooLarge = true
            head = nil
        }
        // After the header block (trailers), `head` is gone: they add nothing to it.
        head?.add(name, value)
    }

    /// The header block is complete: the request head is made and checked; a request with a body
    /// to follow is judged by the shield from its head.
    func headersComplete() {
        guard request == nil, !discarding else { return }
        if tooLarge { return refuse(HTTPError(431, "HTTP/2 header list over max_header_bytes")) }
        guard let fields = head.take() else { return }
        let parsed: HTTPHead
        do throws(HTTPError) {
            parsed = try fields.finish(reusing: &connection.headFields)
        } catch {
            return refuse(error)
        }
        answeringHEAD = parsed.isHEAD
        headAt = LoopClock.coarseNow.nanoseconds
        lastByteAt = headAt
        let request = HTTPRequest(head: parsed, body: nil, peer: connection.peer, tls: connection.socket.tls)
        self.request = request
        guard !requestEnded else { return }
        if let answer = connection.listener.handler.bodyAhead(request, on: self) {
            discarding = true
            answer(self)
        }
    }

    /// From now on the request body goes into a pipe as it arrives (the request is forwarded
    /// over HTTP/2 before its body is complete), and the stream's flow-control window opens only
    /// as the upstream takes the bytes: a client sending faster than the upstream reads is slowed
    /// down, holding at most one window (`H2Settings.streamWindow`) in Breakwater.
    func startStreaming() {
        guard bodyPipe == nil else { return }
        // DATA read in the same batch as the HEADERS came before the head was judged; their
        // window opened when they arrived.
        let pipe = RequestBodyPipe(windowOpened: body.map { evbuffer_get_length($0) } ?? 0)
        if let body {
            evbuffer_add_buffer(pipe.buffer, body)
            evbuffer_free(body)
            self.body = nil
        }
        pipe.source = self
        bodyPipe = pipe
    }

    /// Body bytes arrived; an error when they pass `limit` (the answer is then 413). A streamed
    /// body has no limit of its own, and no more than its window waits for the upstream (`limit`
    /// still bounds that, against a client that ignores flow control). The stream's window opens
    /// again at once for bytes buffered or dropped; for bytes in the pipe, when they leave it.
    func bodyBytes(_ data: UnsafeBufferPointer<UInt8>, limit: Int) -> HTTPError? {
        guard let bodyPipe, !discarding, !finished, !ended, !data.isEmpty else {
            connection.consumed(data.count, of: id)
            return bufferBody(data, limit: limit)
        }
        lastByteAt = LoopClock.coarseNow.nanoseconds
        guard bodyPipe.buffered + data.count <= limit else {
            connection.consumed(data.count, of: id)
            return overflow()
        }
        bodyPipe.append(data)
        return nil
    }

    /// The bytes of a body that does not stream: buffered whole (up to `limit`), or dropped.
    private func bufferBody(_ data: UnsafeBufferPointer<UInt8>, limit: Int) -> HTTPError? {
        // Answered already (`ended` for a streamed body): the body is of no use.
        guard !discarding, !finished, !data.isEmpty, bodyPipe == nil else { return nil }
        bodyLength += data.count
        if bodyLength > limit {
            discarding = true
            if let body { evbuffer_free(body) }
            body = nil
            return HTTPError(413, "HTTP/2 request body over max_body_bytes")
        }
        lastByteAt = LoopClock.coarseNow.nanoseconds
        if body == nil { body = evbuffer_new() }
        guard let body else { return HTTPError(500, "out of memory") }
        evbuffer_add(body, data.baseAddress, data.count)
        return nil
    }

    /// How long, and for how many bytes, a refused request's body is still read after the answer.
    static let lingerNanoseconds: Int64 = 1_000_000_000
    static let lingerBytes = 1 << 20

    /// The whole answer went out while the client still sends the body of a request that was
    /// refused (413, a 429 before the body, ...). True when the stream reads and drops the rest
    /// until the client ends it, for up to `lingerBytes` and `lingerNanoseconds`: a client that
    /// is still uploading and sees the stream reset (RFC 9113 8.1's RST_STREAM NO_ERROR) may
    /// report its upload's failure instead of the answer (curl 7.88 does, now and then), as an
    /// HTTP/1.1 client would without a lingering close. False when the stream should be reset now.
    func linger() -> Bool {
        guard discarding, bodyPipe == nil, lingeringSince == nil else { return false }
        lingeringSince = LoopClock.coarseNow.nanoseconds
        return true
    }

    /// Dropped body bytes arrived while lingering: true when the stream has read enough of them
    /// and is to be reset.
    func lingeredPastItsBound(adding count: Int) -> Bool {
        guard lingeringSince != nil else { return false }
        lingeredBytes += count
        return lingeredBytes > Self.lingerBytes
    }

    /// Where the stream stands against the deadlines of an HTTP/1.1 request (see `ReaderLimits`).
    enum Deadline {
        /// Nothing is awaited from the client (the request is complete, or answered).
        case none
        /// The request is still coming, within its deadlines.
        case waiting
        /// The header block took longer than `headerTimeout`.
        case headersLate
        /// The body took longer than `headerTimeout + received / minBodyRate` since the head, or
        /// paused for `headerTimeout`.
        case bodyLate
        /// The answer to a refused request went out `lingerNanoseconds` ago, and the body still comes.
        case lingerOver
    }

    func deadline(now: Int64, limits: ReaderLimits) -> Deadline {
        if let lingeringSince, !requestEnded {
            return now - lingeringSince > Self.lingerNanoseconds ? .lingerOver : .none
        }
        guard !requestEnded, !discarding, !finished else { return .none }
        // A streamed body (a gRPC stream, say) may pause for as long as the call lasts.
        if bodyPipe != nil, request != nil { return .none }
        let grace = limits.headerTimeout.clampedNanoseconds
        guard request != nil else { return now - opened > grace ? .headersLate : .waiting }
        let allowance = grace + Int64(bodyLength) * 1_000_000_000 / Int64(max(limits.minBodyRate, 1))
        return now - headAt > allowance || now - lastByteAt > grace ? .bodyLate : .waiting
    }

    /// RequestBodySource: the upstream took `count` bytes of the streamed body; as many more
    /// may come.
    func bodyTaken(_ count: Int) {
        connection.consumed(count, of: id)
        connection.scheduleFlush()
    }

    /// The client ended the stream: the request goes to the handler with its body.
    func requestComplete() {
        if let bodyPipe {
            bodyPipe.end()
            return
        }
        guard !discarding, !finished, let head = request?.head else { return }
        let complete = HTTPRequest(head: head, body: body, peer: connection.peer, tls: connection.socket.tls)
        body = nil
        request = complete
        connection.listener.handler.handle(complete, on: self)
    }

    /// Answers a request that broke a rule before the handler saw it.
    func refuse(_ error: HTTPError) {
        discarding = true
        connection.listener.handler.rejected(status: error.status, peer: connection.peer, secure: connection.socket.tls != nil,
                                            over: .h2)
        respond(status: error.status, reason: error.reason, headers: [("Content-Type", "text/plain")],
                body: Array("\(error.status) \(error.reason)\n".utf8))
    }

    // MARK: the response (ClientResponder)

    private var canRespond: Bool { !responding && !finished }

    func beginResponse(framing body: BodyFraming, reserving size: Int, head writeHead: (inout EvbufferWriter) -> Void) {
        guard canRespond else { return }
        let hasBody = body != .none && !answeringHEAD
        var length: Int?
        if case .length(let n) = body { length = n }
        submit(H2Headers.fields(reserving: size, length: answeringHEAD ? nil : length, writeHead), hasBody: hasBody)
        if !hasBody { ended = true }
        connection.scheduleFlush()
    }

    func beginResponse(relaying head: HTTPHead, framing body: BodyFraming) {
        guard canRespond else { return }
        // An empty body ends the stream with the HEADERS frame: that is how a gRPC answer with
        // no message (trailers-only, its grpc-status in the head) must arrive.
        let hasBody = body != .none && body != .length(0) && !answeringHEAD
        var length: Int?
        if case .length(let n) = body, !answeringHEAD { length = n }
        H2Headers.write(relaying: head, length: length, keepLength: body == .none, date: connection.worker.dateHeaderLine,
                        into: &connection.responseFields)
        submit(connection.responseFields, hasBody: hasBody)
        if !hasBody { ended = true }
        connection.scheduleFlush()
    }

    func respond(bodyLength: Int, head writeHead: (inout EvbufferWriter) -> Void, body writeBody: (inout EvbufferWriter) -> Void) {
        guard canRespond else { return }
        let date = connection.worker.dateHeaderLine
        let origin = corsOrigin
        let fields = H2Headers.fields(reserving: 512, length: bodyLength) { out in
            writeHead(&out)
            ProxyHeaders.ownAnswerLines(date: date, corsOrigin: origin, into: &out)
        }
        let hasBody = bodyLength > 0 && !answeringHEAD
        if hasBody {
            let queue = makeQueue()
            EvbufferWriter.write(into: queue, reserving: bodyLength, writeBody)
        }
        ended = true
        submit(fields, hasBody: hasBody)
        exchange = nil
        connection.scheduleFlush()
    }

    @discardableResult
    func sendBody(_ buffer: OpaquePointer) -> Bool {
        let n = evbuffer_get_length(buffer)
        guard responding, !ended, !finished, n > 0 else {
            evbuffer_drain(buffer, n)
            return false
        }
        let queue = makeQueue()
        evbuffer_add_buffer(queue, buffer)
        connection.resume(self)
        connection.scheduleFlush()
        if evbuffer_get_length(queue) > connection.settings.streamHighWater { paused = true }
        return paused
    }

    func endResponse() {
        exchange = nil
        guard responding, !ended else { return }
        ended = true
        guard !finished else { return }
        connection.resume(self)
        connection.scheduleFlush()
    }

    func endResponse(trailers: [(name: [UInt8], value: [UInt8])]) {
        if !trailers.isEmpty, responding, !ended { trailerFields = H2Headers.fields(trailers: trailers) }
        endResponse()
    }

    /// The trailers to send after the last DATA frame, once.
    func takeTrailers() -> H2Headers.Fields? {
        defer { trailerFields = nil }
        return trailerFields
    }

    /// A streamed body that the upstream does not take fast enough: the exchange is dropped,
    /// and the client gets 413 or, with a response under way, a reset stream.
    private func overflow() -> HTTPError? {
        discarding = true
        let exchange = self.exchange
        self.exchange = nil
        exchange?.clientClosed()
        if responding {
            abortResponse()
            return nil
        }
        return HTTPError(413, "HTTP/2 request body waiting for the upstream over max_body_bytes")
    }

    func abortResponse() {
        exchange = nil
        ended = true
        guard !finished else { return }
        finished = true
        connection.reset(self, code: NGHTTP2_INTERNAL_ERROR)
        connection.scheduleFlush()
    }

    func startTunnel(upstream: Socket, idleTimeout: Duration, metrics: ProxyMetrics,
                     head writeHead: (inout EvbufferWriter) -> Void, onClose: @escaping (Duration, Int, Int) -> Void) {
        // HTTP/2 requests carry no Upgrade (nghttp2 refuses the field), so no exchange asks for this.
        upstream.close()
        abortResponse()
    }

    // MARK: the connection's side

    private func makeQueue() -> OpaquePointer {
        if let queued { return queued }
        let queue = connection.takeQueue()
        queued = queue
        return queue
    }

    private func submit(_ fields: H2Headers.Fields, hasBody: Bool) {
        responding = true
        guard let session = connection.session else { return }
        let rc: Int32
        if hasBody {
            var provider = H2Session.bodyProvider
            rc = fields.withNameValues { nghttp2_submit_response(session, id, $0.baseAddress, $0.count, &provider) }
        } else {
            rc = fields.withNameValues { nghttp2_submit_response(session, id, $0.baseAddress, $0.count, nil) }
        }
        if rc != 0 { connection.reset(self, code: NGHTTP2_INTERNAL_ERROR) }
        if !hasBody { finished = true }
    }

    /// What nghttp2's body callback gets.
    enum Read {
        /// n bytes copied; `last`: the body ends with them.
        case bytes(Int, last: Bool)
        /// Nothing queued yet: the stream waits for `resume`.
        case later
    }

    /// Copies up to `length` queued body bytes into nghttp2's frame buffer.
    func readBody(into buffer: UnsafeMutablePointer<UInt8>, _ length: Int) -> Read {
        let queue = makeQueue()
        let n = Int(evbuffer_remove(queue, buffer, length))
        let left = evbuffer_get_length(queue)
        if n <= 0 && !ended { return .later }
        if ended && left == 0 {
            finished = true
            return .bytes(max(n, 0), last: true)
        }
        return .bytes(max(n, 0), last: false)
    }

    /// After `readBody`: whether the exchange was paused and may now go on.
    var wantsDrainNotice: Bool {
        guard paused, let queued, evbuffer_get_length(queued) <= connection.settings.streamHighWater / 2 else { return false }
        paused = false
        return true
    }

    /// nghttp2 closed the stream (both sides ended, a reset, or the connection went): an exchange
    /// still waiting for the client is told that it left.
    func closed() {
        let complete = finished && ended
        finished = true
        if let queued {
            self.queued = nil
            connection.recycle(queued)
        }
        if !complete, let exchange {
            self.exchange = nil
            exchange.clientClosed()
        }
    }
}
