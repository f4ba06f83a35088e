import BreakwaterCore

/// What `breakwater check` verifies of TLS beyond the conf file's syntax: that every pair loads
/// and matches, that the client CA and the upstream CA bundle load, and which certificates are
/// about to expire.
public enum TLSCheck {
    /// A certificate expiring within this many days is warned about.
    public static let expiryWarningDays: Int64 = 14

    /// Loads what `config` names; throws the first failure (naming its file); returns warnings.
    public static func warnings(for config: Config, now: Int64 = LoopClock.wallSeconds()) throws(TLSError) -> [String] {
        var warnings: [String] = []
        if let tls = config.tls {
            let context = try TLSServerContext(ProxyServer.tlsSettings(tls))
            for certificate in context.expiring(within: expiryWarningDays, now: now) {
                let days = (certificate.notAfter - now) / 86_400
                warnings.append(certificate.notAfter <= now
                    ? "\(certificate.certFile): the certificate \(certificate.name) has expired"
                    : "\(certificate.certFile): the certificate \(certificate.name) expires in \(days) day\(days == 1 ? "" : "s")")
            }
        }
        _ = try ProxyServer.upstreamTLS(config.upstream)
        return warnings
    }
}
