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

    /// Runs `executable` to completion, killing it after `timeout`; output is read while it runs,
    /// so a chatty process cannot block on a full pipe.
    ///
    /// Started with posix_spawn rather than Foundation's Process: Process.run lists /proc/self/fd
    /// and copies each entry's whole 256-byte name out of readdir's buffer, which crashes the test
    /// process when an entry ends within 256 bytes of the end of mapped memory (seen once in a
    /// full run; the same bug scripts/sanitizers/asan.supp suppresses). The child gets stdin,
    /// stdout and stderr as pipes and no other descriptor of the test process, and inherits its
    /// signal mask and environment, as with Process.
    static func run(_ executable: URL, _ arguments: [String], stdin: [UInt8] = [], timeout: Double = 60) throws -> Binary.Result {
        var input: [Int32] = [-1, -1], output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1]
        guard pipe(&input) == 0, pipe(&output) == 0, pipe(&errors) == 0 else {
            throw TestSocket.Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        for fd in input + output + errors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        guard addCloseFrom(&actions, 3) == 0 else { throw TestSocket.Failure(description: "posix_spawn_file_actions_addclosefrom_np failed") }
        let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable.path, &actions, nil, argv, environ)
        for fd in [input[0], output[1], errors[1]] { close(fd) }
        guard rc == 0 else {
            for fd in [input[1], output[0], errors[0]] { close(fd) }
            throw TestSocket.Failure(description: "posix_spawn \(executable.path): \(String(cString: strerror(rc)))")
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

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later), which its Swift module
    /// does not show: the child closes every descriptor from the given one up.
    private static let addCloseFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            fatalError("glibc 2.34 or later is needed (posix_spawn_file_actions_addclosefrom_np)")
        }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    static func start(_ name: String, _ arguments: [String], log: URL) throws -> Process {
        try start(path(name), arguments, log: log)
    }

    /// Starts `executable` in the background, its output appended to `log`.
    static func start(_ executable: URL, _ arguments: [String], log: URL) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }
}
