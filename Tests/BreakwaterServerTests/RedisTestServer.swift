import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real redis-server for one test, on a free loopback port (never 6379), without persistence.
/// Stopped (SIGKILL) on `kill` and at deinit; `start` brings it back on the same port.
final class RedisTestServer {
    let port: UInt16
    let password: String?
    /// With a user, `password` is that ACL user's (Redis 6+ ACLs) and the default user is off.
    let user: String?
    private var process: Spawned?
    private let log: URL

    init(password: String? = nil, user: String? = nil) throws {
        port = TestUpstream.deadPort()
        self.password = password
        self.user = user
        log = FileManager.default.temporaryDirectory.appendingPathComponent("breakwater-redis-\(port).log")
        try start()
    }

    deinit { kill() }

    /// Starts redis-server and waits until it answers PING (at most 5 s).
    func start() throws {
        var arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if let user, let password {
            arguments += ["--user", "default", "off", "--user", user, "on", ">\(password)", "~*", "&*", "+@all"]
        } else if let password {
            arguments += ["--requirepass", password]
        }
        process = try Tool.start("redis-server", arguments, log: log)
        let up = eventually(5) { (try? client().command("PING")) == .status("PONG") }
        guard up else { throw TestSocket.Failure(description: "redis-server did not start on \(port): \(logText)") }
    }

    /// Kills the server at once, as a crash would.
    func kill() {
        guard let process else { return }
        self.process = nil
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open, nothing answers.
    func freeze(_ frozen: Bool) {
        guard let process else { return }
        Glibc.kill(process.processIdentifier, frozen ? SIGSTOP : SIGCONT)
    }

    /// A new connection, authenticated, on database `db`.
    func client(db: Int = 0) throws -> RedisTestClient {
        let client = try RedisTestClient(port: port)
        if let user, let password {
            _ = try client.command("AUTH", user, password)
        } else if let password {
            _ = try client.command("AUTH", password)
        }
        if db != 0 { _ = try client.command("SELECT", "\(db)") }
        return client
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
}

/// A blocking RESP client, enough for tests to look at and set up what Breakwater keeps in Redis.
final class RedisTestClient {
    enum Reply: Equatable {
        case status(String), error(String), integer(Int64), bulk(String?), array([Reply])
    }

    private let socket: TestSocket

    init(port: UInt16) throws {
        socket = try TestSocket(port: port, timeout: 5)
    }

    func command(_ arguments: String...) throws -> Reply { try command(arguments) }

    func command(_ arguments: [String]) throws -> Reply {
        var out = "*\(arguments.count)\r\n"
        for argument in arguments { out += "$\(argument.utf8.count)\r\n\(argument)\r\n" }
        try socket.send(out)
        return try read()
    }

    private func read() throws -> Reply {
        guard let line = try socket.read(until: [13, 10]) else { throw TestSocket.Failure(description: "redis closed") }
        let text = String(decoding: line.dropLast(2), as: UTF8.self)
        let body = String(text.dropFirst())
        switch text.first {
        case "+": return .status(body)
        case "-": return .error(body)
        case ":": return .integer(Int64(body) ?? 0)
        case "$":
            let length = Int(body) ?? -1
            guard length >= 0 else { return .bulk(nil) }
            guard let data = try socket.read(count: length + 2) else { throw TestSocket.Failure(description: "short bulk") }
            return .bulk(String(decoding: data.dropLast(2), as: UTF8.self))
        case "*":
            let count = Int(body) ?? -1
            return .array(try (0..<max(0, count)).map { _ in try read() })
        default:
            throw TestSocket.Failure(description: "bad RESP line \(text)")
        }
    }
}
