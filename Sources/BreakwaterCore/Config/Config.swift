/// The whole configuration of one Breakwater process, as read from the conf file.
///
/// Every value has the default that the README documents, so `Config()` is the effective
/// configuration of an empty file. Parsing lives in `Config+Parse.swift`, validation in
/// `Config+Validate.swift`.
public struct Config: Sendable, Equatable {
    /// `[server]`: the client-facing listener and its limits.
    public var server = ServerConfig()
    /// `[upstream]`: the API servers Breakwater forwards to.
    public var upstream = UpstreamConfig()
    /// `[admin]`: the stats listener.
    public var admin = AdminConfig()
    /// `[clients]`: how a client is identified and how many are tracked.
    public var clients = ClientsConfig()
    /// `[backoff]`: the defaults of every route.
    public var backoff = BackoffPolicy()
    /// `[circuit]`: the route circuits that take upstream outages off the clients' accounts.
    public var circuit = CircuitPolicy()
    /// `[[route]]`, in file order; the first whose `path` prefixes the request path wins.
    public var routes: [RouteConfig] = []
    /// `[redis]`: present only when the tracker is shared between replicas.
    public var redis: RedisConfig? = nil
    /// `[tls]`: the TLS listener; nil when the file has no `[tls]` section.
    public var tls: TLSConfig? = nil
    /// `[state]`: the file the tracker is saved to and loaded from.
    public var state = StateConfig()

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// `[server]`.
public struct ServerConfig: Sendable, Equatable {
    /// `listen`: where clients connect.
    public var listen = HostPort(host: "0.0.0.0", port: 8080)
    /// `workers`: event loops, each on its own thread; 0 means one per core.
    public var workers = 0
    /// `max_header_bytes`: request line plus headers; larger gets 431.
    public var maxHeaderBytes = 16_384
    /// `max_request_line_bytes`: the request line alone; longer gets 414 (nginx's 8 KiB buffer).
    public var maxRequestLineBytes = 8192
    /// `max_body_bytes`: request body; larger gets 413. "10MB" in nginx units, 10 MiB.
    public var maxBodyBytes = 10 << 20
    /// `header_timeout`: the whole request head must arrive within this, counted from its first byte.
    public var headerTimeout: Duration = .seconds(10)
    /// `idle_timeout`: how long a keep-alive connection may wait for its next request.
    public var idleTimeout: Duration = .seconds(60)
    /// `grace_period`: on SIGTERM/SIGINT, how long in-flight requests may take to finish.
    public var gracePeriod: Duration = .seconds(10)
    /// `access_log`: nil (off), "stderr", or a file path.
    public var accessLog: String? = nil
    /// `upgrades`: the `Upgrade` tokens (RFC 9110 section 7.8) a request may ask for on routes that
    /// set no list of their own, in lower case since tokens are matched case-insensitively; `[]`
    /// allows none, and an upgrade request is then refused with 400.
    public var upgrades: [String] = ["websocket"]
    /// `tunnel_idle_timeout`: a tunnel (a connection after its `101 Switching Protocols`) with no
    /// byte either way for this long is closed.
    public var tunnelIdleTimeout: Duration = .seconds(3600)
    /// `min_body_rate`: after a grace of `header_timeout`, a request body must average at least
    /// this many bytes a second (and never stall for `header_timeout`): 1 KiB/s lets a slow mobile
    /// upload finish while a client trickling bytes to hold a connection is cut off (408).
    public var minBodyRate = 1024
    /// `cors_origins`: browser origins (`scheme://host[:port]`) that may read Breakwater's own
    /// answers (429, 503...): they get `Access-Control-Allow-Origin` and
    /// `Access-Control-Expose-Headers: Retry-After, RateLimit`. Empty: no CORS headers.
    public var corsOrigins: [String] = []
    /// `h2c`: HTTP/2 with prior knowledge on the plain listener (a connection that opens with the
    /// HTTP/2 preface is served as HTTP/2; every other as HTTP/1.1).
    public var h2c = false
    /// `h2_max_streams`: concurrent streams an HTTP/2 client may open on one connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS); a stream beyond it is refused.
    public var h2MaxStreams = 128
    /// `max_buffered_bytes`: request bodies being received, over all connections together, at
    /// most; past it, connections reading a body wait (stop reading) until bodies complete.
    /// "100MB", 100 MiB: ten bodies of the default `max_body_bytes` at once.
    public var maxBufferedBytes = 100 << 20

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// `[upstream]`.
public struct UpstreamConfig: Sendable, Equatable {
    /// `servers`: one or more `host:port`, used round-robin.
    public var servers = [HostPort(host: "127.0.0.1", port: 9000)]
    /// `connect_timeout`: a connection not established by then is a connect error (502).
    public var connectTimeout: Duration = .seconds(2)
    /// `timeout`: an upstream silent for this long is a timeout (504).
    public var timeout: Duration = .seconds(30)
    /// `max_connections`: per worker and server, in use plus idle.
    public var maxConnections = 512
    /// `retries`: retries of a transient failure of an idempotent request.
    public var retries = 2
    /// `retry_base`: the first retry waits up to this long (full jitter), doubling after.
    public var retryBase: Duration = .milliseconds(100)
    /// `retry_on`: upstream statuses that are retried (a refused connection always is).
    public var retryOn: Set<Int> = [502, 503, 504]
    /// `retry_budget`: retries may add at most this fraction of the requests of the last 10 s.
    public var retryBudget = 0.2
    /// `tls`: connect to the servers over TLS.
    public var tls = false
    /// `tls_server_name`: the name sent as SNI and verified in the server's certificate;
    /// "" means the host of each server in `servers`.
    public var tlsServerName = ""
    /// `tls_ca`: a PEM bundle of the CAs that may sign the servers' certificates; "" means the
    /// system CA bundle. A relative path in a conf file is read from the file's directory.
    public var tlsCA = ""
    /// `tls_verify`: verify the server's certificate chain and name; false accepts any certificate.
    public var tlsVerify = true

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// `[admin]`.
public struct AdminConfig: Sendable, Equatable {
    /// `listen`: the stats endpoint; loopback by default.
    public var listen = HostPort(host: "127.0.0.1", port: 9901)
    /// The bearer token every admin request but `/healthz` (and the page at `/`, which holds no
    /// data) must present; "" means none, allowed only while `listen` is a loopback address.
    /// It is `token` from the conf file, or the content of `token_file` once the file was read.
    public var token = ""
    /// `token_file`: the file the token was read from ("" when none); its content is in `token`.
    /// A relative path in a conf file is read from the file's directory.
    public var tokenFile = ""
    /// `metrics_public`: `/metrics` is served without the token, for Prometheus scrapers.
    public var metricsPublic = false

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// `[tls]`: a client-facing listener that terminates TLS, beside the plain one of `[server]`.
///
/// Paths are used as they are; a conf file's relative paths were already resolved against the
/// file's directory by `Config.parse`.
public struct TLSConfig: Sendable, Equatable {
    /// One certificate chain and its private key, both PEM files.
    public struct CertificatePair: Sendable, Equatable {
        /// `cert`: the certificate chain, leaf first.
        public var cert: String
        /// `key`: the private key of the leaf certificate.
        public var key: String

        /// A pair from its two paths.
        public init(cert: String, key: String) {
            self.cert = cert
            self.key = key
        }
    }

    /// The oldest TLS version a client may negotiate.
    public enum Version: String, Sendable {
        /// TLS 1.2 (and 1.3).
        case v1_2 = "1.2"
        /// TLS 1.3 only.
        case v1_3 = "1.3"
    }

    /// Whether clients are asked for a certificate.
    public enum ClientAuth: String, Sendable {
        /// No certificate is requested.
        case off
        /// A certificate is requested and, if sent, verified against `clientCA`; clients without one
        /// are served too.
        case optional
        /// A certificate verified against `clientCA` is required; the handshake fails without one.
        case required
    }

    /// `listen`: where TLS clients connect.
    public var listen: HostPort
    /// `certificates`: the certificate chains served, each with its key; a conf file lists at least one.
    public var certificates: [CertificatePair]
    /// `min_version`: "1.2" or "1.3".
    public var minVersion: Version = .v1_2
    /// `alpn`: the protocols offered by ALPN, in order of preference: "h2" (HTTP/2) and "http/1.1".
    public var alpn: [String] = ["h2", "http/1.1"]
    /// `client_ca`: a PEM bundle of the CAs that client certificates must chain to; "" for none.
    public var clientCA: String = ""
    /// `client_auth`: whether a client certificate is requested.
    public var clientAuth: ClientAuth = .off
    /// `handshake_timeout`: a TLS handshake not finished by then closes the connection.
    public var handshakeTimeout: Duration = .seconds(10)
    /// `session_tickets`: sessions resume from tickets the client keeps (false: from a cache of
    /// this process's own).
    public var sessionTickets = true
    /// `session_ticket_rotation`: how long a ticket key encrypts new tickets; it then still
    /// decrypts for as long again, so a ticket resumes for at least this long.
    public var sessionTicketRotation: Duration = .seconds(3600)
    /// `session_tickets_per_handshake`: how many tickets a full TLS 1.3 handshake issues (a
    /// resumption issues one). OpenSSL's default, which nginx and HAProxy keep, is two.
    public var sessionTicketsPerHandshake = 1

    /// A listener with the given certificates and the defaults the README documents for the rest
    /// (section "Configuration"); a conf file must list at least one certificate.
    public init(listen: HostPort = HostPort(host: "0.0.0.0", port: 8443), certificates: [CertificatePair] = []) {
        self.listen = listen
        self.certificates = certificates
    }
}

/// `[clients]`.
public struct ClientsConfig: Sendable, Equatable {
    /// `key`: the identity parts of a client, used by routes that set no `key` of their own.
    public var key: [KeyPart] = [.ip]
    /// `trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    public var trustedProxies: [CIDR] = []
    /// `ipv6_prefix`: IPv6 peers are grouped by this many leading bits.
    public var ipv6Prefix = 64
    /// `hash_key`: the secret of the keyed hash; empty means random per start, or, with `[state]`,
    /// generated once and kept in a file beside the state file.
    public var hashKey = ""
    /// `max_clients`: the bound of the tracker table.
    public var maxClients = 1_000_000

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// One part of a client's identity.
public enum KeyPart: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The peer address, or the right-most untrusted `X-Forwarded-For` hop behind a trusted proxy.
    case ip
    /// The value of a request header (name stored lower-case), hashed; missing falls back to `ip`.
    case header(String)
    /// The route's name, so one client is tracked separately per route.
    case route
    /// The SHA-256 fingerprint of the client's TLS certificate, hashed; plain HTTP or no client
    /// certificate falls back to `ip`.
    case tlsFingerprint

    /// The spelling used in the conf file: `ip`, `header:NAME`, `route`, `tls:fingerprint`.
    public var description: String {
        switch self {
        case .ip: return "ip"
        case .header(let name): return "header:\(name)"
        case .route: return "route"
        case .tlsFingerprint: return "tls:fingerprint"
        }
    }
}

/// Whether the tracker's decisions are enforced or only counted.
public enum BackoffMode: String, Sendable, Equatable {
    /// Blocked clients get 429.
    case enforce
    /// Everything is computed and counted, but requests are forwarded anyway.
    case dryRun = "dry-run"
}

/// How the window grows with consecutive errors.
public enum BackoffStrategy: String, Sendable, Equatable {
    /// `base * factor^(n-1)`.
    case exponential
    /// `base * n`.
    case linear
}

/// `upstream_protocol` of a route.
public enum UpstreamProtocol: String, Sendable, Equatable {
    /// HTTP/1.1 over the keep-alive pool (gRPC calls, whose content-type is application/grpc,
    /// still go over HTTP/2).
    case http1
    /// HTTP/2: h2c, or h2 through ALPN with `[upstream] tls = true`; streams multiplexed on a few
    /// connections per server, request bodies streamed, trailers relayed. What gRPC needs.
    case h2
}

/// Which upstream outcomes are errors (`on`).
public struct ErrorSet: Sendable, Equatable {
    /// HTTP statuses that count as errors.
    public var statuses: Set<Int>
    /// A refused or failed connection counts (`"connect"`).
    public var connect: Bool
    /// An upstream timeout counts (`"timeout"`).
    public var timeout: Bool
    /// gRPC status codes that count (`"grpc:N"`): read from a response's `grpc-status`, in its
    /// trailers or in the headers of a trailers-only response.
    public var grpcStatuses: Set<Int>

    /// Builds a set from its parts.
    public init(statuses: Set<Int>, connect: Bool, timeout: Bool, grpcStatuses: Set<Int> = []) {
        self.statuses = statuses
        self.connect = connect
        self.timeout = timeout
        self.grpcStatuses = grpcStatuses
    }

    /// `[401, 403, 500, 502, 503, 504, "connect", "timeout"]`.
    public static let `default` = ErrorSet(statuses: [401, 403, 500, 502, 503, 504], connect: true, timeout: true)
}

/// `[backoff]`, and the per-route overrides of it.
public struct BackoffPolicy: Sendable, Equatable {
    /// `on`: what counts as an error.
    public var on: ErrorSet
    /// `strategy`.
    public var strategy: BackoffStrategy
    /// `base`: the first window.
    public var base: Duration
    /// `factor`: growth per error with the exponential strategy.
    public var factor: Double
    /// `max`: no window is longer.
    public var max: Duration
    /// `jitter`: a window is shortened by up to this fraction, at random.
    public var jitter: Double
    /// `threshold`: consecutive errors before the first window.
    public var threshold: Int
    /// `reset_after`: an entry untouched this long is forgotten.
    public var resetAfter: Duration
    /// `mode`.
    public var mode: BackoffMode

    /// A policy from its parts; each one left out is the default of `[backoff]` (as in
    /// conf/breakwater.conf), so `BackoffPolicy()` is the default policy.
    public init(on: ErrorSet = .default, strategy: BackoffStrategy = .exponential, base: Duration = .milliseconds(500),
                factor: Double = 2.0, max: Duration = .seconds(600), jitter: Double = 0.2, threshold: Int = 1,
                resetAfter: Duration = .seconds(900), mode: BackoffMode = .enforce) {
        self.on = on
        self.strategy = strategy
        self.base = base
        self.factor = factor
        self.max = max
        self.jitter = jitter
        self.threshold = threshold
        self.resetAfter = resetAfter
        self.mode = mode
    }
}

/// A plain request rate, `"10r/s"` or `"600r/m"`.
public struct Rate: Sendable, Equatable, CustomStringConvertible {
    /// Requests per second.
    public var perSecond: Double

    /// A rate of `perSecond` requests each second.
    public init(perSecond: Double) { self.perSecond = perSecond }

    /// The conf-file spelling.
    public var description: String {
        perSecond >= 1 || perSecond == 0
            ? "\(Rate.trim(perSecond))r/s" : "\(Rate.trim(perSecond * 60))r/m"
    }

    private static func trim(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(v)
    }
}

/// One `[[route]]`, with every [backoff] key already merged in.
public struct RouteConfig: Sendable, Equatable {
    /// `name`: used in metrics labels and in the `route` key part.
    public var name: String
    /// `path`: a prefix of the request path.
    public var path: String
    /// `key`: identity parts; nil means `[clients] key`.
    public var key: [KeyPart]? = nil
    /// The effective backoff policy: `[backoff]` with this route's `backoff = {...}` overrides.
    public var backoff = BackoffPolicy()
    /// `rate`: optional plain rate limit per key.
    public var rate: Rate? = nil
    /// `burst`: requests allowed above `rate` at once.
    public var burst = 0
    /// `bypass`: skip tracking; counted as bypassed.
    public var bypass = false
    /// `upgrades`: the `Upgrade` tokens allowed on this route, lower-case; nil means `[server] upgrades`.
    public var upgrades: [String]? = nil
    /// `case_insensitive`: the path prefix matches in any ASCII case (`/DEVICE/` is `/device/`),
    /// for upstreams whose paths are case-insensitive. Off: routes match case-sensitively.
    public var caseInsensitive = false
    /// `upstream_protocol`: how requests on this route reach the upstream.
    public var upstreamProtocol = UpstreamProtocol.http1

    /// A route with the given name and path prefix and default everything else.
    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }
}

/// `[state]`: keeping the tracker's blocked clients across a restart.
public struct StateConfig: Sendable, Equatable {
    /// `file`: where the tracker is saved and loaded from; "" turns saving off. A relative path in
    /// a conf file is read from the file's directory.
    public var file = ""
    /// `save_interval`: how often the tracker is saved while serving (and once more at a clean stop).
    public var saveInterval: Duration = .seconds(10)

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// `[redis]`.
public struct RedisConfig: Sendable, Equatable {
    /// `url`: `redis://[:password@]host:port[/db]`.
    public var url = "redis://127.0.0.1:6379"
    /// `prefix`: prepended to every key Breakwater writes.
    public var prefix = "breakwater:"
    /// `timeout`: a reply slower than this counts as an error and the local tracker decides.
    public var timeout: Duration = .milliseconds(50)

    /// The defaults the README documents (section "Configuration").
    public init() {}
}

/// A `host:port` pair; IPv6 hosts are written `[::1]:8080`.
public struct HostPort: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Whether the host is a loopback address (127.0.0.0/8, ::1) or `localhost`: reachable only
    /// from this machine.
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        guard let address = IPAddress(parsing: host) else { return false }
        if address.isIPv4 { return (address.low >> 24) & 0xff == 127 }
        return address.high == 0 && address.low == 1
    }

    /// A host name or a literal address, without brackets.
    public var host: String
    /// The TCP port.
    public var port: UInt16

    /// A pair from its parts.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`; nil when malformed.
    public init?(parsing text: String) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                  text[text.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { return nil }
        }
        guard !hostPart.isEmpty, let port = UInt16(portPart) else { return nil }
        self.init(host: String(hostPart), port: port)
    }

    /// `host:port`, bracketing IPv6 hosts.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// An address range such as `10.0.0.0/8` or `fd00::/8`.
public struct CIDR: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The network address as 16 bytes (IPv4 as IPv4-mapped IPv6).
    public var network: IPAddress
    /// Prefix length in bits, counted on the 128-bit form.
    public var prefixLength: Int

    /// A range from a network and a prefix length in bits of the 128-bit form.
    public init(network: IPAddress, prefixLength: Int) {
        self.network = network.masked(to: prefixLength)
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n`, `v6/n`, or a single address; nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(parsing: String(parts[0])) else { return nil }
        let width = address.isIPv4 ? 32 : 128
        var bits = width
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...width).contains(n) else { return nil }
            bits = n
        }
        self.init(network: address, prefixLength: address.isIPv4 ? bits + 96 : bits)
    }

    /// Whether `address` lies inside this range.
    public func contains(_ address: IPAddress) -> Bool {
        address.masked(to: prefixLength) == network
    }

    /// The conf-file spelling.
    public var description: String {
        network.isIPv4 ? "\(network)/\(prefixLength - 96)" : "\(network)/\(prefixLength)"
    }
}
