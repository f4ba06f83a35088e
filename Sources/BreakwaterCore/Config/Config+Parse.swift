#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TOMLKit

// load(path) → parse(text) → validate(): the conf file's way in. Every key of the README's "Configuration" is read
// here, with its default coming from the model in Config.swift when the file leaves it out.

extension Config {
    /// Reads, parses and validates the conf file at `path`; the error names `path` as given.
    ///
    /// An unreadable file is a `ConfigError` with key `"file"`, so the command line reports it
    /// the same way as a bad value. Files over 16 MiB are refused: no honest conf file is that
    /// big, and a path such as `/dev/zero` must not hang a reload.
    public static func load(path: String) throws -> Config {
        try parse(readFile(path), file: path)
    }

    /// Parses and validates conf-file text; `file` names the source in errors and is where
    /// relative paths are read from.
    ///
    /// Sections may come in any order: every route's `backoff = {...}` is merged over the whole
    /// `[backoff]` section even when that section comes later in the file.
    ///
    /// The file paths of the conf (`tls.certificates`' `cert` and `key`, `tls.client_ca`,
    /// `upstream.tls_ca`, `state.file`) come out absolute: a relative one is resolved against the directory of
    /// `file`, itself made absolute with the working directory when `file` is relative, so the
    /// config means the same files wherever the process later runs or the config is rendered to.
    /// Absolute paths and "" are kept exactly as written, so `render()` output parses back the same.
    public static func parse(_ text: String, file: String) throws -> Config {
        if let nul = text.firstIndex(of: "\0") {
            let line = text[..<nul].filter { $0 == "\n" }.count + 1
            throw ConfigError(file: file, key: "syntax", message: "line \(line): a NUL byte", allowed: "a TOML 1.0 text file")
        }
        // TOMLKit's toml++ aborts the process on a few shapes of broken text rather than reporting
        // them (see TOMLPrecheck); those never reach it.
        if let refusal = TOMLPrecheck.refusal(in: text) {
            throw ConfigError(file: file, key: "syntax", message: "line \(refusal.line), column \(refusal.column): \(refusal.message)",
                              allowed: refusal.allowed)
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            let at = e.source.begin
            throw ConfigError(file: file, key: "syntax", message: "line \(at.line), column \(at.column): \(e.description)",
                              allowed: "a TOML 1.0 document (https://toml.io/en/v1.0.0)")
        }
        let top = try TableReader(root, path: "", file: file,
                                  known: ["server", "upstream", "admin", "clients", "backoff", "circuit", "route", "redis", "tls",
                                           "state"])
        func section(_ name: String, _ known: [String]) throws -> TableReader? {
            try top.table(name, "a table [\(name)]").map { try TableReader($0, path: name, file: file, known: known) }
        }

        var config = Config()
        if let r = try section("server", ["listen", "workers", "max_header_bytes", "max_request_line_bytes", "max_body_bytes", "header_timeout",
                                          "idle_timeout", "grace_period", "access_log", "upgrades", "tunnel_idle_timeout", "min_body_rate",
                                          "cors_origins", "h2c", "h2_max_streams",
                                          "max_buffered_bytes"]) {
            try readServer(r, into: &config.server)
        }
        if let r = try section("upstream", ["servers", "connect_timeout", "timeout", "max_connections", "retries",
                                            "retry_base", "retry_on", "retry_budget", "tls", "tls_server_name", "tls_ca",
                                            "tls_verify"]) {
            try readUpstream(r, into: &config.upstream)
        }
        if let r = try section("admin", ["listen", "token", "token_file", "metrics_public"]) {
            assign(&config.admin.listen, try r.parsed("listen", Allowed.listen, HostPort.init(parsing:)))
            assign(&config.admin.token, try r.string("token", Allowed.adminToken))
            assign(&config.admin.tokenFile, try r.string("token_file", Allowed.adminTokenFile))
            assign(&config.admin.metricsPublic, try r.bool("metrics_public", Allowed.bool))
            if !config.admin.token.isEmpty && !config.admin.tokenFile.isEmpty {
                throw ConfigError(file: file, key: "admin.token_file", message: "set together with admin.token",
                                  allowed: Allowed.adminTokenFile)
            }
        }
        if let r = try section("clients", ["key", "trusted_proxies", "ipv6_prefix", "hash_key", "max_clients"]) {
            let c = r
            assign(&config.clients.key, try c.list("key", Allowed.key, keyPart))
            assign(&config.clients.trustedProxies, try c.list("trusted_proxies", Allowed.trustedProxies, CIDR.init(parsing:)))
            assign(&config.clients.ipv6Prefix, try c.int("ipv6_prefix", Allowed.ipv6Prefix))
            assign(&config.clients.hashKey, try c.string("hash_key", Allowed.hashKey))
            assign(&config.clients.maxClients, try c.int("max_clients", Allowed.maxClients))
        }
        if let r = try section("backoff", backoffKeys) {
            try readBackoff(r, into: &config.backoff)
        }
        if let r = try section("circuit", ["enabled", "share", "min_failures", "window", "base", "max", "jitter"]) {
            let c = r
            assign(&config.circuit.enabled, try c.bool("enabled", Allowed.bool))
            assign(&config.circuit.share, try c.number("share", Allowed.circuitShare))
            assign(&config.circuit.minFailures, try c.int("min_failures", Allowed.minFailures))
            assign(&config.circuit.window, try c.duration("window"))
            assign(&config.circuit.base, try c.duration("base"))
            assign(&config.circuit.max, try c.duration("max", Allowed.max))
            assign(&config.circuit.jitter, try c.number("jitter", Allowed.jitter))
        }
        if top.has("route") {
            config.routes = try readRoutes(top, file: file, defaults: config.backoff)
        }
        if let r = try section("redis", ["url", "prefix", "timeout"]) {
            var redis = RedisConfig()
            assign(&redis.url, try r.string("url", Allowed.redisURL))
            assign(&redis.prefix, try r.string("prefix", Allowed.string))
            assign(&redis.timeout, try r.duration("timeout"))
            config.redis = redis
        }
        if let r = try section("tls", ["listen", "certificates", "min_version", "alpn", "client_ca", "client_auth",
                                       "handshake_timeout", "session_tickets", "session_ticket_rotation",
                                       "session_tickets_per_handshake"]) {
            config.tls = try readTLS(r)
        }
        if let r = try section("state", ["file", "save_interval"]) {
            assign(&config.state.file, try r.string("file", Allowed.stateFile))
            assign(&config.state.saveInterval, try r.duration("save_interval"))
        }
        config.resolvePaths(againstDirectoryOf: file)
        if !config.admin.tokenFile.isEmpty { config.admin.token = try readToken(config.admin.tokenFile, file: file) }
        try config.validate(file: file)
        return config
    }

    /// The keys of `[backoff]`, which a route's `backoff = {...}` may also set.
    static let backoffKeys = ["on", "strategy", "base", "factor", "max", "jitter", "threshold", "reset_after", "mode"]

    private static func readServer(_ r: TableReader, into s: inout ServerConfig) throws {
        assign(&s.listen, try r.parsed("listen", Allowed.listen, HostPort.init(parsing:)))
        assign(&s.workers, try r.int("workers", Allowed.workers))
        assign(&s.maxHeaderBytes, try r.size("max_header_bytes", Allowed.maxHeaderBytes))
        assign(&s.maxRequestLineBytes, try r.size("max_request_line_bytes", Allowed.maxRequestLineBytes))
        assign(&s.maxBodyBytes, try r.size("max_body_bytes", Allowed.maxBodyBytes))
        assign(&s.headerTimeout, try r.duration("header_timeout"))
        assign(&s.idleTimeout, try r.duration("idle_timeout"))
        assign(&s.gracePeriod, try r.duration("grace_period", Allowed.durationOrZero))
        // "off" exists so that the effective config can spell "no access log" as a value.
        if let log = try r.string("access_log", Allowed.accessLog) { s.accessLog = log == "off" ? nil : log }
        assign(&s.upgrades, try r.list("upgrades", Allowed.upgrades, upgradeToken))
        assign(&s.tunnelIdleTimeout, try r.duration("tunnel_idle_timeout"))
        assign(&s.minBodyRate, try r.size("min_body_rate", Allowed.minBodyRate))
        assign(&s.corsOrigins, try r.list("cors_origins", Allowed.corsOrigins) { $0 })
        assign(&s.h2c, try r.bool("h2c", Allowed.bool))
        assign(&s.h2MaxStreams, try r.int("h2_max_streams", Allowed.h2MaxStreams))
        assign(&s.maxBufferedBytes, try r.size("max_buffered_bytes", Allowed.maxBufferedBytes))
    }

    private static func readUpstream(_ r: TableReader, into u: inout UpstreamConfig) throws {
        assign(&u.servers, try r.list("servers", Allowed.servers, HostPort.init(parsing:)))
        assign(&u.connectTimeout, try r.duration("connect_timeout"))
        assign(&u.timeout, try r.duration("timeout"))
        assign(&u.maxConnections, try r.int("max_connections", Allowed.maxConnections))
        assign(&u.retries, try r.int("retries", Allowed.retries))
        assign(&u.retryBase, try r.duration("retry_base", Allowed.durationOrZero))
        if let items = try r.array("retry_on", Allowed.retryOn) {
            u.retryOn = Set(try items.map { item in
                guard let status = item.int else { throw r.error("retry_on", describe(item, withType: true), Allowed.retryOn) }
                return status
            })
        }
        assign(&u.retryBudget, try r.number("retry_budget", Allowed.retryBudget))
        assign(&u.tls, try r.bool("tls", Allowed.bool))
        assign(&u.tlsServerName, try r.string("tls_server_name", Allowed.tlsServerName))
        assign(&u.tlsCA, try r.string("tls_ca", Allowed.tlsCA))
        assign(&u.tlsVerify, try r.bool("tls_verify", Allowed.bool))
    }

    /// `[tls]`. `certificates` is required: without a certificate there is nothing to listen with.
    private static func readTLS(_ r: TableReader) throws -> TLSConfig {
        var t = TLSConfig()
        assign(&t.listen, try r.parsed("listen", Allowed.listen, HostPort.init(parsing:)))
        guard let items = try r.array("certificates", Allowed.certificates) else {
            throw ConfigError(file: r.file, key: r.name("certificates"), message: "missing", allowed: Allowed.certificates)
        }
        t.certificates = try items.enumerated().map { i, item in
            let at = r.name("certificates") + "[\(i)]"
            guard let table = item.table else {
                throw ConfigError(file: r.file, key: at, message: "got \(describe(item, withType: true))",
                                  allowed: Allowed.certificates)
            }
            let c = try TableReader(table, path: at, file: r.file, known: ["cert", "key"], section: "a tls.certificates entry")
            func required(_ key: String) throws -> String {
                guard let path = try c.string(key, Allowed.certificatePath) else {
                    throw ConfigError(file: r.file, key: c.name(key), message: "missing", allowed: Allowed.certificatePath)
                }
                return path
            }
            return TLSConfig.CertificatePair(cert: try required("cert"), key: try required("key"))
        }
        assign(&t.minVersion, try r.parsed("min_version", Allowed.minVersion, TLSConfig.Version.init(rawValue:)))
        // Any strings: validate() says which protocols are supported, for a Config built in code too.
        assign(&t.alpn, try r.list("alpn", Allowed.alpn) { $0 })
        assign(&t.clientCA, try r.string("client_ca", Allowed.clientCA))
        assign(&t.clientAuth, try r.parsed("client_auth", Allowed.clientAuth, TLSConfig.ClientAuth.init(rawValue:)))
        assign(&t.handshakeTimeout, try r.duration("handshake_timeout"))
        assign(&t.sessionTickets, try r.bool("session_tickets", Allowed.bool))
        assign(&t.sessionTicketRotation, try r.duration("session_ticket_rotation", Allowed.ticketRotation))
        assign(&t.sessionTicketsPerHandshake, try r.int("session_tickets_per_handshake", Allowed.ticketsPerHandshake))
        return t
    }

    /// Makes the relative file paths of the conf absolute, reading them from the directory of
    /// `file` (see `parse`). The working directory is only asked for when a path needs it.
    mutating func resolvePaths(againstDirectoryOf file: String) {
        var directory: String?
        func resolved(_ path: String) -> String {
            guard !path.isEmpty, path.utf8.first != slash else { return path }
            if directory == nil { directory = Self.directory(of: file) }
            return Self.join(directory!, path)
        }
        upstream.tlsCA = resolved(upstream.tlsCA)
        state.file = resolved(state.file)
        admin.tokenFile = resolved(admin.tokenFile)
        if var t = tls {
            t.certificates = t.certificates.map { .init(cert: resolved($0.cert), key: resolved($0.key)) }
            t.clientCA = resolved(t.clientCA)
            tls = t
        }
    }

    /// The admin token held in the file at `path`: its text without one trailing newline (`\n` or
    /// `\r\n`), as `echo TOKEN > FILE` or a container secret leaves it. Errors name `admin.token_file`.
    static func readToken(_ path: String, file: String) throws -> String {
        let text: String
        do {
            text = try readFile(path)
        } catch let error as ConfigError {
            throw ConfigError(file: file, key: "admin.token_file", message: "\(quote(path)): \(error.message)",
                              allowed: Allowed.adminTokenFile)
        }
        // Bytes, not Characters: "\r\n" is one Character, which hasSuffix("\n") would not see.
        var bytes = Array(text.utf8)[...]
        if bytes.last == 0x0a { bytes = bytes.dropLast() }
        if bytes.last == 0x0d { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The directory holding `file`, absolute unless the working directory cannot be read.
    /// Paths are handled as bytes, split at '/' only, as the kernel reads them.
    static func directory(of file: String) -> String {
        let bytes = Array(file.utf8)
        let own = bytes.lastIndex(of: slash).map { String(decoding: bytes[...$0], as: UTF8.self) } ?? ""
        if own.utf8.first == slash { return own }
        guard let cwd = getcwd(nil, 0) else { return own.isEmpty ? "." : own }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + own
    }

    /// `path` read from `directory`, without `.` segments or doubled slashes (`..` is kept:
    /// dropping it would be wrong across a symbolic link).
    static func join(_ directory: String, _ path: String) -> String {
        let joined = Array(directory.utf8) + [slash] + Array(path.utf8)
        let segments = joined.split(separator: slash).filter { !$0.elementsEqual([dot]) }
        let body = segments.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
        if joined.first == slash { return "/" + body }
        return body.isEmpty ? "." : body
    }

    /// Applies the keys present in `r` over `p`; keys the table leaves out keep `p`'s values,
    /// which is how a route inherits the `[backoff]` section. A route's `on` replaces the
    /// section's list rather than adding to it, so a route can also stop counting a status.
    static func readBackoff(_ r: TableReader, into p: inout BackoffPolicy) throws {
        if let items = try r.array("on", Allowed.on) {
            var set = ErrorSet(statuses: [], connect: false, timeout: false)
            for item in items {
                switch (item.int, item.string) {
                case (let status?, _): set.statuses.insert(status)
                case (_, "connect"): set.connect = true
                case (_, "timeout"): set.timeout = true
                case (_, let word?) where word.hasPrefix("grpc:"):
                    let digits = word.utf8.dropFirst(5)
                    guard (1...2).contains(digits.count), digits.allSatisfy({ (0x30...0x39).contains($0) }),
                          let code = Int(String(decoding: digits, as: UTF8.self)) else {
                        throw r.error("on", describe(item, withType: false), Allowed.on)
                    }
                    set.grpcStatuses.insert(code)
                default: throw r.error("on", describe(item, withType: item.string == nil), Allowed.on)
                }
            }
            p.on = set
        }
        assign(&p.strategy, try r.parsed("strategy", Allowed.strategy, BackoffStrategy.init(rawValue:)))
        assign(&p.base, try r.duration("base"))
        assign(&p.factor, try r.number("factor", Allowed.factor))
        assign(&p.max, try r.duration("max", Allowed.max))
        assign(&p.jitter, try r.number("jitter", Allowed.jitter))
        assign(&p.threshold, try r.int("threshold", Allowed.threshold))
        assign(&p.resetAfter, try r.duration("reset_after"))
        assign(&p.mode, try r.parsed("mode", Allowed.mode, BackoffMode.init(rawValue:)))
    }

    private static func readRoutes(_ top: TableReader, file: String, defaults: BackoffPolicy) throws -> [RouteConfig] {
        let shape = "[[route]] entries, each a table with name and path"
        guard let items = try top.array("route", shape) else { return [] }
        return try items.enumerated().map { i, item in
            let at = "route[\(i)]"
            guard let table = item.table else {
                throw ConfigError(file: file, key: at, message: "got \(describe(item, withType: true))", allowed: shape)
            }
            let r = try TableReader(table, path: at, file: file,
                                    known: ["name", "path", "key", "backoff", "rate", "burst", "bypass", "upgrades",
                                            "case_insensitive", "upstream_protocol"])
            func required(_ key: String, _ allowed: String) throws -> String {
                guard let v = try r.string(key, allowed) else {
                    throw ConfigError(file: file, key: r.name(key), message: "missing", allowed: allowed)
                }
                return v
            }
            var route = RouteConfig(name: try required("name", Allowed.routeName), path: try required("path", Allowed.routePath))
            route.key = try r.list("key", Allowed.key, keyPart)
            route.backoff = defaults
            if let t = try r.table("backoff", "a table of [backoff] keys, such as { base = \"1s\", max = \"30m\" }") {
                try readBackoff(TableReader(t, path: "\(at).backoff", file: file, known: backoffKeys), into: &route.backoff)
            }
            route.rate = try r.parsed("rate", Allowed.rate, Rate.init(parsing:))
            assign(&route.burst, try r.int("burst", Allowed.burst))
            if r.has("burst") && route.rate == nil {
                throw r.error("burst", "burst = \(route.burst) without a rate", Allowed.burst)
            }
            assign(&route.bypass, try r.bool("bypass", Allowed.bypass))
            assign(&route.caseInsensitive, try r.bool("case_insensitive", "true or false"))
            assign(&route.upstreamProtocol, try r.parsed("upstream_protocol", Allowed.upstreamProtocol, UpstreamProtocol.init(rawValue:)))
            // A bypass route skips the shield, not the upgrade rules, so it may set its own list.
            route.upgrades = try r.list("upgrades", Allowed.upgrades, upgradeToken)
            if route.bypass, let extra = ["key", "backoff", "rate", "burst"].first(where: r.has) {
                throw ConfigError(file: file, key: r.name(extra),
                                  message: "\(extra) on a route with bypass = true, which is never tracked nor limited",
                                  allowed: Allowed.bypass)
            }
            return route
        }
    }
}

/// One `clients.key` / route `key` part; header names are lower-cased because header lookup is
/// case-insensitive and the identity code compares stored names as they are.
func keyPart(_ text: String) -> KeyPart? {
    switch text {
    case "ip": return .ip
    case "route": return .route
    case "tls:fingerprint": return .tlsFingerprint
    case _ where text.hasPrefix("header:") && text.count > 7: return .header(String(text.dropFirst(7)).lowercased())
    default: return nil
    }
}

/// One `upgrades` token, lower-cased: RFC 9110 matches protocol names case-insensitively, and the
/// stored form is fixed so the request path compares bytes. Only ASCII letters change, so a token
/// that `validate` refuses is quoted in the error much as it was written.
func upgradeToken(_ text: String) -> String {
    String(decoding: text.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
}

private let slash = UInt8(ascii: "/")
private let dot = UInt8(ascii: ".")

/// Overwrites a default only when the file set the key.
func assign<T>(_ target: inout T, _ value: T?) {
    if let value { target = value }
}

/// The file's text, or a `ConfigError` with key `"file"` saying why not (errno's words).
func readFile(_ path: String) throws -> String {
    func fail(_ why: String) -> ConfigError {
        ConfigError(file: path, key: "file", message: "cannot read: \(why)",
                    allowed: "a readable UTF-8 TOML file of at most 16 MiB")
    }
    guard let f = fopen(path, "rb") else { throw fail(String(cString: strerror(errno))) }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        bytes += chunk[..<n]
        if bytes.count > 16 << 20 { throw fail("larger than 16 MiB") }
        if n < chunk.count {
            if ferror(f) != 0 { throw fail(String(cString: strerror(errno))) }
            break
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw fail("not valid UTF-8") }
    return text
}
