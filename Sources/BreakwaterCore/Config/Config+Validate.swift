/// What each key accepts, in words. The parser quotes these when a value has the wrong type and
/// `validate` quotes them when it is out of range, so both errors promise the same thing.
enum Allowed {
    static let sections = "the sections [server], [upstream], [admin], [clients], [backoff], [circuit], [[route]], [redis], [tls], [state]"
    static let circuitShare = "a number above 0.0 and at most 1.0 (a share of the route's requests)"
    static let minFailures = "an integer from 1 up"
    static let corsOrigins = "an array of distinct origins such as \"https://app.example.com\" (scheme://host[:port], "
        + "no path), or [\"*\"] for any origin"
    static let listen = "\"host:port\" (IPv6 as \"[::1]:8080\"; port 0 picks a free port)"
    static let workers = "an integer from 0 (one per core) to 1024"
    static let maxRequestLineBytes = "a size from 256 to 1048576 bytes, as an integer or a string such as \"8KB\" (the head limit applies too)"
    static let maxHeaderBytes = "a size from 1024 to 1048576 bytes, as an integer or a string such as \"16KB\" (K = 1024)"
    static let h2MaxStreams = "an integer from 1 to 65536"
    static let minBodyRate = "bytes a second, at least 1, as an integer or a string such as \"1KB\" (K = 1024)"
    static let maxBufferedBytes = "a size of at least 1 byte, as an integer or a string such as \"100MB\" (M = 1024*1024)"
    static let maxBodyBytes = "a size of at least 1 byte, as an integer or a string such as \"10MB\" (M = 1024*1024)"
    static let duration = "a duration above zero: a number and a unit (ns, us, ms, s, m, h, d), such as \"500ms\" or \"1.5s\""
    static let durationOrZero = "a duration of zero or more: a number and a unit (ns, us, ms, s, m, h, d), such as \"10s\""
    static let accessLog = "\"stderr\", \"off\", or a file path"
    static let servers = "one or more \"host:port\" strings (port 1 to 65535), such as [\"127.0.0.1:9000\"]"
    static let maxConnections = "an integer from 1 to 1000000"
    static let retries = "an integer from 0 to 10"
    static let retryOn = "an array of HTTP statuses from 500 to 599 (a refused connection is always retried)"
    static let retryBudget = "a number from 0.0 to 1.0 (a fraction of requests)"
    static let key = "a non-empty array of distinct parts: \"ip\", \"header:NAME\", \"route\", \"tls:fingerprint\""
    static let trustedProxies = "an array of CIDR strings such as \"10.0.0.0/8\" or \"fd00::/8\""
    static let ipv6Prefix = "an integer from 1 to 128"
    static let hashKey = "\"\" (random per start, or kept in a file beside [state] file; only without [redis]) or a secret of at least 16 characters"
    static let maxClients = "an integer from 1 to 1000000000"
    static let upstreamProtocol = "\"http1\" or \"h2\""
    static let on = "an array of HTTP statuses (100 to 599), the words \"connect\" and \"timeout\", and gRPC statuses"
        + " as \"grpc:N\" (N from 1 to 16, such as \"grpc:16\" for UNAUTHENTICATED)"
    static let strategy = "\"exponential\" or \"linear\""
    static let factor = "a number from 1.0 up"
    static let max = "a duration no shorter than base"
    static let jitter = "a number from 0.0 up to, but not including, 1.0"
    static let threshold = "an integer from 1 up"
    static let mode = "\"enforce\" or \"dry-run\""
    static let routeName = "a unique name of letters, digits, '_', '.' and '-', other than \"default\" (the fallback route)"
    static let routePath = "a path starting with \"/\", without spaces, '?' or '#', that no earlier route already matches"
    static let rate = "a rate above zero such as \"10r/s\" or \"600r/m\""
    static let burst = "an integer from 0 up, and only together with rate"
    static let bypass = "true or false; a bypass route takes only name and path"
    static let redisURL = "\"redis://[[user]:password@]host[:port][/db]\" (port 6379 and db 0 by default)"
    static let tlsServerName = "\"\" (the host of each server in servers) or a DNS host name such as \"api.example.com\" "
        + "(letters, digits, '-' and '_' in dot-separated labels; not an IP address, since the name is sent as SNI)"
    static let tlsCA = "a PEM file path (relative paths are read from the conf file's directory), or \"\" for the system CA bundle"
    static let certificates = "one or more tables of a certificate chain and its key, such as "
        + "[ { cert = \"certs/api.pem\", key = \"certs/api.key\" } ]"
    static let certificatePath = "a non-empty path of a PEM file (relative paths are read from the conf file's directory)"
    static let minVersion = "\"1.2\" or \"1.3\", as a string"
    static let alpn = "a non-empty array of distinct protocols, each \"h2\" or \"http/1.1\""
    static let clientCA = "a PEM file path (relative paths are read from the conf file's directory), or \"\" for none; "
        + "required when client_auth is \"optional\" or \"required\""
    static let ticketRotation = "a duration of at least 1s, such as \"1h\""
    static let ticketsPerHandshake = "an integer from 1 to 8"
    static let clientAuth = "\"off\", \"optional\" or \"required\" (the last two need client_ca)"
    static let upgrades = "an array of distinct Upgrade protocol names, each an HTTP token (RFC 9110), such as "
        + "[\"websocket\"]; [] allows none"
    static let stateFile = "a file path (relative paths are read from the conf file's directory), or \"\" to keep no state"
    static let adminToken = "\"\" (no authentication, only while admin.listen is a loopback address) or a secret of at "
        + "least 32 visible ASCII characters without spaces, such as the output of `openssl rand -hex 32`"
    static let adminTokenFile = "\"\" or the path of a file holding the admin token (one trailing newline is ignored; "
        + "relative paths are read from the conf file's directory), not together with admin.token"
    static let bool = "true or false"
    static let string = "a string"
}

extension Config {
    /// Checks every range and every rule that spans keys, so a `Config` built in code is held to
    /// the same contract as one read from a file. Throws the first problem found, naming `file`.
    ///
    /// `[backoff]` is checked before the routes: a bad value there is reported at its own key,
    /// not at the first route that inherited it.
    public func validate(file: String) throws {
        let c = Checker(file: file)
        let s = server
        try c.listen(s.listen, "server.listen")
        try c.check((0...1024).contains(s.workers), "server.workers", "\(s.workers)", Allowed.workers)
        try c.check((1024...1_048_576).contains(s.maxHeaderBytes), "server.max_header_bytes",
                    "\(s.maxHeaderBytes)", Allowed.maxHeaderBytes)
        try c.check((256...1_048_576).contains(s.maxRequestLineBytes), "server.max_request_line_bytes",
                    "\(s.maxRequestLineBytes)", Allowed.maxRequestLineBytes)
        try c.check(s.maxBodyBytes >= 1, "server.max_body_bytes", "\(s.maxBodyBytes)", Allowed.maxBodyBytes)
        try c.positive(s.headerTimeout, "server.header_timeout")
        try c.positive(s.idleTimeout, "server.idle_timeout")
        try c.check(s.gracePeriod >= .zero, "server.grace_period", quote(s.gracePeriod.confText), Allowed.durationOrZero)
        if let log = s.accessLog {
            try c.check(!log.isEmpty && log != "off", "server.access_log", quote(log), Allowed.accessLog)
        }
        try c.upgrades(s.upgrades, "server.upgrades")
        try c.positive(s.tunnelIdleTimeout, "server.tunnel_idle_timeout")
        try c.check(s.minBodyRate >= 1, "server.min_body_rate", "\(s.minBodyRate)", Allowed.minBodyRate)
        for origin in s.corsOrigins {
            try c.check(Self.validOrigin(origin), "server.cors_origins", quote(origin), Allowed.corsOrigins)
        }
        try c.check(Set(s.corsOrigins).count == s.corsOrigins.count, "server.cors_origins", "a repeated origin", Allowed.corsOrigins)
        try c.check((1...65536).contains(s.h2MaxStreams), "server.h2_max_streams", "\(s.h2MaxStreams)", Allowed.h2MaxStreams)
        try c.check(s.maxBufferedBytes >= 1, "server.max_buffered_bytes", "\(s.maxBufferedBytes)", Allowed.maxBufferedBytes)

        let u = upstream
        try c.check(!u.servers.isEmpty, "upstream.servers", "[]", Allowed.servers)
        for server in u.servers {
            try c.check(server.port != 0 && validHost(server.host), "upstream.servers", quote("\(server)"), Allowed.servers)
            try c.check(!Self.loopsBack(s.listen, server), "upstream.servers",
                        "\(quote("\(server)")), which is server.listen: Breakwater would forward to itself",
                        "the address of the API server behind Breakwater")
        }
        try c.positive(u.connectTimeout, "upstream.connect_timeout")
        try c.positive(u.timeout, "upstream.timeout")
        try c.check((1...1_000_000).contains(u.maxConnections), "upstream.max_connections",
                    "\(u.maxConnections)", Allowed.maxConnections)
        try c.check((0...10).contains(u.retries), "upstream.retries", "\(u.retries)", Allowed.retries)
        try c.check(u.retryBase >= .zero, "upstream.retry_base", quote(u.retryBase.confText), Allowed.durationOrZero)
        for status in u.retryOn.sorted() {
            try c.check((500...599).contains(status), "upstream.retry_on", "\(status)", Allowed.retryOn)
        }
        try c.check((0...1).contains(u.retryBudget), "upstream.retry_budget", "\(u.retryBudget)", Allowed.retryBudget)
        try c.check(u.tlsServerName.isEmpty || validServerName(u.tlsServerName), "upstream.tls_server_name",
                    quote(u.tlsServerName), Allowed.tlsServerName)

        try c.listen(admin.listen, "admin.listen")
        try c.check(!Self.clash(s.listen, admin.listen), "admin.listen",
                    "\(quote("\(admin.listen)")), which clashes with server.listen \(quote("\(s.listen)"))",
                    "an address and port of its own")

        try c.adminToken(admin)

        if let t = tls { try c.tls(t, server: s.listen, admin: admin.listen, upstreams: u.servers) }

        let cl = clients
        try c.keyParts(cl.key, "clients.key")
        try c.check((1...128).contains(cl.ipv6Prefix), "clients.ipv6_prefix", "\(cl.ipv6Prefix)", Allowed.ipv6Prefix)
        try c.check(cl.hashKey != Config.redactedToken, "clients.hash_key",
                    "the placeholder that `breakwater check` prints in place of the key", Allowed.hashKey)
        try c.check(cl.hashKey.isEmpty || cl.hashKey.count >= 16, "clients.hash_key",
                    "a secret of \(cl.hashKey.count) characters", Allowed.hashKey)
        try c.check(!cl.hashKey.isEmpty || redis == nil, "clients.hash_key",
                    "\"\" while [redis] shares the tracker: each replica would hash keys its own way",
                    "a secret of at least 16 characters, the same on every replica")
        try c.check((1...1_000_000_000).contains(cl.maxClients), "clients.max_clients",
                    "\(cl.maxClients)", Allowed.maxClients)

        try c.backoff(backoff, "backoff")
        let cc = circuit
        try c.check(cc.share > 0 && cc.share <= 1, "circuit.share", "\(cc.share)", Allowed.circuitShare)
        try c.check(cc.minFailures >= 1, "circuit.min_failures", "\(cc.minFailures)", Allowed.minFailures)
        try c.positive(cc.window, "circuit.window")
        try c.positive(cc.base, "circuit.base")
        try c.check(cc.max >= cc.base, "circuit.max", quote(cc.max.confText), Allowed.max)
        try c.check(cc.jitter >= 0 && cc.jitter < 1, "circuit.jitter", "\(cc.jitter)", Allowed.jitter)
        var names: Set<String> = []
        for (i, route) in routes.enumerated() {
            let at = "route[\(i)]"
            let nameOK = !route.name.isEmpty && route.name != "default"
                && route.name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
            try c.check(nameOK, "\(at).name", quote(route.name), Allowed.routeName)
            try c.check(names.insert(route.name).inserted, "\(at).name",
                        "\(quote(route.name)), already the name of an earlier route", Allowed.routeName)
            let pathOK = route.path.hasPrefix("/") && !route.path.unicodeScalars.contains {
                $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f || $0 == "?" || $0 == "#"
            }
            try c.check(pathOK, "\(at).path", quote(route.path), Allowed.routePath)
            if let j = routes[..<i].firstIndex(where: { Self.covers($0.path, route.path) }) {
                let earlier = "route[\(j)] (\(quote(routes[j].name)), path \(quote(routes[j].path)))"
                try c.check(false, "\(at).path",
                            "\(quote(route.path)), which \(earlier) already matches, so this route would never be used",
                            Allowed.routePath + " (list longer paths first)")
            }
            if let key = route.key { try c.keyParts(key, "\(at).key") }
            try c.backoff(route.backoff, "\(at).backoff")
            if let rate = route.rate {
                try c.check(rate.perSecond.isFinite && rate.perSecond > 0, "\(at).rate", quote(rate.confText), Allowed.rate)
            }
            try c.check(route.burst >= 0 && (route.burst == 0 || route.rate != nil), "\(at).burst",
                        route.rate == nil ? "\(route.burst) without a rate" : "\(route.burst)", Allowed.burst)
            try c.check(!route.bypass || route.rate == nil, "\(at).rate",
                        "\(quote(route.rate?.confText ?? "")) on a route with bypass = true", Allowed.bypass)
            if let upgrades = route.upgrades { try c.upgrades(upgrades, "\(at).upgrades") }
        }

        if let r = redis {
            try c.check(RedisURL(parsing: r.url) != nil, "redis.url", quote(RedisURL.redactingPassword(r.url)), Allowed.redisURL)
            try c.check(r.endpoint?.password != Config.redactedToken, "redis.url",
                        "the placeholder that `breakwater check` prints in place of the password", Allowed.redisURL)
            try c.positive(r.timeout, "redis.timeout")
        }

        try c.check(!state.file.hasSuffix("/") && !state.file.contains("\0"), "state.file", quote(state.file), Allowed.stateFile)
        try c.positive(state.saveInterval, "state.save_interval")
    }

    /// The admin token's rule alone: a reload keeps the running `admin.listen`, and checks the new
    /// token against that address with this.
    public func validateAdminToken(file: String) throws {
        try Checker(file: file).adminToken(admin)
    }

    /// Whether a request for `later` would always be taken by a route on `earlier` first. Only
    /// matches at a segment boundary count, so the rule holds whether the router compares raw
    /// prefixes or whole segments (`/api` does not cover `/api2`, but does cover `/api/v1`).
    static func covers(_ earlier: String, _ later: String) -> Bool {
        guard later.hasPrefix(earlier) else { return false }
        return earlier == later || earlier.hasSuffix("/") || later.dropFirst(earlier.count).hasPrefix("/")
    }

    /// Whether two listeners would fight over one socket. Port 0 never clashes because the
    /// kernel picks a different free port for each; a wildcard host holds the port on every address.
    static func clash(_ a: HostPort, _ b: HostPort) -> Bool {
        guard a.port == b.port, a.port != 0 else { return false }
        return a.host == b.host || wildcards.contains(a.host) || wildcards.contains(b.host)
    }

    /// Whether forwarding to `upstream` would reach this very listener, an endless loop that
    /// exhausts file descriptors before anyone sees an error.
    static func loopsBack(_ listen: HostPort, _ upstream: HostPort) -> Bool {
        guard listen.port == upstream.port, listen.port != 0 else { return false }
        let local = wildcards.union(["127.0.0.1", "::1", "localhost"])
        return listen.host == upstream.host || wildcards.contains(upstream.host)
            || (wildcards.contains(listen.host) && local.contains(upstream.host))
    }

    /// An origin as a browser sends it (RFC 6454): `http` or `https`, `://`, a host and an optional
    /// port, no path; or `*`, any origin.
    static func validOrigin(_ origin: String) -> Bool {
        if origin == "*" { return true }
        let rest: Substring
        if origin.hasPrefix("https://") { rest = origin.dropFirst(8) } else if origin.hasPrefix("http://") {
            rest = origin.dropFirst(7)
        } else { return false }
        return !rest.isEmpty && rest.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]".contains($0)) }
    }

    /// Hosts that bind every local address.
    static let wildcards: Set = ["0.0.0.0", "::"]
}

/// A host name or literal address that a resolver could accept; catches typos such as spaces
/// or stray slashes before they turn into a confusing bind or connect error.
func validHost(_ host: String) -> Bool {
    if IPAddress(parsing: host) != nil { return true }
    return !host.isEmpty && !host.hasPrefix("-") && !host.hasPrefix(".")
        && host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }
}

/// A name to send as SNI and to find in the server's certificate: a DNS host name of dot-separated
/// labels of 1 to 63 letters, digits, '-' (not first or last) and '_', at most 253 characters, no
/// trailing dot and not an IP address (RFC 6066 forbids literal addresses in SNI).
func validServerName(_ name: String) -> Bool {
    guard name.utf8.count <= 253, IPAddress(parsing: name) == nil else { return false }
    let labels = name.split(separator: ".", omittingEmptySubsequences: false)
    guard let last = labels.last, !last.allSatisfy(\.isNumber) else { return false }
    return labels.allSatisfy { label in
        (1...63).contains(label.utf8.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
            && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }
}

/// Whether `byte` is an RFC 9110 tchar: a letter, a digit, or one of ``!#$%&'*+-.^_`|~``.
func isTChar(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    default:
        return "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }
}

/// A TOML basic string, so that values quoted in messages and in `render()` read back the same.
func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The range checks shared by `[backoff]` and every route's merged policy.
struct Checker {
    /// The file named in every error.
    let file: String

    /// Throws `got GOT; allowed: ALLOWED` at `key` unless `ok`.
    func check(_ ok: Bool, _ key: String, _ got: String, _ allowed: String) throws {
        if !ok { throw ConfigError(file: file, key: key, message: "got \(got)", allowed: allowed) }
    }

    /// Durations where zero would mean "never wait" or "wait forever", both of them bugs.
    func positive(_ d: Duration, _ key: String) throws {
        try check(d > .zero, key, quote(d.confText), Allowed.duration)
    }

    /// A listener address with a plausible host.
    func listen(_ hp: HostPort, _ key: String) throws {
        try check(validHost(hp.host), key, quote("\(hp)"), Allowed.listen)
    }

    /// `[tls]`: a listener of its own, at least one certificate with both paths, the supported
    /// protocols, a CA for whatever client certificates are asked for, a handshake that can end.
    func tls(_ t: TLSConfig, server: HostPort, admin: HostPort, upstreams: [HostPort]) throws {
        try listen(t.listen, "tls.listen")
        for (other, name) in [(server, "server.listen"), (admin, "admin.listen")] {
            try check(!Config.clash(t.listen, other), "tls.listen",
                      "\(quote("\(t.listen)")), which clashes with \(name) \(quote("\(other)"))", "an address and port of its own")
        }
        for upstream in upstreams {
            try check(!Config.loopsBack(t.listen, upstream), "upstream.servers",
                      "\(quote("\(upstream)")), which is tls.listen: Breakwater would forward to itself",
                      "the address of the API server behind Breakwater")
        }
        try check(!t.certificates.isEmpty, "tls.certificates", "[]", Allowed.certificates)
        for (i, pair) in t.certificates.enumerated() {
            try check(!pair.cert.isEmpty, "tls.certificates[\(i)].cert", "\"\"", Allowed.certificatePath)
            try check(!pair.key.isEmpty, "tls.certificates[\(i)].key", "\"\"", Allowed.certificatePath)
        }
        try check(!t.alpn.isEmpty, "tls.alpn", "[]", Allowed.alpn)
        for (i, proto) in t.alpn.enumerated() {
            try check(proto == "http/1.1" || proto == "h2", "tls.alpn", quote(proto), Allowed.alpn)
            try check(!t.alpn[..<i].contains(proto), "tls.alpn", "\(quote(proto)) twice", Allowed.alpn)
        }
        try check(t.clientAuth == .off || !t.clientCA.isEmpty, "tls.client_ca",
                  "\"\" while client_auth = \(quote(t.clientAuth.rawValue)): client certificates could not be verified",
                  Allowed.clientCA)
        try positive(t.handshakeTimeout, "tls.handshake_timeout")
        try check(t.sessionTicketRotation >= .seconds(1), "tls.session_ticket_rotation", quote(t.sessionTicketRotation.confText),
                  Allowed.ticketRotation)
        try check((1...8).contains(t.sessionTicketsPerHandshake), "tls.session_tickets_per_handshake",
                  "\(t.sessionTicketsPerHandshake)", Allowed.ticketsPerHandshake)
    }

    /// The admin token: none only on a loopback listener, else at least 32 visible ASCII characters.
    /// Errors name the key the token came from (`admin.token_file` when it was read from a file).
    func adminToken(_ admin: AdminConfig) throws {
        let key = admin.tokenFile.isEmpty ? "admin.token" : "admin.token_file"
        let allowed = admin.tokenFile.isEmpty ? Allowed.adminToken : Allowed.adminTokenFile + "; the token: " + Allowed.adminToken
        if admin.token.isEmpty {
            try check(admin.listen.isLoopback, key,
                      "no token while admin.listen \(quote(admin.listen.description)) is not a loopback address: anyone "
                      + "who reaches it could read the stats and forgive clients", allowed)
            return
        }
        try check(admin.token != Config.redactedToken, key,
                  "the placeholder that `breakwater check` prints in place of the token", allowed)
        try check(admin.token.utf8.allSatisfy { (0x21...0x7E).contains($0) }, key,
                  "a token with spaces, control or non-ASCII characters", allowed)
        try check(admin.token.utf8.count >= 32, key, "a token of \(admin.token.utf8.count) characters", allowed)
    }

    /// Upgrade tokens as the request path compares them: HTTP tokens, lower-case (a conf file's are
    /// lower-cased when read), each once. `h2c` is refused by name: HTTP/2 is spoken with prior
    /// knowledge (`h2c = true`) or through ALPN, never by upgrading an HTTP/1.1 request, and a
    /// request asking for it is served as HTTP/1.1 with the header removed, whatever the list says.
    func upgrades(_ tokens: [String], _ key: String) throws {
        for (i, token) in tokens.enumerated() {
            let isToken = !token.isEmpty && token.utf8.allSatisfy(isTChar)
            try check(isToken, key, quote(token), Allowed.upgrades)
            try check(token == upgradeToken(token), key, "\(quote(token)), not in lower case",
                      Allowed.upgrades + " (stored in lower case: tokens are matched case-insensitively)")
            try check(!tokens[..<i].contains(token), key, "\(quote(token)) twice", Allowed.upgrades)
            try check(token != "h2c", key, "\"h2c\": h2c upgrades are not supported (HTTP/2 is spoken with prior knowledge, "
                      + "[server] h2c = true, or through ALPN; such a request is served as HTTP/1.1 without its Upgrade header)", Allowed.upgrades + ", other than \"h2c\"")
        }
    }

    /// Key parts as the identity code expects them: at least one, distinct, header names valid
    /// HTTP tokens in lower case (header lookup is case-insensitive, so the stored form is fixed).
    func keyParts(_ parts: [KeyPart], _ key: String) throws {
        try check(!parts.isEmpty, key, "[]", Allowed.key)
        for (i, part) in parts.enumerated() {
            try check(!parts[..<i].contains(part), key, "\(quote(part.description)) twice", Allowed.key)
            if case .header(let name) = part {
                let token = !name.isEmpty && name == name.lowercased()
                    && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "!#$%&'*+-.^_`|~".contains($0)) }
                try check(token, key, quote(part.description), Allowed.key + " (NAME an HTTP header name)")
            }
        }
    }

    /// The tracker's rules (README, "How a request goes through"): a window that can never be shorter than zero nor longer
    /// than `max`, jitter that cannot cancel a window out, growth that never shrinks it.
    func backoff(_ p: BackoffPolicy, _ path: String) throws {
        for status in p.on.statuses.sorted() {
            try check((100...599).contains(status), "\(path).on", "\(status)", Allowed.on)
        }
        // grpc:0 is OK: a call that succeeded is never a failure.
        for code in p.on.grpcStatuses.sorted() {
            try check((1...16).contains(code), "\(path).on", "\"grpc:\(code)\"", Allowed.on)
        }
        try positive(p.base, "\(path).base")
        try check(p.factor.isFinite && p.factor >= 1, "\(path).factor", "\(p.factor)", Allowed.factor)
        try check(p.max >= p.base, "\(path).max",
                  "\(quote(p.max.confText)), shorter than base \(quote(p.base.confText))", Allowed.max)
        try check(p.jitter >= 0 && p.jitter < 1, "\(path).jitter", "\(p.jitter)", Allowed.jitter)
        try check(p.threshold >= 1, "\(path).threshold", "\(p.threshold)", Allowed.threshold)
        try positive(p.resetAfter, "\(path).reset_after")
    }
}
