import BreakwaterCore
// SOCK_* and MSG_* resolve through the shim's <sys/socket.h> in release builds too (as in Socket.swift).
private import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// The unix socket between a running process and the one that replaces it in a hot upgrade.
///
/// Frames: a kind byte, a length (u64, little-endian) and that many payload bytes; listening
/// sockets travel as SCM_RIGHTS on the frame that names their endpoint. Blocking I/O, every
/// wait bounded by a deadline. The exchange (README, "Hot upgrade"):
///
/// ```
/// old → new  L  one per listen address: the endpoint as the conf writes it; its sockets attached
/// old → new  K  the running hash key (16 bytes): taken only when the new conf gives no key
/// old → new  E  no more listeners
/// new → old  Q  the new process is about to open its listeners: it asks for the tracker
/// old → new  S  the tracker, in the state file's format (versioned, checksummed, hashed keys)
/// new → old  R  it serves: only now does the old process stop accepting
/// ```
struct UpgradeChannel {
    /// What a frame carries.
    enum Kind: UInt8 {
        case listener = 0x4C, key = 0x4B, endOfListeners = 0x45, stateRequest = 0x51, state = 0x53, ready = 0x52
    }

    /// One received frame.
    struct Frame {
        var kind: Kind
        var payload: [UInt8]
        /// Descriptors that came with it, close-on-exec.
        var descriptors: [Int32]
    }

    /// The socket, blocking, close-on-exec.
    let fd: Int32

    /// The largest payload accepted: a state of far more clients than any table holds is damage.
    static let maximumPayload = 1 << 34
    /// At most this many descriptors ride on one frame (the kernel's limit is 253).
    static let maximumDescriptors = 250

    private static let headerSize = 9

    /// A connected pair: one end for this process, one for the new one.
    static func pair() throws(HotUpgrade.Failure) -> (UpgradeChannel, UpgradeChannel) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw HotUpgrade.Failure(description: "socketpair: \(String(cString: strerror(errno)))")
        }
        return (UpgradeChannel(fd: fds[0]), UpgradeChannel(fd: fds[1]))
    }

    func close() { _ = Glibc.close(fd) }

    /// Sends one frame, `descriptors` attached to its first byte.
    func send(_ kind: Kind, _ payload: [UInt8] = [], descriptors: [Int32] = [], deadline: Int64) throws(HotUpgrade.Failure) {
        precondition(descriptors.count <= Self.maximumDescriptors)
        var header = [kind.rawValue] + [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { for i in 0..<8 { header[1 + i] = $0[i] } }
        if descriptors.isEmpty {
            try write(header, deadline: deadline)
        } else {
            try wait(POLLOUT, deadline: deadline)
            var control = Self.rights(descriptors)
            let sent = header.withUnsafeMutableBytes { bytes in
                control.withUnsafeMutableBytes { controlBytes in
                    Self.withMessage(bytes, controlBytes) { sendmsg(fd, &$0, Int32(MSG_NOSIGNAL)) }
                }
            }
            guard sent > 0 else { throw failure("sendmsg") }
            if sent < header.count { try write(Array(header[sent...]), deadline: deadline) }
        }
        try write(payload, deadline: deadline)
    }

    /// Runs `transfer` (sendmsg or recvmsg) on a message of one buffer, `bytes`, with `control`
    /// as its room for ancillary data (the descriptors).
    private static func withMessage(_ bytes: UnsafeMutableRawBufferPointer, _ control: UnsafeMutableRawBufferPointer,
                                    _ transfer: (inout msghdr) -> Int) -> Int {
        var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var message = msghdr()
            message.msg_iov = vectorPointer
            message.msg_iovlen = 1
            message.msg_control = control.baseAddress
            message.msg_controllen = control.count
            return transfer(&message)
        }
    }

    /// Receives one frame; throws on end of file, an unknown kind, a payload over `maximum`, or
    /// when `deadline` passes.
    func receive(deadline: Int64, maximum: Int = UpgradeChannel.maximumPayload) throws(HotUpgrade.Failure) -> Frame {
        try wait(POLLIN, deadline: deadline)
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        var control = [UInt8](repeating: 0, count: Self.controlSpace(Self.maximumDescriptors))
        var descriptors: [Int32] = []
        let got = header.withUnsafeMutableBytes { bytes in
            control.withUnsafeMutableBytes { controlBytes in
                Self.withMessage(bytes, controlBytes) { message in
                    let n = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                    if n > 0 { descriptors = Self.descriptors(in: controlBytes, length: message.msg_controllen) }
                    return n
                }
            }
        }
        if got < 0 { throw failure("recvmsg") }
        guard got > 0 else { throw HotUpgrade.Failure(description: "the other process closed the upgrade socket") }
        var frameOK = false
        defer { if !frameOK { for d in descriptors { _ = Glibc.close(d) } } }
        if got < Self.headerSize { try read(into: &header, from: got, deadline: deadline) }
        guard let kind = Kind(rawValue: header[0]) else {
            throw HotUpgrade.Failure(description: "unexpected byte \(header[0]) on the upgrade socket")
        }
        var length: UInt64 = 0
        for i in (1...8).reversed() { length = length << 8 | UInt64(header[i]) }
        guard length <= UInt64(maximum) else {
            throw HotUpgrade.Failure(description: "a frame of \(length) bytes on the upgrade socket (at most \(maximum))")
        }
        var payload = [UInt8](repeating: 0, count: Int(length))
        try read(into: &payload, from: 0, deadline: deadline)
        frameOK = true
        return Frame(kind: kind, payload: payload, descriptors: descriptors)
    }

    /// Receives the next frame and requires it to be of `kind`.
    func expect(_ kind: Kind, deadline: Int64, maximum: Int = UpgradeChannel.maximumPayload) throws(HotUpgrade.Failure) -> Frame {
        let frame = try receive(deadline: deadline, maximum: maximum)
        guard frame.kind == kind else {
            for d in frame.descriptors { _ = Glibc.close(d) }
            throw HotUpgrade.Failure(description: "expected frame \(Character(Unicode.Scalar(kind.rawValue))) on the upgrade socket, "
                                     + "got \(Character(Unicode.Scalar(frame.kind.rawValue)))")
        }
        return frame
    }

    // MARK: the bytes

    private func write(_ bytes: [UInt8], deadline: Int64) throws(HotUpgrade.Failure) {
        var done = 0
        while done < bytes.count {
            try wait(POLLOUT, deadline: deadline)
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw failure("send")
            }
            done += n
        }
    }

    private func read(into bytes: inout [UInt8], from start: Int, deadline: Int64) throws(HotUpgrade.Failure) {
        var done = start
        while done < bytes.count {
            try wait(POLLIN, deadline: deadline)
            let n = bytes.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + done, $0.count - done, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw failure("recv")
            }
            guard n > 0 else { throw HotUpgrade.Failure(description: "the other process closed the upgrade socket mid-frame") }
            done += n
        }
    }

    /// Waits until `events` (POLLIN or POLLOUT) or a hang-up; throws once `deadline` passes.
    private func wait(_ events: Int32, deadline: Int64) throws(HotUpgrade.Failure) {
        while true {
            let left = deadline - LoopClock().nanoseconds()
            guard left > 0 else { throw HotUpgrade.Failure(description: "the other process did not answer in time") }
            var poller = pollfd(fd: fd, events: Int16(events), revents: 0)
            let n = poll(&poller, 1, Int32(min(left / 1_000_000 + 1, 1_000)))
            if n < 0 && errno != EINTR { throw failure("poll") }
            if n > 0 { return }
        }
    }

    private func failure(_ call: String) -> HotUpgrade.Failure {
        HotUpgrade.Failure(description: "\(call) on the upgrade socket: \(String(cString: strerror(errno)))")
    }

    // MARK: control messages (CMSG_* are macros Swift does not import)

    private static let cmsgHeaderSize = align(MemoryLayout<cmsghdr>.size)

    private static func align(_ n: Int) -> Int {
        let unit = MemoryLayout<Int>.size
        return (n + unit - 1) & ~(unit - 1)
    }

    private static func controlLength(_ count: Int) -> Int { cmsgHeaderSize + count * MemoryLayout<Int32>.size }

    private static func controlSpace(_ count: Int) -> Int { cmsgHeaderSize + align(count * MemoryLayout<Int32>.size) }

    /// The control message that carries `descriptors` (SCM_RIGHTS), for `msghdr.msg_control`.
    static func rights(_ descriptors: [Int32]) -> [UInt8] {
        var control = [UInt8](repeating: 0, count: controlSpace(descriptors.count))
        control.withUnsafeMutableBytes { raw in
            let cmsg = raw.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
            cmsg.pointee.cmsg_len = controlLength(descriptors.count)
            cmsg.pointee.cmsg_level = SOL_SOCKET
            cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
            descriptors.withUnsafeBytes { raw.baseAddress!.advanced(by: cmsgHeaderSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return control
    }

    /// The descriptors of every SCM_RIGHTS message in `control`'s first `length` bytes.
    private static func descriptors(in control: UnsafeMutableRawBufferPointer, length: Int) -> [Int32] {
        var out: [Int32] = []
        var at = 0
        while at + cmsgHeaderSize <= length {
            let cmsg = control.baseAddress!.advanced(by: at).assumingMemoryBound(to: cmsghdr.self).pointee
            let size = Int(cmsg.cmsg_len)
            guard size >= cmsgHeaderSize, at + size <= length else { break }
            if cmsg.cmsg_level == SOL_SOCKET && cmsg.cmsg_type == Int32(SCM_RIGHTS) {
                let count = (size - cmsgHeaderSize) / MemoryLayout<Int32>.size
                for i in 0..<count {
                    out.append(control.loadUnaligned(fromByteOffset: at + cmsgHeaderSize + i * 4, as: Int32.self))
                }
            }
            at += align(size)
        }
        return out
    }
}
