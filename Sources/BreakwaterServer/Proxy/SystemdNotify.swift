// SOCK_* and MSG_* resolve through the shim's <sys/socket.h> in release builds too (as in Socket.swift).
private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The systemd readiness protocol (sd_notify), for `Type=notify` units: datagrams to the unix
/// socket named by `NOTIFY_SOCKET`. Does nothing outside systemd.
public enum SystemdNotify {
    /// Sends `text` (such as `READY=1`); false when there is no socket or the send failed.
    @discardableResult
    public static func send(_ text: String) -> Bool {
        send(text, descriptors: [])
    }

    /// Waits until systemd has handled every message sent before (sd_notify_barrier): a
    /// `BARRIER=1` carries the write end of a pipe, and systemd closes it once it got there.
    /// False outside systemd, or when `timeout` passes first (a systemd older than 246 ignores
    /// barriers).
    @discardableResult
    public static func barrier(timeout: Duration) -> Bool {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return false }
        defer { close(fds[0]) }
        // (pipe2 is not imported; the only process this one starts, a hot upgrade's, has every
        // descriptor but its own socket marked close-on-exec first.)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let sent = send("BARRIER=1", descriptors: [fds[1]])
        close(fds[1])
        guard sent else { return false }
        let deadline = LoopClock().nanoseconds().addingClamped(timeout.clampedNanoseconds)
        while true {
            let left = deadline - LoopClock().nanoseconds()
            guard left > 0 else { return false }
            var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            let n = poll(&poller, 1, Int32(min(left / 1_000_000 + 1, 1_000)))
            if n < 0 && errno != EINTR { return false }
            // Every copy of the write end is closed: end of file (POLLHUP).
            if n > 0 { return true }
        }
    }

    private static func send(_ text: String, descriptors: [Int32]) -> Bool {
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
        var bytes = Array(text.utf8)
        var control = descriptors.isEmpty ? [] : UpgradeChannel.rights(descriptors)
        let sent = withUnsafeMutablePointer(to: &address) { addressPointer in
            bytes.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_name = UnsafeMutableRawPointer(addressPointer)
                        message.msg_namelen = length
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.isEmpty ? nil : controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                    }
                }
            }
        }
        return sent == bytes.count
    }
}
