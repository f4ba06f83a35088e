import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Upgrades through the real binary (README, issue 14): a WebSocket handshake passes the shield like
/// any request and goes upstream with its Upgrade; the upstream's 101 joins the two connections into
/// a byte tunnel. Real peers from the Python `websockets` package, and raw sockets where a test must
/// control every byte.
@Suite struct WebSocketTests {
    private static func route(_ name: String, _ path: String, _ extra: String = "") -> String {
        "[[route]]\nname = \"\(name)\"\npath = \"\(path)\"\n\(extra)\n"
    }

    private static func metric(_ proxy: ProxyProcess, _ series: String) -> Double? {
        (try? metricsText(adminPort: proxy.adminPort)).flatMap { metricValue($0, series) }
    }

    private static func activeTunnels(_ proxy: ProxyProcess) -> Double? { metric(proxy, "breakwater_tunnels_active") }

    private static func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }

    // MARK: real WebSocket peers

    @Test func textAndBinaryMessagesEchoThroughTheTunnel() throws {
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let result = try PythonWebSockets.runClient("echo", "ws://127.0.0.1:\(proxy.port)/chat?room=1")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("ECHOED text and binary"))
        // The handshake went upstream with its Upgrade and Connection: upgrade.
        #expect(echo.handshakes.count == 1, "\(echo.logText)")
        let handshake = try #require(echo.handshakes.first)
        #expect(handshake.hasPrefix("HANDSHAKE /chat?room=1 upgrade=websocket "), "\(handshake)")
        let connection = handshake.components(separatedBy: "connection=").last?.components(separatedBy: " ").first ?? ""
        #expect(connection.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.contains("upgrade"),
                "\(handshake)")
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
        #expect(Self.metric(proxy, "breakwater_tunnels_total{route=\"default\"}") == 1)
    }

    @Test func tenMegabyteMessagesBothWays() throws {
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let size = 10_000_000
        let result = try PythonWebSockets.runClient("big", "ws://127.0.0.1:\(proxy.port)/big", ["\(size)"], timeout: 120)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("BIG \(size) bytes both ways"))
        // Two messages of 10 MB each way, plus the frames' few bytes of overhead.
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
        for direction in ["to_upstream", "to_client"] {
            let bytes = Self.metric(proxy, "breakwater_tunnel_bytes_total{direction=\"\(direction)\"}") ?? 0
            #expect(bytes >= Double(2 * size) && bytes < Double(2 * size + 65_536), "\(direction): \(bytes)")
        }
    }

    /// 1,000 tunnels open at once: every one echoes while all are held, the gauge shows them all,
    /// and every one closes. Each process needs a descriptor per connection (Breakwater two per
    /// tunnel), so the soft limit is raised to the hard one; on a host whose hard limit is too low
    /// the test is skipped, saying so.
    @Test(.enabled(if: raiseOpenFileLimit(to: 8192) >= 4096,
                   "needs an open-file limit of 4096 (1,000 tunnels: 2,000 descriptors in Breakwater, 1,000 in each peer); the hard RLIMIT_NOFILE of this host is lower"))
    func aThousandConcurrentTunnels() throws {
        let count = 1000
        let started = Date()
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        // Defaults throughout: a tunnel's upstream connection leaves the pool, so max_connections
        // (512 per worker) does not cap tunnels.
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let dir = try Binary.tempDirectory()
        let release = dir.appendingPathComponent("release")
        let log = dir.appendingPathComponent("client.log")
        let client = try PythonWebSockets.startClient("many", "ws://127.0.0.1:\(proxy.port)/many", ["\(count)", release.path], log: log)
        defer { if client.isRunning { client.terminate() } }
        func output() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        #expect(eventually(90) { output().contains("OPEN \(count)") || !client.isRunning }, "\(output())")
        #expect(output().contains("OPEN \(count)"), "\(output())")
        #expect(Self.activeTunnels(proxy) == Double(count))
        #expect(Self.metric(proxy, "breakwater_tunnels_total{route=\"default\"}") == Double(count))
        #expect(proxy.openFDs() >= 2 * count)
        #expect(echo.handshakes.count == count)

        _ = FileManager.default.createFile(atPath: release.path, contents: Data())
        #expect(eventually(90) { !client.isRunning })
        client.waitUntilExit()
        #expect(client.terminationStatus == 0, "\(output())")
        #expect(output().contains("CLOSED \(count)"), "\(output())")
        #expect(eventually(10) { Self.activeTunnels(proxy) == 0 })
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 150, "took \(elapsed) s")
    }

    @Test func pingsAndPongsCross() throws {
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let result = try PythonWebSockets.runClient("ping", "ws://127.0.0.1:\(proxy.port)/ping")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        for line in ["PONG 0 ", "PONG 6 ", "PONG 125 ", "KEEPALIVE ok"] { #expect(result.stdout.contains(line), "\(line)") }
    }

    @Test func closeHandshakesCrossBothWays() throws {
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let result = try PythonWebSockets.runClient("close", "ws://127.0.0.1:\(proxy.port)/close")
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        // The client's close came back from the server; the server's close reached the client.
        #expect(result.stdout.contains("CLIENT CLOSE 1000 done"), "\(result.stdout)")
        #expect(result.stdout.contains("SERVER CLOSE 4001 bye"), "\(result.stdout)")
        #expect(eventually(5) { echo.logText.contains("CLOSED 1000 done") && echo.logText.contains("CLOSED 4001 bye") },
                "\(echo.logText)")
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
    }

    /// The storm the shield exists for, with WebSockets: a client reconnecting in a loop with an
    /// expired token. Its 401 is relayed; its next attempts get 429 with Retry-After without
    /// reaching the upstream; once per window one probe goes through. A 101 is a success that
    /// clears the client.
    @Test func anExpiredTokenReconnectLoopIsShielded() throws {
        let echo = try WebSocketEchoServer(rejectPrefix: "expired")
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port],
                                     rest: Self.route("ws", "/ws/", "key = [\"ip\"]\nbackoff = { base = \"3s\", max = \"3s\", jitter = 0.0 }"))
        let url = "ws://127.0.0.1:\(proxy.port)/ws/feed"
        let expired = [("Authorization", "Bearer expired-1")]

        let first = try PythonWebSockets.runClient("status", url, ["expired-1"])
        #expect(first.stdout.contains("STATUS 401 "), "\(first.stdout)\(first.stderr)")
        for _ in 0..<5 {
            let (_, response) = try openTunnel(port: proxy.port, "/ws/feed", headers: expired)
            #expect(response.status == 429)
            #expect(response.header("Retry-After").flatMap { Int($0) }.map { (1...3).contains($0) } == true)
        }
        #expect(echo.handshakes.count == 1, "\(echo.logText)")

        // After the window one probe reaches the upstream, fails, and the client is blocked again.
        usleep(3_200_000)
        #expect(try openTunnel(port: proxy.port, "/ws/feed", headers: expired).response.status == 401)
        #expect(try openTunnel(port: proxy.port, "/ws/feed", headers: expired).response.status == 429)
        #expect(echo.handshakes.count == 2, "\(echo.logText)")

        // After the next window the client comes back with a good token: the 101 clears it, so its
        // next failure reaches the upstream again instead of being answered with 429.
        usleep(3_200_000)
        let (socket, switched) = try openTunnel(port: proxy.port, "/ws/feed", headers: [("Authorization", "Bearer valid-1")])
        #expect(switched.status == 101)
        socket.shutdownWrite()
        #expect(try openTunnel(port: proxy.port, "/ws/feed", headers: expired).response.status == 401)
        #expect(echo.handshakes.count == 4, "\(echo.logText)")
        #expect(Self.metric(proxy, "breakwater_requests_total{route=\"ws\",outcome=\"shielded\",protocol=\"http1\"}") ?? 0 >= 6)
    }

    /// An upstream that dies mid-tunnel (the process killed) closes the client's connection.
    @Test func anUpstreamKilledMidTunnelClosesTheClient() throws {
        let echo = try WebSocketEchoServer()
        defer { echo.kill() }
        let proxy = try ProxyProcess(upstreams: [echo.port])
        let dir = try Binary.tempDirectory()
        let log = dir.appendingPathComponent("client.log")
        let client = try PythonWebSockets.startClient("hold", "ws://127.0.0.1:\(proxy.port)/hold", log: log)
        defer { if client.isRunning { client.terminate() } }
        func output() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(eventually(20) { output().contains("READY") || !client.isRunning }, "\(output())")
        #expect(Self.activeTunnels(proxy) == 1)
        echo.kill()
        #expect(eventually(10) { !client.isRunning }, "\(output())")
        client.waitUntilExit()
        #expect(client.terminationStatus == 0, "\(output())")
        #expect(output().contains("CLOSED "), "\(output())")
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
    }

    // MARK: raw tunnels

    /// Any token a route allows makes a tunnel, not only WebSocket: raw bytes both ways, and a
    /// half-close carried across (the client's end of writing reaches the upstream, which can still
    /// answer before closing its own side).
    @Test func aRawUpgradeToAnotherTokenIsATunnel() throws {
        let upstream = try TunnelUpstream(.echo(token: "foo"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], rest: Self.route("raw", "/raw/", "upgrades = [\"foo\"]"))
        let (socket, response) = try openTunnel(port: proxy.port, "/raw/x", token: "Foo")
        #expect(response.status == 101)
        #expect(response.header("Upgrade")?.lowercased() == "foo")
        #expect(response.header("Connection")?.lowercased().contains("upgrade") == true)
        let head = try #require(upstream.heads.first)
        #expect(head.startLine == "GET /raw/x HTTP/1.1")
        #expect(head.header("Upgrade")?.lowercased() == "foo")
        #expect(head.header("Connection")?.lowercased().contains("upgrade") == true)

        let payload = Self.random(300_000)
        for start in stride(from: 0, to: payload.count, by: 30_000) {
            let piece = Array(payload[start..<min(start + 30_000, payload.count)])
            #expect(try socket.echo(piece) == piece)
        }
        #expect(Self.activeTunnels(proxy) == 1)
        socket.shutdownWrite()
        #expect(try socket.readToEnd() == Array("EOF-SEEN".utf8))
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
        #expect(Self.metric(proxy, "breakwater_tunnels_total{route=\"raw\"}") == 1)
        #expect(Self.metric(proxy, "breakwater_tunnel_bytes_total{direction=\"to_upstream\"}") == 300_000)
        #expect(Self.metric(proxy, "breakwater_tunnel_bytes_total{direction=\"to_client\"}") == 300_008)
    }

    /// A tunnel through the TLS listener: the client's side is read and written through OpenSSL
    /// (its buffers), the upstream's plain side straight through the relay buffer; bytes cross
    /// both ways, small and 200 KB at once.
    @Test func aTunnelThroughTheTlsListener() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TunnelUpstream(.echo(token: "foo"))
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]), workers: 1,
                                   server: "upgrades = [\"foo\"]")
        let client = try InteractiveTool("openssl", ["s_client", "-connect", "127.0.0.1:\(proxy.tlsPort)", "-servername", "localhost",
                                                     "-quiet", "-nocommands"])
        defer { client.stop() }
        client.send("GET /tls-tunnel HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
        #expect(client.waitFor("HTTP/1.1 101"), "\(client.text)")
        for i in 1...3 {
            client.send("through-tls-\(i)\n")
            #expect(client.waitFor("through-tls-\(i)\n"), "\(client.text.suffix(500))")
        }
        let big = (0..<100_000).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        client.send(big + "\n")
        #expect(client.waitFor(big, seconds: 20), "\(client.text.count) characters back")
        #expect(upstream.heads.first?.startLine == "GET /tls-tunnel HTTP/1.1")
    }

    /// A client that stops reading while the upstream streams: Breakwater stops reading the
    /// upstream once its buffer for that direction is full (about 1 MiB), so the upstream is held
    /// back by TCP and Breakwater's memory stays flat. Reading again gets every byte, in order.
    @Test func aClientThatStopsReadingDoesNotGrowMemory() throws {
        let upstream = try TunnelUpstream(.stream(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        let baseline = proxy.residentBytes()
        let socket = try TestSocket(port: proxy.port, timeout: 20)
        var small: Int32 = 65_536
        setsockopt(socket.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        try socket.send(upgradeRequest("/stream"))
        let response = try #require(try socket.readMessage())
        #expect(response.status == 101)

        var offset = 0
        func readAndCheck(_ count: Int) throws -> Bool {
            var left = count
            while left > 0 {
                let n = min(left, 262_144)
                guard let bytes = try socket.read(count: n) else { return false }
                for (i, byte) in bytes.enumerated() where byte != TunnelUpstream.patternByte(offset + i) {
                    Issue.record("byte \(offset + i) is \(byte), not \(TunnelUpstream.patternByte(offset + i))")
                    return false
                }
                offset += n
                left -= n
            }
            return true
        }
        #expect(try readAndCheck(1 << 20))

        // Stop reading; wait for the upstream to be held back. Past 128 MiB it plainly is not, and
        // the test stops before a proxy without backpressure eats the machine's memory.
        var last = upstream.streamed
        var stillSince = Date()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && Date().timeIntervalSince(stillSince) < 2 && last < 128 << 20 {
            usleep(250_000)
            let now = upstream.streamed
            if now != last {
                last = now
                stillSince = Date()
            }
        }
        let stalled = upstream.streamed
        #expect(Date().timeIntervalSince(stillSince) >= 2, "the upstream was never held back: \(stalled) bytes sent")
        // What the kernel holds (socket buffers on both connections, a few MB each on loopback)
        // plus Breakwater's ~1 MiB; without backpressure this would be gigabytes by now.
        let grown = proxy.residentBytes() - baseline
        #expect(grown < 32 << 20, "RSS grew by \(grown) bytes (from \(baseline))")
        try #require(stalled < 64 << 20, "the upstream sent \(stalled) bytes to a client that read \(offset)")
        usleep(1_000_000)
        #expect(upstream.streamed - stalled < 1 << 20)
        #expect(proxy.residentBytes() - baseline < 32 << 20)

        // Reading again: everything the upstream sent arrives, in order.
        #expect(try readAndCheck(stalled - offset))
        #expect(Self.activeTunnels(proxy) == 1)
    }

    /// An upstream that resets the connection mid-tunnel: the client's connection is closed.
    @Test func anUpstreamResetMidTunnelClosesTheClient() throws {
        let upstream = try TunnelUpstream(.echoOnceThenReset(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        let (socket, response) = try openTunnel(port: proxy.port, "/reset")
        #expect(response.status == 101)
        #expect(try socket.echo(Array("ping".utf8)) == Array("ping".utf8))
        #expect(socket.ends(within: 5))
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
    }

    /// A tunnel with traffic stays open past `tunnel_idle_timeout`; one with no byte either way for
    /// that long is closed.
    @Test func anIdleTunnelIsClosedAfterItsTimeout() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "tunnel_idle_timeout = \"1s\"")
        let (socket, response) = try openTunnel(port: proxy.port, "/idle")
        #expect(response.status == 101)
        for i in 0..<8 {
            #expect(try socket.echo(Array("tick \(i)".utf8)) == Array("tick \(i)".utf8))
            usleep(300_000)
        }
        let quiet = Date()
        #expect(socket.ends(within: 5))
        let after = Date().timeIntervalSince(quiet)
        #expect(after > 0.6 && after < 4, "closed \(after) s after the last byte")
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
    }

    /// A quiet tunnel outlives the HTTP timeouts: `idle_timeout`, `header_timeout` and the
    /// upstream's `timeout` are for requests, not for tunnels.
    @Test func theRequestTimeoutsDoNotCutATunnel() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "idle_timeout = \"1s\"\nheader_timeout = \"1s\"",
                                     upstream: "timeout = \"1s\"")
        let (socket, response) = try openTunnel(port: proxy.port, "/quiet")
        #expect(response.status == 101)
        usleep(2_500_000)
        #expect(try socket.echo(Array("still here".utf8)) == Array("still here".utf8))
    }

    /// SIGHUP reloads for new requests and leaves open tunnels alone: here the reload even stops
    /// allowing upgrades, which new handshakes see while the open tunnel goes on.
    @Test func sighupKeepsOpenTunnels() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        let (socket, response) = try openTunnel(port: proxy.port, "/kept")
        #expect(response.status == 101)
        #expect(try socket.echo(Array("before".utf8)) == Array("before".utf8))

        try proxy.rewrite(server: "upgrades = []", upstreams: [upstream.port])
        proxy.signal(SIGHUP)
        #expect(eventually(5) { proxy.logText.contains("reloaded") }, "\(proxy.logText)")
        #expect(try socket.echo(Array("after".utf8)) == Array("after".utf8))
        #expect(try openTunnel(port: proxy.port, "/new").response.status == 400)
        #expect(try socket.echo(Array("still".utf8)) == Array("still".utf8))
        #expect(Self.activeTunnels(proxy) == 1)
    }

    /// SIGTERM: an open tunnel keeps working during `grace_period`, then is closed, and the
    /// process exits 0.
    @Test func sigtermGivesTunnelsTheGracePeriodThenClosesThem() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "grace_period = \"2s\"")
        let (socket, response) = try openTunnel(port: proxy.port, "/draining")
        #expect(response.status == 101)
        let stopping = Date()
        proxy.signal(SIGTERM)
        usleep(300_000)
        #expect(try socket.echo(Array("during grace".utf8)) == Array("during grace".utf8))
        #expect(socket.ends(within: 10))
        let after = Date().timeIntervalSince(stopping)
        #expect(after > 1.5 && after < 6, "closed \(after) s after SIGTERM")
        #expect(proxy.waitForExit(10) == 0)
    }

    // MARK: what is not a tunnel

    /// h2c is not spoken: the request is served as HTTP/1.1, its Upgrade (and HTTP2-Settings,
    /// which its Connection lists) left on their hop.
    @Test func anH2cUpgradeIsServedAsPlainHTTP() throws {
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        let response = try request(port: proxy.port, "GET", "/h2c", headers: [
            ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ])
        #expect(response.status == 200)
        #expect(response.bodyText == "hello")
        #expect(response.header("Upgrade") == nil)
        let seen = try #require(upstream.requests.first)
        #expect(seen.header("Upgrade") == nil)
        #expect(seen.header("HTTP2-Settings") == nil)
        #expect(Self.metric(proxy, "breakwater_tunnels_total{route=\"default\"}") ?? 0 == 0)
    }

    @Test func connectStaysRefused() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port])
        for extra in ["", "Connection: Upgrade\r\nUpgrade: websocket\r\n"] {
            let socket = try TestSocket(port: proxy.port)
            try socket.send("CONNECT 127.0.0.1:\(upstream.port) HTTP/1.1\r\nHost: 127.0.0.1:\(upstream.port)\r\n\(extra)\r\n")
            #expect(try socket.readMessage()?.status == 400)
        }
        #expect(upstream.heads.isEmpty)
    }

    /// `upgrades = []`, in [server] or on a route, refuses upgrade requests with 400 before they
    /// reach the upstream; other routes keep the server's list.
    @Test func anEmptyUpgradesListRefusesWith400() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let none = try ProxyProcess(upstreams: [upstream.port], server: "upgrades = []")
        #expect(try openTunnel(port: none.port, "/ws").response.status == 400)
        #expect(upstream.heads.isEmpty)

        let perRoute = try ProxyProcess(upstreams: [upstream.port], rest: Self.route("off", "/off/", "upgrades = []"))
        #expect(try openTunnel(port: perRoute.port, "/off/ws").response.status == 400)
        #expect(upstream.heads.isEmpty)
        let (socket, response) = try openTunnel(port: perRoute.port, "/on/ws")
        #expect(response.status == 101)
        #expect(try socket.echo(Array("on".utf8)) == Array("on".utf8))
        #expect(upstream.heads.map(\.startLine) == ["GET /on/ws HTTP/1.1"])
    }

    /// A token the route does not list is refused like an empty list's.
    @Test func aTokenTheRouteDoesNotAllowIsRefused() throws {
        let upstream = try TunnelUpstream(.echo(token: "foo"))
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], rest: Self.route("raw", "/raw/", "upgrades = [\"foo\"]"))
        #expect(try openTunnel(port: proxy.port, "/other", token: "foo").response.status == 400)
        #expect(try openTunnel(port: proxy.port, "/raw/x", token: "websocket").response.status == 400)
        #expect(upstream.heads.isEmpty)
    }

    // MARK: metrics and the access log

    @Test func tunnelMetricsAndTheAccessLogLineWrittenAtClose() throws {
        let upstream = try TunnelUpstream(.echo(token: "websocket"))
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        let accessLog = dir.appendingPathComponent("access.log")
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "access_log = \"\(accessLog.path)\"",
                                     rest: Self.route("ws", "/ws/"))
        let (socket, response) = try openTunnel(port: proxy.port, "/ws/metrics")
        #expect(response.status == 101)
        let payload = Self.random(1000)
        #expect(try socket.echo(payload) == payload)

        let text = try metricsText(adminPort: proxy.adminPort)
        for line in ["# TYPE breakwater_tunnels_active gauge", "# TYPE breakwater_tunnels_total counter",
                     "# TYPE breakwater_tunnel_bytes_total counter"] {
            #expect(text.contains(line), "\(line)")
        }
        #expect(metricValue(text, "breakwater_tunnels_active") == 1)
        #expect(metricValue(text, "breakwater_tunnels_total{route=\"ws\"}") == 1)
        #expect(metricValue(text, "breakwater_tunnel_bytes_total{direction=\"to_upstream\"}") != nil)
        #expect(metricValue(text, "breakwater_tunnel_bytes_total{direction=\"to_client\"}") != nil)
        if let promtool = try? Tool.path("promtool") {
            let check = try Tool.run(promtool, ["check", "metrics"], stdin: Array(text.utf8))
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        }

        // No line while the tunnel is open (lines are flushed within a second).
        usleep(1_500_000)
        let open = (try? String(contentsOf: accessLog, encoding: .utf8)) ?? ""
        #expect(!open.contains("/ws/"), "\(open)")

        socket.shutdownWrite()
        #expect(try socket.readToEnd() == Array("EOF-SEEN".utf8))
        #expect(eventually(5) { Self.activeTunnels(proxy) == 0 })
        #expect(Self.metric(proxy, "breakwater_tunnel_bytes_total{direction=\"to_upstream\"}") == 1000)
        #expect(Self.metric(proxy, "breakwater_tunnel_bytes_total{direction=\"to_client\"}") == 1008)
        var line = ""
        #expect(eventually(5) {
            line = ((try? String(contentsOf: accessLog, encoding: .utf8)) ?? "").split(separator: "\n")
                .first { $0.contains("\"GET /ws/metrics\"") }.map(String.init) ?? ""
            return !line.isEmpty
        })
        #expect(line.contains(" 101 "), "\(line)")
        #expect(line.contains("route=ws"), "\(line)")
        // Its bytes: both directions' total, or each of them.
        #expect(line.contains("2008") || (line.contains("1000") && line.contains("1008")), "\(line)")
    }
}
