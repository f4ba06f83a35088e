import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real upstream on 127.0.0.1 whose behaviour each test scripts: it records every request it
/// receives (so tests can assert what reached it) and answers through `handler`, which may also
/// misbehave (stall, close mid-body, stream chunks).
final class TestUpstream: @unchecked Sendable {
    typealias Handler = @Sendable (TestMessage, TestSocket) throws -> Bool

    let port: UInt16
    private let listenFD: Int32
    private let handler: Handler
    /// Open connections are held here so their fds cannot be closed and reused by another test
    /// while `stop` may still shut them down.
    private let state = Guarded<(requests: [TestMessage], sockets: [ObjectIdentifier: TestSocket], accepted: Int, stopped: Bool)>(([], [:], 0, false))

    /// Binds a free loopback port (port 0) and starts accepting; `handler` returns whether to keep the connection.
    init(port requested: UInt16 = 0, handler: @escaping Handler = TestUpstream.ok) throws {
        self.handler = handler
        listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listenFD, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = requested.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = listenFD
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }) == 0,
              listen(fd, 512) == 0 else { throw TestSocket.Failure(description: "upstream bind") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// A port on which nothing listens (bound, then closed), for connect-refused tests.
    static func deadPort() -> UInt16 {
        let upstream = try! TestUpstream()
        let port = upstream.port
        upstream.stop()
        return port
    }

    var requests: [TestMessage] { state.withLock { $0.requests } }
    var requestCount: Int { state.withLock { $0.requests.count } }
    var connectionsAccepted: Int { state.withLock { $0.accepted } }

    /// Stops accepting and cuts every open connection. The listening fd is closed by the accept
    /// thread itself once it has left accept(), so its number cannot be reused under it.
    func stop() {
        let sockets = state.withLock { state -> [TestSocket] in
            state.stopped = true
            return Array(state.sockets.values)
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        for socket in sockets { shutdown(socket.fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        defer { Glibc.close(listenFD) }
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            let socket = TestSocket(fd: fd)
            let stopped = state.withLock { state -> Bool in
                if !state.stopped {
                    state.sockets[ObjectIdentifier(socket)] = socket
                    state.accepted += 1
                }
                return state.stopped
            }
            if stopped { return }
            let thread = Thread { [self] in serve(socket) }
            thread.start()
        }
    }

    private func serve(_ socket: TestSocket) {
        defer { _ = state.withLock { $0.sockets.removeValue(forKey: ObjectIdentifier(socket)) } }
        while true {
            guard let request = try? socket.readMessage(isRequest: true) else { return }
            state.withLock { $0.requests.append(request) }
            guard (try? handler(request, socket)) == true else {
                shutdown(socket.fd, Int32(SHUT_RDWR))
                return
            }
        }
    }

    // MARK: canned behaviours

    /// 200 with a small body.
    static let ok: Handler = { _, socket in
        try respond(socket, status: 200, body: Array("hello".utf8))
        return true
    }

    /// Echoes method, target and body back; the body is the request body.
    static let echo: Handler = { request, socket in
        try respond(socket, status: 200, headers: [("X-Method", request.method), ("X-Target", request.target)], body: request.body)
        return true
    }

    /// Writes a response with Content-Length.
    static func respond(_ socket: TestSocket, status: Int, reason: String = "Whatever", headers: [(String, String)] = [],
                        body: [UInt8]) throws {
        var text = "HTTP/1.1 \(status) \(reason)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(body.count)\r\n\r\n"
        try socket.send(Array(text.utf8) + body)
    }
}
