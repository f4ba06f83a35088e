import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Faults around the real binary, watched from outside: upstreams that die, hang or break
/// mid-body, reloads and shutdowns under load, running out of file descriptors.
@Suite struct FaultTests {
    /// The upstream is SIGKILLed under load: clients get 502s (never a hang or a crash), traffic
    /// recovers by itself when the upstream is back, and no descriptor leaks.
    @Test func upstreamKilledDuringLoadGives502sThenRecoversWithoutLeakingFDs() throws {
        let api = try DemoAPIProcess()
        // Dry-run: the shield would rightly answer 429 to a client whose upstream fails; here
        // every request should meet the fault itself.
        let proxy = try ProxyProcess(upstreams: [api.port], rest: "[backoff]\nmode = \"dry-run\"")
        let baseline = proxy.settledFDs()
        let load = LoadLoop(port: proxy.port, connections: 8) { _ in rawRequest("GET", "/api/v1/device/valid-load") }
        load.start()
        #expect(eventually(10) { load.tally.statuses[200, default: 0] >= 200 })
        api.kill()
        #expect(eventually(10) { load.tally.statuses[502, default: 0] >= 100 }, "\(load.tally)")
        #expect(proxy.isRunning)
        let revived = try DemoAPIProcess(port: api.port)
        let before = load.tally.statuses[200, default: 0]
        #expect(eventually(10) { load.tally.statuses[200, default: 0] >= before + 200 }, "no recovery: \(load.tally)")
        let tally = load.stop()
        revived.kill()
        #expect(Set(tally.statuses.keys).isSubset(of: [200, 502]), "\(tally)")
        // A response cut by the kill itself is broken, at most one per connection; nothing else fails.
        #expect(tally.failed <= 8, "\(tally)")
        #expect(Set(tally.failures.keys).isSubset(of: ["broken", "closed"]), "\(tally)")
        #expect(proxy.isRunning)
        // Client connections are gone and idle upstream connections get swept: back to the baseline.
        #expect(eventually(15) { proxy.openFDs() == baseline }, "fds: \(baseline) before, \(proxy.openFDs()) after")
        #expect(proxy.stop() == 0)
    }

    /// An upstream that accepts and reads but never answers: 504 at `upstream.timeout`, for every
    /// client at once, and the stuck connections are released.
    @Test func upstreamThatNeverAnswersGets504AtTheTimeout() throws {
        let upstream = try TestUpstream { _, socket in
            _ = socket.isClosedByPeer()
            return false
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], upstream: "timeout = \"1s\"\nretries = 0")
        let baseline = proxy.settledFDs()
        let results = LoadLoop.Results()
        onThreads(20) { i in
            let started = Date()
            let status = (try? request(port: proxy.port, "GET", "/hang/\(i)").status) ?? -1
            results.add(status, Date().timeIntervalSince(started))
        }
        let all = results.all
        #expect(all.count == 20)
        #expect(all.allSatisfy { $0.0 == 504 }, "\(all.map(\.0))")
        #expect(all.allSatisfy { $0.1 >= 0.9 && $0.1 < 2.5 }, "\(all.map(\.1))")
        #expect(upstream.requestCount == 20)
        #expect(eventually(10) { proxy.openFDs() == baseline }, "fds: \(baseline) before, \(proxy.openFDs()) after")
    }

    /// An upstream that dies mid-body: the client sees a response that is visibly broken (fewer
    /// bytes than its framing promised, and the connection closed), never a complete-looking one.
    @Test(arguments: ["/cut-length", "/cut-chunked", "/cut-large"])
    func upstreamClosingMidBodyLooksBrokenToTheClient(path: String) throws {
        let upstream = try TestUpstream { request, socket in
            switch request.target {
            case "/cut-length":
                try socket.send("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "x", count: 30_000))
            case "/cut-chunked":
                try socket.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + String(repeating: "y", count: 1024) + "\r\n")
            case "/cut-large":
                try socket.send("HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
                try socket.send([UInt8](repeating: 0x7a, count: 8 << 20))
            default:
                try TestUpstream.respond(socket, status: 200, body: Array("fine".utf8))
                return true
            }
            usleep(50_000)
            return false
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], upstream: "retries = 0")
        let socket = try TestSocket(port: proxy.port)
        try socket.send(rawRequest("GET", path))
        let response = try #require(try socket.readMessage())
        #expect(response.status == 200)
        #expect(!response.complete, "\(path): \(response.body.count) bytes looked complete")
        #expect(socket.isClosedOrReset())
        #expect(try request(port: proxy.port, "GET", "/after").bodyText == "fine")
        #expect(proxy.isRunning)
    }

    /// SIGHUP with a broken conf (and good ones that swap the upstream pool) while clients hammer
    /// the proxy: not one request fails.
    @Test func sighupWithABrokenConfDuringLoadFailsNoRequest() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let proxy = try ProxyProcess(upstreams: [api.port])
        let load = LoadLoop(port: proxy.port, connections: 8) { n in rawRequest("GET", "/api/v1/device/valid-\(n)") }
        load.start()
        #expect(eventually(10) { load.tally.answered >= 100 })
        for round in 0..<6 {
            if round % 2 == 0 {
                try "[server]\nworkers = \"two\"\n[upstream\n".write(to: proxy.conf, atomically: true, encoding: .utf8)
            } else {
                // A good file that changes [upstream], so the reload swaps pools under the load.
                try proxy.rewrite(upstreams: [api.port], upstream: "timeout = \"\(20 + round)s\"")
            }
            // Signals coalesce: each reload must be logged before the file changes again.
            let word = round % 2 == 0 ? "reload refused" : "reloaded"
            let logged = proxy.logText.components(separatedBy: word).count
            proxy.signal(SIGHUP)
            #expect(eventually(5) { proxy.logText.components(separatedBy: word).count > logged })
            let answered = load.tally.answered
            #expect(eventually(5) { load.tally.answered >= answered + 50 })
        }
        let tally = load.stop()
        #expect(tally.failed == 0, "\(tally)")
        #expect(tally.statuses.keys.sorted() == [200], "\(tally)")
        let log = proxy.logText
        #expect(log.components(separatedBy: "reload refused").count - 1 == 3, "\(log)")
        #expect(log.components(separatedBy: "reloaded").count - 1 == 3, "\(log)")
        #expect(proxy.stop() == 0)
    }

    /// SIGTERM under load: every request that reached the upstream is answered to its client,
    /// then the process exits 0 and stops accepting.
    @Test func sigtermDuringLoadLetsInFlightRequestsFinish() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(300_000)
            try TestUpstream.respond(socket, status: 200, body: Array("done".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "grace_period = \"10s\"")
        let load = LoadLoop(port: proxy.port, connections: 16)
        load.start()
        #expect(eventually(10) { upstream.requestCount >= 40 })
        proxy.signal(SIGTERM)
        let status = proxy.waitForExit(15)
        let tally = load.stop()
        #expect(status == 0)
        #expect(tally.statuses.keys.sorted() == [200], "\(tally)")
        #expect(tally.statuses[200] == upstream.requestCount, "in flight at SIGTERM but unanswered: \(tally)")
        #expect(tally.failures["broken", default: 0] == 0 && tally.failures["timeout", default: 0] == 0, "\(tally)")
        #expect((try? TestSocket(port: proxy.port, timeout: 1)) == nil, "still accepting after exit")
    }

    /// Out of file descriptors: accept() fails with EMFILE while the listening socket stays
    /// readable. The proxy used to spin on it at full CPU, printing libevent's warning hundreds of
    /// thousands of times a second; it now pauses accepting, warns once, and serves the waiting
    /// connections as descriptors free up. Every held connection is in the middle of a request
    /// head, so none is idle and none can be closed to make room (DescriptorPressureTests).
    @Test func runningOutOfDescriptorsPausesAcceptingInsteadOfSpinning() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], openFiles: 64)
        var held: [TestSocket] = []
        for _ in 0..<120 {
            let socket = try TestSocket(port: proxy.port, timeout: 5)
            try socket.send("GET /held HTTP/1.1\r\n")
            held.append(socket)
        }
        usleep(500_000)
        let cpuBefore = proxy.cpuSeconds()
        usleep(1_000_000)
        let cpuUsed = proxy.cpuSeconds() - cpuBefore
        #expect(cpuUsed < 0.3, "\(cpuUsed) s of CPU in 1 s while out of descriptors")
        let log = proxy.logText
        #expect(!log.contains("Error from accept"))
        #expect(log.components(separatedBy: "accept failed").count - 1 == 1, "\(log.prefix(2000))")
        // The last connection waited in the backlog; once others close it is accepted and served.
        let waiting = held.removeLast()
        held.removeAll()
        do {
            try waiting.send("Host: test\r\n\r\n")
            #expect(try waiting.readMessage()?.status == 200)
        } catch {
            Issue.record("the waiting connection: \(error); \(proxy.logText.suffix(3000))")
        }
        #expect(try request(port: proxy.port, "GET", "/fresh").status == 200)
        let started = Date()
        #expect(proxy.stop() == 0, "after \(Date().timeIntervalSince(started)) s; fds \(proxy.openFDs()); \(proxy.logText.suffix(1500))")
    }
}
