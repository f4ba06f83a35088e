import Foundation

/// A certificate and its private key, as PEM files.
struct CertificatePair: Sendable {
    let cert: URL
    let key: URL

    /// `{cert = "...", key = "..."}`, an entry of `[tls] certificates`.
    var conf: String { "{cert = \"\(cert.path)\", key = \"\(key.path)\"}" }
}

/// Every certificate the TLS tests need, made once per test process with the `openssl` command
/// line tool (EC P-256 keys, so the whole set takes a fraction of a second).
///
/// The files are shared by every test: a test that changes files (a reload) copies the pairs it
/// needs into a directory of its own with `install`.
final class TestCertificates: Sendable {
    /// The directory holding every file.
    let dir: URL
    /// The CA that signs the server certificates (`--cacert`, `tls_ca`).
    let ca: URL
    /// CN=localhost; SAN DNS:localhost, IP:127.0.0.1, IP:::1; signed by `ca`. The default pair.
    let localhost: CertificatePair
    /// CN=localhost-renewed, the same names, valid for 400 days: what a renewal puts in place of `localhost`.
    let renewed: CertificatePair
    /// CN=api.example; SAN DNS:api.example, DNS:*.api.example; signed by `ca`.
    let api: CertificatePair
    /// CN=short-lived, SAN DNS:localhost, IP:127.0.0.1; valid for 5 days only.
    let shortLived: CertificatePair
    /// CN=self-signed, SAN DNS:localhost, IP:127.0.0.1, from no CA; also a client certificate
    /// the client CA never signed.
    let selfSigned: CertificatePair
    /// A key that matches no certificate here.
    let strayKey: URL
    /// The CA that signs client certificates (`client_ca`).
    let clientCA: URL
    /// Client certificates CN=client-a and CN=client-b, signed by `clientCA`.
    let clientA: CertificatePair
    let clientB: CertificatePair
    /// A client certificate (CN=stranger) signed by the server CA `ca`, not by `clientCA`.
    let stranger: CertificatePair

    /// The set, generated on first use; later calls return the same files.
    static func shared() throws -> TestCertificates { try cached.get() }

    private static let cached = Result { try TestCertificates() }

    private init() throws {
        dir = try Binary.tempDirectory().appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let extensions = dir.appendingPathComponent("extensions.cnf")
        try Self.extensions.write(to: extensions, atomically: true, encoding: .utf8)
        // Every openssl command goes into one shell script: one process start instead of thirty.
        var commands: [[String]] = []
        let d = dir
        func file(_ name: String) -> URL { d.appendingPathComponent(name) }
        func key(_ name: String) -> URL {
            let url = file("\(name).key")
            commands.append(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", url.path])
            return url
        }
        func selfSigned(_ name: String, subject: String, section: String, days: Int) -> CertificatePair {
            let pair = CertificatePair(cert: file("\(name).crt"), key: key(name))
            commands.append(["req", "-x509", "-new", "-key", pair.key.path, "-config", extensions.path, "-extensions", section,
                             "-subj", "/CN=\(subject)", "-days", "\(days)", "-out", pair.cert.path])
            return pair
        }
        func signed(_ name: String, subject: String, section: String, by issuer: CertificatePair, days: Int = 365) -> CertificatePair {
            let pair = CertificatePair(cert: file("\(name).crt"), key: key(name))
            let request = file("\(name).csr")
            commands.append(["req", "-new", "-key", pair.key.path, "-config", extensions.path, "-subj", "/CN=\(subject)",
                             "-out", request.path])
            commands.append(["x509", "-req", "-in", request.path, "-CA", issuer.cert.path, "-CAkey", issuer.key.path,
                             "-set_serial", "0x" + String(UInt64.random(in: 1...UInt64.max), radix: 16),
                             "-days", "\(days)", "-extfile", extensions.path, "-extensions", section, "-out", pair.cert.path])
            return pair
        }

        let serverCA = selfSigned("ca", subject: "Breakwater Test CA", section: "ca", days: 3650)
        ca = serverCA.cert
        localhost = signed("localhost", subject: "localhost", section: "localhost", by: serverCA)
        renewed = signed("renewed", subject: "localhost-renewed", section: "localhost", by: serverCA, days: 400)
        api = signed("api", subject: "api.example", section: "api", by: serverCA)
        shortLived = signed("short-lived", subject: "short-lived", section: "localhost", by: serverCA, days: 5)
        self.selfSigned = selfSigned("self-signed", subject: "self-signed", section: "self_signed", days: 365)
        strayKey = key("stray")
        let clients = selfSigned("client-ca", subject: "Breakwater Test Client CA", section: "ca", days: 3650)
        clientCA = clients.cert
        clientA = signed("client-a", subject: "client-a", section: "client", by: clients)
        clientB = signed("client-b", subject: "client-b", section: "client", by: clients)
        stranger = signed("stranger", subject: "stranger", section: "client", by: serverCA)

        let openssl = try Tool.path("openssl").path
        let script = commands.map { ([openssl] + $0).map { "'\($0)'" }.joined(separator: " ") }.joined(separator: "\n")
        let result = try Tool.run("sh", ["-e", "-c", script])
        guard result.status == 0 else {
            throw TestSocket.Failure(description: "generating test certificates: \(result.stderr)")
        }
    }

    /// Copies `pair` into `directory` as `name.crt` and `name.key` (for tests that replace files).
    func install(_ pair: CertificatePair, into directory: URL, as name: String) throws -> CertificatePair {
        let installed = CertificatePair(cert: directory.appendingPathComponent("\(name).crt"),
                                        key: directory.appendingPathComponent("\(name).key"))
        try Self.replace(installed.cert, with: pair.cert)
        try Self.replace(installed.key, with: pair.key)
        return installed
    }

    /// Writes the contents of `source` over `target` in one rename, as a deployment tool would.
    static func replace(_ target: URL, with source: URL) throws {
        try Data(contentsOf: source).write(to: target, options: .atomic)
    }

    /// `notAfter` of a certificate, in seconds since 1970.
    static func expiry(of cert: URL) throws -> Double {
        let out = try openssl(["x509", "-in", cert.path, "-noout", "-enddate"])
        // notAfter=Dec  4 22:54:54 2027 GMT
        let text = out.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "notAfter=", with: "")
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        let collapsed = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        guard let date = formatter.date(from: collapsed) else {
            throw TestSocket.Failure(description: "cannot read the expiry of \(cert.lastPathComponent): \(text)")
        }
        return date.timeIntervalSince1970
    }

    @discardableResult
    static func openssl(_ arguments: [String]) throws -> String {
        let result = try Tool.run("openssl", arguments)
        guard result.status == 0 else {
            throw TestSocket.Failure(description: "openssl \(arguments.joined(separator: " ")): \(result.stderr)")
        }
        return result.stdout
    }

    private static let extensions = """
        [req]
        distinguished_name = dn
        [dn]
        [ca]
        basicConstraints = critical, CA:TRUE
        keyUsage = critical, keyCertSign, cRLSign
        subjectKeyIdentifier = hash
        [localhost]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        [api]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = DNS:api.example, DNS:*.api.example
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        [self_signed]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth, clientAuth
        subjectAltName = DNS:localhost, IP:127.0.0.1
        [client]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid

        """
}
