/// An open-addressing hash index from a 64-bit hash to a slot of a dense array, shared by the
/// tracker and the rate limiter.
///
/// Why not `Dictionary<ClientKey, Entry>`: the table holds up to `max_clients` entries, and the
/// bound must hold in bytes too. A bucket here is eight bytes, the low 32 bits of the hash (a tag
/// that also gives the home bucket) and the slot + 1, so most probes are answered without
/// touching the entry, and the entries themselves stay in one flat array with 32-bit links.
/// Linear probing with backward-shift deletion keeps the table free of tombstones.
struct SlotIndex {
    // 0 = empty; else tag << 32 | (slot + 1).
    private var buckets: [UInt64]
    private var mask: Int
    /// Occupied buckets.
    private(set) var count = 0

    // Grow at 70 % load: linear probing stays short, and the tag comparison keeps probes cheap.
    private static let loadNumerator = 7
    private static let loadDenominator = 10

    /// An empty index with room for `capacity` slots before it first grows.
    init(capacity: Int) {
        var size = 8
        while size * SlotIndex.loadNumerator < Swift.max(1, capacity) * SlotIndex.loadDenominator {
            size <<= 1
        }
        buckets = Array(repeating: 0, count: size)
        mask = size - 1
    }

    /// Bytes held by the bucket array.
    var byteCount: Int { buckets.capacity * MemoryLayout<UInt64>.stride }

    @inline(__always)
    private func home(ofTag tag: UInt64) -> Int {
        Int(truncatingIfNeeded: tag) & mask
    }

    /// The slot whose hash is `hash` and for which `isMatch(slot)` holds, or nil.
    ///
    /// `isMatch` compares the full key, so two keys sharing a tag are told apart.
    @inline(__always)
    func find(_ hash: UInt64, isMatch: (Int) -> Bool) -> Int? {
        let tag = hash & 0xFFFF_FFFF
        var i = home(ofTag: tag)
        while true {
            let bucket = buckets[i]
            if bucket == 0 { return nil }
            if bucket >> 32 == tag {
                let slot = Int(truncatingIfNeeded: bucket & 0xFFFF_FFFF) - 1
                if isMatch(slot) { return slot }
            }
            i = (i + 1) & mask
        }
    }

    /// Records that `slot` holds the key with `hash`; the key must not be present yet.
    mutating func insert(_ hash: UInt64, slot: Int) {
        if (count + 1) * SlotIndex.loadDenominator > buckets.count * SlotIndex.loadNumerator {
            grow()
        }
        place(hash & 0xFFFF_FFFF, slot: slot)
        count += 1
    }

    /// Forgets the bucket of `slot` (whose key has `hash`).
    mutating func remove(_ hash: UInt64, slot: Int) {
        guard var hole = bucketIndex(of: hash, slot: slot) else { return }
        // Backward shift: pull later members of the probe run into the hole when their home
        // allows it, so no tombstone is ever needed.
        var j = (hole + 1) & mask
        while buckets[j] != 0 {
            let homeOfJ = home(ofTag: buckets[j] >> 32)
            if (j - homeOfJ) & mask >= (j - hole) & mask {
                buckets[hole] = buckets[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        buckets[hole] = 0
        count -= 1
    }

    /// Points the bucket of the key with `hash` from slot `old` to slot `new` (after a compaction).
    mutating func move(_ hash: UInt64, from old: Int, to new: Int) {
        guard let i = bucketIndex(of: hash, slot: old) else { return }
        buckets[i] = (hash & 0xFFFF_FFFF) << 32 | UInt64(new + 1)
    }

    private func bucketIndex(of hash: UInt64, slot: Int) -> Int? {
        let wanted = (hash & 0xFFFF_FFFF) << 32 | UInt64(slot + 1)
        var i = home(ofTag: hash & 0xFFFF_FFFF)
        while buckets[i] != 0 {
            if buckets[i] == wanted { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    private mutating func place(_ tag: UInt64, slot: Int) {
        var i = home(ofTag: tag)
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = tag << 32 | UInt64(slot + 1)
    }

    private mutating func grow() {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        mask = buckets.count - 1
        for bucket in old where bucket != 0 {
            place(bucket >> 32, slot: Int(truncatingIfNeeded: bucket & 0xFFFF_FFFF) - 1)
        }
    }
}
