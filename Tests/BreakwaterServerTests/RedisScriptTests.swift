import BreakwaterCore
import Foundation
import Testing

/// The shared-tracker scripts on a real Redis: the same windows as the local tracker's math, and
/// the same decisions (forward, backoff, one probe) as `ErrorTracker`.
@Suite(.serialized) struct RedisScriptTests {
    private static func load(_ client: RedisTestClient, _ script: String) throws -> String {
        guard case .bulk(let sha?) = try client.command("SCRIPT", "LOAD", script) else {
            throw TestSocket.Failure(description: "SCRIPT LOAD failed")
        }
        return sha
    }

    @Test func errorScriptImposesExactlyTheLocalTrackersWindows() throws {
        let redis = try RedisTestServer()
        let client = try redis.client()
        let sha = try Self.load(client, SharedTracker.errorScript)
        let policies = [
            BackoffPolicy(),
            BackoffPolicy(base: .seconds(1), max: .seconds(1800)),
            BackoffPolicy(base: .milliseconds(333), factor: 1.5, max: .seconds(7200), jitter: 0.5),
            BackoffPolicy(base: .microseconds(1234567), factor: 1.1, max: .seconds(86_400), jitter: 1),
            BackoffPolicy(base: .milliseconds(10), factor: 3.7, max: .seconds(60), jitter: 0),
            BackoffPolicy(strategy: .linear, base: .seconds(1), max: .seconds(35)),
            BackoffPolicy(strategy: .linear, base: .milliseconds(333), max: .seconds(600), jitter: 0.35),
        ]
        var rng = SystemRandomNumberGenerator()
        var compared = 0
        for policy in policies {
            for level in Array(1...40) + [64, 100, 1000, 4097, 10_000] {
                for u in [0, 0.5, 0.999_999_999, Double(rng.next() >> 11) * 0x1p-53] {
                    _ = try client.command("DEL", "k")
                    if level > 1 {
                        // The state just before the level-th window: level-1 windows, the last one over.
                        _ = try client.command("HSET", "k", "e", "\(level - 1)", "l", "\(level - 1)", "w", "0", "p", "0")
                    }
                    let reply = try client.command(["EVALSHA", sha, "1", "k"]
                        + SharedTracker.errorArguments(policy: policy, u: u, upstreamRetryAfter: nil))
                    let expected = policy.window(level: level, u: u)
                    #expect(reply == .integer(Int64(expected.components.seconds) * 1_000_000_000 + expected.components.attoseconds / 1_000_000_000),
                            "policy \(policy) level \(level) u \(u): Redis said \(reply), the tracker \(expected)")
                    compared += 1
                }
            }
        }
        #expect(compared == policies.count * 45 * 4)
    }

    @Test func checkScriptDecidesAsTheLocalTracker() throws {
        let redis = try RedisTestServer()
        let client = try redis.client()
        let check = try Self.load(client, SharedTracker.checkScript)
        let error = try Self.load(client, SharedTracker.errorScript)
        let abandon = try Self.load(client, SharedTracker.abandonScript)
        let lease = SharedTracker.checkArguments()
        func checkKey() throws -> RedisTestClient.Reply { try client.command(["EVALSHA", check, "1", "c"] + lease) }
        func code(_ reply: RedisTestClient.Reply) -> Int64? {
            if case .array(let items) = reply, case .integer(let c) = items.first { return c }
            return nil
        }
        func recordError(_ policy: BackoffPolicy, floor: Duration? = nil) throws -> RedisTestClient.Reply {
            try client.command(["EVALSHA", error, "1", "c"] + SharedTracker.errorArguments(policy: policy, u: 0, upstreamRetryAfter: floor))
        }

        // No state: forward, and clean.
        #expect(code(try checkKey()) == 0)
        // Below the threshold: counted, forwarded, not clean.
        #expect(try recordError(BackoffPolicy(threshold: 2)) == .integer(-1))
        #expect(code(try checkKey()) == 1)
        // Reaching it: a window of base, refused with the time left.
        #expect(try recordError(BackoffPolicy(threshold: 2)) == .integer(500_000_000))
        let blocked = try checkKey()
        #expect(code(blocked) == 3)
        if case .array(let items) = blocked, case .integer(let remaining) = items[1] {
            #expect(remaining > 400_000 && remaining <= 500_000)
        }
        // An error inside the window only counts; an upstream Retry-After past it extends it.
        #expect(try recordError(BackoffPolicy(threshold: 2)) == .integer(-1))
        #expect(try recordError(BackoffPolicy(threshold: 2), floor: .seconds(7)) == .integer(7_000_000_000))
        // Window over: exactly one probe, the rest wait for it; giving it back frees it.
        _ = try client.command("HSET", "c", "w", "0")
        #expect(code(try checkKey()) == 2)
        #expect(code(try checkKey()) == 4)
        #expect(code(try checkKey()) == 4)
        _ = try client.command("EVALSHA", abandon, "1", "c")
        #expect(code(try checkKey()) == 2)
        // The probe's error opens the next level; the key expires reset_after past the window end.
        #expect(try recordError(BackoffPolicy(threshold: 2)) == .integer(1_000_000_000))
        guard case .integer(let ttl) = try client.command("PTTL", "c") else { Issue.record("no TTL"); return }
        #expect(ttl > 900_000 && ttl <= 901_002, "ttl \(ttl)")
        // Abandoning an unknown key creates nothing.
        _ = try client.command("EVALSHA", abandon, "1", "nobody")
        #expect(try client.command("EXISTS", "nobody") == .integer(0))
    }
}
