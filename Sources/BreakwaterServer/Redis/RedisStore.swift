import BreakwaterCore
import Logging
import Prometheus

/// The tracker shared by every replica through Redis, as one worker sees it (`[redis]`).
///
/// Each check and each error is one `SharedTracker` script on this worker's `RedisLink`; a
/// success is one `DEL`. Three rules keep the forward path fast and the proxy up:
/// - A client that Redis said has no state is remembered clean for `cleanTTL` (`CleanKeyCache`):
///   its requests are forwarded without a round trip, and a success needs no `DEL`. This worker's
///   own errors invalidate the entry at once; another replica's reach it within `cleanTTL`.
/// - Fail open: whenever Redis cannot answer (not connected, no reply within `timeout`, an error
///   reply), the local tracker decides, and the operation counts in
///   `breakwater_redis_errors_total`. No request waits longer than `timeout` for Redis.
/// - Every outcome is also recorded in the local tracker, so that when Redis goes away the
///   fallback already knows the clients this replica has seen fail.
final class RedisStore: TrackerStore {
    /// How long "this client has no state" is trusted without asking Redis again.
    static let cleanTTL: Duration = .milliseconds(250)

    /// The local tracker: the fallback, and a copy of every outcome.
    let local: ErrorTracker<LoopClock>
    let link: RedisLink
    /// The Redis reply time limit (`redis.timeout`).
    let timeout: Duration
    private let prefix: [UInt8]
    private var clean: CleanKeyCache
    private let errors: Counter
    private let clock = LoopClock()
    private let checkArguments = SharedTracker.checkArguments()

    init(config: RedisConfig, local: ErrorTracker<LoopClock>, worker: Worker, errors: Counter, logger: Logger) {
        self.local = local
        self.errors = errors
        timeout = config.timeout
        prefix = Array(config.prefix.utf8)
        clean = CleanKeyCache(ttl: Self.cleanTTL)
        // `validate` refused any URL that does not parse.
        link = RedisLink(endpoint: config.endpoint!, scripts: SharedTracker.scripts, worker: worker, errors: errors,
                         logger: logger)
    }

    /// Connects; on the worker's thread.
    func start() { link.connect() }

    /// Closes the connection; on the worker's thread. Later calls decide locally.
    func close() { link.close() }

    // MARK: TrackerStore

    func checkNow(_ key: ClientKey, policy: BackoffPolicy) -> Verdict? {
        guard link.isReady else {
            errors.increment()
            return local.check(key, policy: policy)
        }
        return clean.isClean(key, now: clock.nanoseconds()) ? .forward : nil
    }

    func check(_ key: ClientKey, policy: BackoffPolicy, then decide: @escaping (Verdict) -> Void) {
        let sent = link.eval(Script.check, key: redisKey(key), arguments: checkArguments, timeout: timeout, completion: { [self] reply in
            guard let reply, let answer = Self.checkAnswer(reply) else {
                errors.increment()
                return decide(local.check(key, policy: policy))
            }
            if answer.clean { clean.markClean(key, now: clock.nanoseconds()) }
            decide(answer.verdict)
        }, late: { [self] reply in
            // Decided locally meanwhile: a probe Redis granted to this request must be given back.
            if Self.checkAnswer(reply)?.verdict == .probe { abandonShared(key) }
        })
        if !sent {
            errors.increment()
            decide(local.check(key, policy: policy))
        }
    }

    func record(_ key: ClientKey, outcome: Outcome, policy: BackoffPolicy, routeIndex: Int,
                upstreamRetryAfter: Duration?, windows: WindowObserver?) {
        let localWindow = local.record(key, outcome: outcome, policy: policy, routeIndex: routeIndex,
                                       upstreamRetryAfter: upstreamRetryAfter)
        switch outcome {
        case .success:
            // Known clean: nothing in Redis to delete.
            guard !clean.isClean(key, now: clock.nanoseconds()) else { return }
            let sent = link.send(delete(key), timeout: timeout) { [self] reply in
                if let reply, reply.isSuccess { clean.markClean(key, now: clock.nanoseconds()) } else { errors.increment() }
            }
            if !sent { errors.increment() }
        case .error:
            clean.invalidate(key)
            let arguments = SharedTracker.errorArguments(policy: policy, u: Double.random(in: 0..<1), upstreamRetryAfter: upstreamRetryAfter)
            let sent = link.eval(Script.error, key: redisKey(key), arguments: arguments, timeout: timeout) { [self] reply in
                if case .integer(let ns) = reply {
                    if let window = SharedTracker.imposedWindow(ns) { windows?.windowImposed(window) }
                } else {
                    errors.increment()
                    if let localWindow { windows?.windowImposed(localWindow) }
                }
            }
            if !sent {
                errors.increment()
                if let localWindow { windows?.windowImposed(localWindow) }
            }
        }
    }

    func abandonProbe(_ key: ClientKey) {
        local.abandonProbe(key)
        abandonShared(key)
    }

    func forget(_ key: ClientKey, then done: @escaping (Bool) -> Void) {
        let known = local.forget(key)
        clean.invalidate(key)
        let sent = link.send(delete(key), timeout: timeout) { [self] reply in
            if case .integer(let n) = reply { return done(known || n > 0) }
            errors.increment()
            done(known)
        }
        if !sent {
            errors.increment()
            done(known)
        }
    }

    // MARK: helpers

    private enum Script {
        // Indices into `SharedTracker.scripts`.
        static let check = 0, error = 1, abandon = 2
    }

    private func abandonShared(_ key: ClientKey) {
        let sent = link.eval(Script.abandon, key: redisKey(key), arguments: [], timeout: timeout) { [self] reply in
            if reply == nil || !reply!.isSuccess { errors.increment() }
        }
        if !sent { errors.increment() }
    }

    private func redisKey(_ key: ClientKey) -> [UInt8] {
        var bytes = prefix
        bytes.reserveCapacity(prefix.count + 16)
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var shift: UInt64 = 60
        while true {
            bytes.append(digits[Int((key.value >> shift) & 0xf)])
            if shift == 0 { break }
            shift -= 4
        }
        return bytes
    }

    private func delete(_ key: ClientKey) -> RedisCommand {
        var command = RedisCommand(["DEL"])
        command.append(redisKey(key))
        return command
    }

    /// The verdict in a `checkScript` reply, nil if the reply is not one.
    static func checkAnswer(_ reply: RedisReply) -> (verdict: Verdict, clean: Bool)? {
        guard case .array(let items) = reply, items.count == 2,
              case .integer(let code) = items[0], case .integer(let remaining) = items[1] else { return nil }
        return SharedTracker.verdict(code: code, remainingMicroseconds: remaining)
    }
}

extension RedisReply {
    /// Anything but an error reply (or no reply).
    var isSuccess: Bool {
        if case .error = self { return false }
        return true
    }
}
