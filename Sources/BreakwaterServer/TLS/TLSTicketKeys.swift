private import COpenSSL
import BreakwaterCore
#if canImport(Glibc)
import Glibc
#endif

/// The session ticket keys of a TLS listener, shared by every context it builds (a reload keeps
/// them, rotated once) and handed to OpenSSL by its ticket key callback: tickets are encrypted
/// with AES-256-CBC and authenticated with HMAC-SHA256 under keys that rotate (see
/// `TicketKeyRing`), the way nginx and HAProxy use a list of ticket keys. Keys live only in this
/// process's memory; nothing here logs them.
final class TLSTicketKeys: Sendable {
    private let ring: LockedValue<TicketKeyRing<SystemRandomNumberGenerator>>
    private let clock: any TrackerClock

    /// Keys replaced every `interval`, read against `clock` (monotonic).
    init(interval: Duration, clock: any TrackerClock = SystemClock()) {
        self.clock = clock
        ring = LockedValue(TicketKeyRing(interval: interval, now: clock.nanoseconds(), random: SystemRandomNumberGenerator()))
    }

    /// How long a key encrypts (and then decrypts for as long again).
    var interval: Duration {
        get { .nanoseconds(ring.withLock { $0.interval }) }
    }

    /// Changes the rotation interval from the next rotation on.
    func setInterval(_ interval: Duration) {
        ring.withLock { $0.interval = max(1, interval.clampedNanoseconds) }
    }

    /// A new key encrypts from now on; the one it replaces still decrypts.
    func rotate() {
        let now = clock.nanoseconds()
        ring.withLock { $0.rotate(now: now) }
    }

    /// The names of the keys held, newest first (for tests and logs: never the secrets).
    var names: [[UInt8]] { ring.withLock { $0.keys.map(\.name) } }

    /// Makes `context` issue and accept tickets under these keys. The context keeps a pointer to
    /// `self`: its owner (a `TLSServerContext`) keeps `self` alive as long as the context.
    func install(on context: OpaquePointer) {
        _ = SSL_CTX_set_ex_data(context, 0, Unmanaged.passUnretained(self).toOpaque())
        _ = SSL_CTX_set_tlsext_ticket_key_evp_cb(context) { ssl, name, iv, cipher, mac, encrypt in
            guard let ssl, let name, let iv, let cipher, let mac,
                  let context = SSL_get_SSL_CTX(ssl), let me = SSL_CTX_get_ex_data(context, 0)
            else { return -1 }
            return Unmanaged<TLSTicketKeys>.fromOpaque(me).takeUnretainedValue()
                .callback(name: name, iv: iv, cipher: cipher, mac: mac, encrypt: encrypt == 1,
                          tls13: SSL_version(ssl) == TLS1_3_VERSION)
        }
    }

    /// OpenSSL's ticket key callback: 1 to use the key given, 2 to use it and send the client a
    /// new ticket, 0 for an unknown key (a full handshake), -1 on failure. A new ticket is sent
    /// when the key no longer encrypts and after every TLS 1.3 resumption: TLS 1.3 clients use a
    /// ticket once (OpenSSL's, wrk's and browsers' do), so a resumption that sent none would make
    /// the client's next connection a full handshake. OpenSSL's own keys renew the same way.
    private func callback(name: UnsafeMutablePointer<UInt8>, iv: UnsafeMutablePointer<UInt8>,
                          cipher: OpaquePointer, mac: OpaquePointer, encrypt: Bool, tls13: Bool) -> Int32 {
        let now = clock.nanoseconds()
        let key: TicketKey
        var isCurrent = true
        if encrypt {
            key = ring.withLock { $0.encryptionKey(now: now) }
            for i in 0..<TicketKey.nameLength { name[i] = key.name[i] }
            guard RAND_bytes(iv, Int32(EVP_MAX_IV_LENGTH)) == 1 else { return -1 }
        } else {
            let given = UnsafeBufferPointer(start: name, count: TicketKey.nameLength)
            guard let found = ring.withLock({ $0.decryptionKey(named: given, now: now) }) else { return 0 }
            key = found.key
            isCurrent = found.isCurrent
        }
        guard Self.setMAC(mac, key: key.hmacKey) else { return -1 }
        let algorithm = ticketCipher ?? EVP_aes_256_cbc()
        let ok = key.cipherKey.withUnsafeBufferPointer { cipherKey in
            encrypt ? EVP_EncryptInit_ex(cipher, algorithm, nil, cipherKey.baseAddress, iv)
                    : EVP_DecryptInit_ex(cipher, algorithm, nil, cipherKey.baseAddress, iv)
        }
        guard ok == 1 else { return -1 }
        return isCurrent && !tls13 ? 1 : 2
    }

    /// HMAC-SHA256 under `key`. The key is passed in place (OpenSSL copies it into the MAC
    /// context and writes nothing through the pointer): no copy of it is left behind.
    private static func setMAC(_ mac: OpaquePointer, key: ArraySlice<UInt8>) -> Bool {
        key.withUnsafeBytes { keyBuffer in
            withUnsafeTemporaryAllocation(of: OSSL_PARAM.self, capacity: 3) { params in
                params[0] = OSSL_PARAM_construct_octet_string(ticketParamNames.key, UnsafeMutableRawPointer(mutating: keyBuffer.baseAddress),
                                                              keyBuffer.count)
                params[1] = OSSL_PARAM_construct_utf8_string(ticketParamNames.digest, ticketParamNames.sha256, 0)
                params[2] = OSSL_PARAM_construct_end()
                return EVP_MAC_CTX_set_params(mac, params.baseAddress) == 1
            }
        }
    }
}

/// AES-256-CBC, fetched from OpenSSL's provider once: `EVP_aes_256_cbc()` is looked up again at
/// every ticket. nil if the fetch failed, and then that lookup is used.
private nonisolated(unsafe) let ticketCipher: OpaquePointer? = EVP_CIPHER_fetch(nil, "AES-256-CBC", nil)

/// The names of the MAC's parameters and of its digest, as C strings made once (never freed).
private nonisolated(unsafe) let ticketParamNames = (key: strdup("key")!, digest: strdup("digest")!, sha256: strdup("SHA256")!)
