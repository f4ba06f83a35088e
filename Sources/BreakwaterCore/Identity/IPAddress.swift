#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as 128 bits; IPv4 is kept in its IPv4-mapped form (`::ffff:a.b.c.d`).
public struct IPAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The upper 64 bits, network order read as a big-endian number.
    public var high: UInt64
    /// The lower 64 bits.
    public var low: UInt64

    /// An address from its two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// An IPv4 address from its 32-bit value (`a << 24 | b << 16 | c << 8 | d`).
    public init(ipv4 value: UInt32) {
        self.init(high: 0, low: 0xffff_0000_0000 | UInt64(value))
    }

    /// An address from 16 bytes in network order.
    public init<B: Collection>(bytes: B) where B.Element == UInt8 {
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in bytes.prefix(16).enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        self.init(high: h, low: l)
    }

    /// Parses a dotted IPv4 or textual IPv6 address (no brackets, no zone); nil otherwise.
    public init?(parsing text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        self.init(bytes: bytes)
    }

    /// Whether this is an IPv4 address (IPv4-mapped).
    public var isIPv4: Bool { high == 0 && low >> 32 == 0xffff }

    /// The address with all but the first `bits` bits (of 128) set to zero.
    public func masked(to bits: Int) -> IPAddress {
        if bits >= 128 { return self }
        if bits <= 0 { return IPAddress(high: 0, low: 0) }
        if bits <= 64 {
            let mask: UInt64 = bits == 64 ? ~0 : ~(~0 >> UInt64(bits))
            return IPAddress(high: high & mask, low: 0)
        }
        let mask: UInt64 = ~(~0 >> UInt64(bits - 64))
        return IPAddress(high: high, low: low & mask)
    }

    /// Dotted quad for IPv4, RFC 5952 text for IPv6.
    public var description: String {
        if isIPv4 {
            let v = UInt32(truncatingIfNeeded: low)
            return "\(v >> 24).\(v >> 16 & 0xff).\(v >> 8 & 0xff).\(v & 0xff)"
        }
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { out in
            for i in 0..<8 {
                out[i] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i))
                out[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i))
            }
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
