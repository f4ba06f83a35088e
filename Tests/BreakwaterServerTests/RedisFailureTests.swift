import BreakwaterCore
import Foundation
import Synchronization
import Testing
@testable import BreakwaterServer

/// Redis fails and the replicas fail open: no request fails or hangs because of it, the metric
/// counts it, and sharing resumes when Redis is back.
@Suite(.serialized) struct RedisFailureTests {
    private static func redisErrors(_ proxy: Harness) throws -> Double {
        let text = try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText
        let line = text.split(separator: "\n").first { $0.hasPrefix("breakwater_redis_errors_total ") }
        return line.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
    }

    @Test func redisKilledDuringLoadFailsNoRequestAndSharingResumesWhenItReturns() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try RedisSharingTests.replica(upstream: api.port, url: url)
        let b = try RedisSharingTests.replica(upstream: api.port, url: url)
        #expect(try Self.redisErrors(a) == 0)

        // Load: healthy clients through both replicas, each request on a fresh connection.
        let stop = Atomic<Bool>(false)
        let results = Mutex<[Int: Int]>([:])
        let ports = [a.port, b.port]
        let finished = DispatchGroup()
        for worker in 0..<2 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                var n = 0
                while !stop.load(ordering: .relaxed) && n < 20_000 {
                    n += 1
                    let status = (try? request(port: ports[n % 2], "GET", "/api/v1/device/valid-\(worker)",
                                               headers: [("Authorization", "Bearer load-\(worker)-\(n % 50)")]).status) ?? -1
                    results.withLock { $0[status, default: 0] += 1 }
                }
            }.start()
        }
        usleep(500_000)
        redis.kill()
        usleep(1_000_000)
        #expect(!a.server.redisConnected && !b.server.redisConnected)
        try redis.start()
        #expect(eventually(8) { a.server.redisConnected && b.server.redisConnected }, "replicas did not reconnect")
        usleep(300_000)
        stop.store(true, ordering: .relaxed)
        #expect(finished.wait(timeout: .now() + 15) == .success)

        let counts = results.withLock { $0 }
        #expect(counts.keys.sorted() == [200], "every request must succeed while Redis dies and returns: \(counts)")
        #expect((counts[200] ?? 0) > 100)
        #expect(try Self.redisErrors(a) > 0)
        #expect(try Self.redisErrors(b) > 0)

        // Sharing again: an error through A is shielded by B.
        #expect(try RedisSharingTests.get(a, token: "expired", as: "after-restart").status == 401)
        #expect(try RedisSharingTests.get(b, token: "expired", as: "after-restart").status == 429)
    }

    @Test func whileRedisIsDownEachReplicaShieldsWithItsLocalTracker() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let a = try RedisSharingTests.replica(upstream: api.port, url: "redis://127.0.0.1:\(redis.port)")
        redis.kill()
        #expect(eventually(2) { !a.server.redisConnected })
        let started = ContinuousClock.now
        #expect(try RedisSharingTests.get(a, token: "expired", as: "local-1").status == 401)
        #expect(try RedisSharingTests.get(a, token: "expired", as: "local-1").status == 429)
        #expect(ContinuousClock.now - started < .milliseconds(500))
        #expect(api.requestsServed == 1)
        #expect(try Self.redisErrors(a) > 0)
    }

    @Test func aFrozenRedisCostsEachRequestAtMostTheTimeoutThenNothing() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        defer { redis.freeze(false) }
        let a = try RedisSharingTests.replica(upstream: api.port, url: "redis://127.0.0.1:\(redis.port)",
                                              timeout: .milliseconds(100))
        redis.freeze(true)
        var slowest = Duration.zero
        for n in 0..<20 {
            let started = ContinuousClock.now
            let response = try RedisSharingTests.get(a, token: "valid", as: "frozen-\(n)")
            slowest = max(slowest, ContinuousClock.now - started)
            #expect(response.status == 200)
        }
        // Each request waits at most the timeout (plus scheduling slack); after a few timeouts in
        // a row the connection is dropped and requests stop waiting at all.
        #expect(slowest < .milliseconds(400), "slowest \(slowest)")
        #expect(!a.server.redisConnected)
        #expect(try Self.redisErrors(a) >= 3)
        redis.freeze(false)
        #expect(eventually(8) { a.server.redisConnected }, "did not reconnect after Redis thawed")
    }
}
