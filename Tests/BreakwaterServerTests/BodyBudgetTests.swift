import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `[server] max_buffered_bytes` through the real binary: request bodies being received, over all
/// connections, are held in memory up to the bound; past it, connections reading a body stop
/// reading until others complete.
@Suite struct BodyBudgetTests {
    /// Sends up to `count` bytes of body on `socket` without blocking; returns how many went.
    private static func sendSome(_ socket: TestSocket, _ chunk: [UInt8], upTo count: Int) -> Int {
        let n = chunk.withUnsafeBytes { Glibc.send(socket.fd, $0.baseAddress, min(count, $0.count), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        return max(n, 0)
    }

    private static func metric(_ proxy: ProxyProcess, _ series: String) -> Double? {
        (try? metricsText(adminPort: proxy.adminPort)).flatMap { metricValue($0, series) }
    }

    /// 200 connections each start a 10 MB body and send 1 MB of it, then stop: without the bound
    /// the proxy would hold 200 MB of them. With `max_buffered_bytes = "8MB"` its resident memory
    /// grows by at most the bound, plus the oldest body of each of the 2 workers (always read),
    /// plus 64 KiB per connection (its socket buffer and bookkeeping), the rest of the bytes
    /// waiting in the kernel; once the connections go, a body is served.
    @Test func unfinishedBodiesOfTwoHundredConnectionsStayWithinTheBound() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let bound = 8 << 20
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "max_buffered_bytes = \"8MB\"")
        #expect(try request(port: proxy.port, "POST", "/warm", body: Array(repeating: 0x61, count: 100_000)).status == 200)
        let baseline = proxy.residentBytes()

        let head = Array("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n".utf8)
        var sockets: [TestSocket] = []
        for _ in 0..<200 {
            let socket = try TestSocket(port: proxy.port, timeout: 10)
            try socket.send(head)
            sockets.append(socket)
        }
        let perConnection = 1 << 20
        let chunk = [UInt8](repeating: 0x62, count: 65_536)
        var sent = [Int](repeating: 0, count: sockets.count)
        // Round-robin, never blocking, for at most 10 s: what the proxy does not read stays in the
        // kernel's buffers, which fill.
        let deadline = Date().addingTimeInterval(10)
        var idleRounds = 0
        while Date() < deadline, idleRounds < 20, sent.contains(where: { $0 < perConnection }) {
            var moved = 0
            for (i, socket) in sockets.enumerated() where sent[i] < perConnection {
                let n = Self.sendSome(socket, chunk, upTo: perConnection - sent[i])
                sent[i] += n
                moved += n
            }
            if moved == 0 {
                idleRounds += 1
                usleep(50_000)
            } else {
                idleRounds = 0
            }
        }
        let total = sent.reduce(0, +)
        #expect(total > 2 * bound, "only \(total) bytes sent: the test would not show the bound")
        usleep(500_000)
        let grown = proxy.residentBytes() - baseline
        let allowed = bound + 2 * perConnection + 200 * 65_536
        #expect(grown < allowed, "RSS grew \(grown >> 20) MiB with \(total >> 20) MiB of bodies sent; allowed \(allowed >> 20) MiB")
        // The bound, passed by at most one read and one body (the oldest, always read) per worker.
        let buffered = Self.metric(proxy, "breakwater_buffered_body_bytes") ?? -1
        #expect(buffered >= Double(bound) && buffered < Double(bound + 2 * (perConnection + 65_536)), "buffered \(buffered)")
        #expect(upstream.requestCount == 1)

        // The connections go (their bodies unfinished): the budget is given back, and a body is served.
        sockets.removeAll()
        #expect(eventually(5) { Self.metric(proxy, "breakwater_buffered_body_bytes") == 0 })
        #expect(try request(port: proxy.port, "POST", "/after", body: Array(repeating: 0x63, count: 200_000)).status == 200)
        #expect(proxy.stop() == 0)
    }

    /// With the budget spent by two unfinished bodies, a third request's body waits (no answer, the
    /// upstream untouched); requests without a body are served meanwhile. When one of the first
    /// two completes, the waiting connections read again and the third is served.
    @Test func aBodyWaitsForRoomAndIsServedWhenAnotherCompletes() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port],
                                     server: "max_body_bytes = \"1MB\"\nmax_buffered_bytes = \"1MB\"", workers: 1)
        let size = 1_000_000
        let head = Array("POST /big HTTP/1.1\r\nHost: test\r\nContent-Length: \(size)\r\n\r\n".utf8)
        let first = try TestSocket(port: proxy.port, timeout: 10)
        let second = try TestSocket(port: proxy.port, timeout: 10)
        try first.send(head + [UInt8](repeating: 0x61, count: 600_000))
        try second.send(head + [UInt8](repeating: 0x62, count: 600_000))
        #expect(eventually(5) { (Self.metric(proxy, "breakwater_buffered_body_bytes") ?? 0) >= Double(1 << 20) })

        let third = try TestSocket(port: proxy.port, timeout: 10)
        try third.send(rawRequest("POST", "/small", body: Array(repeating: 0x63, count: 50_000)))
        usleep(500_000)
        #expect(try request(port: proxy.port, "GET", "/no-body").status == 200)
        #expect(!upstream.requests.contains { $0.startLine.hasPrefix("POST /small") }, "served while the budget was spent")

        try first.send([UInt8](repeating: 0x61, count: size - 600_000))
        #expect(try first.readMessage()?.status == 200)
        let answer = try third.readMessage()
        #expect(answer?.status == 200, "\(String(describing: answer)); \(proxy.logText.suffix(1000))")
        #expect(upstream.requests.first { $0.startLine.hasPrefix("POST /small") }?.body.count == 50_000)
        second.shutdownWrite()
        #expect(proxy.stop() == 0)
    }
}
