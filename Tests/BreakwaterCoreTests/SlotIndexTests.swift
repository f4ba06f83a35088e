import Testing
@testable import BreakwaterCore

/// The index on its own: both bucket formats, filled to their bound, against a plain model.
@Suite struct SlotIndexTests {
    @Test func bucketsAreFourBytesUpTo45875Slots() {
        #expect(SlotIndex(capacity: 16, maxSlots: 1).bucketSize == 4)
        #expect(SlotIndex(capacity: 16, maxSlots: 15_625).bucketSize == 4)
        #expect(SlotIndex(capacity: 16, maxSlots: 45_875).bucketSize == 4)
        #expect(SlotIndex(capacity: 16, maxSlots: 45_876).bucketSize == 8)
        #expect(SlotIndex(capacity: 16, maxSlots: 15_625_000).bucketSize == 8)
    }

    /// A dense array of keys with the index over it, compacted on removal as the shards do.
    struct Model {
        var index: SlotIndex
        var keys: [UInt64] = []
        // Keys 2k and 2k + 1 share the low 32 bits of their hashes, so their tags (and homes)
        // collide on purpose and only the key comparison tells them apart.
        static func hash(_ key: UInt64) -> UInt64 {
            (mix64(key) & 0xFFFF_FFFF_0000_0000) | (mix64(key >> 1) & 0xFFFF_FFFF)
        }

        init(maxSlots: Int) { index = SlotIndex(capacity: 16, maxSlots: maxSlots) }

        func find(_ key: UInt64) -> Int? { index.find(Model.hash(key)) { keys[$0] == key } }

        mutating func insert(_ key: UInt64) {
            keys.append(key)
            index.insert(Model.hash(key), slot: keys.count - 1)
        }

        mutating func remove(slot: Int) {
            index.remove(Model.hash(keys[slot]), slot: slot)
            let last = keys.count - 1
            if slot != last {
                keys[slot] = keys[last]
                index.move(Model.hash(keys[slot]), from: last, to: slot)
            }
            keys.removeLast()
        }

        func problem(absent: some Sequence<UInt64>) -> String? {
            guard index.count == keys.count else { return "count \(index.count), \(keys.count) keys" }
            for (slot, key) in keys.enumerated() where find(key) != slot { return "key \(key) not at \(slot)" }
            for key in absent where find(key) != nil { return "removed key \(key) still found" }
            return nil
        }
    }

    @Test(arguments: [50, 45_875, 60_000])
    func fillDrainAndRefillAgreeWithTheModel(maxSlots: Int) {
        var model = Model(maxSlots: maxSlots)
        var rng = SplitMix64(seed: UInt64(maxSlots))
        for key in 0..<UInt64(maxSlots) { model.insert(key) }
        #expect(model.problem(absent: []) == nil)
        var removed: [UInt64] = []
        for _ in 0..<(maxSlots / 2) {
            let slot = Int(rng.next() % UInt64(model.keys.count))
            removed.append(model.keys[slot])
            model.remove(slot: slot)
        }
        #expect(model.problem(absent: removed) == nil)
        for key in UInt64(maxSlots)..<UInt64(maxSlots + maxSlots / 2) { model.insert(key) }
        #expect(model.keys.count == maxSlots)
        #expect(model.problem(absent: removed) == nil)
        while !model.keys.isEmpty { model.remove(slot: Int(rng.next() % UInt64(model.keys.count))) }
        #expect(model.problem(absent: 0..<UInt64(maxSlots)) == nil)
    }
}
