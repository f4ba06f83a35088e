import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An upstream that echoes each request body and says, in `X-Body-Digest`, the digest of the
/// body it received, so a client can check both directions. Unlike TestUpstream it keeps no
/// bodies: integrity runs push hundreds of MiB through it. A request with `X-Answer: chunked` is
/// answered in chunks of random sizes.
final class DigestEchoUpstream: @unchecked Sendable {
    let port: UInt16
    private let listenFD: Int32
    private let served = Atomic<Int>(0)

    init() throws {
        listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = listenFD
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }) == 0,
              listen(fd, 512) == 0 else { throw TestSocket.Failure(description: "digest upstream bind") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: addr.sin_port)
        // The accept thread closes the listening fd itself once stop() wakes it, so the number
        // cannot be reused by another test while accept() still holds it.
        Thread { [self] in
            defer { close(fd) }
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                Thread { [self] in serve(TestSocket(fd: client)) }.start()
            }
        }.start()
    }

    /// Requests answered so far.
    var requestCount: Int { served.load(ordering: .relaxed) }

    /// Stops accepting; connections in progress finish.
    func stop() { shutdown(listenFD, Int32(SHUT_RDWR)) }

    private func serve(_ socket: TestSocket) {
        while let request = try? socket.readMessage(isRequest: true) {
            served.add(1, ordering: .relaxed)
            let digest = String(fastDigest(request.body), radix: 16)
            do {
                if request.header("X-Answer") == "chunked" {
                    try socket.send("HTTP/1.1 200 OK\r\nX-Body-Digest: \(digest)\r\nTransfer-Encoding: chunked\r\n\r\n")
                    var generator = SystemRandomNumberGenerator()
                    var offset = 0
                    while offset < request.body.count {
                        let n = min(request.body.count - offset, Int.random(in: 1...200_000, using: &generator))
                        try socket.send(Array((String(n, radix: 16) + "\r\n").utf8) + request.body[offset..<offset + n] + [13, 10])
                        offset += n
                    }
                    try socket.send("0\r\n\r\n")
                } else {
                    try TestUpstream.respond(socket, status: 200, headers: [("X-Body-Digest", digest)], body: request.body)
                }
            } catch {
                return
            }
        }
    }
}

/// A 64-bit digest of `bytes`, eight at a time (fast enough in a debug build for hundreds of MiB):
/// a multiply-rotate mix of each word, folded with the length.
func fastDigest(_ bytes: [UInt8]) -> UInt64 {
    bytes.withUnsafeBytes { raw -> UInt64 in
        var h: UInt64 = 0x9e37_79b9_7f4a_7c15 ^ UInt64(raw.count)
        let words = raw.count / 8
        for i in 0..<words {
            let w = raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            h = (h ^ (w &* 0xff51_afd7_ed55_8ccd)).rotatedLeft(by: 27) &* 0xc4ce_b9fe_1a85_ec53 &+ UInt64(i)
        }
        for i in words * 8..<raw.count { h = (h ^ UInt64(raw[i])) &* 0x0100_0000_01b3 }
        return h ^ (h >> 33)
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(by n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}

/// `count` random bytes from the kernel.
func randomBytes(_ count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var filled = 0
        while filled < count {
            let n = systemGetRandom(buffer.baseAddress! + filled, count - filled, 0)
            if n > 0 { filled += n }
        }
        initialized = count
    }
}

/// Glibc declares getrandom in <sys/random.h>, which its Swift module leaves out; the ABI is stable.
@_silgen_name("getrandom")
private func systemGetRandom(_ buffer: UnsafeMutableRawPointer, _ length: Int, _ flags: UInt32) -> Int
