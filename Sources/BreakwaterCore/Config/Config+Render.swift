extension Config {
    /// The effective configuration as a conf file: every key with its value, defaults included,
    /// and each route with its fully merged backoff policy. `breakwater check` prints this so an
    /// operator sees what will actually run, not what the file happened to spell out.
    ///
    /// The output parses back to an equal `Config`, but for its secrets: `admin.token`,
    /// `clients.hash_key` and the password in `[redis] url` are printed as `Config.redactedToken`,
    /// a placeholder that `parse` refuses, so the output of `breakwater check` never shows them and
    /// cannot run with a guessable one by mistake (`render(showingSecrets: true)` prints them, for
    /// round-trip tests). A token read from `token_file` is printed as that path and read again, so
    /// such a config round-trips exactly. Values a conf file cannot set explicitly (no `[redis]` or
    /// `[tls]`, a route without its own `key` or `rate`) appear as comments.
    /// File paths are printed as they are too; those of a parsed config are absolute, while a
    /// relative one (only possible in a `Config` built in code) would be read back from the
    /// directory of the file the output is parsed as.
    public func render(showingSecrets: Bool = false) -> String {
        func secret(_ value: String) -> String { value.isEmpty || showingSecrets ? value : Config.redactedToken }
        var out = ["# Breakwater effective configuration: defaults filled in, routes merged with [backoff].", ""]
        func set(_ key: String, _ value: String) { out.append("\(key) = \(value)") }

        out.append("[server]")
        set("listen", quote(server.listen.description))
        set("workers", "\(server.workers)")
        set("max_header_bytes", size(server.maxHeaderBytes))
        set("max_request_line_bytes", size(server.maxRequestLineBytes))
        set("max_body_bytes", size(server.maxBodyBytes))
        set("header_timeout", duration(server.headerTimeout))
        set("idle_timeout", duration(server.idleTimeout))
        set("grace_period", duration(server.gracePeriod))
        set("access_log", quote(server.accessLog ?? "off"))
        set("upgrades", list(server.upgrades.map(quote)))
        set("tunnel_idle_timeout", duration(server.tunnelIdleTimeout))
        set("min_body_rate", size(server.minBodyRate))
        set("cors_origins", list(server.corsOrigins.map(quote)))
        set("h2c", "\(server.h2c)")
        set("h2_max_streams", "\(server.h2MaxStreams)")
        set("max_buffered_bytes", size(server.maxBufferedBytes))

        out.append("")
        if let tls {
            out.append("[tls]")
            set("listen", quote(tls.listen.description))
            set("certificates", list(tls.certificates.map { "{ cert = \(quote($0.cert)), key = \(quote($0.key)) }" }))
            set("min_version", quote(tls.minVersion.rawValue))
            set("alpn", list(tls.alpn.map(quote)))
            set("client_ca", quote(tls.clientCA))
            set("client_auth", quote(tls.clientAuth.rawValue))
            set("handshake_timeout", duration(tls.handshakeTimeout))
            set("session_tickets", "\(tls.sessionTickets)")
            set("session_ticket_rotation", duration(tls.sessionTicketRotation))
            set("session_tickets_per_handshake", "\(tls.sessionTicketsPerHandshake)")
        } else {
            out.append("# [tls]: not set, no TLS listener")
        }

        out += ["", "[upstream]"]
        set("servers", list(upstream.servers.map { quote($0.description) }))
        set("connect_timeout", duration(upstream.connectTimeout))
        set("timeout", duration(upstream.timeout))
        set("max_connections", "\(upstream.maxConnections)")
        set("retries", "\(upstream.retries)")
        set("retry_base", duration(upstream.retryBase))
        set("retry_on", list(upstream.retryOn.sorted().map(String.init)))
        set("retry_budget", "\(upstream.retryBudget)")
        set("tls", "\(upstream.tls)")
        set("tls_server_name", quote(upstream.tlsServerName))
        set("tls_ca", quote(upstream.tlsCA))
        set("tls_verify", "\(upstream.tlsVerify)")

        out += ["", "[admin]"]
        set("listen", quote(admin.listen.description))
        if !admin.tokenFile.isEmpty {
            out.append("# token: read from token_file, not shown")
        } else {
            set("token", quote(secret(admin.token)))
        }
        set("token_file", quote(admin.tokenFile))
        set("metrics_public", "\(admin.metricsPublic)")

        out += ["", "[clients]"]
        set("key", keyList(clients.key))
        set("trusted_proxies", list(clients.trustedProxies.map { quote($0.description) }))
        set("ipv6_prefix", "\(clients.ipv6Prefix)")
        set("hash_key", quote(secret(clients.hashKey)))
        set("max_clients", "\(clients.maxClients)")

        out += ["", "[backoff]"]
        for (key, value) in pairs(backoff) { set(key, value) }

        out += ["", "[circuit]"]
        set("enabled", "\(circuit.enabled)")
        set("share", "\(circuit.share)")
        set("min_failures", "\(circuit.minFailures)")
        set("window", duration(circuit.window))
        set("base", duration(circuit.base))
        set("max", duration(circuit.max))
        set("jitter", "\(circuit.jitter)")

        for route in routes {
            out += ["", "[[route]]"]
            set("name", quote(route.name))
            set("path", quote(route.path))
            if route.bypass {
                out.append("# not tracked nor rate-limited: key, backoff, rate and burst do not apply")
            } else {
                if let key = route.key { set("key", keyList(key)) } else {
                    out.append("# key: not set, so [clients] key = \(keyList(clients.key)) applies")
                }
                set("backoff", "{ " + pairs(route.backoff).map { "\($0) = \($1)" }.joined(separator: ", ") + " }")
                if let rate = route.rate {
                    set("rate", quote(rate.confText))
                    set("burst", "\(route.burst)")
                } else {
                    out.append("# rate, burst: not set, no request-rate limit")
                }
            }
            set("bypass", "\(route.bypass)")
            set("case_insensitive", "\(route.caseInsensitive)")
            set("upstream_protocol", quote(route.upstreamProtocol.rawValue))
            if let upgrades = route.upgrades { set("upgrades", list(upgrades.map(quote))) } else {
                out.append("# upgrades: not set, so [server] upgrades = \(list(server.upgrades.map(quote))) applies")
            }
        }

        out.append("")
        if let redis {
            out.append("[redis]")
            set("url", quote(showingSecrets ? redis.url : RedisURL.redactingPassword(redis.url)))
            set("prefix", quote(redis.prefix))
            set("timeout", duration(redis.timeout))
        } else {
            out.append("# [redis]: not set, each replica tracks clients on its own")
        }

        out += ["", "[state]"]
        set("file", quote(state.file))
        set("save_interval", duration(state.saveInterval))
        return out.joined(separator: "\n") + "\n"
    }

    /// What `render()` prints in place of a secret set in the conf file (the admin token, the hash
    /// key, a Redis password); `parse` refuses it in each of those places.
    public static let redactedToken = "<redacted>"

    /// The keys of one backoff policy in conf-file order, shared by `[backoff]` and the routes'
    /// inline tables so both print the same way.
    private func pairs(_ p: BackoffPolicy) -> [(String, String)] {
        let on = p.on.statuses.sorted().map(String.init)
            + (p.on.connect ? [quote("connect")] : []) + (p.on.timeout ? [quote("timeout")] : [])
            + p.on.grpcStatuses.sorted().map { quote("grpc:\($0)") }
        return [
            ("on", list(on)), ("strategy", quote(p.strategy.rawValue)), ("base", duration(p.base)),
            ("factor", "\(p.factor)"), ("max", duration(p.max)), ("jitter", "\(p.jitter)"),
            ("threshold", "\(p.threshold)"), ("reset_after", duration(p.resetAfter)), ("mode", quote(p.mode.rawValue)),
        ]
    }

    private func list(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }
    private func keyList(_ parts: [KeyPart]) -> String { list(parts.map { quote($0.description) }) }
    private func duration(_ d: Duration) -> String { quote(d.confText) }

    /// A size with a binary unit when exact (`"10MiB"`), else the plain integer.
    private func size(_ bytes: Int) -> String {
        let text = ByteSize.format(bytes)
        return text.allSatisfy(\.isNumber) || text.hasPrefix("-") ? text : quote(text)
    }
}
