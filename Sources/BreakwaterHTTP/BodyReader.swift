/// Reads one message body as it arrives, whatever its framing: the one loop over a body that
/// both sides of the proxy use (requests from clients, responses from upstreams). Like
/// `ChunkedDecoder`, it only says which bytes are framing and which are data; the caller moves them.
public struct BodyReader: Sendable {
    public typealias Step = ChunkedDecoder.Step

    private enum Framing: Sendable {
        case length(remaining: Int)
        case chunked(ChunkedDecoder)
        case untilClose
        case complete
    }

    private var framing: Framing
    /// Body bytes (framing not counted) a chunked body may hold before it is refused with 413.
    private let limit: Int
    /// Body bytes passed on so far, framing not counted.
    public private(set) var received = 0

    /// A reader for a body of `length`; a chunked body of more than `limit` bytes is a 413, from
    /// the size line of the chunk that goes over.
    public init(_ length: BodyLength, limit: Int = .max) {
        switch length {
        case .none, .length(0): framing = .complete
        case .length(let n): framing = .length(remaining: n)
        case .chunked: framing = .chunked(ChunkedDecoder())
        case .untilClose: framing = .untilClose
        }
        self.limit = limit
    }

    /// Whether the whole body has been read.
    public var isComplete: Bool { if case .complete = framing { true } else { false } }

    /// Judges the bytes at the start of `input` (the bytes not yet consumed).
    public mutating func next(_ input: UnsafeRawBufferPointer) -> Step {
        switch framing {
        case .complete:
            return .done(skip: 0)
        case .length(let remaining):
            guard !input.isEmpty else { return .needMore }
            let n = min(remaining, input.count)
            received += n
            framing = n == remaining ? .complete : .length(remaining: remaining - n)
            return .data(n)
        case .untilClose:
            guard !input.isEmpty else { return .needMore }
            received += input.count
            return .data(input.count)
        case .chunked(var decoder):
            let step = decoder.next(input)
            switch step {
            case .skip:
                // A size line was read: refuse a chunk that would take the body over the limit
                // now, as nginx does, rather than pass on the data before it and wait for the
                // byte that goes over. Every data byte belongs to a chunk judged here.
                guard decoder.chunkRemaining <= limit - received else {
                    return .error(HTTPError(413, "chunked body over the limit"))
                }
                framing = .chunked(decoder)
            case .data(let n):
                received += n
                framing = .chunked(decoder)
            case .done:
                framing = .complete
            default:
                framing = .chunked(decoder)
            }
            return step
        }
    }

    /// The peer closed its side: true when that ends the body (a response read until close),
    /// false when the body is cut short.
    public mutating func peerClosed() -> Bool {
        switch framing {
        case .complete: return true
        case .untilClose:
            framing = .complete
            return true
        case .length, .chunked: return false
        }
    }
}
