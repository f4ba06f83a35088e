import BreakwaterCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every kind of bad state file, met by the real binary at start: each is refused in exactly one
/// log line naming why, and the proxy starts with an empty tracker and serves. (Every offset of
/// every truncation and every flipped byte are tried on the decoder itself in StateFileTests.)
@Suite struct StateCorruptFileTests {
    static let hashKey = "corrupt-file-tests-key-0123"
    static let rest = """
        [clients]
        hash_key = "\(hashKey)"
        [backoff]
        base = "60s"
        [state]
        file = "state/bw.state"
        save_interval = "1h"
        """

    /// A good file of two blocked clients, written with `secret`.
    static func goodFile(secret: String = hashKey) -> [UInt8] {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        let clients = (1...2).map {
            SavedClient(key: UInt64($0) * 0x9E37_79B9, routeIndex: 0, level: 1, consecutiveErrors: 1,
                        windowEnd: now + 60_000_000_000, lastSeen: now, expiresAt: now + 900_000_000_000)
        }
        return StateFile.encode(clients, fingerprint: StateFile.fingerprint(of: KeyedHasher(secret: secret)), writtenAt: now)
    }

    @Test func everyKindOfBadFileIsRefusedInOneLineAndTheProxyStartsAndServes() throws {
        let api = try startDemoAPI()
        defer { api.shutdown() }
        let first = try ProxyProcess(upstreams: [api.port], rest: Self.rest)
        #expect(first.stop() == 0)
        let path = first.dir.appendingPathComponent("state/bw.state")
        let good = Self.goodFile()
        var newer = good
        newer[8] = 2
        var kinds: [(name: String, bytes: [UInt8]?, why: String)] = [
            ("empty", [], "empty"),
            ("garbage", Array("not a state file at all, not at all".utf8), "bad magic"),
            ("one byte more", good + [0], "where the header says"),
            ("newer version", newer, "newer than this build reads"),
            ("another hash key", Self.goodFile(secret: "another-key-of-16-chars"), "another clients.hash_key"),
            ("a directory", nil, "not a regular file"),
        ]
        for cut in [4, 8, 20, 47, 48, 60, good.count - 9, good.count - 1] {
            kinds.append(("truncated at \(cut)", Array(good[..<cut]), "truncated"))
        }
        for at in [16, 30, 50, 100, good.count - 3] {
            var flipped = good
            flipped[at] ^= 0x10
            kinds.append(("byte \(at) flipped", flipped, "checksum mismatch"))
        }
        for (index, kind) in kinds.enumerated() {
            try? FileManager.default.removeItem(at: path)
            if let bytes = kind.bytes {
                try Data(bytes).write(to: path)
            } else {
                try FileManager.default.createDirectory(at: path, withIntermediateDirectories: false)
            }
            let proxy = try ProxyProcess(restarting: first)
            let refusals = proxy.logText.split(separator: "\n").filter { $0.contains("state file refused") }
            #expect(refusals.count == 1, "\(kind.name): \(proxy.logText)")
            #expect(refusals.first?.contains(kind.why) == true, "\(kind.name): \(refusals)")
            let token = "valid-\(index)"
            #expect(try request(port: proxy.port, "GET", "/api/v1/device/\(token)").status == 200, "\(kind.name)")
            #expect(proxy.stop() == 0, "\(kind.name)")
        }
        // The same file intact is taken: the refusals above are the damage's doing.
        try? FileManager.default.removeItem(at: path)
        try Data(good).write(to: path)
        let proxy = try ProxyProcess(restarting: first)
        let text = try request(port: proxy.adminPort, "GET", "/metrics").bodyText
        #expect(metricValue(text, "breakwater_state_loaded_entries") == 2, "\(proxy.logText)")
        #expect(!proxy.logText.contains("state file refused"))
        #expect(proxy.stop() == 0)
    }
}
