import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// `redis.url` with a password (AUTH) and a database number (SELECT).
@Suite(.serialized) struct RedisAuthTests {
    @Test func passwordAndDatabaseFromTheURLAreUsed() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer(password: "s3cret-pass")
        let url = "redis://:s3cret-pass@127.0.0.1:\(redis.port)/3"
        let a = try RedisSharingTests.replica(upstream: api.port, url: url)
        let b = try RedisSharingTests.replica(upstream: api.port, url: url)
        #expect(try RedisSharingTests.get(a, token: "expired", as: "auth-1").status == 401)
        #expect(try RedisSharingTests.get(b, token: "expired", as: "auth-1").status == 429)
        guard case .array(let inDb3) = try redis.client(db: 3).command("KEYS", "bwtest:*"),
              case .array(let inDb0) = try redis.client(db: 0).command("KEYS", "bwtest:*") else {
            Issue.record("KEYS failed")
            return
        }
        #expect(inDb3.count == 1)
        #expect(inDb0.isEmpty)
    }

    @Test func anACLUserFromTheURLIsUsed() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer(password: "alice-pass", user: "alice")
        let url = "redis://alice:alice-pass@127.0.0.1:\(redis.port)"
        let a = try RedisSharingTests.replica(upstream: api.port, url: url)
        let b = try RedisSharingTests.replica(upstream: api.port, url: url)
        #expect(try RedisSharingTests.get(a, token: "expired", as: "acl-1").status == 401)
        #expect(try RedisSharingTests.get(b, token: "expired", as: "acl-1").status == 429)
    }

    @Test func aWrongPasswordFailsOpenToTheLocalTracker() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let redis = try RedisTestServer(password: "right-one")
        let a = try RedisSharingTests.replica(upstream: api.port, url: "redis://:wrong-one@127.0.0.1:\(redis.port)",
                                              waitForRedis: false)
        usleep(300_000)
        #expect(!a.server.redisConnected)
        #expect(try RedisSharingTests.get(a, token: "valid", as: "auth-2").status == 200)
        #expect(try RedisSharingTests.get(a, token: "expired", as: "auth-3").status == 401)
        #expect(try RedisSharingTests.get(a, token: "expired", as: "auth-3").status == 429)
        let metrics = try request(port: a.server.adminPort, "GET", "/metrics").bodyText
        let errors = metrics.split(separator: "\n").first { $0.hasPrefix("breakwater_redis_errors_total ") }
        #expect(errors.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 > 0 } == true)
    }
}
