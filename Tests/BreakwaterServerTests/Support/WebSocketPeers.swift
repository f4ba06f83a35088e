import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Real WebSocket peers for the tunnel tests: an echo server and a client written with the Python
/// `websockets` package (scripts/install-deps.sh test installs it), run as processes of their own.
enum PythonWebSockets {
    /// The echo server. It prints one line per handshake (`HANDSHAKE path upgrade=... connection=...
    /// authorization=...`) and one per closed connection (`CLOSED code reason`). A handshake whose
    /// Authorization is `Bearer <reject-prefix>...` is answered 401, as an API answers an expired
    /// token. The message "close-me" makes it close with code 4001, reason "bye".
    static let server = #"""
        import argparse, asyncio, os
        from websockets.asyncio.server import serve

        parser = argparse.ArgumentParser()
        parser.add_argument("--port-file", required=True)
        parser.add_argument("--reject-prefix", default=None)
        args = parser.parse_args()

        def log(*parts):
            print(*parts, flush=True)

        def process_request(connection, request):
            h = request.headers
            auth = h.get("Authorization", "")
            log("HANDSHAKE", request.path, "upgrade=" + h.get("Upgrade", ""), "connection=" + h.get("Connection", ""),
                "authorization=" + auth)
            if args.reject_prefix and auth.startswith("Bearer " + args.reject_prefix):
                response = connection.respond(401, "invalid or expired token\n")
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response
            return None

        async def handler(ws):
            try:
                async for message in ws:
                    if message == "close-me":
                        await ws.close(4001, "bye")
                        break
                    await ws.send(message)
            finally:
                log("CLOSED", ws.close_code, ws.close_reason)

        async def main():
            async with serve(handler, "127.0.0.1", 0, process_request=process_request, max_size=None, compression=None,
                             ping_interval=None, backlog=2048) as server:
                port = server.sockets[0].getsockname()[1]
                with open(args.port_file + ".tmp", "w") as f:
                    f.write(str(port))
                os.rename(args.port_file + ".tmp", args.port_file)
                await asyncio.get_running_loop().create_future()

        asyncio.run(main())
        """#

    /// The client: `client.py MODE URL [ARGS]`. Each mode prints what it saw and `OK` last, or
    /// fails with a traceback and a non-zero exit.
    static let client = #"""
        import asyncio, os, sys, time
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        mode, url, rest = sys.argv[1], sys.argv[2], sys.argv[3:]

        def log(*parts):
            print(*parts, flush=True)

        def dial(**kw):
            options = dict(max_size=None, compression=None, proxy=None, open_timeout=20, ping_interval=None, close_timeout=5)
            options.update(kw)
            return connect(url, **options)

        async def echo():
            async with dial() as ws:
                for text in ["hello", "héllo wörld ✓", "x" * 70000]:
                    await ws.send(text)
                    back = await asyncio.wait_for(ws.recv(), 10)
                    assert back == text and isinstance(back, str), ("text", len(back))
                for data in [bytes(range(256)) * 4, b"\x00", os.urandom(200000)]:
                    await ws.send(data)
                    back = await asyncio.wait_for(ws.recv(), 10)
                    assert back == data and isinstance(back, bytes), ("binary", len(back))
                log("ECHOED text and binary")

        async def big(size):
            async with dial() as ws:
                data = os.urandom(size)
                start = time.monotonic()
                await ws.send(data)
                back = await asyncio.wait_for(ws.recv(), 120)
                assert back == data, ("binary", len(back))
                text = "ab" * (size // 2)
                await ws.send(text)
                back = await asyncio.wait_for(ws.recv(), 120)
                assert back == text, ("text", len(back))
                log("BIG", size, "bytes both ways, twice, in %.2f s" % (time.monotonic() - start))

        async def many(count, release):
            gate = asyncio.Semaphore(100)
            opened = []
            async def one(i):
                async with gate:
                    ws = await dial(open_timeout=60)
                message = "tunnel %d" % i
                await ws.send(message)
                back = await asyncio.wait_for(ws.recv(), 60)
                assert back == message, (i, back)
                opened.append(ws)
                return ws
            sockets = await asyncio.gather(*(one(i) for i in range(count)))
            log("OPEN", len(sockets))
            deadline = time.monotonic() + 120
            while not os.path.exists(release):
                assert time.monotonic() < deadline, "never released"
                await asyncio.sleep(0.1)
            for ws in sockets:  # every tunnel still works after being held open
                await ws.send("again")
            for ws in sockets:
                assert await asyncio.wait_for(ws.recv(), 60) == "again"
            await asyncio.gather(*(ws.close() for ws in sockets))
            log("CLOSED", len(sockets))

        async def ping():
            async with dial() as ws:
                for payload in [b"", b"ping-1", os.urandom(125)]:
                    waiter = await ws.ping(payload)
                    latency = await asyncio.wait_for(waiter, 5)
                    log("PONG", len(payload), "%.4f" % latency)
            # Keepalive pings every 100 ms, each needing its pong within 1 s, across 1.5 s.
            async with dial(ping_interval=0.1, ping_timeout=1) as ws:
                await asyncio.sleep(1.5)
                await ws.send("still open")
                assert await asyncio.wait_for(ws.recv(), 5) == "still open"
                log("KEEPALIVE ok")

        async def close():
            ws = await dial()
            await ws.send("before close")
            assert await ws.recv() == "before close"
            await ws.close(1000, "done")
            assert ws.protocol.close_rcvd is not None, "no close frame came back"
            log("CLIENT CLOSE", ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason, ws.protocol.close_rcvd_then_sent)
            ws = await dial()
            await ws.send("close-me")
            try:
                await asyncio.wait_for(ws.recv(), 10)
                raise AssertionError("no close")
            except ConnectionClosed as e:
                log("SERVER CLOSE", e.rcvd.code, e.rcvd.reason, e.rcvd_then_sent)
            await asyncio.wait_for(ws.wait_closed(), 10)

        async def status(token):
            try:
                async with dial(additional_headers={"Authorization": "Bearer " + token}) as ws:
                    log("STATUS 101")
            except InvalidStatus as e:
                log("STATUS", e.response.status_code, "retry-after=" + (e.response.headers.get("Retry-After") or ""))

        async def hold():
            async with dial() as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                log("READY")
                try:
                    await asyncio.wait_for(ws.recv(), 30)
                    raise AssertionError("a message came instead of the close")
                except ConnectionClosed as e:
                    log("CLOSED", e.rcvd.code if e.rcvd else "none")

        modes = {"echo": lambda: echo(), "big": lambda: big(int(rest[0])), "many": lambda: many(int(rest[0]), rest[1]),
                 "ping": lambda: ping(), "close": lambda: close(), "status": lambda: status(rest[0]), "hold": lambda: hold()}
        asyncio.run(modes[mode]())
        log("OK")
        """#

    /// A directory holding both scripts.
    static func scripts() throws -> URL {
        let dir = try Binary.tempDirectory()
        try server.write(to: dir.appendingPathComponent("server.py"), atomically: true, encoding: .utf8)
        try client.write(to: dir.appendingPathComponent("client.py"), atomically: true, encoding: .utf8)
        return dir
    }

    /// Runs the client to completion.
    static func runClient(_ mode: String, _ url: String, _ arguments: [String] = [], timeout: Double = 60) throws -> Binary.Result {
        let dir = try scripts()
        return try Tool.run(try Tool.path("python3"), [dir.appendingPathComponent("client.py").path, mode, url] + arguments,
                            timeout: timeout)
    }

    /// Starts the client in the background; its output goes to `log`.
    static func startClient(_ mode: String, _ url: String, _ arguments: [String] = [], log: URL) throws -> Spawned {
        let dir = try scripts()
        return try Tool.start(try Tool.path("python3"), [dir.appendingPathComponent("client.py").path, mode, url] + arguments, log: log)
    }
}

/// The Python echo server as a process of its own, so a test can kill it like a crashing server.
final class WebSocketEchoServer: @unchecked Sendable {
    let port: UInt16
    let log: URL
    private let process: Spawned

    init(rejectPrefix: String? = nil) throws {
        let dir = try PythonWebSockets.scripts()
        let portFile = dir.appendingPathComponent("port")
        log = dir.appendingPathComponent("server.log")
        var arguments = [dir.appendingPathComponent("server.py").path, "--port-file", portFile.path]
        if let rejectPrefix { arguments += ["--reject-prefix", rejectPrefix] }
        let process = try Tool.start(try Tool.path("python3"), arguments, log: log)
        self.process = process
        var found: UInt16?
        _ = eventually(20) {
            found = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { UInt16($0) }
            return found != nil || !process.isRunning
        }
        guard let found else {
            process.terminate()
            throw TestSocket.Failure(description: "the websockets echo server did not start: "
                                     + ((try? String(contentsOf: log, encoding: .utf8)) ?? ""))
        }
        port = found
    }

    deinit { kill() }

    /// Everything the server printed so far.
    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The `HANDSHAKE` lines: one per handshake that reached the server.
    var handshakes: [String] { logText.split(separator: "\n").filter { $0.hasPrefix("HANDSHAKE ") }.map(String.init) }

    /// SIGKILL: the server vanishes mid-tunnel, as in a crash.
    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// A raw upstream for upgrades that are not WebSocket, or when a test needs to control every byte:
/// it answers each request head by `mode` and records the heads it got.
final class TunnelUpstream: @unchecked Sendable {
    enum Mode {
        /// 101 with `Upgrade: <token>`, then echoes every byte; when the client's side ends (EOF),
        /// writes "EOF-SEEN" and closes its own side.
        case echo(token: String)
        /// 101, then writes the byte pattern `TunnelUpstream.patternByte(i)` as fast as it can
        /// until the connection breaks, counting what the kernel accepted.
        case stream(token: String)
        /// 101, echoes the first chunk, then resets the connection (SO_LINGER 0): a crash.
        case echoOnceThenReset(token: String)
        /// A plain response with this status and a short body.
        case status(Int)
    }

    let port: UInt16
    private let mode: Mode
    private let listenFD: Int32
    private let state = Guarded((heads: [TestMessage](), fds: Set<Int32>(), streamed: 0, stopped: false))

    init(_ mode: Mode) throws {
        self.mode = mode
        listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = listenFD
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }) == 0,
              listen(fd, 512) == 0 else { throw TestSocket.Failure(description: "tunnel upstream bind") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: addr.sin_port)
        Thread { [self] in acceptLoop() }.start()
    }

    /// The request heads received, in order.
    var heads: [TestMessage] { state.withLock { $0.heads } }
    /// Bytes the `.stream` mode has handed to the kernel so far, over every connection.
    var streamed: Int { state.withLock { $0.streamed } }

    /// The byte at offset `i` of the `.stream` pattern (251 is prime, so no power-of-two chunk
    /// boundary lines up with it).
    static func patternByte(_ i: Int) -> UInt8 { UInt8(i % 251) }

    /// Stops accepting and cuts every open connection; its threads hold it until then.
    func stop() {
        let fds = state.withLock { s -> Set<Int32> in
            s.stopped = true
            return s.fds
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        defer { close(listenFD) }
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            let stopped = state.withLock { s -> Bool in
                if !s.stopped { s.fds.insert(fd) }
                return s.stopped
            }
            if stopped {
                close(fd)
                return
            }
            let thread = Thread { [self] in
                serve(fd)
                state.withLock { _ = $0.fds.remove(fd) }
                close(fd)
            }
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        // The head, byte by byte: whatever follows it belongs to the tunnel.
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !head.ends(with: [13, 10, 13, 10]) {
            guard recv(fd, &byte, 1, 0) == 1 else { return }
            head.append(byte)
        }
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let headers = lines.dropFirst().map { line -> (name: String, value: String) in
            let colon = line.firstIndex(of: ":") ?? line.endIndex
            return (String(line[..<colon]), line[colon...].dropFirst().trimmingCharacters(in: .whitespaces))
        }
        state.withLock { $0.heads.append(TestMessage(startLine: lines.first ?? "", headers: headers, body: [], complete: true)) }

        func write(_ bytes: [UInt8]) -> Bool {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
        func switching(_ token: String) -> Bool {
            write(Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: \(token)\r\nConnection: Upgrade\r\n\r\n".utf8))
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        switch mode {
        case .status(let status):
            _ = write(Array("HTTP/1.1 \(status) Nope\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n".utf8))
        case .echo(let token):
            guard switching(token) else { return }
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 { return }
                if n == 0 {
                    _ = write(Array("EOF-SEEN".utf8))
                    shutdown(fd, Int32(SHUT_WR))
                    // Wait for the other side to close in turn, so the close is the proxy's doing.
                    while chunk.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
                    return
                }
                guard write(Array(chunk[..<n])) else { return }
            }
        case .stream(let token):
            guard switching(token) else { return }
            var offset = 0
            var block = [UInt8](repeating: 0, count: 65_536)
            while true {
                for i in block.indices { block[i] = Self.patternByte(offset + i) }
                let n = block.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                offset += n  // after a short write the next block starts where this one stopped
                state.withLock { $0.streamed += n }
            }
        case .echoOnceThenReset(let token):
            guard switching(token) else { return }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0, write(Array(chunk[..<n])) else { return }
            usleep(100_000)
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            // close() in the caller now sends a reset.
        }
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}

/// An upgrade request as a client sends it: `Connection: Upgrade` and `Upgrade: <token>`, with the
/// WebSocket headers when the token is "websocket".
func upgradeRequest(_ target: String = "/", token: String = "websocket", method: String = "GET",
                    headers: [(String, String)] = []) -> [UInt8] {
    var all: [(String, String)] = [("Connection", "Upgrade"), ("Upgrade", token)]
    if token.lowercased() == "websocket" {
        all += [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    }
    return rawRequest(method, target, headers: all + headers)
}

/// Sends an upgrade request on a fresh connection and reads the answer's head (and body, unless it
/// is a 101); with a 101 the socket is the client's end of the tunnel.
func openTunnel(port: UInt16, _ target: String = "/", token: String = "websocket", headers: [(String, String)] = [],
                timeout: Double = 10) throws -> (socket: TestSocket, response: TestMessage) {
    let socket = try TestSocket(port: port, timeout: timeout)
    try socket.send(upgradeRequest(target, token: token, headers: headers))
    guard let response = try socket.readMessage() else {
        throw TestSocket.Failure(description: "upgrade \(target): connection closed without a response")
    }
    return (socket, response)
}

/// The admin endpoint's /metrics text.
func metricsText(adminPort: UInt16) throws -> String {
    try request(port: adminPort, "GET", "/metrics").bodyText
}

extension TestSocket {
    /// Whether the peer ends the connection (EOF or reset) within `seconds`; bytes that arrive
    /// first are read and dropped.
    func ends(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(1, min(100, deadline.timeIntervalSinceNow * 1000)))
            guard poll(&pfd, 1, wait) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
        return false
    }

    /// Sends `bytes` and reads as many back.
    func echo(_ bytes: [UInt8]) throws -> [UInt8]? {
        try send(bytes)
        return try read(count: bytes.count)
    }
}
