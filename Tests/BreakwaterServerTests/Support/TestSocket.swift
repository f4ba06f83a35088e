import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP socket with a read buffer, for tests that speak raw HTTP.
final class TestSocket: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Connects to 127.0.0.1:port (or ::1) with a receive timeout so no test can hang.
    init(port: UInt16, host: String = "127.0.0.1", timeout: Double = 10) throws {
        let v6 = host.contains(":")
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var rc: Int32
        if v6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &addr.sin6_addr)
            rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &addr.sin_addr)
            rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0 else {
            // No close here: a class whose properties are all set runs deinit when its init
            // throws, and deinit closes `fd`. Closing twice could close another thread's new socket.
            throw Failure(description: "connect to \(host):\(port): errno \(errno)")
        }
    }

    /// Wraps an accepted socket.
    init(fd: Int32, timeout: Double = 30) {
        self.fd = fd
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send failed: errno \(errno)") }
            sent += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads more bytes into the buffer; false at EOF, throws on timeout or error.
    @discardableResult
    func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return false }
        if n < 0 { throw Failure(description: errno == EAGAIN ? "read timed out" : "read failed: errno \(errno)") }
        buffer += chunk[0..<n]
        return true
    }

    /// Bytes up to and including `delimiter`; nil at EOF first.
    func read(until delimiter: [UInt8]) throws -> [UInt8]? {
        while true {
            if let range = buffer.firstRange(of: delimiter) {
                let out = Array(buffer[..<range.upperBound])
                buffer.removeFirst(range.upperBound)
                return out
            }
            guard try fill() else { return nil }
        }
    }

    /// Exactly `count` bytes; nil at EOF first.
    func read(count: Int) throws -> [UInt8]? {
        while buffer.count < count {
            guard try fill() else { return nil }
        }
        let out = Array(buffer[..<count])
        buffer.removeFirst(count)
        return out
    }

    /// Everything until the peer closes.
    func readToEnd() throws -> [UInt8] {
        while try fill() {}
        defer { buffer.removeAll() }
        return buffer
    }

    /// Whether the peer has closed (EOF) within the receive timeout.
    func isClosedByPeer() -> Bool {
        do { return try !fill() } catch { return false }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}
