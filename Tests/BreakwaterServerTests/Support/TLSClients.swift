import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What one `curl` run got: its exit code (0, or 35 for a failed handshake, 60 for a certificate
/// it would not trust, 56 for a connection cut after it), the last response's head and body.
struct CurlResult: CustomStringConvertible {
    var exitCode: Int32
    var status: Int
    var headers: [(name: String, value: String)]
    var bodyBytes: [UInt8]
    var body: String { String(decoding: bodyBytes, as: UTF8.self) }
    /// `%{http_version}`: "1.1" or "2".
    var httpVersion: String
    var stderr: String

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var description: String { "curl exit \(exitCode), status \(status), http \(httpVersion): \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))" }
}

enum Curl {
    /// `curl` against `url` with `arguments` before it (e.g. `--cacert`, `--resolve`, `--cert`).
    static func run(_ url: String, _ arguments: [String] = [], timeout: Double = 20) throws -> CurlResult {
        let dir = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let head = dir.appendingPathComponent("head"), body = dir.appendingPathComponent("body")
        let result = try Tool.run(try Tool.path("curl"), ["-sS", "--max-time", "10", "-D", head.path, "-o", body.path,
                                                         "-w", "%{http_version}"] + arguments + [url], timeout: timeout)
        let headText = (try? String(contentsOf: head, encoding: .utf8)) ?? ""
        // Only the last head counts (a 100 Continue may come first).
        let lastHead = headText.components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }.last ?? ""
        var lines = lastHead.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let statusLine = lines.isEmpty ? "" : lines.removeFirst()
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return CurlResult(exitCode: result.status, status: status, headers: headers,
                          bodyBytes: (try? Data(contentsOf: body)).map { [UInt8]($0) } ?? [],
                          httpVersion: result.stdout, stderr: result.stderr)
    }
}

/// What `openssl s_client` saw of one handshake.
struct Handshake: CustomStringConvertible {
    var exitCode: Int32
    var output: String

    /// The handshake completed: s_client exited 0 having agreed on a cipher.
    var succeeded: Bool {
        exitCode == 0 && output.contains("Cipher is ") && !output.contains("Cipher is (NONE)")
    }

    /// The peer certificate's common name, e.g. "localhost".
    var subjectCN: String? { value(after: "subject=")?.components(separatedBy: "CN = ").last }

    /// "TLSv1.2" or "TLSv1.3", from s_client's "New, TLSv1.3, Cipher is ..." line.
    var protocolVersion: String? {
        value(after: "New, ")?.components(separatedBy: ", ").first.flatMap { $0 == "(NONE)" ? nil : $0 }
    }

    /// The protocol ALPN agreed on, nil when none was.
    var alpn: String? { value(after: "ALPN protocol: ") }

    /// The session was resumed (s_client prints "Reused, ..." instead of "New, ...").
    var reused: Bool { output.contains("\nReused, ") }

    /// NewSessionTicket messages received; s_client prints them with `-msg`.
    var ticketsReceived: Int {
        output.split(separator: "\n").filter { $0.hasPrefix("<<< ") && $0.hasSuffix("NewSessionTicket") }.count
    }

    /// The lifetime hint of the last ticket received, in seconds.
    var ticketLifetimeHint: Int? {
        value(after: "TLS session ticket lifetime hint: ")?.split(separator: " ").first.flatMap { Int($0) }
    }

    private func value(after prefix: String) -> String? {
        for line in output.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix(prefix) { return String(trimmed.dropFirst(prefix.count)) }
        }
        return nil
    }

    var description: String {
        let errors = output.split(separator: "\n").filter { $0.contains("error") || $0.contains("alert") }
        return "s_client exit \(exitCode), subject \(subjectCN ?? "-"), protocol \(protocolVersion ?? "-"), alpn \(alpn ?? "-") \(errors)"
    }
}

enum SClient {
    /// One handshake with `openssl s_client` on 127.0.0.1:port, then a clean close. `serverName`
    /// nil sends no SNI; `alpn` is s_client's comma-separated list; `extra` e.g. ["-tls1_2"].
    static func handshake(port: UInt16, serverName: String? = "localhost", alpn: String? = nil, caFile: URL? = nil,
                          client: CertificatePair? = nil, extra: [String] = []) throws -> Handshake {
        var arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-nocommands"]
        if let serverName { arguments += ["-servername", serverName] } else { arguments += ["-noservername"] }
        if let alpn { arguments += ["-alpn", alpn] }
        if let caFile { arguments += ["-CAfile", caFile.path] }
        if let client { arguments += ["-cert", client.cert.path, "-key", client.key.path] }
        let result = try Tool.run(try Tool.path("openssl"), arguments + extra, timeout: 20)
        return Handshake(exitCode: result.status, output: result.stdout + result.stderr)
    }
}

extension SClient {
    /// One `GET /` with `Connection: close` over a new connection that offers the session saved in
    /// `sessionIn` (none: a full handshake) and saves the session it ends with, tickets included,
    /// to `sessionOut`. The answer is awaited, so the tickets sent after the handshake have arrived.
    static func request(port: UInt16, caFile: URL, sessionIn: URL?, sessionOut: URL, extra: [String] = []) throws -> Handshake {
        var arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost", "-CAfile", caFile.path,
                         "-ign_eof", "-sess_out", sessionOut.path]
        if let sessionIn { arguments += ["-sess_in", sessionIn.path] }
        let request = "GET /resume HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        let result = try Tool.run(try Tool.path("openssl"), arguments + extra, stdin: Array(request.utf8), timeout: 20)
        return Handshake(exitCode: result.status, output: result.stdout + result.stderr)
    }
}

/// A long-running tool with a pipe to its stdin and everything it prints collected, e.g.
/// `openssl s_client` holding one TLS connection open while a test reloads the server.
final class InteractiveTool: @unchecked Sendable {
    private let process: Spawned
    private let input: FileHandle
    private let output = Guarded<[UInt8]>([])
    private let reader: Thread

    init(_ name: String, _ arguments: [String]) throws {
        var toChild: [Int32] = [-1, -1], fromChild: [Int32] = [-1, -1]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
            throw TestSocket.Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(toChild[0]); close(fromChild[1]) }
        do {
            process = Spawned(pid: try Tool.spawn(try Tool.path(name), arguments, stdin: toChild[0], stdout: fromChild[1], stderr: fromChild[1]))
        } catch {
            close(toChild[1]); close(fromChild[0])
            throw error
        }
        input = FileHandle(fileDescriptor: toChild[1], closeOnDealloc: true)
        let handle = FileHandle(fileDescriptor: fromChild[0], closeOnDealloc: true)
        let output = self.output
        // Ends at EOF, which comes when the process exits (stop() makes sure it does).
        reader = Thread {
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                output.withLock { $0 += data }
            }
        }
        reader.start()
    }

    deinit { stop() }

    var text: String { output.withLock { String(decoding: $0, as: UTF8.self) } }

    func send(_ text: String) {
        // A tool that has exited leaves a broken pipe: EPIPE, not SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        try? input.write(contentsOf: Data(text.utf8))
    }

    /// Waits up to `seconds` for `substring` to have been printed at least `count` times.
    func waitFor(_ substring: String, count: Int = 1, seconds: Double = 10) -> Bool {
        eventually(seconds) { text.components(separatedBy: substring).count - 1 >= count }
    }

    var isRunning: Bool { process.isRunning }

    /// SIGKILL: a client has nothing to finish, and a tool started from a test thread inherits
    /// its signal mask, which blocks SIGTERM.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
