import BreakwaterCore
import Testing

/// The session ticket key ring: which key encrypts, which still decrypt, on a clock that only
/// moves when told to.
@Suite struct TicketKeyRingTests {
    /// A repeatable generator (SplitMix64), so a failure can be replayed.
    struct Seeded: RandomNumberGenerator, Sendable {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    let hour: Int64 = 3_600_000_000_000

    @Test func oneKeyEncryptsUntilTheIntervalEndsThenStillDecryptsForAnother() {
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: Seeded(state: 1))
        let first = ring.encryptionKey(now: 0)
        #expect(first.name.count == 16 && first.secret.count == 64)
        #expect(first.cipherKey != first.hmacKey)
        #expect(ring.encryptionKey(now: hour - 1) == first)
        #expect(ring.decryptionKey(named: first.name, now: hour - 1)?.isCurrent == true)

        // Due: a new key encrypts; the first still decrypts, as an older key.
        let second = ring.encryptionKey(now: hour)
        #expect(second != first && second.name != first.name)
        let old = ring.decryptionKey(named: first.name, now: hour)
        #expect(old?.key == first && old?.isCurrent == false)
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour - 1)?.key == first)

        // One interval later the first is forgotten, the second decrypts as the older key.
        let third = ring.encryptionKey(now: 2 * hour)
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour) == nil)
        #expect(ring.decryptionKey(named: second.name, now: 2 * hour)?.isCurrent == false)
        #expect(ring.keys.map(\.name) == [third.name, second.name])
    }

    @Test func theScheduleKeepsItsPhaseWhenAskedLate() {
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: Seeded(state: 2))
        let first = ring.encryptionKey(now: 0)
        // Asked half an interval after the rotation was due: the next is still at 2h, not 2.5h.
        _ = ring.encryptionKey(now: hour + hour / 2)
        #expect(ring.nextRotation == 2 * hour)
        #expect(ring.decryptionKey(named: first.name, now: hour + hour / 2) != nil)
    }

    @Test func aRingUnusedForMoreThanTwoIntervalsKeepsNoOldKey() {
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: Seeded(state: 3))
        let first = ring.encryptionKey(now: 0)
        // The first key encrypted until 1h and may decrypt until 2h; at 2h30 it is past both.
        let fresh = ring.encryptionKey(now: 2 * hour + hour / 2)
        #expect(ring.keys == [fresh])
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour + hour / 2) == nil)
        #expect(ring.nextRotation == 3 * hour)
    }

    @Test func aForcedRotationKeepsOnlyTheKeyItReplaces() {
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: Seeded(state: 4))
        let first = ring.encryptionKey(now: 0)
        ring.rotate(now: 10)
        let second = ring.encryptionKey(now: 10)
        #expect(second != first)
        #expect(ring.decryptionKey(named: first.name, now: 10)?.isCurrent == false)
        #expect(ring.nextRotation == 10 + hour)
        ring.rotate(now: 20)
        #expect(ring.decryptionKey(named: first.name, now: 20) == nil)
        #expect(ring.decryptionKey(named: second.name, now: 20)?.isCurrent == false)
        #expect(ring.keys.count == 2)
    }

    @Test func anUnknownNameDecryptsNothing() {
        var ring = TicketKeyRing(interval: .seconds(60), now: 0, random: Seeded(state: 5))
        let key = ring.encryptionKey(now: 0)
        var other = key.name
        other[0] ^= 1
        #expect(ring.decryptionKey(named: other, now: 0) == nil)
        #expect(ring.decryptionKey(named: key.name.prefix(15), now: 0) == nil)
    }

    @Test func theDescriptionNamesTheKeysAndNeverShowsTheSecrets() {
        var ring = TicketKeyRing(interval: .seconds(60), now: 0, random: Seeded(state: 6))
        ring.rotate(now: 1)
        let text = "\(ring)"
        for key in ring.keys {
            let hex = key.secret.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            #expect(!text.contains(hex.prefix(8)))
            #expect(text.contains(key.name.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()))
        }
    }
}
