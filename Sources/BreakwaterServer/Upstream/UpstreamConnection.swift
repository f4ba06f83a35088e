import BreakwaterHTTP
private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

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
}

/// The side of an upstream exchange that consumes the response.
protocol UpstreamExchange: AnyObject {
    /// The response head arrived; `framing` says whether a body follows.
    func upstreamHead(_ head: HTTPHead, framing: BodyFraming)
    /// Body bytes arrived in `buffer`; the receiver must take them all.
    func upstreamBody(_ buffer: OpaquePointer)
    /// The response is complete.
    func upstreamEnd()
    /// The exchange failed; no further calls follow.
    func upstreamFailed(_ failure: UpstreamFailure)
}

/// One keep-alive connection to an upstream server; carries one exchange at a time.
final class UpstreamConnection: SocketDelegate {
    private enum State { case connecting, idle, busy, closed }
    private enum ResponseBody {
        case none
        case length(Int)
        case chunked(ChunkedDecoder)
        case untilClose
    }

    let server: UpstreamServer
    unowned let pool: UpstreamPool
    private let socket: Socket
    private var state = State.connecting
    private var exchange: UpstreamExchange?
    private var head: HTTPHead?
    private var headBuffer = HeadBuffer()
    private var body = ResponseBody.none
    private var reusable = false
    /// Response body bytes on their way to the exchange.
    private var bodyChunk: OpaquePointer?
    private var expectNoBody = false
    /// Whether this connection carried an exchange before the current one.
    private(set) var reused = false
    private var receivedAny = false

    static let maxHeadBytes = 65_536

    init(server: UpstreamServer, pool: UpstreamPool) throws {
        self.server = server
        self.pool = pool
        socket = try Socket.connect(to: server.address, base: pool.worker.base)
        socket.delegate = self
        socket.setTimeout(pool.settings.connectTimeout)
    }

    /// Sends a request, its head written by `writeHead`; the response is delivered to `exchange`.
    func send(body requestBody: OpaquePointer?, expectNoBody: Bool, to exchange: UpstreamExchange,
              reserving size: Int, head writeHead: (inout EvbufferWriter) -> Void) {
        self.exchange = exchange
        self.expectNoBody = expectNoBody
        head = nil
        receivedAny = false
        if state == .idle {
            state = .busy
            socket.setTimeout(pool.settings.timeout)
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

    /// When it was last parked (DeadlineTimer's clock), for the pool's idle sweep.
    private(set) var parkedAt: Int64 = 0

    /// Parked in the pool: any byte or EOF now means the server closed it.
    func parked() {
        parkedAt = DeadlineTimer.now()
        state = .idle
        reused = true
        socket.setTimeout(nil)
    }

    // MARK: SocketDelegate

    func socketEvent(_ socket: Socket, _ event: SocketEvent) {
        if event == .connected {
            state = .busy
            socket.setTimeout(pool.settings.timeout)
            pool.connected(self)
            return
        }
        let failure: UpstreamFailure
        if state == .connecting {
            failure = event == .timeout ? .timeout : .connect
            pool.connectFailed(self, timedOut: failure == .timeout)
        } else if event == .timeout {
            failure = .timeout
        } else if head == nil {
            failure = receivedAny ? .badResponse : .closedBeforeResponse
        } else if case .untilClose = body, event == .eof {
            flushUntilClose()
            finish(reusable: false)
            return
        } else {
            failure = .brokenResponse
        }
        let exchange = self.exchange
        self.exchange = nil
        close()
        exchange?.upstreamFailed(failure)
    }

    func socketDrained(_ socket: Socket) {}

    func socketReadable(_ socket: Socket) {
        let input = socket.input
        guard let exchange, state == .busy else {
            close()   // bytes from an idle server are out of protocol
            return
        }
        if evbuffer_get_length(input) > 0 { receivedAny = true }
        if head == nil {
            guard readHead(input, exchange) else { return }
        }
        relayBody(input, exchange)
    }

    /// Parses the head; false while incomplete or after failing the exchange.
    private func readHead(_ input: OpaquePointer, _ exchange: UpstreamExchange) -> Bool {
        while head == nil {
            let found = HeadBuffer.headLength(in: input)
            guard let length = found, length <= Self.maxHeadBytes else {
                if found != nil || evbuffer_get_length(input) > Self.maxHeadBytes { fail(.badResponse) }
                return false
            }
            guard let parsed = try? headBuffer.parseResponse(length, from: input), parsed.status != 101 else {
                fail(.badResponse)
                return false
            }
            if parsed.status < 200 { continue }   // interim responses (100 Continue) are not relayed
            guard let framing = responseBody(parsed) else {
                fail(.badResponse)
                return false
            }
            head = parsed
            body = framing
            reusable = Self.keepsAlive(parsed)
            switch framing {
            case .none: exchange.upstreamHead(parsed, framing: .none)
            case .length(let n): exchange.upstreamHead(parsed, framing: .length(n))
            case .chunked, .untilClose: exchange.upstreamHead(parsed, framing: .stream)
            }
        }
        return self.exchange != nil
    }

    private func relayBody(_ input: OpaquePointer, _ exchange: UpstreamExchange) {
        switch body {
        case .none:
            finish(reusable: reusable && evbuffer_get_length(input) == 0)
        case .length(let remaining):
            let n = min(remaining, evbuffer_get_length(input))
            if n > 0 {
                let chunk = takeBodyChunk()
                evbuffer_remove_buffer(input, chunk, n)
                exchange.upstreamBody(chunk)
            }
            body = .length(remaining - n)
            if remaining == n { finish(reusable: reusable && evbuffer_get_length(input) == 0) }
        case .chunked(var decoder):
            let chunk = takeBodyChunk()
            let progress = decoder.decode(input, into: chunk)
            body = .chunked(decoder)
            if evbuffer_get_length(chunk) > 0 { exchange.upstreamBody(chunk) }
            guard self.exchange != nil else { return }
            switch progress {
            case .needMore: break
            case .done: finish(reusable: reusable && evbuffer_get_length(input) == 0)
            case .error: fail(.brokenResponse)
            }
        case .untilClose:
            flushUntilClose()
        }
    }

    private func flushUntilClose() {
        let input = socket.input
        guard let exchange, evbuffer_get_length(input) > 0 else { return }
        let chunk = takeBodyChunk()
        evbuffer_add_buffer(chunk, input)
        exchange.upstreamBody(chunk)
    }

    private func takeBodyChunk() -> OpaquePointer {
        if bodyChunk == nil { bodyChunk = evbuffer_new() }
        return bodyChunk!
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

    /// The framing of the response body (RFC 9112 6.3); nil when it cannot be trusted.
    private func responseBody(_ response: HTTPHead) -> ResponseBody? {
        if expectNoBody || response.status == 204 || response.status == 304 { return ResponseBody.none }
        if let coding = response.combined("transfer-encoding") {
            let last = coding.split(separator: ",").last?.trimmingASCIISpaces().lowercased()
            return last == "chunked" ? .chunked(ChunkedDecoder()) : .untilClose
        }
        guard let n = response.contentLength() else { return .untilClose }
        return n < 0 ? nil : .length(n)
    }

    private static func keepsAlive(_ response: HTTPHead) -> Bool {
        response.minorVersion == 1
            ? !response.listContains("connection", token: "close")
            : response.listContains("connection", token: "keep-alive")
    }
}
