private import COpenSSL
import BreakwaterCore

/// TLS towards the upstream servers (`[upstream] tls = true`): one OpenSSL client context, and a
/// session per connection that sends SNI and verifies the server's certificate against the
/// trusted CAs and the expected name.
final class TLSClientContext: @unchecked Sendable {
    private let context: OpaquePointer
    private let verify: Bool

    /// `ca`: a PEM bundle, or "" for the system's; `verify: false` accepts any certificate.
    init(ca: String, verify: Bool) throws(TLSError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw .openSSL("SSL_CTX_new") }
        self.context = context
        self.verify = verify
        _ = bw_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION)
        _ = bw_SSL_CTX_set_mode(context, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        bw_SSL_CTX_set_read_ahead(context, 1)   // one read a record, as on the listener (TLSServerContext)
        if verify {
            let loaded = ca.isEmpty ? SSL_CTX_set_default_verify_paths(context) : SSL_CTX_load_verify_locations(context, ca, nil)
            guard loaded == 1 else {
                SSL_CTX_free(context)
                throw .openSSL("cannot load the CA bundle", file: ca.isEmpty ? "the system CA bundle" : ca)
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
    }

    deinit { SSL_CTX_free(context) }

    /// A client session on `fd` for the server `name` (a host name, or an IP address, which is
    /// then matched against the certificate's IP addresses and sent without SNI).
    /// `alpn`: one protocol to offer (such as "h2"), nil to offer none.
    func makeSession(fd: Int32, serverName name: String, alpn: String? = nil) -> TLSSession? {
        guard let ssl = SSL_new(context) else { return nil }
        if let alpn {
            // ALPN's wire form: each name after its length byte. SSL_set_alpn_protos returns 0 on success.
            let wire = [UInt8(alpn.utf8.count)] + Array(alpn.utf8)
            guard wire.withUnsafeBufferPointer({ SSL_set_alpn_protos(ssl, $0.baseAddress, UInt32($0.count)) }) == 0 else {
                SSL_free(ssl)
                return nil
            }
        }
        let isAddress = IPAddress(parsing: name) != nil
        let ok = SSL_set_fd(ssl, fd) == 1
            && (isAddress || bw_SSL_set_tlsext_host_name(ssl, name) == 1)
            && (!verify || (isAddress ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1
                                      : SSL_set1_host(ssl, name) == 1))
        guard ok else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_connect_state(ssl)
        return TLSSession(ssl: ssl, owner: self, isServer: false)
    }
}
