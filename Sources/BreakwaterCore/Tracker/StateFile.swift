/// The bytes of a state file (`[state] file`): the tracker's entries worth keeping, so a restart
/// does not release every blocked client at once. Encoding and decoding only; writing the file
/// atomically is the server's part.
///
/// Layout, every integer little-endian (README, "State across restarts"):
///
/// ```
/// offset size  header (48 bytes)
///      0    8  magic "BWSTATE\0"
///      8    4  format version (1)
///     12    4  entry size in bytes (48)
///     16    8  hash-key fingerprint: the keyed hash of a constant, never the key
///     24    8  written at, Unix nanoseconds
///     32    8  entry count
///     40    8  reserved, zero
///     48  48*n entries: key u64, window end i64, last seen i64, expires at i64 (Unix ns;
///              i64 min = no window), consecutive errors u32, level u32, route index u16,
///              6 reserved zero bytes
///  48+48n   8  SipHash-2-4 (fixed public key) of every byte before it
/// ```
public enum StateFile {
    /// The first eight bytes of every state file.
    public static let magic: [UInt8] = Array("BWSTATE\0".utf8)
    /// The format this build writes and the newest it reads.
    public static let version: UInt32 = 1
    /// Bytes before the first entry.
    public static let headerSize = 48
    /// Bytes of one entry.
    public static let entrySize = 48
    /// Bytes of the checksum after the last entry.
    public static let checksumSize = 8

    /// What the header says.
    public struct Header: Sendable, Equatable {
        /// The format version.
        public var version: UInt32
        /// The fingerprint of the hash key the entries were hashed with.
        public var fingerprint: UInt64
        /// When the file was written, Unix nanoseconds.
        public var writtenAt: Int64
        /// How many entries follow.
        public var count: Int
    }

    /// Why a file is refused.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// Zero bytes.
        case empty
        /// Shorter than its header says (or than a header).
        case truncated(size: Int, expected: Int)
        /// Longer than its header says.
        case trailingBytes(size: Int, expected: Int)
        /// Not a state file.
        case badMagic
        /// Written by a newer Breakwater, or not a version this build knows.
        case unsupportedVersion(UInt32)
        /// An entry size this version does not use.
        case badEntrySize(UInt32)
        /// The checksum does not match the bytes.
        case checksumMismatch
        /// Written with another `hash_key`: its keys would match nobody.
        case foreignHashKey
        /// A reserved field is not zero.
        case reservedNotZero

        /// One line for the log and `breakwater state inspect`.
        public var description: String {
            switch self {
            case .empty: "the file is empty"
            case .truncated(let size, let expected): "truncated: \(size) bytes, the header needs \(expected)"
            case .trailingBytes(let size, let expected): "\(size) bytes where the header says \(expected)"
            case .badMagic: "not a Breakwater state file (bad magic)"
            case .unsupportedVersion(let v):
                v > StateFile.version ? "format version \(v) is newer than this build reads (\(StateFile.version))"
                    : "unknown format version \(v)"
            case .badEntrySize(let n): "entry size \(n), format \(StateFile.version) uses \(StateFile.entrySize)"
            case .checksumMismatch: "checksum mismatch: the file is corrupt"
            case .foreignHashKey: "written with another clients.hash_key: its keys would match no client"
            case .reservedNotZero: "a reserved field is not zero: the file is corrupt"
            }
        }
    }

    /// The fingerprint of `hasher`'s key: its hash of a fixed constant. Tells files written with
    /// another `hash_key` apart without revealing anything of the key.
    public static func fingerprint(of hasher: KeyedHasher) -> UInt64 {
        hasher.hash(Array("breakwater state file fingerprint v1".utf8))
    }

    // "bw-state" / "checksum": a public key, the checksum detects damage, not tampering.
    private static let checksumHasher = KeyedHasher(k0: 0x6277_2D73_7461_7465, k1: 0x6368_6563_6B73_756D)

    /// The whole file for `clients`.
    public static func encode(_ clients: [SavedClient], fingerprint: UInt64, writtenAt: Int64) -> [UInt8] {
        let body = headerSize + clients.count * entrySize
        var out = [UInt8](repeating: 0, count: body + checksumSize)
        out.withUnsafeMutableBytes { buffer in
            // Every field starts at a multiple of 8 and the array's storage is 16-byte aligned.
            func put(_ value: UInt64, _ offset: Int) {
                buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
            }
            buffer.copyBytes(from: magic)
            put(UInt64(version) | UInt64(entrySize) << 32, 8)
            put(fingerprint, 16)
            put(UInt64(bitPattern: writtenAt), 24)
            put(UInt64(clients.count), 32)
            var at = headerSize
            for c in clients {
                put(c.key, at)
                put(UInt64(bitPattern: c.windowEnd), at + 8)
                put(UInt64(bitPattern: c.lastSeen), at + 16)
                put(UInt64(bitPattern: c.expiresAt), at + 24)
                put(UInt64(c.consecutiveErrors) | UInt64(c.level) << 32, at + 32)
                put(UInt64(c.routeIndex), at + 40)
                at += entrySize
            }
            var state = checksumHasher.stream()
            state.combine(UnsafeRawBufferPointer(rebasing: buffer[..<body]))
            put(state.finalize(), body)
        }
        return out
    }

    /// The header and entries of `bytes`, or why they are refused. With `fingerprint`, a file
    /// written with another hash key is refused; without, any intact file is read (`inspect`).
    public static func decode(_ bytes: [UInt8], fingerprint: UInt64?) throws(Refusal) -> (Header, [SavedClient]) {
        let header = try decodeHeader(bytes, fingerprint: fingerprint)
        var clients: [SavedClient] = []
        clients.reserveCapacity(header.count)
        var at = headerSize
        for _ in 0..<header.count {
            let counts = word(bytes, at + 32)
            let route = word(bytes, at + 40)
            guard route >> 16 == 0 else { throw .reservedNotZero }
            clients.append(SavedClient(key: word(bytes, at), routeIndex: UInt16(route),
                                       level: UInt32(truncatingIfNeeded: counts >> 32),
                                       consecutiveErrors: UInt32(truncatingIfNeeded: counts),
                                       windowEnd: Int64(bitPattern: word(bytes, at + 8)),
                                       lastSeen: Int64(bitPattern: word(bytes, at + 16)),
                                       expiresAt: Int64(bitPattern: word(bytes, at + 24))))
            at += entrySize
        }
        return (header, clients)
    }

    /// The header of an intact file: magic, version, size, checksum, then the fingerprint, in
    /// that order, so a damaged file is called corrupt rather than foreign.
    public static func decodeHeader(_ bytes: [UInt8], fingerprint: UInt64?) throws(Refusal) -> Header {
        guard !bytes.isEmpty else { throw .empty }
        let minimum = headerSize + checksumSize
        guard bytes.count >= magic.count else { throw .truncated(size: bytes.count, expected: minimum) }
        guard bytes[..<magic.count].elementsEqual(magic) else { throw .badMagic }
        guard bytes.count >= minimum else { throw .truncated(size: bytes.count, expected: minimum) }
        let versions = word(bytes, 8)
        let version = UInt32(truncatingIfNeeded: versions)
        guard version == StateFile.version else { throw .unsupportedVersion(version) }
        let size = UInt32(truncatingIfNeeded: versions >> 32)
        guard size == UInt32(entrySize) else { throw .badEntrySize(size) }
        let count = word(bytes, 32)
        // Checked before multiplying: a damaged count must not overflow.
        let room = UInt64(bytes.count - minimum) / UInt64(entrySize)
        guard count <= room else {
            let expected = count > UInt64(Int.max / 2 / entrySize) ? Int.max : minimum + Int(count) * entrySize
            throw .truncated(size: bytes.count, expected: expected)
        }
        let expected = minimum + Int(count) * entrySize
        guard bytes.count == expected else { throw .trailingBytes(size: bytes.count, expected: expected) }
        let body = expected - checksumSize
        let sum = bytes.withUnsafeBytes { all in
            var state = checksumHasher.stream()
            state.combine(UnsafeRawBufferPointer(rebasing: all[..<body]))
            return state.finalize()
        }
        guard sum == word(bytes, body) else { throw .checksumMismatch }
        guard word(bytes, 40) == 0 else { throw .reservedNotZero }
        let print = word(bytes, 16)
        if let fingerprint, fingerprint != print { throw .foreignHashKey }
        return Header(version: version, fingerprint: print, writtenAt: Int64(bitPattern: word(bytes, 24)), count: Int(count))
    }

    private static func word(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }
}
