private import CHiredis
private import CLibevent
import BreakwaterCore
import Logging
import Prometheus
import Synchronization

/// A Redis reply, copied out of hiredis's buffer (which is freed when the callback returns).
enum RedisReply: Equatable {
    case integer(Int64)
    /// A bulk string or a status line.
    case string([UInt8])
    case array([RedisReply])
    case error(String)
    case null
}

/// One Redis command: its arguments packed in one buffer (binary-safe, sent with
/// `redisAsyncCommandArgv`, since the variadic `redisAsyncCommand` cannot be called from Swift).
struct RedisCommand {
    fileprivate var bytes: [UInt8] = []
    fileprivate var ends: [Int] = []

    init(_ arguments: [String] = []) {
        bytes.reserveCapacity(96)
        ends.reserveCapacity(8)
        for argument in arguments { append(argument) }
    }

    mutating func append(_ argument: String) {
        bytes.append(contentsOf: argument.utf8)
        ends.append(bytes.count)
    }

    mutating func append(_ argument: [UInt8]) {
        bytes.append(contentsOf: argument)
        ends.append(bytes.count)
    }

    /// Appends the arguments of `other` from its `index`-th on.
    fileprivate mutating func append(argumentsOf other: RedisCommand, from index: Int) {
        var start = index == 0 ? 0 : other.ends[index - 1]
        for end in other.ends[index...] {
            append(Array(other.bytes[start..<end]))
            start = end
        }
    }
}

/// One asynchronous hiredis connection on one worker's event loop, used only from that thread.
///
/// - Connects, then (pipelined) `AUTH`, `SELECT` and `SCRIPT LOAD` of the shared-tracker scripts;
///   it is `ready` once every handshake reply came back fine, within `connectTimeout`.
/// - Every command has a deadline. A command without a reply by then is completed with nil (the
///   caller decides locally); its reply, should it come later, goes to its `late` handler.
///   Replies arrive in order, so one timer armed for the oldest deadline serves them all.
/// - `maxTimeouts` timeouts in a row mean Redis is stalled: the link drops the connection rather
///   than make every request wait. A lost or dropped connection is retried after
///   `SharedTracker.reconnect` delays (100 ms doubling to 5 s, jittered), reset by the first
///   reply that arrives in time. While not ready, nothing is sent and callers decide locally.
final class RedisLink {
    private enum State { case idle, connecting, ready, closed }

    /// A command sent and not yet answered.
    private struct Pending {
        var deadline: Int64
        /// Completed: answered, or given up at the deadline.
        var done = false
        /// Part of the connection handshake (its reply does not count as a request's).
        var handshake = false
        var completion: ((RedisReply?) -> Void)?
        var late: ((RedisReply) -> Void)?
        /// For `EVALSHA`: which script, and the command, so a `NOSCRIPT` reply can be sent again as `EVAL`.
        var script = -1
        var command: RedisCommand?
    }

    let endpoint: RedisURL
    let scripts: [String]
    private unowned let worker: Worker
    private let logger: Logger
    private let errors: Counter
    private let clock = LoopClock()
    private var state = State.idle
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var pending: [Pending] = []
    private var head = 0
    /// The first pending entry the deadline sweep has not passed.
    private var sweep = 0
    /// Fires at the oldest command deadline, and when the next connection attempt is due.
    private var timer: LoopEvent?
    private var timerDeadline = Int64.max
    private var reconnectTimer: LoopEvent?
    private var attempt = 0
    private var timeoutsInARow = 0
    private var handshakeLeft = 0
    /// Inside a hiredis reply callback (hiredis must not be re-entered to write from there).
    private var inCallback = 0
    private var shas: [String?]
    private var rng = SystemRandomNumberGenerator()
    /// Whether the link is ready, readable from any thread (tests, `/stats`).
    let isReadyFlag = Atomic<Bool>(false)

    /// A connection in the handshake longer than this is given up and retried.
    var connectTimeout: Duration = .seconds(1)
    /// This many timed-out commands in a row drop the connection.
    var maxTimeouts = 3

    init(endpoint: RedisURL, scripts: [String], worker: Worker, errors: Counter, logger: Logger) {
        self.endpoint = endpoint
        self.scripts = scripts
        self.worker = worker
        self.errors = errors
        self.logger = logger
        shas = scripts.map { _ in nil }
        // Without them the link never times out a command nor reconnects: it then stays closed,
        // and the store fails open to the local tracker, as with Redis down.
        timer = try? LoopEvent(base: worker.base) { [unowned(unsafe) self] in sweepDeadlines() }
        reconnectTimer = try? LoopEvent(base: worker.base) { [unowned(unsafe) self] in connect() }
    }

    /// Whether commands are being sent (connected, handshake done).
    var isReady: Bool { state == .ready }

    // MARK: connection

    /// Opens the connection; on the worker's thread.
    func connect() {
        guard state == .idle else { return }
        guard let ac = redisAsyncConnect(endpoint.address.host, Int32(endpoint.address.port)) else {
            return failedAttempt("out of memory")
        }
        if ac.pointee.err != 0 {
            let reason = ac.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            redisAsyncFree(ac)
            return failedAttempt(reason)
        }
        ac.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        guard redisLibeventAttach(ac, worker.base) == REDIS_OK else {
            redisAsyncFree(ac)
            return failedAttempt("redisLibeventAttach failed")
        }
        redisAsyncSetConnectCallback(ac) { ac, status in
            guard status != REDIS_OK, let ac else { return }
            // hiredis frees the context when this returns; pending commands get nil replies.
            let reason = ac.pointee.errstr.map { String(cString: $0) } ?? "connect failed"
            Unmanaged<RedisLink>.fromOpaque(ac.pointee.data!).takeUnretainedValue().lost(ac, reason)
        }
        redisAsyncSetDisconnectCallback(ac) { ac, _ in
            guard let ac else { return }
            let reason = ac.pointee.errstr.map { String(cString: $0) } ?? "connection closed"
            Unmanaged<RedisLink>.fromOpaque(ac.pointee.data!).takeUnretainedValue().lost(ac, reason)
        }
        context = ac
        state = .connecting
        handshake()
    }

    /// Queues AUTH, SELECT and SCRIPT LOAD behind the connect; hiredis sends them once connected.
    private func handshake() {
        let deadline = deadline(after: connectTimeout)
        var steps: [(RedisCommand, (RedisReply) -> Bool)] = []
        if let password = endpoint.password {
            steps.append((RedisCommand(["AUTH"] + (endpoint.user.map { [$0] } ?? []) + [password]), { _ in true }))
        }
        if endpoint.database != 0 {
            steps.append((RedisCommand(["SELECT", String(endpoint.database)]), { _ in true }))
        }
        for (index, script) in scripts.enumerated() {
            steps.append((RedisCommand(["SCRIPT", "LOAD", script]), { [weak self] reply in
                guard case .string(let sha) = reply else { return false }
                self?.shas[index] = String(decoding: sha, as: UTF8.self)
                return true
            }))
        }
        handshakeLeft = steps.count
        for (command, accept) in steps {
            let sent = submit(command, deadline: deadline, handshake: true) { [weak self] reply in
                guard let self, self.state == .connecting else { return }
                guard let reply else { return self.drop("no reply to the handshake within \(self.connectTimeout)") }
                if case .error(let message) = reply { return self.drop("handshake refused: \(message)") }
                guard accept(reply) else { return self.drop("unexpected handshake reply") }
                self.handshakeLeft -= 1
                if self.handshakeLeft == 0 { self.becameReady() }
            }
            guard sent else { return drop("could not queue the handshake") }
        }
    }

    private func becameReady() {
        state = .ready
        isReadyFlag.store(true, ordering: .relaxed)
        logger.info("redis connected; the tracker is shared", metadata: [
            "redis": "\(endpoint.address)", "db": "\(endpoint.database)", "worker": "\(worker.index)",
        ])
    }

    /// hiredis lost (or never made) the connection and is freeing `ac`.
    private func lost(_ ac: UnsafePointer<redisAsyncContext>, _ reason: String) {
        guard let context, UnsafePointer(context) == ac else { return }
        self.context = nil
        down(reason)
    }

    /// Gives up the connection (stalled, refused the handshake) and retries later.
    private func drop(_ reason: String) {
        guard let ac = context else { return }
        context = nil
        down(reason)
        // Runs the pending callbacks with nil replies; from inside a hiredis callback the free
        // is deferred by hiredis until the callback returns.
        redisAsyncFree(ac)
    }

    private func down(_ reason: String) {
        let wasReady = state == .ready
        state = .idle
        isReadyFlag.store(false, ordering: .relaxed)
        timeoutsInARow = 0
        errors.increment()
        if wasReady {
            logger.warning("redis unreachable; each worker decides with its local tracker until it returns", metadata: [
                "redis": "\(endpoint.address)", "reason": "\(reason)", "worker": "\(worker.index)",
            ])
        } else {
            logger.debug("redis connection attempt failed", metadata: ["redis": "\(endpoint.address)", "reason": "\(reason)"])
        }
        scheduleReconnect()
    }

    private func failedAttempt(_ reason: String) {
        errors.increment()
        logger.debug("redis connection attempt failed", metadata: ["redis": "\(endpoint.address)", "reason": "\(reason)"])
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        guard state != .closed, let reconnectTimer else { return }
        attempt = min(attempt + 1, 64)
        let u = Double(rng.next() >> 11) * 0x1p-53
        reconnectTimer.add(after: SharedTracker.reconnect.window(level: attempt, u: u).clampedNanoseconds)
    }

    /// Closes the connection for good (reload, shutdown); on the worker's thread, before its loop ends.
    func close() {
        guard state != .closed else { return }
        let ac = context
        context = nil
        state = .closed
        isReadyFlag.store(false, ordering: .relaxed)
        if let ac { redisAsyncFree(ac) }
        timer?.close()
        reconnectTimer?.close()
        timer = nil
        reconnectTimer = nil
    }

    // MARK: commands

    /// Sends `command` if the link is ready. `completion` then runs exactly once: with the reply,
    /// or with nil if none came within `timeout` (or the connection was lost first). Returns false,
    /// without calling `completion`, when nothing was sent.
    @discardableResult
    func send(_ command: RedisCommand, timeout: Duration, completion: ((RedisReply?) -> Void)?,
              late: ((RedisReply) -> Void)? = nil) -> Bool {
        guard state == .ready else { return false }
        return submit(command, deadline: deadline(after: timeout), completion: completion, late: late)
    }

    /// Runs script `index` (of `scripts`) with one key: `EVALSHA`, or `EVAL` while the SHA is unknown
    /// or after Redis lost its script cache (`NOSCRIPT`).
    @discardableResult
    func eval(_ index: Int, key: [UInt8], arguments: [String], timeout: Duration,
              completion: ((RedisReply?) -> Void)?, late: ((RedisReply) -> Void)? = nil) -> Bool {
        guard state == .ready else { return false }
        var command = RedisCommand()
        if let sha = shas[index] {
            command.append("EVALSHA")
            command.append(sha)
        } else {
            command.append("EVAL")
            command.append(scripts[index])
        }
        command.append("1")
        command.append(key)
        for argument in arguments { command.append(argument) }
        return submit(command, deadline: deadline(after: timeout), script: index,
                      completion: completion, late: late)
    }

    private func submit(_ command: RedisCommand, deadline: Int64, handshake: Bool = false, script: Int = -1,
                        completion: ((RedisReply?) -> Void)?, late: ((RedisReply) -> Void)? = nil) -> Bool {
        guard let ac = context else { return false }
        let count = command.ends.count
        let rc = command.bytes.withUnsafeBufferPointer { bytes -> Int32 in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv = [UnsafePointer<CChar>?](repeating: nil, count: count)
            var lengths = [Int](repeating: 0, count: count)
            var start = 0
            for (i, end) in command.ends.enumerated() {
                argv[i] = base + start
                lengths[i] = end - start
                start = end
            }
            return redisAsyncCommandArgv(ac, { ac, reply, _ in
                guard let ac else { return }
                Unmanaged<RedisLink>.fromOpaque(ac.pointee.data!).takeUnretainedValue()
                    .replied(reply?.assumingMemoryBound(to: redisReply.self))
            }, nil, Int32(count), &argv, lengths)
        }
        guard rc == REDIS_OK else { return false }
        pending.append(Pending(deadline: deadline, handshake: handshake, completion: completion, late: late,
                               script: script, command: script >= 0 ? command : nil))
        armTimer(deadline)
        // Write now rather than on the next loop turn: a record then reaches Redis before the
        // response that caused it reaches the client, so the client's next request, through any
        // replica, sees it. (A failed write frees the context and completes this command with nil.)
        if state == .ready, inCallback == 0 { redisAsyncHandleWrite(ac) }
        return true
    }

    /// hiredis's callback for the oldest pending command: its reply, or nil when the connection is gone.
    private func replied(_ raw: UnsafeMutablePointer<redisReply>?) {
        inCallback += 1
        defer { inCallback -= 1 }
        guard head < pending.count else { return }
        let entry = pending[head]
        pending[head] = Pending(deadline: 0, done: true)
        head += 1
        if sweep < head { sweep = head }
        compact()
        if entry.done {
            if let raw, let late = entry.late { late(Self.copy(raw)) }
            return
        }
        guard let raw else {
            entry.completion?(nil)
            return
        }
        let reply = Self.copy(raw)
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT"), entry.script >= 0, let command = entry.command {
            // Redis restarted or SCRIPT FLUSH: send the script itself; EVAL caches it again.
            var again = RedisCommand(["EVAL", scripts[entry.script]])
            again.append(argumentsOf: command, from: 2)
            if submit(again, deadline: entry.deadline, completion: entry.completion, late: entry.late) { return }
        }
        if !entry.handshake {
            timeoutsInARow = 0
            attempt = 0
        }
        entry.completion?(reply)
    }

    // MARK: deadlines

    /// `timeout` from now on the monotonic clock, in nanoseconds (a day at most: never overflows).
    private func deadline(after timeout: Duration) -> Int64 {
        clock.nanoseconds() &+ min(max(0, timeout.clampedNanoseconds), 86_400 * 1_000_000_000)
    }

    private func armTimer(_ deadline: Int64) {
        guard let timer, deadline < timerDeadline else { return }
        timerDeadline = deadline
        timer.add(after: deadline - clock.nanoseconds())
    }

    /// Completes, with nil, every command whose deadline has passed; drops a stalled connection.
    private func sweepDeadlines() {
        timerDeadline = .max
        let now = clock.nanoseconds()
        var expired: [(RedisReply?) -> Void] = []
        var stalled = false
        while sweep < pending.count {
            let entry = pending[sweep]
            if !entry.done {
                guard entry.deadline <= now else { break }
                pending[sweep].done = true
                if entry.handshake {
                    stalled = true
                } else {
                    timeoutsInARow += 1
                    if timeoutsInARow >= maxTimeouts { stalled = true }
                }
                if let completion = entry.completion { expired.append(completion) }
            }
            sweep += 1
        }
        for completion in expired { completion(nil) }
        if stalled {
            drop("no reply within the timeout \(timeoutsInARow) times in a row")
        } else if let next = pending[sweep...].first(where: { !$0.done }) {
            armTimer(next.deadline)
        }
    }

    /// Reclaims the answered prefix of `pending` now and then.
    private func compact() {
        guard head >= 256, head * 2 >= pending.count else { return }
        pending.removeFirst(head)
        sweep -= head
        head = 0
    }

    // MARK: replies

    private static func copy(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_STRING, REDIS_REPLY_STATUS:
            return .string(r.str.map { Array(UnsafeRawBufferPointer(start: $0, count: r.len)) } ?? [])
        case REDIS_REPLY_ERROR:
            return .error(r.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: r.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ARRAY:
            return .array((0..<r.elements).map { i in r.element[i].map { copy($0) } ?? .null })
        default:
            return .null
        }
    }
}
