/// The tracker's rules as Redis scripts, for replicas that share one tracker.
///
/// Each decision that reads and moves a key's state is one script, run atomically by Redis, so two
/// replicas racing on one key see each other's writes: of fifty requests spread over several
/// replicas when a window ends, exactly one script run finds the probe free and takes it.
///
/// A key is a hash `prefix + 16 hex digits of the ClientKey` with the fields
/// `e` (consecutive errors), `l` (level), `w` (window end) and `p` (probe deadline, 0 when no probe
/// is in flight), and an expiry `reset_after` past the later of the last error and the window end,
/// as in `ErrorTracker`. A success deletes the key (one `DEL`, atomic by itself).
///
/// Time is Redis's own clock (`TIME`, microseconds), read inside each script: every replica then
/// measures windows on one clock, so clock skew between replica hosts cannot shorten or stretch a
/// window, and Redis's expiry runs on that same clock.
///
/// The window arithmetic is `BackoffPolicy.delayNanoseconds` / `windowNanoseconds` transcribed
/// step for step (the same multiplications in the same order, the same rounding down), with the
/// jitter draw `u` made by the caller; `SharedTrackerScriptTests` runs both on the same inputs
/// against a real Redis and requires identical nanoseconds.
public enum SharedTracker {
    /// How long a probe may stay in flight before the next request may probe (as `ErrorTracker`).
    public static let probeLease: Duration = .seconds(120)

    /// Reconnection delays: 100 ms doubling to 5 s, each shortened by up to half at random so the
    /// workers of many replicas do not reconnect in step after Redis restarts.
    public static let reconnect = BackoffPolicy(strategy: .exponential, base: .milliseconds(100), factor: 2,
                                                max: .seconds(5), jitter: 0.5)

    /// `KEYS[1]`: the client. `ARGV[1]`: probe lease in microseconds.
    /// Returns `{code, remaining_us}`, see `verdict(code:remainingMicroseconds:)`.
    public static let checkScript = """
        if redis.replicate_commands then redis.replicate_commands() end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local s = redis.call('HMGET', KEYS[1], 'l', 'w', 'p')
        if not s[1] then return {0, 0} end
        local level, wend, probe = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
        if now < wend then return {3, wend - now} end
        if level == 0 then return {1, 0} end
        if probe > now then return {4, probe - now} end
        redis.call('HSET', KEYS[1], 'p', now + tonumber(ARGV[1]))
        return {2, 0}
        """

    /// `KEYS[1]`: the client. `ARGV`: threshold, strategy (`e` or `l`), base ns, factor, max ns,
    /// jitter spread, jitter draw, reset_after µs, upstream Retry-After floor ns (-1: none).
    /// Returns the window imposed in nanoseconds, or -1 when the error opened none.
    public static let errorScript = """
        if redis.replicate_commands then redis.replicate_commands() end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local threshold, strategy = tonumber(ARGV[1]), ARGV[2]
        local base, factor, max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
        local spread, draw = tonumber(ARGV[6]), tonumber(ARGV[7])
        local reset, floor = tonumber(ARGV[8]), tonumber(ARGV[9])
        local function delay(n)
          if n < 1 then n = 1 end
          local raw
          if strategy == 'e' then
            local e, r, b = math.min(n - 1, 4096), 1.0, factor
            while e > 0 do
              if e % 2 == 1 then r = r * b end
              e = math.floor(e / 2)
              if e > 0 then b = b * b end
            end
            raw = base * r
          else
            raw = base * n
          end
          if not (raw < max) then
            if raw ~= raw and base == 0 then return 0 end
            return max
          end
          if raw > 0 then return math.floor(raw) end
          return 0
        end
        local function window(n)
          local d = delay(n)
          local w = math.floor(d * (1 - spread * draw))
          if w < 0 then w = 0 end
          if w > d then w = d end
          return w
        end
        local s = redis.call('HMGET', KEYS[1], 'e', 'l', 'w')
        local errors = (tonumber(s[1]) or 0) + 1
        local level = tonumber(s[2]) or 0
        local wend = tonumber(s[3]) or 0
        local imposed = -1
        if errors >= threshold then
          if now < wend then
            if floor >= 0 and now + math.ceil(floor / 1000) > wend then
              wend = now + math.ceil(floor / 1000)
              imposed = floor
            end
          else
            level = level + 1
            local w = window(level)
            if floor > w then w = floor end
            wend = now + math.ceil(w / 1000)
            imposed = w
          end
        end
        redis.call('HSET', KEYS[1], 'e', errors, 'l', level, 'w', wend, 'p', 0)
        local expires = math.max(now, wend) + reset
        if expires > now + 3e14 then expires = now + 3e14 end
        redis.call('PEXPIREAT', KEYS[1], math.ceil(expires / 1000))
        if imposed > 9e18 then imposed = 9e18 end
        return imposed
        """

    /// `KEYS[1]`: the client. Clears the probe flag of a key that exists; never creates one.
    public static let abandonScript = """
        if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'p', 0) end
        return 0
        """

    /// The scripts in the order the server loads them.
    public static let scripts = [checkScript, errorScript, abandonScript]

    /// The key of `key` under `prefix`: the prefix, then 16 lowercase hex digits.
    public static func redisKey(prefix: String, _ key: ClientKey) -> String {
        prefix + key.description
    }

    /// `ARGV` of `checkScript`.
    public static func checkArguments(probeLease: Duration = probeLease) -> [String] {
        [String(microseconds(probeLease))]
    }

    /// `ARGV` of `errorScript` for an error under `policy`, with jitter draw `u` in [0, 1).
    public static func errorArguments(policy: BackoffPolicy, u: Double, upstreamRetryAfter: Duration?) -> [String] {
        // Clamped here exactly as `windowNanoseconds` and `ErrorTracker.record` clamp them.
        let spread = Swift.min(Swift.max(policy.jitter.isNaN ? 0 : policy.jitter, 0), 1)
        let draw = u.isNaN ? 0 : Swift.min(Swift.max(u, 0), 1)
        let floor = upstreamRetryAfter.map {
            Swift.min(Swift.max(0, $0.clampedNanoseconds), ErrorTracker<SystemClock>.upstreamFloorLimit.clampedNanoseconds)
        } ?? -1
        let resetAfter = Swift.max(1, microseconds(policy.resetAfter))
        return [
            String(Swift.max(1, policy.threshold)),
            policy.strategy == .exponential ? "e" : "l",
            String(Swift.max(0, policy.base.clampedNanoseconds)),
            "\(policy.factor)",
            String(Swift.max(0, policy.max.clampedNanoseconds)),
            "\(spread)",
            "\(draw)",
            String(resetAfter),
            String(floor),
        ]
    }

    /// What a `checkScript` reply means: the verdict, and whether the key had no state at all
    /// (so it may be remembered as clean for a moment). Nil for a code the script never returns.
    public static func verdict(code: Int64, remainingMicroseconds: Int64) -> (verdict: Verdict, clean: Bool)? {
        switch code {
        case 0: return (.forward, true)
        case 1: return (.forward, false)
        case 2: return (.probe, false)
        case 3: return (.reject(.backoff, retryAfter: .microseconds(Swift.max(1, remainingMicroseconds))), false)
        case 4: return (.reject(.probe, retryAfter: probeRetryHint), false)
        default: return nil
        }
    }

    /// The window an `errorScript` reply reports, nil when none was imposed.
    public static func imposedWindow(_ reply: Int64) -> Duration? {
        reply >= 0 ? .nanoseconds(reply) : nil
    }

    /// Whole microseconds, rounded up, at most about ten years (Redis refuses larger expiries).
    static func microseconds(_ duration: Duration) -> Int64 {
        let ns = Swift.max(0, duration.clampedNanoseconds)
        return Swift.min(ns / 1000 + (ns % 1000 == 0 ? 0 : 1), 315_000_000_000_000)
    }
}
