import BreakwaterCore
private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// A hot upgrade: the running process starts the binary now on disk with the same arguments,
/// hands it its listening sockets as inherited descriptors, and waits for it to say it is ready.
///
/// Two environment variables carry the handover into the new process:
/// - `BREAKWATER_LISTEN_FDS`: `ENDPOINT=FD,FD;ENDPOINT=FD` (each endpoint as the conf writes its
///   `listen`), the sockets to adopt instead of binding;
/// - `BREAKWATER_READY_FD`: the write end of a pipe; the new process writes `ready\n` to it once it
///   serves, or exits (closing it) if it cannot start.
public enum HotUpgrade {
    /// The variable naming the inherited listening sockets.
    public static let listenVariable = "BREAKWATER_LISTEN_FDS"
    /// The variable naming the readiness pipe.
    public static let readyVariable = "BREAKWATER_READY_FD"

    /// What the previous process handed over, read once from the environment (and removed from
    /// it, so a later upgrade or a child process never sees stale numbers).
    public struct Inherited: Sendable {
        /// Listening sockets by endpoint.
        public var sockets: [HostPort: [Int32]] = [:]
        /// The readiness pipe, or nil when this process was not started by an upgrade.
        public var readyFD: Int32?

        /// Nothing inherited: an ordinary start.
        public init() {}
    }

    /// The handover of this process; empty for an ordinary start.
    public static func takeInherited() -> Inherited {
        var inherited = Inherited()
        if let text = getenv(listenVariable).map({ String(cString: $0) }) {
            inherited.sockets = parse(text)
            unsetenv(listenVariable)
        }
        if let text = getenv(readyVariable).map({ String(cString: $0) }), let fd = Int32(text), fd >= 0 {
            inherited.readyFD = fd
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            unsetenv(readyVariable)
        }
        return inherited
    }

    /// `ENDPOINT=FD,FD;...` as a table; malformed parts are skipped.
    static func parse(_ text: String) -> [HostPort: [Int32]] {
        var table: [HostPort: [Int32]] = [:]
        for part in text.split(separator: ";") {
            guard let equals = part.lastIndex(of: "="), let endpoint = HostPort(parsing: String(part[..<equals])) else { continue }
            let fds = part[part.index(after: equals)...].split(separator: ",").compactMap { Int32($0) }.filter { $0 >= 0 }
            table[endpoint, default: []] += fds
        }
        return table
    }

    /// The variable's value for `sockets`.
    static func format(_ sockets: [(endpoint: HostPort, fd: Int32)]) -> String {
        var order: [HostPort] = []
        var table: [HostPort: [Int32]] = [:]
        for (endpoint, fd) in sockets {
            if table[endpoint] == nil { order.append(endpoint) }
            table[endpoint, default: []].append(fd)
        }
        return order.map { "\($0)=" + table[$0]!.map(String.init).joined(separator: ",") }.joined(separator: ";")
    }

    /// Tells the process that started this one that it serves now.
    public static func reportReady(_ fd: Int32) {
        let line = Array("ready\n".utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// The path of the running executable, read at start: after the binary is replaced on disk,
    /// the same path names the new one (while /proc/self/exe keeps naming the old inode).
    public static let executablePath: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Why an upgrade did not happen.
    public struct Failure: Error, CustomStringConvertible {
        /// One line for the log.
        public let description: String
    }

    /// Starts `executable` with `arguments`, handing it `sockets`, and waits up to `timeout` for
    /// it to report ready. Returns its pid; throws, having stopped it, when it exits or stays silent.
    static func spawn(executable: String, arguments: [String], sockets: [(endpoint: HostPort, fd: Int32)],
                      timeout: Duration) throws(Failure) -> Int32 {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw Failure(description: "pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        // Copies without close-on-exec are what the new process inherits; the originals stay ours.
        var inheritable: [Int32] = []
        defer { for fd in inheritable { close(fd) } }
        var handed: [(endpoint: HostPort, fd: Int32)] = []
        for (endpoint, fd) in sockets {
            let copy = dup(fd)
            guard copy >= 0 else {
                close(readEnd); close(writeEnd)
                throw Failure(description: "dup: \(String(cString: strerror(errno)))")
            }
            inheritable.append(copy)
            handed.append((endpoint, copy))
        }
        let readyCopy = dup(writeEnd)
        close(writeEnd)
        guard readyCopy >= 0 else {
            close(readEnd)
            throw Failure(description: "dup: \(String(cString: strerror(errno)))")
        }
        inheritable.append(readyCopy)

        // Only what is handed over crosses: any other descriptor this process got without
        // close-on-exec (from whoever started it) would be held open by the new one.
        closeOnExec(exceptStandardAnd: inheritable)
        var environment = environ(excluding: [listenVariable, readyVariable])
        environment.append("\(listenVariable)=\(format(handed))")
        environment.append("\(readyVariable)=\(readyCopy)")
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: Int32 = 0
        let rc = posix_spawn(&pid, executable, nil, nil, argv, envp)
        // The child has its copies now (or never will): ours go.
        for fd in inheritable { close(fd) }
        inheritable = []
        guard rc == 0 else {
            close(readEnd)
            throw Failure(description: "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        defer { close(readEnd) }
        let outcome = waitReady(readEnd, timeout: timeout)
        if outcome == true { return pid }
        // Silent or gone: make sure it is gone, and say how it ended.
        var status: Int32 = 0
        var reaped = false
        if outcome == false {
            // It closed the pipe: it is exiting; give it a moment to finish.
            for _ in 0..<100 where !reaped {
                reaped = waitpid(pid, &status, WNOHANG) == pid
                if !reaped { usleep(50_000) }
            }
        }
        if !reaped {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            throw Failure(description: "the new process did not report ready within \(timeout); stopped it")
        }
        let how = (status & 0x7f) == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
        throw Failure(description: "the new process \(how) before it was ready (its log says why)")
    }

    /// Marks every open descriptor but 0, 1, 2 and `kept` close-on-exec.
    private static func closeOnExec(exceptStandardAnd kept: [Int32]) {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd > 2, fd != own, !kept.contains(fd) else { continue }
            _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        }
    }

    /// True once `ready\n` arrives on `fd`; false at end of file (the process exited or closed
    /// it); nil when `timeout` passes first.
    private static func waitReady(_ fd: Int32, timeout: Duration) -> Bool? {
        let deadline = LoopClock().nanoseconds().addingClamped(timeout.clampedNanoseconds)
        var received: [UInt8] = []
        while true {
            let left = deadline - LoopClock().nanoseconds()
            guard left > 0 else { return nil }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&poller, 1, Int32(min(left / 1_000_000 + 1, 1_000)))
            if n < 0 && errno != EINTR { return false }
            guard n > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 64)
            let got = read(fd, &buffer, buffer.count)
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return false }
            received += buffer[..<got]
            if received.starts(with: Array("ready\n".utf8)) { return true }
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

/// The systemd readiness protocol (sd_notify), for `Type=notify` units: a datagram to the unix
/// socket named by `NOTIFY_SOCKET`. Does nothing outside systemd.
public enum SystemdNotify {
    /// Sends `text` (such as `READY=1`); false when there is no socket or the send failed.
    @discardableResult
    public static func send(_ text: String) -> Bool {
        guard let name = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !name.isEmpty,
              name.hasPrefix("/") || name.hasPrefix("@") else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(name.utf8)
        // "@name" is Linux's abstract namespace: a leading NUL byte.
        if path.first == UInt8(ascii: "@") { path[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == bytes.count
    }
}
