import Testing
@testable import BreakwaterCore

/// The state file: the tracker saved by one process and loaded by the next, across a downtime,
/// and every kind of damaged or foreign file refused. Manual clocks only: nothing sleeps.
@Suite struct StateFileTests {
    static let hasher = KeyedHasher(secret: "state-tests-hash-key-0123")
    static let fingerprint = StateFile.fingerprint(of: hasher)
    /// 2026-12-04T00:00:00Z.
    static let wallAtSave: Int64 = 1_796_342_400 * 1_000_000_000

    let blocked = ClientKey(value: 0xB10C)
    let shortWindow = ClientKey(value: 0x5407)
    let belowThreshold = ClientKey(value: 0xBE10)
    let cleared = ClientKey(value: 0xC1EA)
    let forgotten = ClientKey(value: 0xF0F0)

    func tracker(_ clock: ManualClock) -> ErrorTracker<ManualClock> {
        ErrorTracker(maxClients: 1_000, clock: clock, shards: 4, random: { 0 })
    }

    func fail(_ t: ErrorTracker<ManualClock>, _ key: ClientKey, _ p: BackoffPolicy, route: Int = 0) {
        _ = t.record(key, outcome: .error, policy: p, routeIndex: route, upstreamRetryAfter: nil)
    }

    /// A tracker on a monotonic clock at 1000 s holding each kind of client, saved at `wallAtSave`.
    func savedFile() -> (bytes: [UInt8], count: Int) {
        let clock = ManualClock(1_000_000_000_000)
        let t = tracker(clock)
        let long = BackoffPolicy(base: .seconds(60), max: .seconds(600), resetAfter: .seconds(900))
        fail(t, blocked, long, route: 2)                                  // level 1, 60 s window
        fail(t, shortWindow, BackoffPolicy(base: .seconds(1)))            // level 1, 1 s window
        fail(t, belowThreshold, BackoffPolicy(threshold: 3))              // 1 error, no window
        fail(t, cleared, long)
        _ = t.record(cleared, outcome: .success, policy: long, routeIndex: 0, upstreamRetryAfter: nil)
        fail(t, forgotten, BackoffPolicy(base: .seconds(1), resetAfter: .seconds(10)))  // expires 11 s on
        let clocks = ClockPair(monotonic: clock.nanoseconds(), wall: Self.wallAtSave)
        return t.saveState(fingerprint: Self.fingerprint, clocks: clocks)
    }

    @Test func blockedClientsStayBlockedAcrossADowntimeByTheWallClock() throws {
        let file = savedFile()
        #expect(file.count == 4, "blocked, short window, below threshold, forgotten-later; not the cleared one")
        // The next process: its monotonic clock starts near zero, 20 s of wall time later.
        let clock = ManualClock(5_000_000_000)
        let t = tracker(clock)
        let clocks = ClockPair(monotonic: clock.nanoseconds(), wall: Self.wallAtSave + 20_000_000_000)
        let loaded = try t.loadState(file.bytes, fingerprint: Self.fingerprint, clocks: clocks)
        #expect(loaded.header.count == 4)
        #expect(loaded.header.writtenAt == Self.wallAtSave)
        #expect(loaded.taken == 3, "the entry whose reset_after ran out while down is over")
        let p = BackoffPolicy()
        // 60 s window, 20 s of it spent down: 40 s left.
        #expect(t.check(blocked, policy: p) == .reject(.backoff, retryAfter: .seconds(40)))
        #expect(t.client(blocked)?.level == 1)
        #expect(t.client(blocked)?.routeIndex == 2)
        // The 1 s window ended while down: the next request is the probe, and the level is kept,
        // so failing it opens the second window (2 s), not a first one.
        #expect(t.check(shortWindow, policy: p) == .probe)
        let next = t.record(shortWindow, outcome: .error, policy: BackoffPolicy(base: .seconds(1)), routeIndex: 0,
                            upstreamRetryAfter: nil)
        #expect(next == .seconds(2))
        #expect(t.client(belowThreshold)?.consecutiveErrors == 1)
        #expect(t.client(belowThreshold)?.level == 0)
        #expect(t.check(belowThreshold, policy: p) == .forward)
        #expect(t.client(forgotten) == nil)
        #expect(t.check(forgotten, policy: p) == .forward)
        #expect(t.client(cleared) == nil)
        #expect(t.integrityProblem() == nil)
        // The rest of the window passes on the new clock: the blocked client probes.
        clock.advance(by: .seconds(40))
        #expect(t.check(blocked, policy: p) == .probe)
    }

    @Test func resetAfterCountsTheTimeSpentDown() throws {
        let file = savedFile()
        // 900 s reset_after past the 60 s window's end: 960 s after the save everything is over.
        let t = tracker(ManualClock(0))
        let loaded = try t.loadState(file.bytes, fingerprint: Self.fingerprint,
                                     clocks: ClockPair(monotonic: 0, wall: Self.wallAtSave + 961_000_000_000))
        #expect(loaded.taken == 0)
        #expect(t.trackedCount == 0)
    }

    @Test func aKeyAlreadyTrackedKeepsItsState() throws {
        let file = savedFile()
        let clock = ManualClock(0)
        let t = tracker(clock)
        fail(t, blocked, BackoffPolicy(base: .seconds(5)))
        try t.loadState(file.bytes, fingerprint: Self.fingerprint, clocks: ClockPair(monotonic: 0, wall: Self.wallAtSave))
        #expect(t.check(blocked, policy: BackoffPolicy()) == .reject(.backoff, retryAfter: .seconds(5)))
    }

    @Test func encodeDecodeRoundTrip() throws {
        let clients = [
            SavedClient(key: 1, routeIndex: 0, level: 0, consecutiveErrors: 1, windowEnd: .min, lastSeen: 5, expiresAt: .max),
            SavedClient(key: .max, routeIndex: .max, level: .max, consecutiveErrors: .max, windowEnd: -7, lastSeen: .min,
                        expiresAt: 42),
        ]
        let bytes = StateFile.encode(clients, fingerprint: 99, writtenAt: 123)
        #expect(bytes.count == StateFile.headerSize + 2 * StateFile.entrySize + StateFile.checksumSize)
        #expect(Array(bytes[..<8]) == Array("BWSTATE\0".utf8))
        let (header, decoded) = try StateFile.decode(bytes, fingerprint: 99)
        #expect(header == StateFile.Header(version: 1, fingerprint: 99, writtenAt: 123, count: 2))
        #expect(decoded == clients)
        // Without a fingerprint (inspect), any intact file is read.
        #expect(try StateFile.decode(bytes, fingerprint: nil).1 == clients)
        let empty = StateFile.encode([], fingerprint: 99, writtenAt: 0)
        #expect(try StateFile.decode(empty, fingerprint: 99).1.isEmpty)
    }

    @Test func theFingerprintRevealsNothingOfTheKeyAndTellsKeysApart() {
        let other = StateFile.fingerprint(of: KeyedHasher(secret: "another-hash-key-456789"))
        #expect(other != Self.fingerprint)
        #expect(StateFile.fingerprint(of: KeyedHasher(secret: "state-tests-hash-key-0123")) == Self.fingerprint)
        let bytes = savedFile().bytes
        let secret = Array("state-tests-hash-key-0123".utf8)
        #expect(!bytes.indices.contains { bytes[$0...].starts(with: secret) })
    }

    // MARK: Refused files

    /// Loads `bytes` into a fresh tracker: must throw, leave it empty, and not crash.
    func expectRefused(_ bytes: [UInt8], _ comment: Comment) -> StateFile.Refusal? {
        let t = tracker(ManualClock(0))
        var refusal: StateFile.Refusal?
        do {
            try t.loadState(bytes, fingerprint: Self.fingerprint, clocks: ClockPair(monotonic: 0, wall: Self.wallAtSave))
            Issue.record("accepted: \(comment)")
        } catch {
            refusal = error
        }
        #expect(t.trackedCount == 0, comment)
        return refusal
    }

    @Test func truncatedAtEveryOffsetIsRefused() {
        let bytes = savedFile().bytes
        for length in 0..<bytes.count {
            let refusal = expectRefused(Array(bytes[..<length]), "truncated to \(length) bytes")
            if length == 0 { #expect(refusal == .empty) }
            if length >= 8 {
                guard case .truncated = refusal else {
                    Issue.record("truncated to \(length): \(String(describing: refusal))")
                    continue
                }
            }
        }
        _ = expectRefused(bytes + [0], "one byte too many")
    }

    @Test func everyFlippedByteIsRefused() {
        let bytes = savedFile().bytes
        for offset in bytes.indices {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var damaged = bytes
                damaged[offset] ^= mask
                _ = expectRefused(damaged, "byte \(offset) ^ \(mask)")
            }
        }
    }

    @Test func newerOrUnknownVersionIsRefusedEvenWithAGoodChecksum() {
        for version: UInt32 in [0, 2, .max] {
            var bytes = StateFile.encode([], fingerprint: Self.fingerprint, writtenAt: 0)
            withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
            let refusal = expectRefused(resummed(bytes), "version \(version)")
            #expect(refusal == .unsupportedVersion(version))
        }
        #expect(StateFile.Refusal.unsupportedVersion(2).description.contains("newer"))
    }

    @Test func aFileOfAnotherHashKeyIsRefusedAsForeign() {
        let other = StateFile.fingerprint(of: KeyedHasher(secret: "another-hash-key-456789"))
        let clients = [SavedClient(key: 1, routeIndex: 0, level: 1, consecutiveErrors: 1,
                                   windowEnd: Self.wallAtSave + 1_000_000_000_000, lastSeen: Self.wallAtSave,
                                   expiresAt: Self.wallAtSave + 2_000_000_000_000)]
        let refusal = expectRefused(StateFile.encode(clients, fingerprint: other, writtenAt: Self.wallAtSave), "another key")
        #expect(refusal == .foreignHashKey)
    }

    @Test func garbageIsRefused() {
        var rng = SplitMix64(seed: 7)
        let noise = (0..<1_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        #expect(expectRefused(noise, "noise") == .badMagic)
        #expect(expectRefused(Array("[server]\nlisten = \"x\"\n".utf8), "a conf file") == .badMagic)
        // The right magic and noise after it.
        #expect(expectRefused(StateFile.magic + noise, "magic then noise") != nil)
        // A huge count must not overflow or allocate.
        var huge = StateFile.encode([], fingerprint: Self.fingerprint, writtenAt: 0)
        huge.replaceSubrange(32..<40, with: [UInt8](repeating: 0xFF, count: 8))
        guard case .truncated = expectRefused(resummed(huge), "count 2^64-1") else {
            Issue.record("a huge count is not called truncated")
            return
        }
    }

    @Test func reservedBytesMustBeZero() {
        var bytes = savedFile().bytes
        bytes[StateFile.headerSize + 42] = 1  // an entry's reserved bytes after the route index
        #expect(expectRefused(resummed(bytes), "reserved byte set") == .reservedNotZero)
    }

    /// `bytes` with its checksum recomputed, so only the change under test is wrong.
    func resummed(_ bytes: [UInt8]) -> [UInt8] {
        let body = Array(bytes.dropLast(StateFile.checksumSize))
        let hasher = KeyedHasher(k0: 0x6277_2D73_7461_7465, k1: 0x6368_6563_6B73_756D)
        var sum = hasher.hash(body).littleEndian
        return body + withUnsafeBytes(of: &sum) { Array($0) }
    }
}
