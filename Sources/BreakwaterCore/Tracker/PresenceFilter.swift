#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// How many tracked keys fall on each value of the top bits of their hash: the tracker's way to
/// answer "not tracked" without taking a shard's lock.
///
/// A counter is zero exactly when no tracked key maps to it, so a zero means the key is not in
/// the table (and the request is forwarded at once), while a non-zero count only says it may be
/// (the lock and the index decide). Most clients of a proxy are never tracked, so most requests
/// end here: no lock, no write, nothing shared between threads but a read of one byte.
///
/// The counter of a key is chosen by the top bits of its hash, which also choose its shard, so
/// every counter belongs to one shard and is only ever changed under that shard's lock: a plain
/// load and store suffice, as atomics so that the lock-free reads are not data races.
///
/// Counters are four bits, two to a byte, `countersPerClient` per client of the table's bound
/// (1 MiB for a million clients): small enough to stay in cache, which is the point (a filter
/// that misses the cache costs what the lock it saves costs), and sparse enough that a full
/// table still answers about six untracked keys in ten from the filter. A counter that reaches 15
/// stays there (a false "may be" for good, never a false "no"); with on average at most half a
/// key per counter, that takes 15 keys on one counter, which keyed hashes practically never
/// produce.
struct PresenceFilter: @unchecked Sendable {
    // Zero-filled by calloc, so pages never written stay unallocated. Counter i is the low
    // nibble of byte i / 2 for even i, the high nibble for odd i.
    private let bytes: UnsafeMutablePointer<Atomic<UInt8>>
    // 64 minus log2 of the counter count: a hash's counter is `hash >> shift`.
    private let shift: UInt64
    /// How many counters (a power of two).
    let count: Int

    /// Counters per client of the bound, before rounding up to a power of two.
    static let countersPerClient = 2
    /// A counter's ceiling, where it sticks.
    static let saturated: UInt8 = 15
    /// The largest filter: 2^27 counters (64 MiB), reached past 67 million clients.
    private static let maxCount = 1 << 27

    /// A filter for a table of at most `capacity` keys over `shards` shards (a power of two),
    /// all counters zero. Must be released with `deallocate`.
    init(capacity: Int, shards: Int) {
        // Two counters per shard at least, so both halves of a byte belong to one shard.
        var size = 128
        while size < 2 * shards || (size < PresenceFilter.countersPerClient * capacity && size < PresenceFilter.maxCount) {
            size <<= 1
        }
        guard let raw = calloc(size / 2, MemoryLayout<UInt8>.stride) else {
            fatalError("cannot allocate the tracker's presence filter (\(size / 2) bytes)")
        }
        bytes = raw.bindMemory(to: Atomic<UInt8>.self, capacity: size / 2)
        count = size
        shift = UInt64(64 - size.trailingZeroBitCount)
    }

    /// Frees the counters; the filter must not be used afterwards.
    func deallocate() {
        free(bytes)
    }

    /// Bytes held by the counters.
    var byteCount: Int { count / 2 }

    /// The counter of `hash`.
    @inline(__always)
    func slot(of hash: UInt64) -> Int {
        Int(truncatingIfNeeded: hash >> shift)
    }

    /// False only if no tracked key has the counter of `hash`. Safe without any lock.
    @inline(__always)
    func mayContain(_ hash: UInt64) -> Bool {
        value(at: slot(of: hash)) != 0
    }

    /// The count of counter `slot`.
    @inline(__always)
    func value(at slot: Int) -> UInt8 {
        bytes[slot >> 1].load(ordering: .relaxed) >> UInt8((slot & 1) << 2) & 0xF
    }

    /// A key with `hash` was added. Only under the lock of the key's shard.
    @inline(__always)
    func add(_ hash: UInt64) {
        let i = slot(of: hash)
        let byte = bytes[i >> 1].load(ordering: .relaxed)
        let nibble = UInt8((i & 1) << 2)
        if byte >> nibble & 0xF != PresenceFilter.saturated {
            bytes[i >> 1].store(byte &+ 1 << nibble, ordering: .relaxed)
        }
    }

    /// A key with `hash` was removed. Only under the lock of the key's shard.
    @inline(__always)
    func remove(_ hash: UInt64) {
        let i = slot(of: hash)
        let byte = bytes[i >> 1].load(ordering: .relaxed)
        let nibble = UInt8((i & 1) << 2)
        let n = byte >> nibble & 0xF
        // A saturated counter no longer counts: it stays.
        if n != PresenceFilter.saturated && n != 0 {
            bytes[i >> 1].store(byte &- 1 << nibble, ordering: .relaxed)
        }
    }
}
