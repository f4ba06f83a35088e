import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// A resolved socket address, ready for bind or connect.
struct SocketAddress: @unchecked Sendable, CustomStringConvertible {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    /// Resolves `host:port` (numeric or a name; the first answer wins).
    init(_ endpoint: HostPort) throws(SystemCallError) {
        var hints = addrinfo()
        hints.ai_socktype = Socket.streamType
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result)
        guard rc == 0, let info = result else { throw SystemCallError("getaddrinfo(\(endpoint))", .resolver(rc)) }
        defer { freeaddrinfo(result) }
        length = info.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &storage) { out in
            out.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(length)))
        }
    }

    /// Copies an address that the kernel handed over (accept, getsockname).
    init(_ address: UnsafePointer<sockaddr>, length: socklen_t) {
        self.length = length
        withUnsafeMutableBytes(of: &storage) { out in
            out.copyMemory(from: UnsafeRawBufferPointer(start: address, count: min(Int(length), out.count)))
        }
    }

    /// The bound address of a socket.
    init(localOf fd: Int32) throws(SystemCallError) {
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try syscall("getsockname") {
            withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        storage = bound
        self.length = length
    }

    var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            let family = raw.load(as: sockaddr.self).sa_family
            if family == sa_family_t(AF_INET6) { return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port) }
            return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
    }

    /// The address as an `IPAddress` (IPv4 mapped); unspecified for other families.
    var ip: IPAddress {
        withUnsafeBytes(of: storage) { raw in
            let family = raw.load(as: sockaddr.self).sa_family
            if family == sa_family_t(AF_INET6) {
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                return withUnsafeBytes(of: &a) { IPAddress(bytes: $0) }
            }
            if family == sa_family_t(AF_INET) {
                return IPAddress(ipv4: UInt32(bigEndian: raw.load(as: sockaddr_in.self).sin_addr.s_addr))
            }
            return IPAddress(high: 0, low: 0)
        }
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        try withUnsafePointer(to: storage) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }

    var description: String { "\(ip):\(port)" }
}
