import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The `breakwater` executable built beside the test bundle.
enum Binary {
    static var url: URL {
        let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return testBinary.deletingLastPathComponent().appendingPathComponent("breakwater")
    }

    /// The package root, for the shipped conf file.
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the binary to completion (bounded by `timeout`).
    static func run(_ arguments: [String], timeout: Double = 30) throws -> Result {
        try Tool.run(url, arguments, timeout: timeout)
    }

    /// Starts the binary in the background, its output collected to a file.
    static func start(_ arguments: [String], log: URL) throws -> Spawned {
        try Tool.start(url, arguments, log: log)
    }

    /// A loopback port that was free a moment ago, for a process that binds it itself.
    ///
    /// Probed below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default),
    /// so that no outgoing connection of this or another test picks it as its source port between
    /// the probe and the bind (a port bound to 0 and released comes from that range, and tests
    /// running in parallel open thousands of connections), and never handed out twice by this
    /// process.
    static func freePort() -> UInt16 {
        while true {
            let port = UInt16.random(in: 20_000..<32_768)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
    }

    private static let handedOut = Guarded<Set<UInt16>>([])

    private static func canBind(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
    }

    /// A temporary directory for one test's files.
    static func tempDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("breakwater-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
