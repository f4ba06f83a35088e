import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The pool's idle sweep closes parked upstream connections a few dozen per turn of the loop
/// (closing hundreds at once held the worker for about 100 ms): all of them still go.
@Suite struct UpstreamPoolSweepTests {
    /// 100 requests at once against an upstream that answers after 300 ms: 100 upstream
    /// connections, parked when the answers are in. The sweep (4 s idle) closes them over several
    /// turns (32 a turn), every one of them, and the proxy serves requests meanwhile.
    @Test func everyParkedConnectionIsClosedByTheSweepInBatches() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(300_000)
            try TestUpstream.respond(socket, status: 200, body: Array("slow".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], workers: 1)
        let before = proxy.settledFDs()
        let statuses = Guarded([Int]())
        onThreads(100) { _ in
            let status = (try? request(port: proxy.port, "GET", "/park").status) ?? 0
            statuses.withLock { $0.append(status) }
        }
        #expect(statuses.withLock { $0 }.filter { $0 == 200 }.count == 100)
        #expect(upstream.connectionsAccepted >= 100)
        #expect(proxy.openFDs() >= before + 100, "\(proxy.openFDs()) open, \(before) before")
        // Idle 4 s, swept every 2 s: all closed within 7 s.
        #expect(eventually(8) { proxy.openFDs() <= before }, "\(proxy.openFDs()) open, \(before) before")
        #expect(try request(port: proxy.port, "GET", "/after").status == 200)
        #expect(proxy.stop() == 0)
    }
}
