/// The tracker key of one client: a keyed hash of its identity, never the identity itself.
///
/// Only the 64-bit hash is stored, logged and shown by `/stats`, so a bearer token that is part
/// of the identity never appears in the clear.
public struct ClientKey: Hashable, Sendable, CustomStringConvertible {
    /// The keyed hash.
    public let value: UInt64

    /// A key from a hash value, for tests and for keys read back from `/stats`.
    public init(value: UInt64) {
        self.value = value
    }

    /// Parses the `description` form: 1 to 16 hex digits, either case; nil otherwise.
    ///
    /// The admin endpoint `POST /clients/reset?key=...` uses this to read a key an operator copied.
    public init?(hex: some StringProtocol) {
        let digits = hex.utf8
        guard !digits.isEmpty, digits.count <= 16 else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let nibble: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        self.value = value
    }

    /// 16 lower-case hex digits.
    public var description: String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.utf8.count) + hex
    }

    /// The same client, kept apart per route: for state that must not be shared between routes
    /// whose keys lack the `route` part (a rate limit of 5 r/s on one route and 100 r/s on another).
    public func scoped(to routeIndex: Int) -> ClientKey {
        // A bijective mix of (value, route): distinct routes give unrelated keys for one client.
        ClientKey(value: mix64(value ^ mix64(UInt64(truncatingIfNeeded: routeIndex) &+ 0x9E37_79B9_7F4A_7C15)))
    }
}

/// SipHash-2-4 with a 128-bit key derived from `hash_key`: the hash of client identities.
///
/// Keyed, so nobody can choose identities that collide in the tracker's table; derived
/// deterministically from the secret, so replicas configured with one `hash_key` compute the
/// same key for one client.
public struct KeyedHasher: Sendable, CustomStringConvertible {
    /// The first 64-bit half of the SipHash key.
    let k0: UInt64
    /// The second half.
    let k1: UInt64

    /// A hasher for the configured secret; an empty secret means a random key for this process.
    ///
    /// The key is SipHash-2-4 of the secret's UTF-8 bytes under a fixed, public key, once per
    /// half with a distinct prefix byte, so it is the same on every machine and architecture.
    public init(secret: String) {
        if secret.isEmpty {
            var generator = SystemRandomNumberGenerator()
            self.init(k0: generator.next(), k1: generator.next())
            return
        }
        // "breakwat" / "er-hashk": a fixed key that only separates this use of SipHash from others.
        let derivation = KeyedHasher(k0: 0x6272_6561_6B77_6174, k1: 0x6572_2D68_6173_686B)
        self.init(k0: derivation.hash([1] + Array(secret.utf8)),
                  k1: derivation.hash([2] + Array(secret.utf8)))
    }

    /// A hasher with an explicit key, for the reference test vectors.
    init(k0: UInt64, k1: UInt64) {
        self.k0 = k0
        self.k1 = k1
    }

    /// SipHash-2-4 of `bytes` under this hasher's key.
    public func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var state = stream()
        let done: Void? = bytes.withContiguousStorageIfAvailable { state.combine(UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in bytes { state.combine(byte) }
        }
        return state.finalize()
    }

    /// An incremental hash under this hasher's key, to hash several parts without concatenating them.
    func stream() -> SipHasher {
        SipHasher(k0: k0, k1: k1)
    }

    /// The key's 16 bytes (k0 then k1, little-endian): handed to the process that replaces this
    /// one in a hot upgrade over a private socket, never written to a file nor logged.
    public var keyBytes: [UInt8] {
        withUnsafeBytes(of: (k0.littleEndian, k1.littleEndian)) { Array($0) }
    }

    /// The hasher whose `keyBytes` are `bytes`; nil unless there are 16 of them.
    public init?(keyBytes bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        var k0: UInt64 = 0, k1: UInt64 = 0
        for i in (0..<8).reversed() {
            k0 = k0 << 8 | UInt64(bytes[i])
            k1 = k1 << 8 | UInt64(bytes[8 + i])
        }
        self.init(k0: k0, k1: k1)
    }

    /// Never shows the key: it is as secret as `hash_key`.
    public var description: String { "KeyedHasher(<secret>)" }
}

/// Incremental SipHash-2-4 (Aumasson and Bernstein), hand-written because the standard library's
/// `Hasher` is randomly seeded per process and so cannot make replicas agree.
struct SipHasher {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    // Bytes not yet forming a full little-endian word, and how many there are.
    private var tail: UInt64 = 0
    private var tailCount = 0
    private var length: UInt64 = 0

    /// A fresh state for the key (k0, k1).
    init(k0: UInt64, k1: UInt64) {
        v0 = k0 ^ 0x736F_6D65_7073_6575
        v1 = k1 ^ 0x646F_7261_6E64_6F6D
        v2 = k0 ^ 0x6C79_6765_6E65_7261
        v3 = k1 ^ 0x7465_6462_7974_6573
    }

    @inline(__always)
    private mutating func round() {
        v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
        v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
        v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
        v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
    }

    @inline(__always)
    private mutating func compress(_ word: UInt64) {
        v3 ^= word
        round(); round()
        v0 ^= word
    }

    /// Absorbs one byte.
    mutating func combine(_ byte: UInt8) {
        combine(partial: UInt64(byte), count: 1)
    }

    /// Absorbs the eight little-endian bytes of `word`, a word at a time even when earlier input
    /// left a partial word: the tail and the new word are merged with shifts.
    mutating func combine(_ word: UInt64) {
        length &+= 8
        if tailCount == 0 {
            compress(word)
        } else {
            let shift = UInt64(8 * tailCount)
            compress(tail | word << shift)
            tail = word >> (64 - shift)
        }
    }

    /// Absorbs the low `count` (0 to 7) bytes of `word`, little-endian.
    @inline(__always)
    private mutating func combine(partial word: UInt64, count: Int) {
        guard count > 0 else { return }
        length &+= UInt64(count)
        tail |= word << UInt64(8 * tailCount)
        tailCount += count
        if tailCount >= 8 {
            compress(tail)
            tailCount -= 8
            // The bytes of `word` that did not fit in the compressed word.
            tail = tailCount == 0 ? 0 : word >> UInt64(8 * (count - tailCount))
        }
    }

    /// Absorbs a run of bytes, a word at a time.
    mutating func combine(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        let count = bytes.count
        while count - offset >= 8 {
            combine(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            offset += 8
        }
        var word: UInt64 = 0
        for i in 0..<(count - offset) {
            word |= UInt64(bytes[offset + i]) << UInt64(8 * i)
        }
        combine(partial: word, count: count - offset)
    }

    /// Absorbs the UTF-8 bytes of `text` without copying them when the string is native.
    mutating func combine(utf8 text: String) {
        var text = text
        text.withUTF8 { combine(UnsafeRawBufferPointer($0)) }
    }

    /// The 64-bit hash of everything absorbed.
    func finalize() -> UInt64 {
        var state = self
        state.compress(tail | (length & 0xFF) << 56)
        state.v2 ^= 0xFF
        state.round(); state.round(); state.round(); state.round()
        return state.v0 ^ state.v1 ^ state.v2 ^ state.v3
    }
}

extension UInt64 {
    @inline(__always)
    fileprivate func rotatedLeft(_ bits: UInt64) -> UInt64 {
        self << bits | self >> (64 - bits)
    }
}

/// The MurmurHash3 finaliser: a cheap bijection that spreads any 64-bit value over all bits.
///
/// Client keys are already keyed hashes, but tests and `/stats` can build keys by hand
/// (1, 2, 3, ...); mixing once keeps the table's shard and bucket choice uniform for those too.
@inline(__always)
func mix64(_ value: UInt64) -> UInt64 {
    var x = value
    x ^= x >> 33
    x &*= 0xFF51_AFD7_ED55_8CCD
    x ^= x >> 33
    x &*= 0xC4CE_B9FE_1A85_EC53
    x ^= x >> 33
    return x
}
