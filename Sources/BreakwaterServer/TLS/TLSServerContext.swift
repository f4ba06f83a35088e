private import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// What a TLS listener serves, loaded from the conf file's `[tls]` section: one OpenSSL context
/// per certificate pair (the first is the default), SNI choosing among them by the names each
/// certificate holds, ALPN, the minimum version and client certificates. Immutable once built:
/// a reload builds a new one, and sessions keep the one that made them.
final class TLSServerContext: @unchecked Sendable {
    /// A certificate pair, loaded and checked.
    struct Certificate {
        /// Its own context: SNI switches a session to it.
        let context: OpaquePointer
        /// The leaf certificate (owned by `context`).
        let leaf: OpaquePointer
        /// The certificate's subject common name, or the file name when it has none.
        let name: String
        /// The certificate and key files.
        let certFile: String
        let keyFile: String
        /// When the leaf certificate expires, Unix seconds.
        let notAfter: Int64
    }

    /// What the context is asked to do; the conf file's `[tls]` keys.
    struct Settings: Equatable {
        var pairs: [(cert: String, key: String)]
        var minimumVersion13 = false
        var alpn = ["h2", "http/1.1"]
        var clientCA = ""
        /// nil: no client certificate asked for; false: asked for, optional; true: required.
        var clientCertificateRequired: Bool?
        /// Session tickets issued and accepted; false: sessions resume only from the context's cache.
        var sessionTickets = true
        /// NewSessionTicket messages after a full TLS 1.3 handshake.
        var ticketsPerHandshake = 1

        static func == (a: Settings, b: Settings) -> Bool {
            a.pairs.map { [$0.cert, $0.key] } == b.pairs.map { [$0.cert, $0.key] } && a.minimumVersion13 == b.minimumVersion13
                && a.alpn == b.alpn && a.clientCA == b.clientCA && a.clientCertificateRequired == b.clientCertificateRequired
                && a.sessionTickets == b.sessionTickets && a.ticketsPerHandshake == b.ticketsPerHandshake
        }
    }

    let certificates: [Certificate]
    /// The keys that encrypt session tickets; nil: OpenSSL's own (a context that serves no one).
    let tickets: TLSTicketKeys?
    /// The ALPN protocols offered, in the wire format (length-prefixed), kept for the callback.
    private let alpnWire: UnsafeMutableBufferPointer<UInt8>

    /// Loads every pair; throws naming the file when one does not load or its key does not match.
    /// With `settings.sessionTickets`, tickets are made under `tickets`' rotating keys and a
    /// session lives as long as a key encrypts.
    init(_ settings: Settings, tickets: TLSTicketKeys? = nil) throws(TLSError) {
        self.tickets = settings.sessionTickets ? tickets : nil
        var wire: [UInt8] = []
        for name in settings.alpn {
            wire.append(UInt8(name.utf8.count))
            wire.append(contentsOf: name.utf8)
        }
        alpnWire = .allocate(capacity: max(wire.count, 1))
        _ = alpnWire.initialize(from: wire)
        var loaded: [Certificate] = []
        do throws(TLSError) {
            for pair in settings.pairs {
                loaded.append(try Self.load(pair, settings))
            }
        } catch {
            for certificate in loaded { SSL_CTX_free(certificate.context) }
            alpnWire.deallocate()
            throw error
        }
        certificates = loaded
        let me = Unmanaged.passUnretained(self).toOpaque()
        for certificate in certificates {
            if let tickets = self.tickets {
                // OpenSSL asks the context the session started on (the default one), but SNI
                // may have switched it: every context gets the same keys.
                tickets.install(on: certificate.context)
                _ = SSL_CTX_set_timeout(certificate.context, Int(max(1, tickets.interval.components.seconds)))
            }
            _ = bw_SSL_CTX_set_tlsext_servername_callback(certificate.context) { ssl, _, arg in
                guard let ssl, let arg else { return SSL_TLSEXT_ERR_OK }
                return Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue().selectCertificate(ssl)
            }
            _ = bw_SSL_CTX_set_tlsext_servername_arg(certificate.context, me)
            if !settings.alpn.isEmpty {
                SSL_CTX_set_alpn_select_cb(certificate.context, { _, out, outLength, offered, offeredLength, arg in
                    Unmanaged<TLSServerContext>.fromOpaque(arg!).takeUnretainedValue()
                        .selectProtocol(out, outLength, offered, offeredLength)
                }, me)
            }
        }
    }

    deinit {
        for certificate in certificates { SSL_CTX_free(certificate.context) }
        alpnWire.deallocate()
    }

    /// A session for an accepted connection, starting on the default certificate.
    func makeSession(fd: Int32) -> TLSSession? {
        guard let ssl = SSL_new(certificates[0].context) else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_accept_state(ssl)
        return TLSSession(ssl: ssl, owner: self, isServer: true)
    }

    /// The certificates that expire within `days` days from `now` (Unix seconds).
    func expiring(within days: Int64, now: Int64) -> [Certificate] {
        certificates.filter { $0.notAfter - now < days * 86_400 }
    }

    // MARK: callbacks

    /// SNI: switches the session to the first certificate whose names cover the requested one;
    /// an unknown or absent name keeps the default.
    private func selectCertificate(_ ssl: OpaquePointer) -> Int32 {
        guard certificates.count > 1, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
            return SSL_TLSEXT_ERR_OK
        }
        for certificate in certificates.dropFirst() where X509_check_host(certificate.leaf, name, 0, 0, nil) == 1 {
            if X509_check_host(certificates[0].leaf, name, 0, 0, nil) == 1 { break }   // the default covers it
            _ = SSL_set_SSL_CTX(ssl, certificate.context)
            break
        }
        return SSL_TLSEXT_ERR_OK
    }

    /// ALPN: the first of our protocols the client offers; none in common fails the handshake,
    /// as nginx does, rather than speak a protocol the client did not ask for.
    private func selectProtocol(_ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outLength: UnsafeMutablePointer<UInt8>?,
                                _ offered: UnsafePointer<UInt8>?, _ offeredLength: UInt32) -> Int32 {
        var chosen: UnsafeMutablePointer<UInt8>?
        var chosenLength: UInt8 = 0
        let rc = SSL_select_next_proto(&chosen, &chosenLength, alpnWire.baseAddress, UInt32(alpnWire.count),
                                       offered, offeredLength)
        guard rc == OPENSSL_NPN_NEGOTIATED, let chosen else { return SSL_TLSEXT_ERR_ALERT_FATAL }
        out?.pointee = UnsafePointer(chosen)
        outLength?.pointee = chosenLength
        return SSL_TLSEXT_ERR_OK
    }

    // MARK: loading

    private static func load(_ pair: (cert: String, key: String), _ settings: Settings) throws(TLSError) -> Certificate {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw .openSSL("SSL_CTX_new") }
        do throws(TLSError) {
            _ = bw_SSL_CTX_set_min_proto_version(context, settings.minimumVersion13 ? TLS1_3_VERSION : TLS1_2_VERSION)
            _ = SSL_CTX_set_options(context, bw_SSL_OP_NO_COMPRESSION | bw_SSL_OP_CIPHER_SERVER_PREFERENCE
                                        | bw_SSL_OP_NO_RENEGOTIATION | (settings.sessionTickets ? 0 : bw_SSL_OP_NO_TICKET))
            // Partial writes from a moving evbuffer; buffers released while a connection is idle.
            // The chain sent is the cert file's: without NO_AUTO_CHAIN, a file holding only the
            // leaf makes OpenSSL build a chain from the context's store (X509_verify_cert) in
            // every full handshake, and with client_ca that store is the client CA bundle.
            _ = bw_SSL_CTX_set_mode(context, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                                                 | SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN))
            // Read-ahead: a read from the socket takes what is there (up to a record buffer), not
            // a record's header and then its body, so a record costs one read instead of two, and
            // the Finished message and a request sent behind it come in one. Socket.readTLS then
            // drains what OpenSSL holds, since the socket will not announce it again.
            bw_SSL_CTX_set_read_ahead(context, 1)
            // One ticket by default: each one costs a key derivation, an encryption and a record
            // of its own, about 7 % of a full handshake's CPU (a resumption brings a new one).
            _ = SSL_CTX_set_num_tickets(context, settings.ticketsPerHandshake)
            let sessionID = Array("breakwater".utf8)
            _ = SSL_CTX_set_session_id_context(context, sessionID, UInt32(sessionID.count))
            guard SSL_CTX_use_certificate_chain_file(context, pair.cert) == 1 else {
                throw TLSError.openSSL("cannot load the certificate chain", file: pair.cert)
            }
            guard SSL_CTX_use_PrivateKey_file(context, pair.key, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError.openSSL("cannot load the private key", file: pair.key)
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw TLSError.openSSL("the private key does not match the certificate \(pair.cert)", file: pair.key)
            }
            if let required = settings.clientCertificateRequired {
                guard SSL_CTX_load_verify_locations(context, settings.clientCA, nil) == 1,
                      let names = SSL_load_client_CA_file(settings.clientCA)
                else { throw TLSError.openSSL("cannot load the client CA bundle", file: settings.clientCA) }
                SSL_CTX_set_client_CA_list(context, names)
                SSL_CTX_set_verify(context, required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, nil)
            }
            guard let leaf = SSL_CTX_get0_certificate(context) else {
                throw TLSError.openSSL("no certificate in the file", file: pair.cert)
            }
            return Certificate(context: context, leaf: leaf, name: commonName(leaf) ?? lastComponent(pair.cert),
                               certFile: pair.cert, keyFile: pair.key, notAfter: notAfter(leaf))
        } catch {
            SSL_CTX_free(context)
            throw error
        }
    }

    private static func commonName(_ certificate: OpaquePointer) -> String? {
        guard let subject = X509_get_subject_name(certificate) else { return nil }
        var text = [CChar](repeating: 0, count: 256)
        let n = X509_NAME_get_text_by_NID(subject, NID_commonName, &text, Int32(text.count))
        return n > 0 ? String(decoding: text.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    private static func lastComponent(_ path: String) -> String {
        String(path.split(separator: "/").last ?? Substring(path))
    }

    /// The certificate's notAfter as Unix seconds.
    static func notAfter(_ certificate: OpaquePointer) -> Int64 {
        guard let time = X509_get0_notAfter(certificate) else { return 0 }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return 0 }
        return Int64(timegm(&parts))
    }
}
