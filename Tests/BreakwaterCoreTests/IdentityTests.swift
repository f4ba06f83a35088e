import Testing
@testable import BreakwaterCore

@Suite struct IdentityTests {
    func identity(trusted: [String] = [], ipv6Prefix: Int = 64, secret: String = "s3cret") -> ClientIdentity {
        var clients = ClientsConfig()
        clients.trustedProxies = trusted.map { CIDR(parsing: $0)! }
        clients.ipv6Prefix = ipv6Prefix
        return ClientIdentity(clients: clients, hasher: KeyedHasher(secret: secret))
    }

    func ip(_ text: String) -> IPAddress { IPAddress(parsing: text)! }

    /// Headers as a request would have them; names lower-case.
    func headers(_ fields: [String: String]) -> (String) -> String? {
        { fields[$0] }
    }

    @Test func forwardedForFromAnUntrustedPeerIsIgnored() {
        let id = identity(trusted: ["10.0.0.0/8"])
        #expect(id.clientAddress(peer: ip("203.0.113.7"), forwardedFor: "198.51.100.1") == ip("203.0.113.7"))
        let forged = id.key(parts: [.ip], routeName: "r", peer: ip("203.0.113.7"),
                            header: headers(["x-forwarded-for": "198.51.100.1"]))
        let plain = id.key(parts: [.ip], routeName: "r", peer: ip("203.0.113.7"), header: headers([:]))
        #expect(forged == plain)
    }

    @Test func trustedProxyChainGivesTheRightMostUntrustedHop() {
        let id = identity(trusted: ["10.0.0.0/8", "192.168.1.1"])
        // The client forged "1.1.1.1"; the real client is 198.51.100.9, seen by two trusted proxies.
        let xff = "1.1.1.1, 198.51.100.9, 10.1.2.3"
        #expect(id.clientAddress(peer: ip("192.168.1.1"), forwardedFor: xff) == ip("198.51.100.9"))
        #expect(id.clientAddress(peer: ip("10.9.9.9"), forwardedFor: "198.51.100.9:4711") == ip("198.51.100.9"))
        #expect(id.clientAddress(peer: ip("10.9.9.9"), forwardedFor: "[2001:db8::1]:443, 10.0.0.2") == ip("2001:db8::"))
    }

    @Test func allTrustedHopsGiveTheLeftMost() {
        let id = identity(trusted: ["10.0.0.0/8"])
        #expect(id.clientAddress(peer: ip("10.0.0.1"), forwardedFor: "10.0.0.3,10.0.0.2") == ip("10.0.0.3"))
        #expect(id.clientAddress(peer: ip("10.0.0.1"), forwardedFor: nil) == ip("10.0.0.1"))
    }

    @Test func malformedHopStopsAtTheLastTrustedAddress() {
        let id = identity(trusted: ["10.0.0.0/8"])
        #expect(id.clientAddress(peer: ip("10.0.0.1"), forwardedFor: "198.51.100.9, garbage, 10.0.0.2") == ip("10.0.0.2"))
        #expect(id.clientAddress(peer: ip("10.0.0.1"), forwardedFor: "unknown") == ip("10.0.0.1"))
        #expect(id.clientAddress(peer: ip("10.0.0.1"), forwardedFor: "198.51.100.9, , 10.0.0.2") == ip("198.51.100.9"))
    }

    @Test func ipv6IsGroupedByPrefixAndIPv4IsNot() {
        let id = identity()
        let a = id.key(parts: [.ip], routeName: "r", peer: ip("2001:db8:1:2:aaaa::1"), header: headers([:]))
        let b = id.key(parts: [.ip], routeName: "r", peer: ip("2001:db8:1:2:ffff:1:2:3"), header: headers([:]))
        let other = id.key(parts: [.ip], routeName: "r", peer: ip("2001:db8:1:3::1"), header: headers([:]))
        #expect(a == b)
        #expect(a != other)
        #expect(id.clientAddress(peer: ip("2001:db8:1:2:aaaa::1"), forwardedFor: nil) == ip("2001:db8:1:2::"))
        let v4a = id.key(parts: [.ip], routeName: "r", peer: ip("192.0.2.1"), header: headers([:]))
        let v4b = id.key(parts: [.ip], routeName: "r", peer: ip("192.0.2.2"), header: headers([:]))
        #expect(v4a != v4b)
        let wide = identity(ipv6Prefix: 48)
        #expect(wide.clientAddress(peer: ip("2001:db8:1:3::1"), forwardedFor: nil) == ip("2001:db8:1::"))
    }

    @Test func tokenIsHashedWithTheSecret() {
        let token = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.token"
        let request = headers(["authorization": token])
        func key(_ secret: String) -> ClientKey {
            identity(secret: secret).key(parts: [.header("authorization")], routeName: "r", peer: ip("192.0.2.1"), header: request)
        }
        #expect(key("s3cret") == key("s3cret"), "replicas with one hash_key agree")
        #expect(key("s3cret") != key("other"), "the key cannot be derived without the secret")
        #expect(!key("s3cret").description.contains("eyJ"))
        #expect(key("s3cret").description.count == 16)
        let otherToken = identity().key(parts: [.header("authorization")], routeName: "r", peer: ip("192.0.2.1"),
                                        header: headers(["authorization": token + "x"]))
        #expect(otherToken != key("s3cret"))
    }

    @Test func oneTokenIsOneClientWhateverItsAddress() {
        let id = identity()
        let request = headers(["authorization": "Bearer abc"])
        let a = id.key(parts: [.header("authorization")], routeName: "r", peer: ip("192.0.2.1"), header: request)
        let b = id.key(parts: [.header("authorization")], routeName: "r", peer: ip("198.51.100.2"), header: request)
        #expect(a == b)
    }

    @Test func missingOrBlankHeaderFallsBackToTheAddress() {
        let id = identity()
        let peer = ip("192.0.2.1")
        let byIP = id.key(parts: [.ip], routeName: "r", peer: peer, header: headers([:]))
        #expect(id.key(parts: [.header("authorization")], routeName: "r", peer: peer, header: headers([:])) == byIP)
        #expect(id.key(parts: [.header("authorization")], routeName: "r", peer: peer,
                       header: headers(["authorization": "  "])) == byIP)
        let elsewhere = id.key(parts: [.header("authorization")], routeName: "r", peer: ip("192.0.2.2"), header: headers([:]))
        #expect(elsewhere != byIP)
    }

    @Test func routePartIsolatesRoutes() {
        // Fleet's per-path isolation: failing on one route does not block the client on another.
        let id = identity()
        let peer = ip("192.0.2.1")
        let device = id.key(parts: [.ip, .route], routeName: "device", peer: peer, header: headers([:]))
        let orbit = id.key(parts: [.ip, .route], routeName: "orbit", peer: peer, header: headers([:]))
        #expect(device != orbit)
        let shared1 = id.key(parts: [.ip], routeName: "device", peer: peer, header: headers([:]))
        let shared2 = id.key(parts: [.ip], routeName: "orbit", peer: peer, header: headers([:]))
        #expect(shared1 == shared2)
    }

    @Test func partsAreLengthPrefixedSoBoundariesMatter() {
        let id = identity()
        let peer = ip("192.0.2.1")
        let a = id.key(parts: [.header("a"), .header("b")], routeName: "r", peer: peer, header: headers(["a": "xy", "b": "z"]))
        let b = id.key(parts: [.header("a"), .header("b")], routeName: "r", peer: peer, header: headers(["a": "x", "b": "yz"]))
        #expect(a != b)
        let c = id.key(parts: [.header("ab")], routeName: "r", peer: peer, header: headers(["ab": "c"]))
        let d = id.key(parts: [.header("a")], routeName: "r", peer: peer, header: headers(["a": "bc"]))
        #expect(c != d)
    }

    @Test func emptyPartsMeanIP() {
        let id = identity()
        let peer = ip("192.0.2.1")
        #expect(id.key(parts: [], routeName: "r", peer: peer, header: headers([:]))
                == id.key(parts: [.ip], routeName: "r", peer: peer, header: headers([:])))
    }

    @Test func tlsFingerprintIsOneClientPerCertificate() {
        let id = identity()
        let a = String(repeating: "ab", count: 32), b = String(repeating: "cd", count: 32)
        func key(_ fingerprint: String?, _ peer: String = "192.0.2.1", secret: String = "s3cret") -> ClientKey {
            identity(secret: secret).key(parts: [.tlsFingerprint], routeName: "r", peer: ip(peer), tlsFingerprint: fingerprint,
                                         header: headers([:]))
        }
        #expect(key(a) == key(a))
        #expect(key(a) != key(b), "one key per certificate")
        #expect(key(a) == key(a, "198.51.100.2"), "whatever the client's address")
        #expect(key(a) != id.key(parts: [.ip], routeName: "r", peer: ip("192.0.2.1"), header: headers([:])))
        #expect(key(a) != key(a, secret: "other"), "hashed with the secret")
        #expect(!key(a).description.contains("abab"))
        // Tagged apart from a header carrying the same text.
        #expect(key(a) != id.key(parts: [.header("x-fingerprint")], routeName: "r", peer: ip("192.0.2.1"),
                                 header: headers(["x-fingerprint": a])))
    }

    @Test func noClientCertificateFallsBackToTheAddress() {
        let id = identity()
        let peer = ip("192.0.2.1")
        let byIP = id.key(parts: [.ip], routeName: "r", peer: peer, header: headers([:]))
        #expect(id.key(parts: [.tlsFingerprint], routeName: "r", peer: peer, header: headers([:])) == byIP, "plain HTTP")
        #expect(id.key(parts: [.tlsFingerprint], routeName: "r", peer: peer, tlsFingerprint: nil, header: headers([:])) == byIP)
        #expect(id.key(parts: [.tlsFingerprint], routeName: "r", peer: peer, tlsFingerprint: "", header: headers([:])) == byIP)
        let elsewhere = id.key(parts: [.tlsFingerprint], routeName: "r", peer: ip("192.0.2.2"), header: headers([:]))
        #expect(elsewhere != byIP)
        // The trailing-closure form the server uses keeps compiling with the new parameter.
        let withRoute = id.key(parts: [.tlsFingerprint, .route], routeName: "r", peer: peer, tlsFingerprint: nil) { _ in nil }
        #expect(withRoute == id.key(parts: [.ip, .route], routeName: "r", peer: peer) { _ in nil })
    }

    @Test func sipHashMatchesTheReferenceVectors() {
        // Aumasson and Bernstein, vectors_sip64: key 00..0f, message 00..(n-1).
        let hasher = KeyedHasher(k0: 0x0706_0504_0302_0100, k1: 0x0F0E_0D0C_0B0A_0908)
        let expected: [Int: UInt64] = [
            0: 0x726F_DB47_DD0E_0E31, 1: 0x74F8_39C5_93DC_67FD, 2: 0x0D6C_8009_D9A9_4F5A,
            3: 0x8567_6696_D7FB_7E2D, 4: 0xCF27_94E0_2771_87B7, 7: 0xAB02_00F5_8B01_D137,
            8: 0x93F5_F579_9A93_2462, 9: 0x9E00_82DF_0BA9_E4B0, 15: 0xA129_CA61_49BE_45E5,
            16: 0x3F2A_CC7F_57C2_9BDB, 17: 0x699A_E9F5_2CBE_4794,
        ]
        for (n, want) in expected {
            let message = (0..<n).map { UInt8($0) }
            #expect(hasher.hash(message) == want, "n=\(n)")
            #expect(hasher.hash(AnySequence(message)) == want, "n=\(n), byte at a time")
            // Split across combine calls at every boundary: streaming must not change the hash.
            for cut in 0...n {
                var state = hasher.stream()
                message[..<cut].withUnsafeBytes { state.combine($0) }
                message[cut...].withUnsafeBytes { state.combine($0) }
                #expect(state.finalize() == want, "n=\(n) cut=\(cut)")
            }
        }
    }

    @Test func sipHashTakesWholeWordsAfterAPartialOne() {
        // Message 00..10 (17 bytes) of the reference vectors: p single bytes, one 8-byte word
        // (merged with the partial tail by shifts), then the rest as a run, for every p.
        let hasher = KeyedHasher(k0: 0x0706_0504_0302_0100, k1: 0x0F0E_0D0C_0B0A_0908)
        let message = (0..<17).map { UInt8($0) }
        for p in 0...7 {
            var state = hasher.stream()
            for byte in message[..<p] { state.combine(byte) }
            let word = message[p..<(p + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            state.combine(word)
            message[(p + 8)...].withUnsafeBytes { state.combine($0) }
            #expect(state.finalize() == 0x699A_E9F5_2CBE_4794, "p=\(p)")
        }
    }

    @Test func derivedKeyIsStableAcrossRunsAndRandomWhenEmpty() {
        // Replicas agree only if derivation never changes: pin it.
        #expect(KeyedHasher(secret: "s3cret").hash(Array("client".utf8)) == KeyedHasher(secret: "s3cret").hash(Array("client".utf8)))
        #expect(KeyedHasher(secret: "").hash([1, 2, 3]) != KeyedHasher(secret: "").hash([1, 2, 3]))
        #expect(!"\(KeyedHasher(secret: "s3cret"))".contains("s3cret"))
    }

    @Test func clientKeyHexRoundTrips() {
        let key = ClientKey(value: 0x00AB_CDEF_0123_4567)
        #expect(key.description == "00abcdef01234567")
        #expect(ClientKey(hex: key.description) == key)
        #expect(ClientKey(hex: "00ABCDEF01234567") == key)
        #expect(ClientKey(hex: "ff")?.value == 0xFF)
        #expect(ClientKey(hex: "") == nil)
        #expect(ClientKey(hex: "0123456789abcdef0") == nil)
        #expect(ClientKey(hex: "xyz") == nil)
    }

    @Test func scopedKeysDifferPerRoute() {
        let key = ClientKey(value: 42)
        #expect(key.scoped(to: 0) != key.scoped(to: 1))
        #expect(key.scoped(to: 1) == key.scoped(to: 1))
        #expect(key.scoped(to: 0) != key)
    }
}

/// Credentials by what they are, not how they are spelt.
@Suite struct CredentialSpellingTests {
    @Test func schemeCaseAndWhitespaceDoNotMakeAnotherClient() {
        let canonical = ClientIdentity.credentials("Bearer abc.DEF")
        for spelling in ["bearer abc.DEF", "BEARER abc.DEF", "Bearer  abc.DEF", "Bearer\tabc.DEF", "  Bearer abc.DEF\t"] {
            #expect(ClientIdentity.credentials(spelling) == canonical, "\(spelling.debugDescription)")
        }
        #expect(ClientIdentity.credentials("Bearer abc.def") != canonical)
        #expect(ClientIdentity.credentials("Basic dXNlcjpwdw==") == "basic dXNlcjpwdw==")
        #expect(ClientIdentity.credentials("token68only") == "token68only")
    }
}
