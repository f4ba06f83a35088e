import BreakwaterCore
import Foundation
import Testing
@testable import BreakwaterServer

/// Clients that hold connections open: slowloris heads, trickled bodies, thousands of idle
/// sockets. Each is cut off by a bounded deadline, and nobody else waits for them.
///
/// The body rule (`server.min_body_rate`, 1 KiB/s by default): after the head, a body may pause at
/// most `header_timeout` between reads, and must be complete within `header_timeout` plus one
/// second per `min_body_rate` bytes received; past either, 408 and the connection closes.
@Suite struct HostileSlowClientTests {
    /// Sends `pieces` one at a time, `interval` apart, until the proxy answers or closes, or
    /// `limit` seconds pass; returns the seconds until then (nil: never cut) and what it said.
    private static func trickle(_ socket: TestSocket, _ pieces: [[UInt8]], interval: Double, limit: Double) -> (Double?, String) {
        let started = Date()
        var cut = false
        for piece in pieces {
            if Date().timeIntervalSince(started) > limit { break }
            if (try? socket.send(piece)) == nil || socket.waitReadable(interval) {
                cut = true
                break
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        return (cut ? elapsed : nil, String(decoding: socket.drain(), as: UTF8.self))
    }

    /// A head sent at one byte a second is cut at `header_timeout` from its first byte, and many
    /// such clients at once do not delay a normal one.
    @Test func slowlorisHeadsAreCutAtTheHeaderTimeout() throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(2) }
        let head = Array("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ".utf8) + [UInt8](repeating: UInt8(ascii: "s"), count: 100)
        let count = 200
        let cut = Guarded<[Double]>([])
        let answers = Guarded<[String]>([])
        let started = Date()
        onThreads(count + 1) { i in
            if i == count {
                // A normal client in the middle of the storm.
                usleep(500_000)
                let begun = Date()
                let ok = target.stillServes()
                answers.withLock { $0.append(ok && Date().timeIntervalSince(begun) < 1 ? "served" : "not served") }
                return
            }
            guard let socket = try? TestSocket(port: target.port, timeout: 6) else { return }
            let (elapsed, answer) = Self.trickle(socket, head.map { [$0] }, interval: 1, limit: 5)
            cut.withLock { $0.append(elapsed ?? 99) }
            answers.withLock { $0.append(answer.hasPrefix("HTTP/1.1 408 ") ? "408" : answer) }
        }
        let times = cut.withLock { $0 }
        #expect(times.count == count)
        #expect(times.allSatisfy { $0 >= 1.8 && $0 < 3.5 }, "cut after \(times.min() ?? 0)...\(times.max() ?? 0) s")
        let all = answers.withLock { $0 }
        #expect(all.filter { $0 == "408" }.count == count)
        #expect(all.contains("served"))
        #expect(Date().timeIntervalSince(started) < 6)
        #expect(target.upstream.requests.map(\.target) == ["/still-serving"])
    }

    /// A body trickled at a few bytes a second used to survive as long as each byte came within
    /// `header_timeout` of the last; now the total deadline cuts it.
    @Test(arguments: ["length", "chunked"])
    func aTrickledBodyIsCutOffWith408(framing: String) throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(1) }
        let socket = try TestSocket(port: target.port)
        let pieces: [[UInt8]]
        if framing == "length" {
            try socket.send("POST /slow-body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
            pieces = (0..<1000).map { _ in [UInt8(ascii: "b")] }
        } else {
            try socket.send("POST /slow-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            pieces = (0..<1000).map { _ in Array("1\r\nb\r\n".utf8) }
        }
        let (elapsed, answer) = Self.trickle(socket, pieces, interval: 0.2, limit: 4)
        let seconds = try #require(elapsed, "a body at 5 bytes/s was never cut off")
        #expect(seconds >= 0.9 && seconds < 2.0)
        #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout"))
        #expect(target.upstream.requestCount == 0)
        #expect(target.stillServes())
    }

    /// The rule spares honest uploads: a body arriving at 160 KiB/s takes longer than
    /// `header_timeout` and is forwarded whole.
    @Test func aSteadyBodySlowerThanTheHeaderTimeoutIsForwarded() throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(1) }
        let size = 256 * 1024
        var generator = SystemRandomNumberGenerator()
        let body = (0..<size / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
        let socket = try TestSocket(port: target.port)
        let started = Date()
        try socket.send("POST /steady HTTP/1.1\r\nHost: t\r\nContent-Length: \(size)\r\n\r\n")
        for offset in stride(from: 0, to: size, by: 16_384) {
            try socket.send(Array(body[offset..<offset + 16_384]))
            usleep(100_000)
        }
        let response = try #require(try socket.readMessage())
        #expect(Date().timeIntervalSince(started) > 1.4)
        #expect(response.status == 200)
        #expect(checksum(response.body) == checksum(body))
        #expect(target.received("/steady").first.map { checksum($0.body) } == checksum(body))
    }

    /// A slow mobile upload at 2 KiB/s, steadier than the floor, finishes (a 16 KiB/s floor cut it).
    @Test func aSlowSteadyUploadAboveTheFloorIsForwarded() throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(1) }
        let size = 8 * 1024
        let body = [UInt8](repeating: UInt8(ascii: "u"), count: size)
        let socket = try TestSocket(port: target.port)
        try socket.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(size)\r\n\r\n")
        for offset in stride(from: 0, to: size, by: 1024) {
            try socket.send(Array(body[offset..<offset + 1024]))
            usleep(500_000)
        }
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200)
        #expect(target.received("/upload").first?.body.count == size)
    }

    /// Fast progress earns time, but never a pause longer than `header_timeout`.
    @Test func aBodyThatStallsAfterAFastStartIsCutAtTheHeaderTimeout() throws {
        let target = try HostileTarget { $0.server.headerTimeout = .seconds(1) }
        let socket = try TestSocket(port: target.port)
        try socket.send("POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + String(repeating: "a", count: 100_000))
        let started = Date()
        let answer = String(decoding: socket.drain(), as: UTF8.self)
        let elapsed = Date().timeIntervalSince(started)
        #expect(answer.hasPrefix("HTTP/1.1 408 "))
        #expect(elapsed >= 0.9 && elapsed < 2)
        #expect(target.upstream.requestCount == 0)
    }

    /// 2,000 connections that send nothing or half a head do not stop a new client from being
    /// served at once, and the timers reclaim all of them.
    @Test func twoThousandIdleConnectionsDoNotStopNewClients() throws {
        #expect(raiseOpenFileLimit(to: 8192) >= 4500, "the test holds 2,000 sockets on each side")
        let target = try HostileTarget {
            $0.server.idleTimeout = .seconds(3)
            $0.server.headerTimeout = .seconds(3)
        }
        var idle: [TestSocket] = []
        for i in 0..<2000 {
            let socket = try TestSocket(port: target.port, timeout: 8)
            if i % 2 == 1 { try socket.send("GET /half HTTP/1.1\r\nHost: t\r\n") }
            idle.append(socket)
        }
        for round in 0..<20 {
            let started = Date()
            let response = try request(port: target.port, "GET", "/fresh/\(round)")
            #expect(response.status == 200)
            #expect(Date().timeIntervalSince(started) < 1)
        }
        // Every idle socket is closed by the proxy once its timer runs out (408 for half heads).
        let closedAt = Date()
        var closed = 0
        var answered408 = 0
        for (i, socket) in idle.enumerated() where socket.waitReadable(8) {
            closed += 1
            if i % 2 == 1, String(decoding: socket.drain(), as: UTF8.self).hasPrefix("HTTP/1.1 408 ") { answered408 += 1 }
        }
        #expect(closed == 2000)
        #expect(answered408 == 1000)
        #expect(Date().timeIntervalSince(closedAt) < 8)
        #expect(target.upstream.requests.allSatisfy { $0.target.hasPrefix("/fresh/") })
    }
}
