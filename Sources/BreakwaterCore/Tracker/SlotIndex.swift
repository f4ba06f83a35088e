/// An open-addressing hash index from a 64-bit hash to a slot of a dense array, shared by the
/// tracker and the rate limiter.
///
/// Why not `Dictionary<ClientKey, Entry>`: the table holds up to `max_clients` entries, and the
/// bound must hold in bytes too. A bucket here holds the slot + 1 and, in the bits left, the low
/// bits of the hash: a tag that also gives the home bucket, so most probes are answered without
/// touching the entry, and the entries themselves stay in one flat array with 32-bit links.
/// Linear probing with backward-shift deletion keeps the table free of tombstones.
///
/// A bucket is four bytes when the bound (`maxSlots`) leaves room in 32 bits for the slot and a
/// tag at least as wide as the largest table's bucket number, which holds up to 45,875 slots
/// (a million clients over 64 shards need 15,625); eight bytes (a 32-bit tag) otherwise. The
/// smaller index is not only half the memory: a lookup's first random load is into it, and at
/// a million clients four-byte buckets (8 MiB) stay in a cache that eight-byte ones overflow.
struct SlotIndex {
    // Exactly one of the two is used, chosen once by `compact`; the other stays empty.
    private var narrow: SlotTable<UInt32>
    private var wide: SlotTable<UInt64>
    private let compact: Bool

    /// An empty index with room for `capacity` slots before it first grows, for slots below
    /// `maxSlots`.
    init(capacity: Int, maxSlots: Int) {
        let bound = Swift.max(1, maxSlots)
        // slot + 1 <= bound must fit in the slot field.
        let slotBits = Int.bitWidth - bound.leadingZeroBitCount
        let largest = SlotTable<UInt32>.bucketCount(for: bound)
        compact = 32 - slotBits >= largest.trailingZeroBitCount
        if compact {
            narrow = SlotTable(capacity: capacity, slotBits: slotBits)
            wide = SlotTable(capacity: 0, slotBits: 32)
        } else {
            narrow = SlotTable(capacity: 0, slotBits: 16)
            wide = SlotTable(capacity: capacity, slotBits: 32)
        }
    }

    /// Occupied buckets.
    var count: Int { compact ? narrow.count : wide.count }

    /// Bytes held by the bucket arrays.
    var byteCount: Int { narrow.byteCount + wide.byteCount }

    /// Bytes per bucket: 4 or 8.
    var bucketSize: Int { compact ? 4 : 8 }

    /// The slot whose hash is `hash` and for which `isMatch(slot)` holds, or nil.
    ///
    /// `isMatch` compares the full key, so two keys sharing a tag are told apart.
    @inline(__always)
    func find(_ hash: UInt64, isMatch: (Int) -> Bool) -> Int? {
        compact ? narrow.find(hash, isMatch: isMatch) : wide.find(hash, isMatch: isMatch)
    }

    /// Records that `slot` (below `maxSlots`) holds the key with `hash`; the key must not be
    /// present yet.
    mutating func insert(_ hash: UInt64, slot: Int) {
        if compact { narrow.insert(hash, slot: slot) } else { wide.insert(hash, slot: slot) }
    }

    /// Forgets the bucket of `slot` (whose key has `hash`).
    mutating func remove(_ hash: UInt64, slot: Int) {
        if compact { narrow.remove(hash, slot: slot) } else { wide.remove(hash, slot: slot) }
    }

    /// Points the bucket of the key with `hash` from slot `old` to slot `new` (after a compaction).
    mutating func move(_ hash: UInt64, from old: Int, to new: Int) {
        if compact { narrow.move(hash, from: old, to: new) } else { wide.move(hash, from: old, to: new) }
    }
}

/// The table behind `SlotIndex`, with buckets of `Bucket`: 0 = empty, else
/// `tag << slotBits | (slot + 1)`, the tag being the low `Bucket.bitWidth - slotBits` bits of the
/// hash.
struct SlotTable<Bucket: FixedWidthInteger & UnsignedInteger> {
    private var buckets: [Bucket]
    private var mask: Int
    private let slotBits: Int
    private let tagMask: UInt64
    /// Occupied buckets.
    private(set) var count = 0

    // Grow at 70 % load: linear probing stays short, and the tag comparison keeps probes cheap.
    private static var loadNumerator: Int { 7 }
    private static var loadDenominator: Int { 10 }

    /// The bucket count of a table grown to hold `slots` entries (at least 8).
    static func bucketCount(for slots: Int) -> Int {
        var size = 8
        while size * loadNumerator < Swift.max(1, slots) * loadDenominator { size <<= 1 }
        return size
    }

    /// An empty table with room for `capacity` slots, whose slot + 1 fits in `slotBits` bits.
    init(capacity: Int, slotBits: Int) {
        precondition(slotBits > 0 && slotBits < Bucket.bitWidth)
        self.slotBits = slotBits
        tagMask = UInt64.max >> (64 - (Bucket.bitWidth - slotBits))
        let size = SlotTable.bucketCount(for: capacity)
        buckets = Array(repeating: 0, count: size)
        mask = size - 1
    }

    /// Bytes held by the bucket array.
    var byteCount: Int { buckets.capacity * MemoryLayout<Bucket>.stride }

    @inline(__always)
    private func tag(of hash: UInt64) -> Bucket {
        Bucket(truncatingIfNeeded: hash & tagMask)
    }

    @inline(__always)
    private func home(ofTag tag: Bucket) -> Int {
        Int(truncatingIfNeeded: tag) & mask
    }

    @inline(__always)
    private func bucket(tag: Bucket, slot: Int) -> Bucket {
        tag << slotBits | Bucket(truncatingIfNeeded: slot + 1)
    }

    /// `SlotIndex.find`.
    @inline(__always)
    func find(_ hash: UInt64, isMatch: (Int) -> Bool) -> Int? {
        let tag = tag(of: hash)
        var i = home(ofTag: tag)
        while true {
            let bucket = buckets[i]
            if bucket == 0 { return nil }
            if bucket >> slotBits == tag {
                let slot = Int(truncatingIfNeeded: bucket & (1 << slotBits - 1)) - 1
                if isMatch(slot) { return slot }
            }
            i = (i + 1) & mask
        }
    }

    /// `SlotIndex.insert`.
    mutating func insert(_ hash: UInt64, slot: Int) {
        precondition(slot >= 0 && slot + 1 < 1 << slotBits, "slot \(slot) beyond the index's bound")
        if (count + 1) * SlotTable.loadDenominator > buckets.count * SlotTable.loadNumerator {
            grow()
        }
        place(tag(of: hash), slot: slot)
        count += 1
    }

    /// `SlotIndex.remove`.
    mutating func remove(_ hash: UInt64, slot: Int) {
        guard var hole = bucketIndex(of: hash, slot: slot) else { return }
        // Backward shift: pull later members of the probe run into the hole when their home
        // allows it, so no tombstone is ever needed.
        var j = (hole + 1) & mask
        while buckets[j] != 0 {
            let homeOfJ = home(ofTag: buckets[j] >> slotBits)
            if (j - homeOfJ) & mask >= (j - hole) & mask {
                buckets[hole] = buckets[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        buckets[hole] = 0
        count -= 1
    }

    /// `SlotIndex.move`.
    mutating func move(_ hash: UInt64, from old: Int, to new: Int) {
        guard let i = bucketIndex(of: hash, slot: old) else { return }
        buckets[i] = bucket(tag: tag(of: hash), slot: new)
    }

    private func bucketIndex(of hash: UInt64, slot: Int) -> Int? {
        let tag = tag(of: hash)
        let wanted = bucket(tag: tag, slot: slot)
        var i = home(ofTag: tag)
        while buckets[i] != 0 {
            if buckets[i] == wanted { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    private mutating func place(_ tag: Bucket, slot: Int) {
        var i = home(ofTag: tag)
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = bucket(tag: tag, slot: slot)
    }

    private mutating func grow() {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        mask = buckets.count - 1
        // The tag holds at least as many bits as the largest table's bucket number (see
        // `SlotIndex`), so the home of every bucket is known without its key.
        precondition(Bucket.bitWidth - slotBits >= buckets.count.trailingZeroBitCount, "index grown past its bound")
        for bucket in old where bucket != 0 {
            place(bucket >> slotBits, slot: Int(truncatingIfNeeded: bucket & (1 << slotBits - 1)) - 1)
        }
    }
}
