import BreakwaterCore
import Testing

/// The session ticket key ring: which key encrypts, which still decrypt, on a clock that only
/// moves when told to.
@Suite struct TicketKeyRingTests {
    /// A repeatable generator (SplitMix64), so a failure can be replayed.
    struct Seeded: RandomNumberGenerator {
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
        var random = Seeded(state: 1)
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: &random)
        let first = ring.encryptionKey(now: 0, random: &random)
        #expect(first.name.count == 16 && first.secret.count == 64)
        #expect(first.cipherKey != first.hmacKey)
        #expect(ring.encryptionKey(now: hour - 1, random: &random) == first)
        #expect(ring.decryptionKey(named: first.name, now: hour - 1, random: &random)?.isCurrent == true)

        // Due: a new key encrypts; the first still decrypts, as an older key.
        let second = ring.encryptionKey(now: hour, random: &random)
        #expect(second != first && second.name != first.name)
        let old = ring.decryptionKey(named: first.name, now: hour, random: &random)
        #expect(old?.key == first && old?.isCurrent == false)
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour - 1, random: &random)?.key == first)

        // One interval later the first is forgotten, the second decrypts as the older key.
        let third = ring.encryptionKey(now: 2 * hour, random: &random)
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour, random: &random) == nil)
        #expect(ring.decryptionKey(named: second.name, now: 2 * hour, random: &random)?.isCurrent == false)
        #expect(ring.keys.map(\.name) == [third.name, second.name])
    }

    @Test func theScheduleKeepsItsPhaseWhenAskedLate() {
        var random = Seeded(state: 2)
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: &random)
        let first = ring.encryptionKey(now: 0, random: &random)
        // Asked half an interval after the rotation was due: the next is still at 2h, not 2.5h.
        _ = ring.encryptionKey(now: hour + hour / 2, random: &random)
        #expect(ring.nextRotation == 2 * hour)
        #expect(ring.decryptionKey(named: first.name, now: hour + hour / 2, random: &random) != nil)
    }

    @Test func aRingUnusedForMoreThanTwoIntervalsKeepsNoOldKey() {
        var random = Seeded(state: 3)
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: &random)
        let first = ring.encryptionKey(now: 0, random: &random)
        // The first key encrypted until 1h and may decrypt until 2h; at 2h30 it is past both.
        let fresh = ring.encryptionKey(now: 2 * hour + hour / 2, random: &random)
        #expect(ring.keys == [fresh])
        #expect(ring.decryptionKey(named: first.name, now: 2 * hour + hour / 2, random: &random) == nil)
        #expect(ring.nextRotation == 3 * hour)
    }

    @Test func aForcedRotationKeepsOnlyTheKeyItReplaces() {
        var random = Seeded(state: 4)
        var ring = TicketKeyRing(interval: .seconds(3600), now: 0, random: &random)
        let first = ring.encryptionKey(now: 0, random: &random)
        ring.rotate(now: 10, random: &random)
        let second = ring.encryptionKey(now: 10, random: &random)
        #expect(second != first)
        #expect(ring.decryptionKey(named: first.name, now: 10, random: &random)?.isCurrent == false)
        #expect(ring.nextRotation == 10 + hour)
        ring.rotate(now: 20, random: &random)
        #expect(ring.decryptionKey(named: first.name, now: 20, random: &random) == nil)
        #expect(ring.decryptionKey(named: second.name, now: 20, random: &random)?.isCurrent == false)
        #expect(ring.keys.count == 2)
    }

    @Test func anUnknownNameDecryptsNothing() {
        var random = Seeded(state: 5)
        var ring = TicketKeyRing(interval: .seconds(60), now: 0, random: &random)
        let key = ring.encryptionKey(now: 0, random: &random)
        var other = key.name
        other[0] ^= 1
        #expect(ring.decryptionKey(named: other, now: 0, random: &random) == nil)
        #expect(ring.decryptionKey(named: key.name.prefix(15), now: 0, random: &random) == nil)
    }

    @Test func theDescriptionNamesTheKeysAndNeverShowsTheSecrets() {
        var random = Seeded(state: 6)
        var ring = TicketKeyRing(interval: .seconds(60), now: 0, random: &random)
        ring.rotate(now: 1, random: &random)
        let text = "\(ring)"
        for key in ring.keys {
            let hex = key.secret.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            #expect(!text.contains(hex.prefix(8)))
            #expect(text.contains(key.name.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()))
        }
    }
}
