import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// A hot upgrade: the running process starts the binary now on disk with the same arguments and
/// hands it, over one unix socket (`UpgradeChannel`), its listening sockets and then its tracker;
/// it stops accepting only once the new process reports that it serves.
///
/// The new process finds its end of the socket in `BREAKWATER_UPGRADE_FD`, the only descriptor
/// it inherits besides 0, 1 and 2.
public enum HotUpgrade {
    /// The variable naming the upgrade socket in the new process.
    public static let channelVariable = "BREAKWATER_UPGRADE_FD"

    /// Why an upgrade did not happen.
    public struct Failure: Error, CustomStringConvertible {
        /// One line for the log.
        public let description: String
    }

    /// The path of the running executable, read at start: after the binary is replaced on disk,
    /// the same path names the new one (while /proc/self/exe keeps naming the old inode).
    public static let executablePath: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// What a finished handover reports.
    public struct Handover: Sendable {
        /// The new process.
        public var pid: Int32
        /// Tracked clients handed to it.
        public var entries: Int
    }

    /// Starts `executable` with `arguments`, hands it `sockets` and `key`, answers its request for
    /// the tracker with `state()` (taken at that moment, so it is as fresh as it can be), and waits
    /// for it to report ready, all within `timeout`. Throws, having stopped it, when it exits, breaks
    /// the exchange or stays silent: this process has changed nothing and serves on.
    static func spawn(executable: String, arguments: [String], sockets: [(endpoint: HostPort, fd: Int32)], key: [UInt8],
                      timeout: Duration, state: () -> (bytes: [UInt8], count: Int)) throws(Failure) -> Handover {
        let (ours, theirs) = try UpgradeChannel.pair()
        defer { ours.close() }
        // A copy without close-on-exec is what the new process inherits.
        let inheritable = dup(theirs.fd)
        theirs.close()
        guard inheritable >= 0 else { throw Failure(description: "dup: \(String(cString: strerror(errno)))") }
        // Only the socket crosses: any other descriptor this process got without close-on-exec
        // (from whoever started it) would be held open by the new one.
        closeOnExec(exceptStandardAnd: [inheritable])
        var environment = environ(excluding: [channelVariable])
        environment.append("\(channelVariable)=\(inheritable)")
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: Int32 = 0
        let rc = posix_spawn(&pid, executable, nil, nil, argv, envp)
        close(inheritable)
        guard rc == 0 else { throw Failure(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }

        let deadline = LoopClock().nanoseconds().addingClamped(timeout.clampedNanoseconds)
        var entries = 0
        do throws(Failure) {
            var order: [HostPort] = []
            var table: [HostPort: [Int32]] = [:]
            for (endpoint, fd) in sockets {
                if table[endpoint] == nil { order.append(endpoint) }
                table[endpoint, default: []].append(fd)
            }
            for endpoint in order {
                let fds = table[endpoint]!
                for start in stride(from: 0, to: fds.count, by: UpgradeChannel.maximumDescriptors) {
                    let part = Array(fds[start..<min(fds.count, start + UpgradeChannel.maximumDescriptors)])
                    try ours.send(.listener, Array(endpoint.description.utf8), descriptors: part, deadline: deadline)
                }
            }
            try ours.send(.key, key, deadline: deadline)
            try ours.send(.endOfListeners, deadline: deadline)
            while true {
                let frame = try ours.receive(deadline: deadline, maximum: 0)
                for fd in frame.descriptors { close(fd) }
                switch frame.kind {
                case .stateRequest:
                    let (bytes, count) = state()
                    try ours.send(.state, bytes, deadline: deadline)
                    entries = count
                case .ready:
                    return Handover(pid: pid, entries: entries)
                default:
                    throw Failure(description: "unexpected frame \(frame.kind) from the new process")
                }
            }
        } catch {
            throw stopped(pid, because: error)
        }
    }

    /// Makes sure the new process `pid` is gone, and says how it ended.
    private static func stopped(_ pid: Int32, because error: Failure) -> Failure {
        var status: Int32 = 0
        var reaped = false
        // Most often it is exiting on its own (it closed the socket): give it a moment to finish.
        for _ in 0..<40 where !reaped {
            reaped = waitpid(pid, &status, WNOHANG) == pid
            if !reaped { usleep(50_000) }
        }
        if !reaped {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            return Failure(description: "\(error); stopped the new process")
        }
        let how = (status & 0x7f) == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
        return Failure(description: "the new process \(how) before it was ready (its log says why)")
    }

    /// Marks every open descriptor but 0, 1, 2 and `kept` close-on-exec.
    private static func closeOnExec(exceptStandardAnd kept: [Int32]) {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            // The name is read in place: a dirent record is only as long as its name, so copying
            // the struct (`entry.pointee`) would read past the record's end.
            let nameAt = UnsafeRawPointer(entry) + MemoryLayout<dirent>.offset(of: \.d_name)!
            let name = String(cString: nameAt.assumingMemoryBound(to: CChar.self))
            guard let fd = Int32(name), fd > 2, fd != own, !kept.contains(fd) else { continue }
            _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        }
    }

    /// This process's environment without the given variables.
    private static func environ(excluding names: [String]) -> [String] {
        var out: [String] = []
        var cursor = Glibc.environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if !names.contains(where: { text.hasPrefix($0 + "=") }) { out.append(text) }
            cursor += 1
        }
        return out
    }
}
