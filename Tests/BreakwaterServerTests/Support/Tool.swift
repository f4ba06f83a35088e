import Foundation

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
        let process = Process()
        process.executableURL = try path(name)
        process.arguments = arguments
        let input = Pipe(), out = Pipe(), err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
        input.fileHandleForWriting.write(Data(stdin))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        return Binary.Result(status: process.terminationStatus,
                             stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                             stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    static func start(_ name: String, _ arguments: [String], log: URL) throws -> Process {
        let process = Process()
        process.executableURL = try path(name)
        process.arguments = arguments
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }
}
