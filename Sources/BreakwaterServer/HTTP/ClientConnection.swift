import BreakwaterHTTP
private import CLibevent
import BreakwaterCore

/// One accepted client connection: reads requests (head, then body), hands each to the handler,
/// writes the response the handler produces, keeps the connection alive or closes it.
/// Every socket callback lands here; the worker's connection table owns the object.
final class ClientConnection: SocketDelegate {
    private enum State {
        /// Waiting for the first byte of the next request (idle timeout runs).
        case idle
        /// Head partly received (header timeout runs from its first byte).
        case head
        /// Head parsed, body arriving.
        case body
        /// Request handed to the handler; response not finished.
        case dispatched
        /// Last response queued; close once it is written.
        case closing
        /// The last response is sent and the write side shut; what the client still sends is read
        /// and dropped until it closes or goes quiet (see `startLingering`).
        case lingering
        case closed
    }

    private enum BodyReader {
        case length(Int)
        case chunked(ChunkedDecoder)
    }

    let peer: IPAddress
    /// The peer's address as text, made once per connection (it goes into every X-Forwarded-For).
    private(set) lazy var peerText: [UInt8] = Array(peer.description.utf8)
    /// Strong: a draining worker drops its listeners while their connections finish.
    let listener: Listener
    var worker: Worker { listener.worker }
    private let socket: Socket
    /// The idle, head and body deadlines (one at a time), by state.
    private var timer: DeadlineTimer!
    private var state = State.idle
    private var processing = false

    private var pendingHead: HTTPHead?
    private var headBuffer = HeadBuffer()
    private var bodyReader = BodyReader.length(0)
    private var body: OpaquePointer?
    /// Whether the request line of the head being read was already found well-formed.
    private var requestLineChecked = false
    /// Bytes of the incomplete head already checked for characters no head may hold, and the last one.
    private var headScanned = 0
    private var headLast: UInt8 = 0
    /// When the first byte of the head being read arrived (DeadlineTimer's clock).
    private var headStarted: Int64 = 0
    /// When the body of the request being read began (its head ended), and bytes received since.
    private var bodyStarted = ContinuousClock.now
    private var bodyBytesReceived = 0

    // The request being answered.
    private var keepAlive = true
    private var minorVersion = 1
    private var chunkedResponse = false
    /// The request being answered is a HEAD: the response carries the GET's headers (its
    /// Content-Length included) but never a body (RFC 9110 9.3.2), whatever the handler sends.
    private var answeringHEAD = false
    /// The request was refused while being read (not for slowness), so its body may still be on
    /// its way: linger.
    private var lingerAfterResponse = false
    /// When a lingering connection is closed at the latest (DeadlineTimer's clock).
    private var lingerUntil: Int64 = 0
    /// The handler's side of the current exchange, told when the client leaves or drains.
    var exchange: ClientExchange?

    /// Output above this many bytes makes `sendBody` report back-pressure.
    static let highWater = 1 << 20

    private init(socket: Socket, peer: IPAddress, listener: Listener) {
        self.socket = socket
        self.peer = peer
        self.listener = listener
    }

    /// Wraps an accepted socket and starts reading from it.
    static func open(fd: Int32, peer: IPAddress, listener: Listener) {
        let worker = listener.worker
        let connection = ClientConnection(socket: Socket(fd: fd, base: worker.base), peer: peer, listener: listener)
        connection.socket.delegate = connection
        let context = Unmanaged.passUnretained(connection).toOpaque()
        connection.timer = DeadlineTimer(base: worker.base, context: context) { _, _, context in
            Unmanaged<ClientConnection>.fromOpaque(context!).takeUnretainedValue().timerFired()
        }
        worker.connections[ObjectIdentifier(connection)] = connection
        connection.arm(listener.limits.idleTimeout)
    }

    // MARK: callbacks

    func socketReadable(_ socket: Socket) {
        if state == .lingering {
            evbuffer_drain(socket.input, evbuffer_get_length(socket.input))
            timer.set(at: Swift.min(DeadlineTimer.now() &+ Self.lingerQuiet, lingerUntil))
            return
        }
        if state == .dispatched {
            // Pipelined bytes wait for the current response; stop reading if they pile up.
            if evbuffer_get_length(socket.input) > listener.limits.maxHeaderBytes * 2 {
                socket.setReading(false)
            }
            return
        }
        process()
    }

    func socketDrained(_ socket: Socket) {
        if state == .closing {
            finishClosing()
        } else {
            exchange?.clientDrained()
        }
    }

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        close()
    }

    private func timerFired() {
        guard state != .closed, timer.fired() else { return }
        switch state {
        case .idle, .closing, .lingering, .closed, .dispatched:
            close()
        case .head, .body:
            fail(408, "Request Timeout")
        }
    }

    // MARK: reading requests

    /// Parses as many complete requests as the input holds, one at a time.
    private func process() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        let input = socket.input
        let limits = listener.limits
        while true {
            switch state {
            case .idle, .head:
                if state == .idle {
                    skipLeadingCRLF(input)
                    if evbuffer_get_length(input) == 0 { return }
                    state = .head
                    requestLineChecked = false
                    headScanned = 0
                    headLast = 0
                    headStarted = DeadlineTimer.now()
                }
                guard let head = readHead(input, limits: limits) else {
                    // Incomplete: the rest must come within header_timeout of the first byte. (A
                    // head that arrives whole, the usual case, never sets this deadline.)
                    if state == .head { timer.set(at: headStarted &+ limits.headerTimeout.clampedNanoseconds) }
                    return
                }
                guard startRequest(head, input: input, limits: limits) else { return }
            case .body:
                guard readBody(input, limits: limits) else { return }
            case .dispatched, .closing, .lingering, .closed:
                return
            }
        }
    }

    private func skipLeadingCRLF(_ input: OpaquePointer) {
        while evbuffer_get_length(input) > 0 {
            var c: UInt8 = 0
            evbuffer_copyout(input, &c, 1)
            guard c == 0x0d || c == 0x0a else { return }
            evbuffer_drain(input, 1)
        }
    }

    /// The parsed head once it is complete; nil while incomplete or after answering an error.
    private func readHead(_ input: OpaquePointer, limits: ConnectionLimits) -> HTTPHead? {
        let available = evbuffer_get_length(input)
        guard let length = HeadBuffer.headLength(in: input) else {
            if !requestLineChecked, !checkRequestLine(input, limits: limits) { return nil }
            guard headBytesAreClean(input, upTo: limits.maxHeaderBytes) else {
                fail(400, "Bad Request")
                return nil
            }
            if available > limits.maxHeaderBytes { failTooLarge(input, limits: limits) }
            return nil
        }
        guard length <= limits.maxHeaderBytes else {
            failTooLarge(input, limits: limits)
            return nil
        }
        do {
            return try headBuffer.parseRequest(length, from: input)
        } catch {
            failParse(error)
        }
        return nil
    }

    /// Judges the request line before the rest of the head has arrived, so a client speaking
    /// something else (TLS, binary garbage, an unsupported version) is answered at once instead of
    /// after `header_timeout`. False when it answered an error.
    private func checkRequestLine(_ input: OpaquePointer, limits: ConnectionLimits) -> Bool {
        // The method and the start of the target must look like HTTP from the very first bytes.
        var prefix = [UInt8](repeating: 0, count: 64)
        let n = Int(evbuffer_copyout(input, &prefix, prefix.count))
        if !HTTPHead.isPlausibleRequestStart(prefix[0..<max(n, 0)]) {
            fail(400, "Bad Request")
            return false
        }
        let lineEnd = evbuffer_search(input, "\r\n", 2, nil)
        guard lineEnd.pos >= 0, Int(lineEnd.pos) + 2 <= limits.maxHeaderBytes else { return true }
        let length = Int(lineEnd.pos) + 2
        var line = [UInt8](repeating: 0, count: length)
        _ = evbuffer_copyout(input, &line, length)
        do {
            _ = try HTTPHead.parseRequest(line + [0x0d, 0x0a])
        } catch {
            failParse(error)
            return false
        }
        requestLineChecked = true
        return true
    }

    /// Checks the head bytes that arrived since the last call (each byte once) for what no head
    /// may hold: a bare LF or CR, or a control character. A head ended by a bare LF never shows
    /// the CRLFCRLF the reader waits for, so without this it would hang until `header_timeout`.
    private func headBytesAreClean(_ input: OpaquePointer, upTo limit: Int) -> Bool {
        let end = min(evbuffer_get_length(input), limit)
        guard end > headScanned else { return true }
        var from = evbuffer_ptr()
        evbuffer_ptr_set(input, &from, headScanned, EVBUFFER_PTR_SET)
        let fresh = [UInt8](unsafeUninitializedCapacity: end - headScanned) { buffer, count in
            count = max(0, evbuffer_copyout_from(input, &from, buffer.baseAddress, end - headScanned))
        }
        guard HTTPHead.scanHeadBytes(fresh, last: &headLast) else { return false }
        headScanned += fresh.count
        return true
    }

    /// The head passed `max_header_bytes`: 414 when the request line alone did, else 431.
    private func failTooLarge(_ input: OpaquePointer, limits: ConnectionLimits) {
        let lineEnd = evbuffer_search(input, "\r\n", 2, nil)
        if lineEnd.pos >= 0 && Int(lineEnd.pos) + 2 <= limits.maxHeaderBytes {
            fail(431, "Request Header Fields Too Large")
        } else {
            fail(414, "URI Too Long")
        }
    }

    private func failParse(_ error: HTTPParseError) {
        switch error {
        case .versionNotSupported: fail(505, "HTTP Version Not Supported")
        case .tooManyHeaders: fail(431, "Request Header Fields Too Large")
        case .malformed: fail(400, "Bad Request")
        }
    }

    /// Validates framing and either dispatches (no body) or starts reading the body.
    private func startRequest(_ head: HTTPHead, input: OpaquePointer, limits: ConnectionLimits) -> Bool {
        let framing: RequestFraming
        switch RequestFraming.of(head) {
        case .failure(let status):
            fail(status.code, status.reason)
            return false
        case .success(let f):
            framing = f
        }
        minorVersion = head.minorVersion
        keepAlive = head.minorVersion == 1
            ? !head.listContains("connection", token: "close")
            : head.listContains("connection", token: "keep-alive")
        switch framing {
        case .none:
            dispatch(head, body: nil)
            return true
        case .length(let n):
            guard n <= limits.maxBodyBytes else {
                fail(413, "Content Too Large")
                return false
            }
            bodyReader = .length(n)
        case .chunked:
            bodyReader = .chunked(ChunkedDecoder())
        }
        if head.minorVersion == 1, head.listContains("expect", token: "100-continue"),
           evbuffer_get_length(input) == 0 {
            writeRaw("HTTP/1.1 100 Continue\r\n\r\n")
            socket.flush()
        }
        pendingHead = head
        body = evbuffer_new()
        state = .body
        bodyStarted = .now
        bodyBytesReceived = 0
        arm(limits.headerTimeout)
        return true
    }

    /// Moves body bytes from the input; dispatches when complete. False while waiting or failed.
    private func readBody(_ input: OpaquePointer, limits: ConnectionLimits) -> Bool {
        guard let body else { return false }
        let inputBefore = evbuffer_get_length(input)
        switch bodyReader {
        case .length(let remaining):
            let n = min(remaining, evbuffer_get_length(input))
            if n > 0 { evbuffer_remove_buffer(input, body, n) }
            bodyReader = .length(remaining - n)
            if remaining - n > 0 {
                if n > 0 { bodyProgressed(inputBefore - evbuffer_get_length(input), limits: limits) }
                return false
            }
        case .chunked(var decoder):
            let progress = decoder.decode(input, into: body, limit: limits.maxBodyBytes)
            bodyReader = .chunked(decoder)
            if evbuffer_get_length(body) > limits.maxBodyBytes {
                fail(413, "Content Too Large")
                return false
            }
            switch progress {
            case .error:
                fail(400, "Bad Request")
                return false
            case .needMore:
                let consumed = inputBefore - evbuffer_get_length(input)
                if consumed > 0 { bodyProgressed(consumed, limits: limits) }
                return false
            case .done:
                break
            }
        }
        let head = pendingHead!
        pendingHead = nil
        self.body = nil
        dispatch(head, body: body)
        return true
    }

    /// `bytes` more of the body arrived (framing included): re-arms the body deadline, the earlier
    /// of `header_timeout` from now (no stall longer than that) and `header_timeout` plus one
    /// second per `minBodyRate` bytes received since the head (no trickle slower than that).
    private func bodyProgressed(_ bytes: Int, limits: ConnectionLimits) {
        bodyBytesReceived += bytes
        let now = ContinuousClock.now
        let earned = Duration.seconds(Double(bodyBytesReceived) / Double(max(limits.minBodyRate, 1)))
        let deadline = min(now + limits.headerTimeout, bodyStarted + limits.headerTimeout + earned)
        if deadline <= now {
            fail(408, "Request Timeout")
        } else {
            arm(deadline - now)
        }
    }

    private func dispatch(_ head: HTTPHead, body: OpaquePointer?) {
        state = .dispatched
        disarm()
        let request = HTTPRequest(head: head, body: body, peer: peer)
        answeringHEAD = request.isHEAD
        listener.handler.handle(request, on: self)
    }

    // MARK: timers

    private func arm(_ duration: Duration) {
        timer.set(after: duration.clampedNanoseconds)
    }

    private func disarm() { timer.clear() }

    // MARK: closing

    /// Closes now if no request is in progress (used while draining).
    func closeIfIdle() {
        if state == .idle || state == .lingering { close() }
    }

    /// How long a lingering connection waits for the client's next bytes, and for all of them.
    private static let lingerQuiet: Int64 = 5_000_000_000
    private static let lingerTotal: Int64 = 30_000_000_000

    /// The last response has been written: close, or linger first when the client may still be
    /// sending (the request was refused before its body was read, or more bytes are waiting),
    /// unless the worker is draining.
    /// Closing a socket with unread bytes makes the kernel send a reset, which can reach the
    /// client before it has read the answer; a 413 would then look like a dropped connection.
    private func finishClosing() {
        if !worker.draining, lingerAfterResponse || evbuffer_get_length(socket.input) > 0 {
            startLingering()
        } else {
            close()
        }
    }

    /// Shuts the write side (the client sees the end of the response), then reads and drops what
    /// still arrives until the client closes, stays quiet for 5 s, or 30 s have passed, as
    /// nginx's lingering close does.
    private func startLingering() {
        state = .lingering
        socket.shutdownWrite()
        evbuffer_drain(socket.input, evbuffer_get_length(socket.input))
        let now = DeadlineTimer.now()
        lingerUntil = now &+ Self.lingerTotal
        timer.set(after: Self.lingerQuiet)
        socket.setReading(true)
    }

    /// Closes the socket and forgets the connection; a pending exchange is told.
    func close() {
        guard state != .closed else { return }
        state = .closed
        if let exchange {
            self.exchange = nil
            exchange.clientClosed()
        }
        socket.close()
        timer.free()
        if let body { evbuffer_free(body) }
        body = nil
        let worker = self.worker
        worker.connections[ObjectIdentifier(self)] = nil
        worker.checkDrained()
    }

    /// Answers an unusable request and closes after the answer is written.
    private func fail(_ status: Int, _ reason: String) {
        listener.handler.rejected(status: status, peer: peer)
        // A refused request's body (or the next request) may still be on its way; a client that
        // was too slow gets no more time.
        lingerAfterResponse = status != 408
        evbuffer_drain(socket.input, evbuffer_get_length(socket.input))   // never to be parsed
        keepAlive = false
        minorVersion = 1
        answeringHEAD = false
        state = .dispatched
        disarm()
        respond(status: status, reason: reason, headers: [("Content-Type", "text/plain")],
                body: Array("\(status) \(reason)\n".utf8))
    }

    // MARK: writing responses

    private func writeRaw(_ text: String) {
        var text = text
        text.withUTF8 { _ = evbuffer_add(socket.output, $0.baseAddress, $0.count) }
    }

    /// Writes a status line and headers (each line CRLF-terminated, no blank line yet); this adds
    /// the framing and Connection headers that only the connection can decide.
    func beginResponse(_ head: [UInt8], framing: BodyFraming) {
        beginResponse(framing: framing, reserving: head.count + 128) { $0.append(bytes: head[...]) }
    }

    /// `beginResponse` with the status line and headers written by `writeHead` straight into
    /// the output buffer (`reserving` bytes up front; more if they run out).
    func beginResponse(framing: BodyFraming, reserving size: Int = 512, head writeHead: (inout EvbufferWriter) -> Void) {
        guard state == .dispatched else { return }
        EvbufferWriter.write(into: socket.output, reserving: size) { out in
            writeHead(&out)
            writeFraming(framing, into: &out)
        }
        // A streamed body may be slow to come: the head goes now. Otherwise it leaves with the body.
        if framing == .stream { socket.flush() }
    }

    /// A whole response with a body of `bodyLength` bytes, head and body written in one go.
    func respond(bodyLength: Int, head writeHead: (inout EvbufferWriter) -> Void,
                 body writeBody: (inout EvbufferWriter) -> Void) {
        guard state == .dispatched else { return }
        EvbufferWriter.write(into: socket.output, reserving: 512 + bodyLength) { out in
            writeHead(&out)
            writeFraming(.length(bodyLength), into: &out)
            if !answeringHEAD { writeBody(&out) }
        }
        endResponse()
    }

    /// The framing and Connection headers that only the connection can decide, and the blank line.
    private func writeFraming(_ framing: BodyFraming, into out: inout EvbufferWriter) {
        chunkedResponse = false
        switch framing {
        case .none:
            break
        case .length(let n):
            out.append(ascii: "Content-Length: ")
            out.append(decimal: n)
            out.append(ascii: "\r\n")
        case .stream where answeringHEAD:
            break   // no body follows, so no framing for one
        case .stream:
            if minorVersion == 1 {
                chunkedResponse = true
                out.append(ascii: "Transfer-Encoding: chunked\r\n")
            } else {
                keepAlive = false
            }
        }
        if worker.draining { keepAlive = false }
        if !keepAlive {
            out.append(ascii: "Connection: close\r\n")
        } else if minorVersion == 0 {
            out.append(ascii: "Connection: keep-alive\r\n")
        }
        out.append(ascii: "\r\n")
    }

    /// Appends body bytes taken from `buffer` (which is left empty). True when the client is
    /// slow and the caller should pause until `clientDrained`.
    @discardableResult
    func sendBody(_ buffer: OpaquePointer) -> Bool {
        let output = socket.output
        let n = evbuffer_get_length(buffer)
        guard state == .dispatched, n > 0, !answeringHEAD else {
            evbuffer_drain(buffer, n)
            return false
        }
        if chunkedResponse { writeRaw(String(n, radix: 16) + "\r\n") }
        evbuffer_add_buffer(output, buffer)
        if chunkedResponse { writeRaw("\r\n") }
        socket.flush()
        return evbuffer_get_length(output) > Self.highWater
    }

    /// Appends body bytes.
    func sendBody(_ bytes: [UInt8]) {
        guard state == .dispatched, !bytes.isEmpty, !answeringHEAD else { return }
        if chunkedResponse { writeRaw(String(bytes.count, radix: 16) + "\r\n") }
        bytes.withUnsafeBytes { _ = evbuffer_add(socket.output, $0.baseAddress, $0.count) }
        if chunkedResponse { writeRaw("\r\n") }
    }

    /// Completes the response; the connection then waits for the next request or closes.
    func endResponse() {
        guard state == .dispatched else { return }
        exchange = nil
        if chunkedResponse { writeRaw("0\r\n\r\n") }
        socket.flush()
        if keepAlive {
            state = .idle
            arm(listener.limits.idleTimeout)
            socket.setReading(true)
            if !processing, evbuffer_get_length(socket.input) > 0 { process() }
        } else {
            state = .closing
            socket.setReading(false)
            if evbuffer_get_length(socket.output) == 0 { finishClosing() }
        }
    }

    /// Ends the connection mid-response so the client cannot mistake a partial body for a whole
    /// one: what was relayed is still delivered, then the connection closes without the framing's end.
    func abortResponse() {
        exchange = nil
        socket.flush()
        guard state == .dispatched, evbuffer_get_length(socket.output) > 0 else {
            close()
            return
        }
        state = .closing
        socket.setReading(false)
        arm(listener.limits.idleTimeout)
    }

    /// A complete response in one call.
    func respond(status: Int, reason: String, headers: [(String, String)], body: [UInt8]) {
        respond(bodyLength: body.count) { head in
            head.append(ascii: "HTTP/1.1 ")
            head.append(decimal: status)
            head.append(ascii: " ")
            head.append(utf8: reason)
            head.append(ascii: "\r\n")
            for (name, value) in headers {
                head.append(utf8: name)
                head.append(ascii: ": ")
                head.append(utf8: value)
                head.append(ascii: "\r\n")
            }
        } body: { $0.append(bytes: body[...]) }
    }
}
