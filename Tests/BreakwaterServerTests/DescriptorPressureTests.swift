import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Near the descriptor limit the proxy closes idle connections (between requests, or that never
/// sent a byte), those whose deadline comes first, so that a new client is served at once, as
/// nginx does, instead of waiting in the backlog until timeouts free descriptors.
@Suite struct DescriptorPressureTests {
    /// 1,100 silent connections against a limit of 1,024 descriptors (the shell's `ulimit -n`):
    /// a normal client is still served within 2 s (it used to wait for `header_timeout` or more),
    /// the oldest silent connections are the ones closed, the newest stay open, and the process
    /// does not spin while it sits at the limit.
    @Test(.enabled(if: raiseOpenFileLimit(to: 8192) >= 2400,
                   "needs 2,400 descriptors for the test's own sockets; the hard limit is lower"))
    func idleConnectionsMakeRoomForANewClientAtTheDescriptorLimit() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        // One worker: which connections it closes is then the order they came in (each worker
        // closes its own).
        let proxy = try ProxyProcess(upstreams: [upstream.port], openFiles: 1024, workers: 1)
        var silent: [TestSocket] = []
        for _ in 0..<1100 { silent.append(try TestSocket(port: proxy.port, timeout: 2)) }
        // Every silent connection was accepted, older ones closed to make room.
        #expect(eventually(5) { proxy.openFDs() >= 1000 }, "\(proxy.openFDs()) descriptors open")
        usleep(300_000)

        let started = Date()
        let response = try request(port: proxy.port, "GET", "/fresh")
        let elapsed = Date().timeIntervalSince(started)
        #expect(response.status == 200)
        #expect(elapsed < 2, "served after \(elapsed) s")

        // Closed: readable (EOF) at once; open and silent: not readable.
        let closed = silent.map { socket -> Bool in
            var pfd = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            return poll(&pfd, 1, 0) == 1
        }
        #expect(closed[0], "the oldest silent connection is still open")
        #expect(closed.filter { $0 }.count >= 76, "\(closed.filter { $0 }.count) closed")
        #expect(!closed.suffix(100).contains(true), "one of the 100 newest silent connections was closed")

        let cpuBefore = proxy.cpuSeconds()
        usleep(1_000_000)
        let cpuUsed = proxy.cpuSeconds() - cpuBefore
        #expect(cpuUsed < 0.3, "\(cpuUsed) s of CPU in 1 s at the descriptor limit")
        #expect(proxy.logText.contains("closing idle connections"), "\(proxy.logText.suffix(1000))")
        silent.removeAll()
        #expect(try request(port: proxy.port, "GET", "/after").status == 200)
        #expect(proxy.stop() == 0)
    }
}
