import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The attacks on HTTP/2 servers, each sent with frames written by hand (`PythonH2`): every one
/// ends in the answer named here, and a normal request is served afterwards.
@Suite struct HTTP2HostileTests {
    private static func served(_ port: UInt16, tls: Bool = false) throws -> Bool {
        try PythonH2.run("get", port: port, ["/healthz"], tls: tls).stdout.contains("STATUS 200")
    }

    private static func proxy(_ server: String = "") throws -> (TLSHarness, TestUpstream) {
        let upstream = try TestUpstream { request, socket in
            if request.target == "/slow" { usleep(200_000) }
            try TestUpstream.respond(socket, status: 200, body: Array("ok".utf8))
            return true
        }
        return (try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true\n" + server), upstream)
    }

    /// CVE-2023-44487: streams opened and reset at once, far faster than they are answered.
    @Test func rapidResetIsClosedWithGoaway() throws {
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        let result = try PythonH2.run("rapid-reset", port: proxy.port, ["1000"])
        #expect(result.stdout.contains("GOAWAY"), "\(result.stdout)\(result.stderr)")
        // Fewer than the 1,000 requests reached the upstream: the connection was cut short.
        #expect(upstream.requestCount < 1000)
        #expect(try Self.served(proxy.port))
    }

    /// CVE-2024-28182: CONTINUATION frames that never end a header block.
    @Test func continuationFloodIsClosedWithGoaway() throws {
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        let result = try PythonH2.run("continuation", port: proxy.port)
        #expect(result.stdout.contains("GOAWAY") || result.stdout.contains("CLOSED"), "\(result.stdout)\(result.stderr)")
        #expect(upstream.requestCount == 0)
        #expect(try Self.served(proxy.port))
    }

    /// One field in the HPACK dynamic table named 4,000 times: the header list it decodes to is
    /// held to max_header_bytes (431), and the connection goes on.
    @Test func hpackBombGets431() throws {
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        let result = try PythonH2.run("hpack-bomb", port: proxy.port, ["/after"])
        #expect(result.stdout.contains("BOMB 431"), "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("AFTER 200"), "\(result.stdout)")
        #expect(upstream.requests.map(\.target) == ["/after"])
    }

    @Test(arguments: ["settings-flood", "ping-flood"])
    func acknowledgementFloodsAreClosedWithGoaway(mode: String) throws {
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        // 400,000 frames that each ask for an acknowledgement, never read: the acknowledgements
        // queue up until nghttp2 calls it a flood (ENHANCE_YOUR_CALM, 11).
        let result = try PythonH2.run(mode, port: proxy.port, ["400000"])
        #expect(result.stdout.contains("GOAWAY 11") || result.stdout.contains("CLOSED"), "\(result.stdout)\(result.stderr)")
        #expect(try Self.served(proxy.port))
    }

    @Test func aSettingsFrameWithTooManyEntriesIsClosedWithGoaway() throws {
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        let result = try PythonH2.run("big-settings", port: proxy.port)
        #expect(result.stdout.contains("GOAWAY 11"), "\(result.stdout)\(result.stderr)")
        #expect(try Self.served(proxy.port))
    }

    @Test func anInvalidPrefaceIsRefused() throws {
        // On the plain listener a preface that goes wrong is not HTTP/2: an HTTP/1.1 400.
        let (proxy, upstream) = try Self.proxy()
        defer { upstream.stop() }
        let plain = try PythonH2.run("bad-preface", port: proxy.port)
        #expect(plain.stdout.contains("HTTP1 HTTP/1.1 400") && plain.stdout.contains("CLOSED"), "\(plain.stdout)\(plain.stderr)")
        // After ALPN chose h2, anything but the preface is a connection error: GOAWAY PROTOCOL_ERROR.
        let certs = try TestCertificates.shared()
        let tls = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]) + "\nalpn = [\"h2\"]")
        let secure = try PythonH2.run("bad-preface", port: tls.tlsPort, tls: true)
        #expect(secure.stdout.contains("ALPN h2") && secure.stdout.contains("GOAWAY 1"), "\(secure.stdout)\(secure.stderr)")
        #expect(upstream.requestCount == 0)
        #expect(try Self.served(tls.tlsPort, tls: true))
    }

    /// `h2_max_streams` is advertised, streams up to it are served, one past it ends the connection
    /// (nghttp2 makes the breach of an acknowledged limit a connection error, PROTOCOL_ERROR).
    @Test func maxConcurrentStreams() throws {
        let (proxy, upstream) = try Self.proxy("h2_max_streams = 4\nmax_header_bytes = \"8KB\"")
        defer { upstream.stop() }
        let result = try PythonH2.run("max-streams", port: proxy.port, ["4"])
        #expect(result.stdout.contains("MAX_CONCURRENT_STREAMS 4"), "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("MAX_HEADER_LIST_SIZE 8192"), "\(result.stdout)")
        #expect(result.stdout.contains("WITHIN OK"), "\(result.stdout)")
        #expect(result.stdout.contains("GOAWAY 1"), "\(result.stdout)")
        #expect(try Self.served(proxy.port))
    }

    /// A client that opens 100 streams for 4 MiB responses and never opens its flow-control
    /// window: the upstreams are paused, Breakwater's memory stays bounded, others are served.
    @Test func aStalledReaderWithManyStreamsHoldsBoundedMemory() throws {
        let size = 4 << 20
        let upstream = try TestUpstream { _, socket in
            try TestUpstream.respond(socket, status: 200, body: [UInt8](repeating: 0x61, count: size))
            return true
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "h2c = true", upstream: "timeout = \"60s\"")
        let before = proxy.residentBytes()
        let log = try Binary.tempDirectory().appendingPathComponent("stall.log")
        let client = try PythonH2.start("stall", port: proxy.port, ["100", "/big", "8", "20"], log: log)
        defer { if client.isRunning { client.terminate() } }
        func output() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(eventually(30) { output().contains("HOLDING") }, "\(output())")
        // 100 responses of 4 MiB are 400 MiB; what was let through is the client's window.
        let grown = proxy.residentBytes() - before
        #expect(grown < 64 << 20, "RSS grew by \(grown) bytes")
        #expect(output().contains("HEADERS 100"), "\(output())")
        // Others are served meanwhile, over HTTP/2 and HTTP/1.1.
        #expect(try Self.served(proxy.port))
        #expect(try request(port: proxy.port, "GET", "/h1").status == 200)
    }

    /// A stream the client resets cancels its upstream request (the upstream connection is
    /// closed, as when an HTTP/1.1 client goes away); the connection itself goes on.
    @Test func aResetStreamCancelsItsUpstreamRequest() throws {
        let closed = Mutex(false)
        let upstream = try TestUpstream { _, socket in
            let gone = socket.isClosedByPeer()
            closed.withLock { $0 = gone }
            return false
        }
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: nil, server: "h2c = true", upstream: "timeout = \"30s\"")
        let log = try Binary.tempDirectory().appendingPathComponent("cancel.log")
        let client = try PythonH2.start("cancel", port: proxy.port, ["/hold", "5"], log: log)
        defer { if client.isRunning { client.terminate() } }
        func output() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(eventually(10) { closed.withLock { $0 } }, "\(output())")
        #expect(output().contains("RESET SENT"))
        #expect(!output().contains("GOAWAY") && !output().contains("CLOSED"), "\(output())")
        #expect(eventually(5) { metricValue((try? proxy.metrics()) ?? "", "breakwater_h2_streams_active") == 0 })
        #expect(metricValue(try proxy.metrics(), "breakwater_h2_connections_active") == 1)
    }

    /// A body refused once past max_body_bytes is read and dropped until the client ends it, so an
    /// uploading client reads its 413 instead of a reset upload; a client that goes on without
    /// ending the stream is reset (NO_ERROR) about a second after the answer.
    @Test func aRefusedUploadIsReadToItsEndThenTheStreamEndsCleanly() throws {
        let (proxy, upstream) = try Self.proxy("max_body_bytes = \"16KB\"")
        defer { upstream.stop() }
        let finished = try PythonH2.run("refused-upload", port: proxy.port, ["/upload", "60000", "finish"])
        #expect(finished.stdout.contains("STATUS 413"), "\(finished.stdout)\(finished.stderr)")
        #expect(finished.stdout.contains("ENDED") && !finished.stdout.contains("RST"), "\(finished.stdout)")
        let stopped = try PythonH2.run("refused-upload", port: proxy.port, ["/upload", "60000", "stop"])
        #expect(stopped.stdout.contains("STATUS 413"), "\(stopped.stdout)\(stopped.stderr)")
        #expect(stopped.stdout.contains("RST 0 AFTER"), "\(stopped.stdout)")
        let after = stopped.stdout.components(separatedBy: "AFTER ").last.flatMap { Double($0.prefix { $0 != "\n" }) }
        #expect(after.map { $0 >= 0.9 && $0 < 3.5 } == true, "\(stopped.stdout)")
        #expect(upstream.requestCount == 0)
        #expect(try Self.served(proxy.port))
    }

    /// Slowloris over HTTP/2: the deadlines of an HTTP/1.1 request hold per stream.
    @Test func aSlowBodyGets408AndAnUnfinishedHeaderBlockEndsTheConnection() throws {
        let (proxy, upstream) = try Self.proxy("header_timeout = \"1s\"")
        defer { upstream.stop() }
        let body = try PythonH2.run("slow-body", port: proxy.port, ["/upload"])
        #expect(body.stdout.contains("STATUS 408"), "\(body.stdout)\(body.stderr)")
        let bodyAfter = body.stdout.components(separatedBy: "AFTER ").last.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(bodyAfter.map { $0 >= 0.9 && $0 < 5 } == true, "\(body.stdout)")
        let headers = try PythonH2.run("slow-headers", port: proxy.port)
        #expect(headers.stdout.contains("GOAWAY 11"), "\(headers.stdout)\(headers.stderr)")
        #expect(upstream.requestCount == 0)
        #expect(try Self.served(proxy.port))
    }

    @Test func anIdleConnectionIsClosedWithGoawayAfterIdleTimeout() throws {
        let (proxy, upstream) = try Self.proxy("idle_timeout = \"1s\"")
        defer { upstream.stop() }
        let result = try PythonH2.run("idle", port: proxy.port)
        #expect(result.stdout.contains("GOAWAY 0") && result.stdout.contains("CLOSED"), "\(result.stdout)\(result.stderr)")
        let after = result.stdout.components(separatedBy: "AFTER ").last.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(after.map { $0 >= 0.9 && $0 < 4 } == true, "\(result.stdout)")
    }

    /// SIGTERM with a stream in flight: GOAWAY (NO_ERROR) at once, the stream's response after it.
    @Test func gracefulStopSendsGoawayAndDrains() throws {
        let upstream = try TestUpstream { _, socket in
            usleep(1_000_000)
            try TestUpstream.respond(socket, status: 200, body: Array("done".utf8))
            return true
        }
        defer { upstream.stop() }
        let proxy = try ProxyProcess(upstreams: [upstream.port], server: "h2c = true\ngrace_period = \"10s\"")
        let log = try Binary.tempDirectory().appendingPathComponent("drain.log")
        let client = try PythonH2.start("drain", port: proxy.port, ["/slow"], log: log)
        defer { if client.isRunning { client.terminate() } }
        func output() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(eventually(10) { upstream.requestCount == 1 })
        proxy.signal(SIGTERM)
        #expect(eventually(15) { output().contains("STATUS") }, "\(output())")
        #expect(output().contains("GOAWAY 0 1"), "\(output())")
        #expect(output().contains("STATUS 200 BODY done"), "\(output())")
        #expect(proxy.waitForExit(15) == 0)
    }
}
