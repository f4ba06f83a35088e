import BreakwaterHTTP

/// A clock for the readers that moves only when a test says so: every deadline is driven without
/// sleeping.
struct ManualClock: Clock {
    struct Instant: InstantProtocol, Hashable {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    var now = Instant(offset: .zero)
    var minimumResolution: Duration { .nanoseconds(1) }
    func sleep(until deadline: Instant, tolerance: Duration?) async throws {}

    mutating func advance(by duration: Duration) { now = now.advanced(by: duration) }
}

/// Bytes as a test writes them.
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A connection's input as the I/O shell keeps it: bytes arrive at the end, actions take them
/// off the front. Drives a `RequestReader` the way ClientConnection does, with no socket.
struct ReaderDriver {
    var reader: RequestReader<ManualClock>
    var clock = ManualClock()
    var input: [UInt8] = []
    /// Requests handed over, with their bodies.
    var requests: [(head: HTTPHead, body: [UInt8])] = []
    var refusals: [HTTPError] = []
    var continues = 0
    var lastDeadline: ManualClock.Instant?
    var closed = false
    var lingering = false
    private var body: [UInt8] = []

    init(limits: ReaderLimits = ReaderLimits()) {
        reader = RequestReader(limits: limits, now: clock.now)
        lastDeadline = reader.deadline
    }

    /// Bytes arrive; the reader's actions are carried out until it waits. Returns the last one.
    @discardableResult
    mutating func receive(_ text: String) -> RequestReader<ManualClock>.Action {
        receive(bytes(text))
    }

    @discardableResult
    mutating func receive(_ new: [UInt8]) -> RequestReader<ManualClock>.Action {
        input += new
        return run()
    }

    @discardableResult
    mutating func run() -> RequestReader<ManualClock>.Action {
        while true {
            let action = input.withUnsafeBytes { reader.read($0, buffered: input.count, now: clock.now) }
            switch action {
            case .needContiguous: preconditionFailure("the whole input is offered")
            case .discard(let n): input.removeFirst(n)
            case .body(let n):
                body += input.prefix(n)
                input.removeFirst(n)
            case .head(let length, let sendContinue):
                input.removeFirst(length)
                body = []
                if sendContinue { continues += 1 }
            case .request(let length):
                input.removeFirst(length)
                requests.append((reader.takeHead(), []))
            case .complete(let discard):
                input.removeFirst(discard)
                requests.append((reader.takeHead(), body))
            case .refuse(let error):
                refusals.append(error)
                input.removeAll()
            case .wait(let deadline):
                lastDeadline = deadline
                return action
            case .stopReading, .linger, .close:
                return carry(action)
            }
        }
    }

    /// The clock moves on by `duration` and the armed deadline fires.
    @discardableResult
    mutating func elapse(_ duration: Duration) -> RequestReader<ManualClock>.Action {
        clock.advance(by: duration)
        return carry(reader.deadlinePassed(now: clock.now))
    }

    /// The handler answered the request; the output drains at once.
    @discardableResult
    mutating func respond(keepAlive: Bool = true) -> RequestReader<ManualClock>.Action {
        _ = carry(reader.responseEnded(keepAlive: keepAlive, now: clock.now))
        if keepAlive { return run() }
        return carry(reader.outputDrained(inputPending: !input.isEmpty, draining: false, now: clock.now))
    }

    @discardableResult
    private mutating func carry(_ action: RequestReader<ManualClock>.Action) -> RequestReader<ManualClock>.Action {
        switch action {
        case .refuse(let error):
            refusals.append(error)
            input.removeAll()
        case .close: closed = true
        case .linger(let deadline):
            lingering = true
            lastDeadline = deadline
            input.removeAll()
        case .wait(let deadline): lastDeadline = deadline
        default: break
        }
        return action
    }
}
