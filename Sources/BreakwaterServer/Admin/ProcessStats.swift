import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Facts about this process read from /proc, for the process_* metrics.
enum ProcessStats {
    /// Resident set size in bytes.
    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let pages = statm.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Open file descriptors.
    static func openFileDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
    }

    /// Process start time, seconds since the epoch.
    static func startTime() -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let up = Double(uptime.split(separator: " ")[0]) else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Field 22 (starttime) is the 20th after the command name; clock ticks since boot.
        guard fields.count > 19, let ticks = Double(fields[19]) else { return 0 }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let boot = Date().timeIntervalSince1970 - up
        return Int(boot + ticks / hz)
    }
}
