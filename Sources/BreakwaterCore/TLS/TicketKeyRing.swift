/// The keys that encrypt TLS session tickets, and their rotation.
///
/// The newest key encrypts every ticket issued; it is replaced every `interval`, and the key it
/// replaces still decrypts for one more interval, so a ticket is accepted for at least `interval`
/// after it was issued and at most twice that. Older keys are forgotten: their tickets get a full
/// handshake. Rotation is lazy (asked with the current time), so no timer is needed and tests move
/// a `ManualClock` instead of waiting. Keys come from `Random` (the system's generator in the
/// server, a seeded one in tests). The secrets never leave the ring except to the callback that
/// hands them to the TLS library, and `description` shows only the key names.
public struct TicketKeyRing<Random: RandomNumberGenerator & Sendable>: Sendable, CustomStringConvertible {
    /// One key of the ring.
    public typealias Key = TicketKey

    /// Newest first: the encrypting key, then at most one that still decrypts.
    public private(set) var keys: [Key]
    /// How long a key encrypts; it then decrypts for as long again.
    public var interval: Int64
    /// When the encrypting key is next replaced (monotonic nanoseconds).
    public private(set) var nextRotation: Int64
    private var random: Random

    /// A ring with one fresh key, replaced `interval` after `now` (monotonic nanoseconds).
    public init(interval: Duration, now: Int64, random: Random) {
        self.interval = Swift.max(1, interval.clampedNanoseconds)
        self.random = random
        keys = []
        nextRotation = now.addingClamped(self.interval)
        keys = [makeKey()]
    }

    /// The key that encrypts a ticket issued at `now`, rotating first if due.
    public mutating func encryptionKey(now: Int64) -> Key {
        rotateIfDue(now: now)
        return keys[0]
    }

    /// The key named `name` if it still decrypts at `now`, and whether it is the encrypting one
    /// (a ticket made with an older key should be replaced by a new one).
    public mutating func decryptionKey(named name: some Collection<UInt8>, now: Int64) -> (key: Key, isCurrent: Bool)? {
        rotateIfDue(now: now)
        guard let index = keys.firstIndex(where: { $0.name.elementsEqual(name) }) else { return nil }
        return (keys[index], index == 0)
    }

    /// Rotates now, whatever the schedule: a new key encrypts, the one it replaces still decrypts,
    /// any older one is forgotten. The next rotation is `interval` from `now`.
    public mutating func rotate(now: Int64) {
        keys = [makeKey(), keys[0]]
        nextRotation = now.addingClamped(interval)
    }

    /// Rotates when the schedule says so. When more than one interval has gone by unseen, the
    /// key that would still decrypt has outlived its second interval too, and goes with the rest.
    public mutating func rotateIfDue(now: Int64) {
        guard now >= nextRotation else { return }
        let missed = (now - nextRotation) / interval   // whole intervals beyond the due one
        let fresh = makeKey()
        keys = missed == 0 ? [fresh, keys[0]] : [fresh]
        nextRotation = nextRotation.addingClamped(interval.multipliedReportingOverflow(by: missed + 1).overflow
                                                  ? .max : interval * (missed + 1))
    }

    /// The names of the keys held, newest first; never the secrets.
    public var description: String { keys.map(\.description).joined(separator: ", ") }

    private mutating func makeKey() -> Key {
        var bytes = [UInt8](repeating: 0, count: Key.nameLength + 2 * Key.halfLength)
        for i in stride(from: 0, to: bytes.count, by: 8) {
            let word = random.next()
            for j in 0..<Swift.min(8, bytes.count - i) { bytes[i + j] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(j))) }
        }
        return Key(name: Array(bytes[..<Key.nameLength]), secret: Array(bytes[Key.nameLength...]))
    }
}

/// One ticket key: a public name sent in every ticket, and the secret that encrypts and
/// authenticates it.
public struct TicketKey: Sendable, Equatable, CustomStringConvertible {
    /// The length of `name`, as TLS libraries expect it.
    public static let nameLength = 16
    /// The length of each half of `secret` (AES-256 key, then HMAC-SHA256 key).
    public static let halfLength = 32

    /// Chosen at random; tells which key a ticket was made with.
    public let name: [UInt8]
    /// The cipher key (first 32 bytes) and the HMAC key (last 32 bytes).
    public let secret: [UInt8]

    /// The first 32 bytes of `secret`.
    public var cipherKey: ArraySlice<UInt8> { secret[..<Self.halfLength] }
    /// The last 32 bytes of `secret`.
    public var hmacKey: ArraySlice<UInt8> { secret[Self.halfLength...] }

    /// The name in hex; never the secret.
    public var description: String {
        "ticket key " + name.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
