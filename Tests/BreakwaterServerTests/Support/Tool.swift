import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a system tool found on PATH (promtool, prometheus), failing clearly when it is missing.
enum Tool {
    static func path(_ name: String) throws -> URL {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSocket.Failure(description: "\(name) is not installed (make test installs it)")
    }

    static func run(_ name: String, _ arguments: [String], stdin: [UInt8] = []) throws -> Binary.Result {
        try run(path(name), arguments, stdin: stdin)
    }

    /// Runs `executable` to completion (started by `spawn`, its standard streams pipes), killing
    /// it after `timeout`; output is read while it runs, so a chatty process cannot block on a
    /// full pipe.
    static func run(_ executable: URL, _ arguments: [String], stdin: [UInt8] = [], timeout: Double = 60) throws -> Binary.Result {
        var input: [Int32] = [-1, -1], output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1]
        guard pipe(&input) == 0, pipe(&output) == 0, pipe(&errors) == 0 else {
            throw TestSocket.Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        for fd in input + output + errors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            defer { for fd in [input[0], output[1], errors[1]] { close(fd) } }
            pid = try spawn(executable, arguments, stdin: input[0], stdout: output[1], stderr: errors[1])
        } catch {
            for fd in [input[1], output[0], errors[0]] { close(fd) }
            throw error
        }
        // The input goes from a thread of its own, so a child that answers before it has read all
        // of it cannot hold up the reads below.
        let writer = Thread { [fd = input[1]] in
            var offset = 0
            while offset < stdin.count {
                let n = stdin[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
            close(fd)
        }
        writer.start()
        var collected: [Int32: [UInt8]] = [output[0]: [], errors[0]: []]
        var open = [output[0], errors[0]]
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var polls = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let wait = Int32(max(0, min(1000, deadline.timeIntervalSinceNow * 1000)))
            if poll(&polls, nfds_t(polls.count), wait) < 0 && errno != EINTR { break }
            if !killed && Date() >= deadline {
                kill(pid, SIGKILL)
                killed = true
            }
            for entry in polls where entry.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    collected[entry.fd]!.append(contentsOf: buffer[..<n])
                } else if n == 0 || errno != EINTR && errno != EAGAIN {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        for fd in [output[0], errors[0]] { close(fd) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // As Process reports it: the exit code, or the signal that ended the process.
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : status & 0x7f
        return Binary.Result(status: code,
                             stdout: String(decoding: collected[output[0]]!, as: UTF8.self),
                             stderr: String(decoding: collected[errors[0]]!, as: UTF8.self))
    }

    static func start(_ name: String, _ arguments: [String], log: URL) throws -> Spawned {
        try start(path(name), arguments, log: log)
    }

    /// Starts `executable` in the background, its output appended to `log`, its input empty.
    static func start(_ executable: URL, _ arguments: [String], log: URL, environment: [String: String]? = nil) throws -> Spawned {
        let out = open(log.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(out); close(null) }
        guard out >= 0, null >= 0 else { throw TestSocket.Failure(description: "open \(log.path): \(String(cString: strerror(errno)))") }
        return Spawned(pid: try spawn(executable, arguments, environment: environment, stdin: null, stdout: out, stderr: out))
    }

    /// Starts `executable` with the given descriptors as its standard streams and no other
    /// descriptor of the test process; it inherits the signal mask and, unless given one, the
    /// environment. posix_spawn rather than Foundation's Process: Process.run lists
    /// /proc/self/fd and copies each entry's whole 256-byte name out of readdir's buffer, which
    /// crashes the test process when an entry ends within 256 bytes of the end of mapped memory
    /// (seen once in a full run; the bug scripts/sanitizers/asan.supp suppresses).
    static func spawn(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
                      stdin: Int32, stdout: Int32, stderr: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        guard addCloseFrom(&actions, 3) == 0 else { throw TestSocket.Failure(description: "posix_spawn_file_actions_addclosefrom_np failed") }
        let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for pointer in argv + (envp ?? []) { free(pointer) } }
        var pid: pid_t = 0
        let rc = envp.map { posix_spawn(&pid, executable.path, &actions, nil, argv, $0) }
            ?? posix_spawn(&pid, executable.path, &actions, nil, argv, environ)
        guard rc == 0 else {
            throw TestSocket.Failure(description: "posix_spawn \(executable.path): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later), which its Swift module
    /// does not show: the child closes every descriptor from the given one up.
    private static let addCloseFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            fatalError("glibc 2.34 or later is needed (posix_spawn_file_actions_addclosefrom_np)")
        }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()
}

/// A process started by `Tool.spawn`, with the part of Foundation's Process the tests use. Like
/// Process, it reaps its child as soon as it exits (a thread waits for it), so that nothing sees
/// a zombie: `breakwater upgrade` waits for the old process's pid to be gone.
final class Spawned: @unchecked Sendable {
    enum TerminationReason { case exit, uncaughtSignal }

    let processIdentifier: pid_t
    /// The wait status, once the process has been reaped.
    private let reaped = Guarded<Int32?>(nil)

    init(pid: pid_t) {
        processIdentifier = pid
        let reaped = self.reaped
        Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 {
                guard errno == EINTR else { status = 0; break }
            }
            reaped.withLock { $0 = status }
        }.start()
    }

    var isRunning: Bool { reaped.withLock { $0 } == nil }

    /// SIGTERM, as Process.terminate sends.
    func terminate() { kill(processIdentifier, SIGTERM) }

    func waitUntilExit() {
        while isRunning { usleep(2_000) }
    }

    /// The exit code, or the signal that ended the process (as Process reports them).
    var terminationStatus: Int32 {
        let status = reaped.withLock { $0 } ?? 0
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : status & 0x7f
    }

    var terminationReason: TerminationReason { ((reaped.withLock { $0 } ?? 0) & 0x7f) == 0 ? .exit : .uncaughtSignal }
}
