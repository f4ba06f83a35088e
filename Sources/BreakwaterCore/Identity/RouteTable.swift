/// One route with everything the request path needs, resolved once per config load. A class:
/// the request path hands it along by reference instead of copying (and retaining) every field.
public final class ResolvedRoute: Sendable {
    /// Position in `RouteTable.routes`: the `[[route]]` file order, the implicit default last.
    public let index: Int
    /// `name`; "default" for the implicit route.
    public let name: String
    /// `path` prefix; empty for the implicit route, which matches everything.
    public let path: String
    /// Identity parts: the route's `key`, else `[clients] key`; header names lower-case.
    public let keyParts: [KeyPart]
    /// The effective backoff policy.
    public let policy: BackoffPolicy
    /// The plain rate limit, if any.
    public let rate: Rate?
    /// Requests allowed above `rate` at once.
    public let burst: Int
    /// Skip the shield on purpose (counted as bypassed).
    public let bypass: Bool
    /// `policy.on` as a bitmap.
    public let classifier: StatusClassifier
    /// The `Upgrade` tokens a request on this route may ask for: the route's `upgrades`, else
    /// `[server] upgrades`; lower-case, since tokens are matched case-insensitively. Empty: none.
    public let upgrades: [String]
    /// `upstream_protocol = "h2"`: every request of the route goes to the upstream over HTTP/2.
    public let upstreamH2: Bool

    /// A route from its parts.
    public init(index: Int, name: String, path: String, keyParts: [KeyPart], policy: BackoffPolicy,
                rate: Rate?, burst: Int, bypass: Bool, upgrades: [String] = ["websocket"], upstreamH2: Bool = false) {
        self.index = index
        self.upstreamH2 = upstreamH2
        self.name = name
        self.path = path
        self.keyParts = keyParts.map {
            if case .header(let header) = $0 { return .header(header.lowercased()) }
            return $0
        }
        self.policy = policy
        self.rate = rate
        self.burst = burst
        self.bypass = bypass
        classifier = StatusClassifier(policy.on)
        self.upgrades = upgrades.map(upgradeToken)
    }

    /// Whether `token` (as the request spelt it, in any case) is one of `upgrades`.
    public func allowsUpgrade(_ token: some StringProtocol) -> Bool {
        upgrades.contains { allowed in
            allowed.utf8.count == token.utf8.count
                && zip(allowed.utf8, token.utf8).allSatisfy { a, t in a == ((0x41...0x5A).contains(t) ? t | 0x20 : t) }
        }
    }

    /// Whether an upstream status is an error for this route: O(1), no hashing.
    @inline(__always)
    public func classify(status: Int) -> Outcome {
        classifier.classify(status: status)
    }

    /// Whether an upstream answer is an error for this route when it carries a gRPC status too
    /// (`grpc-status`, nil when absent): an error when either the HTTP status or the gRPC status
    /// is in `on`, so a gRPC call that fails with HTTP 200 (as every gRPC failure does) counts
    /// only through its `"grpc:N"` entries.
    public func classify(status: Int, grpcStatus: Int?) -> Outcome {
        if let grpcStatus, policy.on.grpcStatuses.contains(grpcStatus) { return .error }
        return classifier.classify(status: status)
    }
}

/// Picks the route of a request: the first `[[route]]` whose `path` is a prefix of the request
/// path, else the implicit route "default" built from `[clients] key` and `[backoff]`.
///
/// Prefixes are compared byte for byte, like nginx's prefix locations: "/healthz" also matches
/// "/healthz2"; write "/api/" to mean the directory. Pass the path without the query string (a
/// prefix ending in the path still matches a full target, but one spanning "?" would not).
public struct RouteTable: Sendable {
    /// The routes in file order, then the implicit default at `routes.count - 1`, so a route's
    /// `index` equals its position in `Config.routes`.
    public let routes: [ResolvedRoute]
    // Route prefixes as bytes, in order, without the default; lower-case for the routes that
    // match in any case (`caseInsensitive`).
    private let prefixes: [[UInt8]]
    private let caseInsensitive: [Bool]

    /// The table of `config`.
    public init(config: Config) {
        var resolved = config.routes.enumerated().map { i, route in
            ResolvedRoute(index: i, name: route.name, path: route.path, keyParts: route.key ?? config.clients.key,
                          policy: route.backoff, rate: route.rate, burst: route.burst, bypass: route.bypass,
                          upgrades: route.upgrades ?? config.server.upgrades, upstreamH2: route.upstreamProtocol == .h2)
        }
        resolved.append(ResolvedRoute(index: config.routes.count, name: "default", path: "",
                                      keyParts: config.clients.key, policy: config.backoff,
                                      rate: nil, burst: 0, bypass: false, upgrades: config.server.upgrades))
        routes = resolved
        prefixes = config.routes.map { Array(($0.caseInsensitive ? $0.path.lowercased() : $0.path).utf8) }
        caseInsensitive = config.routes.map(\.caseInsensitive)
    }

    /// The implicit route, used when no `[[route]]` matches.
    public var defaultRoute: ResolvedRoute { routes[routes.count - 1] }

    /// The route for a request path.
    public func match(_ path: some StringProtocol) -> ResolvedRoute {
        let found = path.utf8.withContiguousStorageIfAvailable { match(pathBytes: UnsafeRawBufferPointer($0)) }
        if let found { return found }
        return match(pathBytes: Array(path.utf8))
    }

    /// The route for a request path given as raw bytes (as evhttp hands it over), without copying.
    public func match(pathBytes: UnsafeRawBufferPointer) -> ResolvedRoute {
        routes[matchIndex(pathBytes)]
    }

    private func match(pathBytes bytes: [UInt8]) -> ResolvedRoute {
        bytes.withUnsafeBytes { match(pathBytes: $0) }
    }

    private func matchIndex(_ path: UnsafeRawBufferPointer) -> Int {
        for (i, prefix) in prefixes.enumerated() where prefix.count <= path.count {
            let same = prefix.withUnsafeBytes { p in
                p.isEmpty || (caseInsensitive[i] ? lowerCaseEqual(p, path, count: p.count) : memcmpEqual(p, path, count: p.count))
            }
            if same { return i }
        }
        return routes.count - 1
    }
}

/// Whether the first `count` bytes of the lower-case `a` and of `b` are equal, ignoring ASCII case in `b`.
@inline(__always)
private func lowerCaseEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, count: Int) -> Bool {
    var i = 0
    while i < count {
        let c = b[i]
        if a[i] != (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) { return false }
        i += 1
    }
    return true
}

/// Whether the first `count` bytes of `a` and `b` are equal.
@inline(__always)
private func memcmpEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, count: Int) -> Bool {
    var i = 0
    while i < count {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
