import BreakwaterCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An in-process proxy in front of a recording upstream, for tests that throw bad input at it and
/// then check two things: what the client got back, and that the proxy still serves.
final class HostileTarget: @unchecked Sendable {
    let upstream: TestUpstream
    let proxy: Harness
    var port: UInt16 { proxy.port }

    init(configure: (inout Config) -> Void = { _ in }, handler: @escaping TestUpstream.Handler = TestUpstream.echo) throws {
        upstream = try TestUpstream(handler: handler)
        proxy = try Harness(upstreamPorts: [upstream.port], configure: configure)
    }

    deinit { upstream.stop() }

    /// Sends `raw` on a fresh connection and reads one response (nil if the proxy closed first).
    func answer(_ raw: [UInt8], timeout: Double = 10) throws -> TestMessage? {
        let socket = try TestSocket(port: port, timeout: timeout)
        try? socket.send(raw)
        return try socket.readMessage()
    }

    func answer(_ raw: String, timeout: Double = 10) throws -> TestMessage? {
        try answer(Array(raw.utf8), timeout: timeout)
    }

    /// A well-formed request on a fresh connection still gets the upstream's answer.
    func stillServes() -> Bool {
        (try? request(port: port, "GET", "/still-serving").status) == 200
    }

    /// The requests that reached the upstream for `target`.
    func received(_ target: String) -> [TestMessage] {
        upstream.requests.filter { $0.target == target }
    }

    /// One counter of the proxy's /metrics text, 0 when absent.
    func metric(_ series: String) throws -> Double {
        let text = try request(port: proxy.server.adminPort, "GET", "/metrics").bodyText
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? 0
        }
        return 0
    }
}

extension TestSocket {
    /// Whether bytes (or EOF) are ready to read within `seconds`.
    func waitReadable(_ seconds: Double) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, Int32(seconds * 1000)) > 0
    }

    /// Every byte until the peer closes, resets, or the receive timeout passes, without throwing:
    /// a reset after a response must not hide the response. Bypasses the read buffer, so use it
    /// on a socket nothing was read from yet.
    func drain() -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return out }
            out += chunk[0..<n]
        }
    }

    /// Whether the peer closed the connection, by FIN or by RST (a server that closes with
    /// unread input resets), within the receive timeout. False if bytes arrive instead.
    func isClosedOrReset() -> Bool {
        do { return try !fill() } catch { return "\(error)".contains("errno \(ECONNRESET)") }
    }

    /// Connects to 127.0.0.1:port from the loopback address `source` (any 127.x.y.z works on
    /// Linux), so one test can play several clients with different peer addresses.
    static func from(_ source: String, port: UInt16, timeout: Double = 10) throws -> TestSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket") }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &local.sin_addr)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        let connected = bound == 0
            && withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } } == 0
        guard connected else {
            let code = errno
            close(fd)
            throw Failure(description: "connect from \(source) to port \(port): errno \(code)")
        }
        let socket = TestSocket(fd: fd, timeout: timeout)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return socket
    }
}

/// One request from the loopback address `source` on a fresh connection.
func request(from source: String, port: UInt16, _ target: String, method: String = "GET",
             headers: [(String, String)] = []) throws -> TestMessage {
    let socket = try TestSocket.from(source, port: port)
    try socket.send(rawRequest(method, target, headers: headers))
    guard let response = try socket.readMessage(headRequest: method == "HEAD") else {
        throw TestSocket.Failure(description: "connection closed without a response")
    }
    return response
}

/// Raises this process's soft limit on open files to `wanted` (at most the hard limit); returns the
/// soft limit now in force. Tests that hold thousands of sockets need it on hosts with a 1024 default.
@discardableResult
func raiseOpenFileLimit(to wanted: Int) -> Int {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    if limit.rlim_cur < rlim_t(wanted) {
        limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return Int(limit.rlim_cur)
}

/// Runs `body(i)` for every i in 0..<count, each on a thread of its own (blocking sockets need
/// real threads, not a pool sized to the cores), and returns when all have finished.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.stackSize = 512 << 10
        thread.start()
    }
    group.wait()
}
