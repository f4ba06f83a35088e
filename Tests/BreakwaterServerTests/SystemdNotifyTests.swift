import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The sd_notify side of `conf/breakwater.service` (Type=notify, NotifyAccess=all), against a
/// notify socket of the test's own, as systemd reads it: READY=1 at start; on a hot upgrade the
/// new process sends MAINPID and READY, then a barrier, and the old process exits only once the
/// barrier has been answered, so systemd knows the new main process before the old one is gone.
@Suite struct SystemdNotifyTests {
    /// A unix datagram socket bound in `dir`, read as systemd's notify socket.
    final class NotifySocket {
        let fd: Int32
        let path: String

        init(dir: URL) throws {
            path = dir.appendingPathComponent("notify.sock").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard fd >= 0, bound == 0 else { throw TestSocket.Failure(description: "notify socket: \(String(cString: strerror(errno)))") }
        }

        deinit { close(fd) }

        /// The next datagram's text and the descriptors it carried; nil after `seconds`.
        func receive(_ seconds: Double = 10) -> (text: String, fds: [Int32])? {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else { return nil }
            var data = [UInt8](repeating: 0, count: 4096)
            var control = [UInt8](repeating: 0, count: 256)
            var fds: [Int32] = []
            let n = data.withUnsafeMutableBytes { bytes in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                    return withUnsafeMutablePointer(to: &vector) { v in
                        var message = msghdr()
                        message.msg_iov = v
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        let n = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                        // One SCM_RIGHTS message at most: its header, then the descriptors.
                        let header = MemoryLayout<cmsghdr>.size
                        if message.msg_controllen >= header {
                            let cmsg = controlBytes.load(as: cmsghdr.self)
                            if cmsg.cmsg_type == Int32(SCM_RIGHTS) {
                                for i in 0..<((Int(cmsg.cmsg_len) - header) / 4) {
                                    fds.append(controlBytes.loadUnaligned(fromByteOffset: header + 4 * i, as: Int32.self))
                                }
                            }
                        }
                        return n
                    }
                }
            }
            guard n >= 0 else { return nil }
            return (String(decoding: data[..<n], as: UTF8.self), fds)
        }
    }

    @Test func theShippedUnitVerifiesAndReloadsWithSIGHUPAsANotifyUnit() throws {
        let unit = try String(contentsOf: Binary.packageRoot.appendingPathComponent("conf/breakwater.service"), encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        for line in ["Type=notify", "NotifyAccess=all", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM"] {
            #expect(lines.contains(line), "\(line)")
        }
        // systemd-analyze checks that ExecStart names an executable: this build's binary stands in.
        let dir = try Binary.tempDirectory()
        let copy = dir.appendingPathComponent("breakwater.service")
        try unit.replacing("/usr/local/bin/breakwater", with: Binary.url.path).write(to: copy, atomically: true, encoding: .utf8)
        let verify = try Tool.run("systemd-analyze", ["verify", copy.path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "\(verify.stderr)")
    }

    @Test func aHotUpgradeTellsSystemdTheNewMainPidAndTheOldProcessWaitsForTheBarrier() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let dir = try Binary.tempDirectory()
        let notify = try NotifySocket(dir: dir)
        let (port, admin) = (Binary.freePort(), Binary.freePort())
        let conf = dir.appendingPathComponent("bw.conf")
        try ProxyProcess.conf(port: port, admin: admin, upstreams: [api.port], server: "", upstream: "", rest: "")
            .write(to: conf, atomically: true, encoding: .utf8)
        let log = dir.appendingPathComponent("bw.log")
        let old = try Tool.start(Binary.url, ["--config", conf.path], log: log,
                                 environment: ProcessInfo.processInfo.environment.merging(["NOTIFY_SOCKET": notify.path]) { $1 })
        var newPid: Int32 = 0
        defer {
            if old.isRunning { kill(old.processIdentifier, SIGKILL) }
            if newPid > 0 { kill(newPid, SIGTERM) }
        }
        let logText = { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        #expect(notify.receive()?.text == "READY=1", "\(logText())")
        #expect(try request(port: port, "GET", "/api/v1/device/valid-1").status == 200)
        kill(old.processIdentifier, SIGUSR2)
        let main = try #require(notify.receive(), "\(logText())")
        let fields = main.text.split(separator: "\n")
        #expect(fields.contains("READY=1"), "\(main.text)")
        newPid = try #require(fields.first { $0.hasPrefix("MAINPID=") }.flatMap { Int32($0.dropFirst(8)) }, "\(main.text)")
        #expect(newPid != old.processIdentifier)
        let barrier = try #require(notify.receive(), "\(logText())")
        #expect(barrier.text == "BARRIER=1")
        #expect(barrier.fds.count == 1)
        // Until systemd answers the barrier, the old process serves on and does not drain.
        usleep(500_000)
        #expect(old.isRunning)
        #expect(!logText().contains("upgrade: the new process serves"), "\(logText())")
        for fd in barrier.fds { close(fd) }
        #expect(eventually(10) { !old.isRunning }, "\(logText())")
        #expect(old.terminationStatus == 0)
        #expect(logText().contains("upgrade: the new process serves; draining this one"))
        #expect(logText().contains("pid=\(newPid)"))
        #expect(try request(port: port, "GET", "/api/v1/device/valid-2").status == 200)
    }
}
