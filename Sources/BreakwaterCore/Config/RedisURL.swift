/// The parts of a `[redis] url`, parsed once here so that the config check and the Redis client
/// agree on what the URL means.
///
/// Accepted: `redis://[[user]:password@]host[:port][/db]`. The port defaults to 6379 and the
/// database to 0, as in redis-cli; `user` is for Redis 6 ACLs. No TLS (`rediss://`): the shared
/// tracker is meant for a private network next to the replicas.
public struct RedisURL: Sendable, Equatable {
    /// Where the Redis server listens.
    public var address: HostPort
    /// The ACL user name, nil for the default user.
    public var user: String?
    /// The password for `AUTH`, nil for none.
    public var password: String?
    /// The database for `SELECT`.
    public var database: Int

    /// Parses a URL; nil when it is not of the accepted form.
    public init?(parsing url: String) {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard db.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(db), n <= Int(Int32.max) else { return nil }
                database = n
            }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            guard let colon = userInfo.firstIndex(of: ":") else { return nil }
            user = colon == userInfo.startIndex ? nil : String(userInfo[..<colon])
            password = String(userInfo[userInfo.index(after: colon)...])
            rest = rest[rest.index(after: at)...]
        }
        let text = String(rest)
        guard let address = HostPort(parsing: text) ?? (text.hasSuffix(":") ? nil : HostPort(parsing: text + ":6379")),
              address.port != 0, validHost(address.host) else { return nil }
        self.address = address
    }
}

extension RedisURL {
    /// `url` with its password, if it has one, replaced by `Config.redactedToken`: what messages
    /// and `breakwater check` show. Works on text that does not parse too, so a malformed URL in
    /// an error message does not show its password either.
    public static func redactingPassword(_ url: String) -> String {
        let scheme = url.range(of: "://")?.upperBound ?? url.startIndex
        guard let at = url[scheme...].lastIndex(of: "@"),
              let colon = url[scheme..<at].firstIndex(of: ":") else { return url }
        return String(url[...colon]) + Config.redactedToken + String(url[at...])
    }
}

extension RedisConfig {
    /// The parsed `url`; nil only for a config that `validate` would refuse.
    public var endpoint: RedisURL? { RedisURL(parsing: url) }
}
