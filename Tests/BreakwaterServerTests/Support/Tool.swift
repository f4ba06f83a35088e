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
    static func run(_ executable: URL, _ arguments: [String], stdin: [UInt8] = [], timeout: Double = 60) throws -> Binary.Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let input = Pipe(), out = Pipe(), err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
        input.fileHandleForWriting.write(Data(stdin))
        try input.fileHandleForWriting.close()
        // The reads below end when the process does; the deadline makes sure it does. SIGKILL, as
        // a process started from a test thread inherits its signal mask, which blocks SIGTERM.
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [process] in
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Binary.Result(status: process.terminationStatus,
                             stdout: String(decoding: stdout, as: UTF8.self),
                             stderr: String(decoding: stderr, as: UTF8.self))
    }

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
