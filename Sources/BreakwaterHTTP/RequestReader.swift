/// Reads the requests of one client connection: the whole life of the connection's read side as
/// one state machine, with no sockets and no event loop. Each state carries its own data.
///
/// The connection feeds it events (bytes arrived, a deadline passed, the response ended, the
/// output drained, the peer closed) and carries out the `Action` each returns. `C` is the clock
/// the deadlines are read from, so tests drive every timeout with a manual clock.
///
/// A class, not a struct: the connection asks it about its state on every response call, and a
/// struct held by a class would be copied whole for each of those questions.
public final class RequestReader<C: Clock> where C.Duration == Duration {
    /// Where the connection is in its life.
    public enum State {
        /// Waiting for the first byte of the next request, until `deadline` (idle_timeout).
        case idle(deadline: C.Instant)
        /// A head is arriving.
        case head(HeadProgress)
        /// The head was read; its body is arriving.
        case body(BodyProgress)
        /// The request was handed over (or refused); its response is being written. After it, the
        /// connection lingers when `lingerAfter` (the request was refused before its body was read).
        case responding(lingerAfter: Bool)
        /// The last response is written out; the connection closes once the output drains, or at
        /// `deadline` when the client does not read it.
        case closing(linger: Bool, deadline: C.Instant?)
        /// The connection was upgraded: its bytes are a tunnel's, no longer HTTP.
        case tunnel
        /// The write side is shut; what the client still sends is dropped until it goes quiet
        /// (`quiet`, pushed back by every byte) or until `until` at the latest.
        case lingering(quiet: C.Instant, until: C.Instant)
        case closed
    }

    /// A head still arriving.
    public struct HeadProgress {
        /// When its first byte arrived (the deadline is worked out only when the head does not
        /// arrive whole: the usual head never needs one).
        public var started: C.Instant
        /// Bytes already checked for characters no head may hold, and the last of them.
        var scanned = 0
        var last: UInt8 = 0
        /// Whether the request line was already found well-formed.
        var lineChecked = false
    }

    /// A body being read (its head waits in `pendingHead`). Plain values only, so that moving
    /// the state around costs no reference counting.
    public struct BodyProgress {
        var reader: BodyReader
        /// When the head ended, when the last byte arrived, and the bytes (framing included) since.
        var started: C.Instant
        var lastProgress: C.Instant
        var consumed = 0
    }

    /// What the connection does next.
    public enum Action {
        /// Nothing until more bytes arrive or `deadline` passes (nil: no deadline).
        case wait(deadline: C.Instant?)
        /// The input holds more than the first `n` contiguous bytes offered: offer at least `n`.
        case needContiguous(Int)
        /// Drop the first n bytes of the input, then read again.
        case discard(Int)
        /// A request without a body: take its `length` head bytes off the input and answer it
        /// (`takeHead()` gives its head).
        case request(length: Int)
        /// A head whose body follows: take its `length` bytes off the input, then read again.
        /// `sendContinue`: the client waits for `100 Continue` before sending the body.
        case head(length: Int, sendContinue: Bool)
        /// The first n bytes of the input are body bytes: move them to the body, then read again.
        case body(Int)
        /// The body ended after dropping the first `discard` bytes: answer the request
        /// (`takeHead()` gives its head).
        case complete(discard: Int)
        /// Answer the request with this error, then close.
        case refuse(HTTPError)
        /// Pipelined bytes pile up while a response is written: stop reading until it ends.
        case stopReading
        /// Shut the write side and drop what arrives until `deadline`; read again then.
        case linger(deadline: C.Instant)
        /// Close the connection now.
        case close
    }

    public private(set) var state: State
    public let limits: ReaderLimits
    private var heads = HeadBuffer()
    /// The head of the request being read, until the connection takes it. Actions carry no head
    /// themselves: they stay plain values, which the connection's loop passes around for free.
    private var pendingHead: HTTPHead?

    /// How long a lingering connection waits for the client's next bytes, and for all of them
    /// (nginx's lingering_timeout and lingering_time).
    public static var lingerQuiet: Duration { .seconds(5) }
    public static var lingerTotal: Duration { .seconds(30) }

    /// A reader for a connection accepted at `now`. Its first request must begin within
    /// `headerTimeout`, as nginx's client_header_timeout and HAProxy's `timeout http-request` have
    /// it: a connection that never sends a byte is not held for a whole `idleTimeout`, which is
    /// the wait between the requests of a kept-alive connection.
    public init(limits: ReaderLimits, now: C.Instant) {
        self.limits = limits
        state = .idle(deadline: now.advanced(by: limits.headerTimeout))
    }

    /// The deadline of the current state, if it has one.
    public var deadline: C.Instant? {
        switch state {
        case .idle(let deadline): deadline
        case .head(let progress): progress.started.advanced(by: limits.headerTimeout)
        case .body(let progress): bodyDeadline(progress)
        case .responding, .closed, .tunnel: nil
        case .closing(_, let deadline): deadline
        case .lingering(let quiet, let until): min(quiet, until)
        }
    }

    // MARK: events

    /// Bytes are waiting: `input` is the first of them (contiguous), `buffered` all of them.
    public func read(_ input: UnsafeRawBufferPointer, buffered: Int, now: C.Instant) -> Action {
        switch state {
        case .idle:
            var n = 0
            while n < input.count, input[n] == 0x0d || input[n] == 0x0a { n += 1 }
            if n > 0 { return .discard(n) }   // RFC 9112 2.2: empty lines before a request are ignored
            guard !input.isEmpty else { return .wait(deadline: deadline) }
            state = .head(HeadProgress(started: now))
            return readHead(input, buffered: buffered, now: now)
        case .head:
            return readHead(input, buffered: buffered, now: now)
        case .body(var progress):
            return readBody(&progress, input, now: now)
        case .responding:
            return buffered > limits.maxHeaderBytes * 2 ? .stopReading : .wait(deadline: nil)
        case .lingering(_, let until):
            guard !input.isEmpty else { return .wait(deadline: deadline) }
            state = .lingering(quiet: now.advanced(by: Self.lingerQuiet), until: until)
            return .discard(input.count)
        case .closing, .closed, .tunnel:
            return .wait(deadline: deadline)
        }
    }

    /// The armed deadline came: what is due now, if anything.
    public func deadlinePassed(now: C.Instant) -> Action {
        guard let deadline, deadline <= now else { return .wait(deadline: deadline) }
        switch state {
        case .head, .body:
            return refuse(HTTPError(408, "the request did not arrive in time"))
        case .idle, .lingering, .closing:
            state = .closed
            return .close
        case .responding, .closed, .tunnel:
            return .wait(deadline: nil)
        }
    }

    /// The response to the current request is written (queued): keep the connection for the next
    /// request, or close it once the output drains.
    public func responseEnded(keepAlive: Bool, now: C.Instant) -> Action {
        guard case .responding(let lingerAfter) = state else { return .wait(deadline: deadline) }
        if keepAlive {
            let deadline = now.advanced(by: limits.idleTimeout)
            state = .idle(deadline: deadline)
            return .wait(deadline: deadline)
        }
        state = .closing(linger: lingerAfter, deadline: nil)
        return .wait(deadline: nil)
    }

    /// The response broke off mid-body: close once what was written is delivered, waiting at most
    /// `idleTimeout` for a client that does not read it.
    public func responseAborted(now: C.Instant) -> Action {
        state = .closing(linger: false, deadline: now.advanced(by: limits.idleTimeout))
        return .wait(deadline: deadline)
    }

    /// The output drained after the last response: close, or linger first when the client may
    /// still be sending (the request was refused before its body was read, or more bytes are
    /// waiting), unless the server is draining. Closing a socket with unread bytes makes the
    /// kernel send a reset, which can reach the client before it has read the answer; a 413 would
    /// then look like a dropped connection.
    public func outputDrained(inputPending: Bool, draining: Bool, now: C.Instant) -> Action {
        guard case .closing(let linger, _) = state else { return .wait(deadline: deadline) }
        if !draining, linger || inputPending {
            state = .lingering(quiet: now.advanced(by: Self.lingerQuiet), until: now.advanced(by: Self.lingerTotal))
            return .linger(deadline: now.advanced(by: Self.lingerQuiet))
        }
        state = .closed
        return .close
    }

    /// The response switched protocols: the connection is a tunnel from now on.
    public func tunnelStarted() {
        guard case .responding = state else { return }
        state = .tunnel
    }

    /// The peer closed or the socket failed.
    public func peerClosed() -> Action {
        state = .closed
        return .close
    }

    /// The head of the request whose body is being read (after `.head`), to judge it before its
    /// body arrives.
    public var headOfBody: HTTPHead? { if case .body = state { pendingHead } else { nil } }

    /// The request whose body is being read was answered from its head alone (the shield refused
    /// it): its body is not read, and the connection lingers after the answer, dropping it.
    public func answeredBeforeBody() {
        guard case .body = state else { return }
        pendingHead = nil
        state = .responding(lingerAfter: true)
    }

    /// The head of the request that `.request` or `.complete` handed over; once.
    public func takeHead() -> HTTPHead {
        pendingHead.take()!
    }

    /// Whether a request was handed over (or refused) and its response is being written.
    public var isResponding: Bool { if case .responding = state { true } else { false } }

    /// Whether a request body is being read.
    public var isReadingBody: Bool { if case .body = state { true } else { false } }

    /// Whether the connection is between requests (or only lingering), so a draining server may
    /// close it at once.
    public var isIdle: Bool {
        switch state {
        case .idle, .lingering: true
        default: false
        }
    }

    // MARK: heads

    private func readHead(_ input: UnsafeRawBufferPointer, buffered: Int, now: C.Instant) -> Action {
        guard case .head(var progress) = state else { return .wait(deadline: deadline) }
        guard let length = HeadBuffer.headLength(in: input) else {
            let window = min(buffered, limits.maxHeaderBytes + 4)
            if input.count < window { return .needContiguous(window) }
            if let error = checkIncompleteHead(input, &progress) { return refuse(error) }
            state = .head(progress)
            return .wait(deadline: deadline)
        }
        guard length <= limits.maxHeaderBytes else { return refuse(tooLarge(input)) }
        let head: HTTPHead
        let framing: BodyLength
        do throws(HTTPError) {
            head = try heads.parseRequest(UnsafeRawBufferPointer(rebasing: input[..<length]))
            // The request line ends with " HTTP/1.x\r\n" after the target: 11 bytes.
            if head.second.upperBound + 11 > limits.maxRequestLineBytes {
                throw HTTPError(414, "request line over max_request_line_bytes")
            }
            framing = try head.checkRequest()
        } catch {
            return refuse(error)
        }
        switch framing {
        case .none, .untilClose:
            state = .responding(lingerAfter: false)
            pendingHead = head
            return .request(length: length)
        case .length(let n) where n > limits.maxBodyBytes:
            return refuse(HTTPError(413, "Content-Length over max_body_bytes"))
        case .length, .chunked:
            pendingHead = head
            state = .body(BodyProgress(reader: BodyReader(framing, limit: limits.maxBodyBytes),
                                       started: now, lastProgress: now))
            let sendContinue = head.minorVersion == 1 && buffered == length
                && head.listContains("expect", token: "100-continue")
            return .head(length: length, sendContinue: sendContinue)
        }
    }

    /// Judges a head that has not ended yet, so a client speaking something else (TLS, binary
    /// garbage, an unsupported version) or a head that can never end is answered at once instead
    /// of after `header_timeout`.
    private func checkIncompleteHead(_ input: UnsafeRawBufferPointer, _ progress: inout HeadProgress) -> HTTPError? {
        if !progress.lineChecked {
            // The method and the start of the target must look like HTTP from the very first bytes.
            if !HTTPHead.isPlausibleRequestStart(ArraySlice(input.prefix(64))) {
                return .badRequest("not an HTTP request")
            }
            if let lf = input.firstIndex(of: 0x0a) {
                // A complete request line: parse it alone (with an empty header section).
                do throws(HTTPError) {
                    let line = Array(input[...lf]) + [0x0d, 0x0a]
                    _ = try HTTPHead.parseRequest(line)
                } catch {
                    return error
                }
                if lf + 1 > limits.maxRequestLineBytes { return HTTPError(414, "request line over max_request_line_bytes") }
                progress.lineChecked = true
            } else if input.count > limits.maxRequestLineBytes {
                return HTTPError(414, "request line over max_request_line_bytes")
            }
        }
        // Each byte once: a head ended by a bare LF never shows the CRLFCRLF waited for.
        let end = min(input.count, limits.maxHeaderBytes)
        if end > progress.scanned {
            guard HTTPHead.scanHeadBytes(input[progress.scanned..<end], last: &progress.last) else {
                return .badRequest("bare CR or LF, or a control character, in the head")
            }
            progress.scanned = end
        }
        return input.count > limits.maxHeaderBytes ? tooLarge(input) : nil
    }

    /// The head passed `max_header_bytes`: 414 when the request line alone did, else 431.
    private func tooLarge(_ input: UnsafeRawBufferPointer) -> HTTPError {
        if let lf = input.prefix(limits.maxHeaderBytes).firstIndex(of: 0x0a), lf + 1 <= limits.maxRequestLineBytes {
            return HTTPError(431, "head over max_header_bytes")
        }
        return HTTPError(414, "request line over max_request_line_bytes")
    }

    // MARK: bodies

    private func readBody(_ progress: inout BodyProgress, _ input: UnsafeRawBufferPointer, now: C.Instant) -> Action {
        let step = progress.reader.next(input)
        switch step {
        case .needMore:
            state = .body(progress)
            let deadline = bodyDeadline(progress)
            return deadline <= now ? refuse(HTTPError(408, "request body too slow")) : .wait(deadline: deadline)
        case .skip(let n), .data(let n):
            progress.consumed += n
            progress.lastProgress = now
            state = .body(progress)
            if case .data = step { return .body(n) }
            return .discard(n)
        case .done(let skip):
            state = .responding(lingerAfter: false)
            return .complete(discard: skip)
        case .error(let error):
            return refuse(error)
        }
    }

    /// The earlier of `header_timeout` after the last byte (no stall longer than that) and
    /// `header_timeout` plus one second per `minBodyRate` bytes after the head (no trickle slower).
    private func bodyDeadline(_ progress: BodyProgress) -> C.Instant {
        let earned = Duration.seconds(Double(progress.consumed) / Double(max(limits.minBodyRate, 1)))
        return min(progress.lastProgress.advanced(by: limits.headerTimeout),
                   progress.started.advanced(by: limits.headerTimeout + earned))
    }

    /// Refuses the request being read: the error is answered, and the connection lingers after
    /// it, since the rest of the request may still be on its way, unless the client was too slow.
    private func refuse(_ error: HTTPError) -> Action {
        pendingHead = nil
        state = .responding(lingerAfter: error.status != 408)
        return .refuse(error)
    }
}
