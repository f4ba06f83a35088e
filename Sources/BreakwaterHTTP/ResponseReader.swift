/// Reads the responses on one upstream connection, one exchange at a time, as a state machine
/// with no sockets. The connection tells it a request went out, feeds it bytes and the peer's
/// close, and carries out the `Action` each returns.
public struct ResponseReader {
    /// How reading a response failed.
    public enum Failure: Equatable, Sendable {
        /// The connection closed before any byte of a response.
        case closedBeforeResponse
        /// The head was malformed, too large, or framed in a way that cannot be trusted.
        case badResponse
        /// The connection closed, or the body broke its framing, after the response had started.
        case brokenResponse
    }

    public enum State {
        /// No request outstanding.
        case idle
        /// A request went out; its response head is awaited. `upgrading`: the request asked to
        /// switch protocols, so a 101 ends the HTTP exchange and starts a tunnel.
        case head(answeringHEAD: Bool, upgrading: Bool, receivedAny: Bool)
        /// The head was delivered; the body is arriving. `keepAlive`: the server keeps the connection.
        case body(BodyReader, keepAlive: Bool)
        /// The body is complete.
        case complete(keepAlive: Bool)
        /// The server switched protocols: what follows on the connection is no longer HTTP.
        case switched
        case failed
    }

    public enum Action {
        /// Nothing until more bytes arrive.
        case wait
        /// The input holds more than the first `n` contiguous bytes offered: offer at least `n`.
        case needContiguous(Int)
        /// Drop the first n bytes (an interim 1xx response, or body framing), then read again.
        case discard(Int)
        /// The response head: take its `length` bytes off the input and pass it on; the body
        /// follows as `body` actions.
        case head(HTTPHead, length: Int, body: BodyLength)
        /// The first n bytes are body bytes: pass them on, then read again.
        case body(Int)
        /// The response is complete; `reusable`: the connection may carry another exchange.
        case complete(reusable: Bool)
        /// A `101 Switching Protocols` to a request that asked for it: take its `length` bytes off
        /// the input; every byte after them belongs to the new protocol.
        case switched(HTTPHead, length: Int)
        /// The exchange failed; the connection must close.
        case fail(Failure)
    }

    public private(set) var state = State.idle
    private var heads = HeadBuffer()
    /// A response head may be this long.
    public static let maxHeadBytes = 65_536

    public init() {}

    /// A request went out on the connection; `answeringHEAD`: its response has no body;
    /// `upgrading`: it asked to switch protocols.
    public mutating func requestSent(answeringHEAD: Bool, upgrading: Bool = false) {
        state = .head(answeringHEAD: answeringHEAD, upgrading: upgrading, receivedAny: false)
    }

    /// Bytes are waiting: `input` is the first of them (contiguous), `buffered` all of them.
    public mutating func read(_ input: UnsafeRawBufferPointer, buffered: Int) -> Action {
        switch state {
        case .idle, .failed:
            // Bytes from a server with no request outstanding are out of protocol.
            return buffered > 0 ? fail(.badResponse) : .wait
        case .switched:
            return .wait   // the tunnel reads them
        case .head(let answeringHEAD, let upgrading, _):
            guard buffered > 0 else { return .wait }
            state = .head(answeringHEAD: answeringHEAD, upgrading: upgrading, receivedAny: true)
            return readHead(input, buffered: buffered, answeringHEAD: answeringHEAD, upgrading: upgrading)
        case .body(var reader, let keepAlive):
            let step = reader.next(input)
            switch step {
            case .needMore:
                return .wait
            case .skip(let n):
                state = .body(reader, keepAlive: keepAlive)
                return .discard(n)
            case .data(let n):
                state = reader.isComplete ? .complete(keepAlive: keepAlive) : .body(reader, keepAlive: keepAlive)
                return .body(n)
            case .done(let skip):
                state = .complete(keepAlive: keepAlive)
                return skip > 0 ? .discard(skip) : read(input, buffered: buffered)
            case .error:
                return fail(.brokenResponse)
            }
        case .complete(let keepAlive):
            // Bytes beyond the response mean the server does not frame as it says: no reuse.
            state = .idle
            return .complete(reusable: keepAlive && buffered == 0)
        }
    }

    /// The server closed the connection (`cleanly`: an orderly end of stream), or it broke (a
    /// reset, an error). Only an orderly close can end a body that runs until close.
    public mutating func peerClosed(cleanly: Bool) -> Action {
        switch state {
        case .head(_, _, let receivedAny):
            return fail(receivedAny ? .badResponse : .closedBeforeResponse)
        case .body(var reader, _):
            guard cleanly, reader.peerClosed() else { return fail(.brokenResponse) }
            state = .idle
            return .complete(reusable: false)
        case .complete:
            state = .idle
            return .complete(reusable: false)
        case .idle, .failed, .switched:
            return .wait
        }
    }

    private mutating func readHead(_ input: UnsafeRawBufferPointer, buffered: Int, answeringHEAD: Bool, upgrading: Bool) -> Action {
        guard let length = HeadBuffer.headLength(in: input) else {
            let window = min(buffered, Self.maxHeadBytes + 4)
            if input.count < window { return .needContiguous(window) }
            return buffered > Self.maxHeadBytes ? fail(.badResponse) : .wait
        }
        guard length <= Self.maxHeadBytes,
              let head = try? heads.parseResponse(UnsafeRawBufferPointer(rebasing: input[..<length]))
        else { return fail(.badResponse) }
        if head.status == 101 {
            // A switch of protocols nobody asked for cannot be relayed.
            guard upgrading else { return fail(.badResponse) }
            state = .switched
            return .switched(head, length: length)
        }
        if head.status < 200 { return .discard(length) }   // interim responses (100 Continue) are not relayed
        guard let framing = try? head.responseBodyLength(answeringHEAD: answeringHEAD) else { return fail(.badResponse) }
        let reader = BodyReader(framing)
        state = reader.isComplete ? .complete(keepAlive: head.keepsAlive) : .body(reader, keepAlive: head.keepsAlive)
        return .head(head, length: length, body: framing)
    }

    private mutating func fail(_ failure: Failure) -> Action {
        state = .failed
        return .fail(failure)
    }
}
