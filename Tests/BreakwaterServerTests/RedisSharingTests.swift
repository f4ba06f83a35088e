import BreakwaterCore
import Foundation
import Logging
import Testing
@testable import BreakwaterServer

/// Two replicas in front of one API, sharing one real Redis: a window imposed by one holds on both.
@Suite(.serialized) struct RedisSharingTests {
    static let hashKey = "replicas-share-this-secret-0123"


    /// A replica with `[redis]` pointing at `url`, keyed by the Authorization header on /api/v1/device/.
    /// The Redis timeout is generous by default: these tests are about sharing, and a loaded test
    /// machine must not turn a slow reply into a (correct, but here unwanted) local decision.
    static func replica(upstream: UInt16, url: String, timeout: Duration = .milliseconds(500), waitForRedis: Bool = true,
                        configure: (inout RouteConfig) -> Void = { _ in }) throws -> Harness {
        let proxy = try Harness(upstreamPorts: [upstream]) { config in
            config.clients.hashKey = hashKey
            var redis = RedisConfig()
            redis.url = url
            redis.prefix = "bwtest:"
            redis.timeout = timeout
            config.redis = redis
            var route = RouteConfig(name: "device", path: "/api/v1/device/")
            route.key = [.header("authorization")]
            route.backoff.base = .milliseconds(400)
            route.backoff.max = .seconds(10)
            route.backoff.jitter = 0
            configure(&route)
            config.routes = [route]
            config.upstream.retries = 0
        }
        if waitForRedis {
            #expect(eventually(5) { proxy.server.redisConnected }, "replica never connected to \(url)")
        }
        return proxy
    }

    static func get(_ proxy: Harness, token: String, as client: String) throws -> TestMessage {
        try request(port: proxy.port, "GET", "/api/v1/device/\(token)", headers: [("Authorization", "Bearer \(client)")])
    }

    @Test func anErrorThroughOneReplicaIsShieldedByTheOtherAtTheNextRequest() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try Self.replica(upstream: api.port, url: url)
        let b = try Self.replica(upstream: api.port, url: url) { $0.backoff.base = .seconds(5) }
        // B has seen this client succeed (and may remember it clean); A has not.
        #expect(try Self.get(b, token: "valid-1", as: "client-1").status == 200)
        #expect(try Self.get(a, token: "expired", as: "client-2").status == 401)
        let shielded = try Self.get(b, token: "expired", as: "client-2")
        #expect(shielded.status == 429)
        #expect(shielded.header("Retry-After") == "1")
        #expect(shielded.bodyText.contains(#""reason":"backoff""#))
        #expect(try Self.get(a, token: "expired", as: "client-2").status == 429)
        #expect(api.requestsServed == 2)
        // What Redis holds: the hashed key under the prefix, with a TTL.
        guard case .array(let keys) = try redis.client().command("KEYS", "bwtest:*") else { Issue.record("KEYS"); return }
        #expect(keys.count == 1)
        if case .bulk(let name?) = keys.first {
            #expect(name.count == "bwtest:".count + 16)
            guard case .integer(let ttl) = try redis.client().command("PTTL", name) else { Issue.record("PTTL"); return }
            #expect(ttl > 0)
        }
    }

    @Test func aSuccessThroughOneReplicaClearsTheClientOnTheOther() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try Self.replica(upstream: api.port, url: url)
        let b = try Self.replica(upstream: api.port, url: url)
        #expect(try Self.get(a, token: "expired", as: "client-3").status == 401)
        #expect(try Self.get(b, token: "expired", as: "client-3").status == 429)
        usleep(450_000)
        // The window is over: B forwards the probe, which succeeds and clears the client everywhere.
        #expect(try Self.get(b, token: "valid-2", as: "client-3").status == 200)
        #expect(try Self.get(a, token: "expired", as: "client-3").status == 401, "A must forward: the success through B cleared the client")
        #expect(api.requestsServed == 3)
    }

    @Test func fiftyParallelRequestsOverTwoReplicasSendOneProbe() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(200_000)
            try TestUpstream.respond(socket, status: 401, body: [])
            return true
        }
        defer { upstream.stop() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try Self.replica(upstream: upstream.port, url: url)
        let b = try Self.replica(upstream: upstream.port, url: url)
        #expect(try Self.get(a, token: "t", as: "client-4").status == 401)
        usleep(450_000)
        // Fifty connections, half to each replica, all requests sent before any answer is read.
        let sockets = try (0..<50).map { try TestSocket(port: $0 % 2 == 0 ? a.port : b.port) }
        for socket in sockets {
            try socket.send(rawRequest("GET", "/api/v1/device/t", headers: [("Authorization", "Bearer client-4")]))
        }
        let statuses = try sockets.map { try $0.readMessage()?.status ?? -1 }
        #expect(statuses.filter { $0 == 401 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 49, "\(statuses)")
        #expect(upstream.requestCount == 2)
    }

    @Test func anAdminResetOnOneReplicaForgivesTheClientOnAll() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try Self.replica(upstream: api.port, url: url) { $0.backoff.base = .seconds(30) }
        let b = try Self.replica(upstream: api.port, url: url) { $0.backoff.base = .seconds(30) }
        #expect(try Self.get(a, token: "expired", as: "client-5").status == 401)
        #expect(try Self.get(b, token: "expired", as: "client-5").status == 429)
        guard case .array(let keys) = try redis.client().command("KEYS", "bwtest:*"), case .bulk(let name?) = keys.first else {
            Issue.record("no key in Redis")
            return
        }
        let hex = String(name.dropFirst("bwtest:".count))
        // B never saw the error locally: only Redis knows the client.
        #expect(try request(port: b.server.adminPort, "POST", "/clients/reset?key=\(hex)").status == 200)
        #expect(try Self.get(a, token: "expired", as: "client-5").status == 401)
        #expect(try request(port: b.server.adminPort, "POST", "/clients/reset?key=0123456789abcdef").status == 404)
    }

    @Test func aReloadTurnsSharingOnAndOff() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer()
        let url = "redis://127.0.0.1:\(redis.port)"
        let a = try Self.replica(upstream: api.port, url: url)
        let b = try Self.replica(upstream: api.port, url: url)
        var alone = b.server.config
        alone.redis = nil
        try b.server.reload(alone)
        #expect(eventually(2) { !b.server.redisConnected })
        #expect(try Self.get(a, token: "expired", as: "reload-1").status == 401)
        #expect(try Self.get(b, token: "expired", as: "reload-1").status == 401, "without [redis], B knows nothing of A's block")
        var shared = alone
        shared.redis = a.server.config.redis
        try b.server.reload(shared)
        #expect(eventually(5) { b.server.redisConnected })
        #expect(try Self.get(a, token: "expired", as: "reload-2").status == 401)
        #expect(try Self.get(b, token: "expired", as: "reload-2").status == 429)
    }
}
