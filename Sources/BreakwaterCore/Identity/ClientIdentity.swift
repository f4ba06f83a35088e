/// Turns a request into the tracker key of its client (README, "How a request goes through": Identity).
///
/// The key is a SipHash of the identity parts in the route's order, each part tagged and
/// length-prefixed so that no two different identities can hash the same input ("ab"+"c" versus
/// "a"+"bc", or a header value that looks like an address).
public struct ClientIdentity: Sendable {
    private let trustedProxies: [CIDR]
    private let ipv6Prefix: Int
    private let hasher: KeyedHasher

    // Part tags in the hashed input.
    private static let ipTag: UInt8 = 1
    private static let headerTag: UInt8 = 2
    private static let routeTag: UInt8 = 3
    private static let tlsFingerprintTag: UInt8 = 4

    /// An identity for `[clients]`, hashing with `hasher` (built from `hash_key`).
    public init(clients: ClientsConfig, hasher: KeyedHasher) {
        trustedProxies = clients.trustedProxies
        ipv6Prefix = Swift.min(Swift.max(clients.ipv6Prefix, 0), 128)
        self.hasher = hasher
    }

    /// The key of a request.
    ///
    /// - Parameters:
    ///   - parts: the route's key parts (`ResolvedRoute.keyParts`, header names lower-case); an
    ///     empty list means `["ip"]`.
    ///   - routeName: the route's name, for the `route` part.
    ///   - peer: the address of the TCP peer.
    ///   - tlsFingerprint: for the `tls:fingerprint` part, the SHA-256 fingerprint of the client's
    ///     certificate as hex text (always spelled the same way, say 64 lower-case digits: the
    ///     text is hashed as given); nil on plain HTTP or without a client certificate, and then
    ///     the part falls back to `ip`, as an empty text does.
    ///   - header: the request header's value for a lower-case name, all occurrences joined by
    ///     ", ", or nil if absent. Only called for the names the parts need, and for
    ///     `x-forwarded-for` when the peer is a trusted proxy.
    public func key(parts: [KeyPart], routeName: String, peer: IPAddress, tlsFingerprint: String? = nil,
                    header: (String) -> String?) -> ClientKey {
        var state = hasher.stream()
        var address: IPAddress?
        // The `ip` part, resolved at most once per request.
        func combineAddress() {
            let resolved = address ?? clientAddress(peer: peer, forwardedFor: isTrusted(peer) ? header("x-forwarded-for") : nil)
            address = resolved
            state.combine(ClientIdentity.ipTag)
            state.combine(resolved.high)
            state.combine(resolved.low)
        }
        if parts.isEmpty { combineAddress() }
        for part in parts {
            switch part {
            case .ip:
                combineAddress()
            case .header(let name):
                // A missing or empty header must not lump every such client into one key.
                guard var value = header(name), value.utf8.contains(where: { $0 != 0x20 && $0 != 0x09 }) else {
                    combineAddress()
                    continue
                }
                if name == "authorization" || name == "proxy-authorization" { value = Self.credentials(value) }
                state.combine(ClientIdentity.headerTag)
                state.combine(UInt64(name.utf8.count))
                state.combine(utf8: name)
                state.combine(UInt64(value.utf8.count))
                state.combine(utf8: value)
            case .route:
                state.combine(ClientIdentity.routeTag)
                state.combine(UInt64(routeName.utf8.count))
                state.combine(utf8: routeName)
            case .tlsFingerprint:
                // Like a missing header: no certificate must not lump every such client into one key.
                guard let fingerprint = tlsFingerprint, !fingerprint.isEmpty else {
                    combineAddress()
                    continue
                }
                state.combine(ClientIdentity.tlsFingerprintTag)
                state.combine(UInt64(fingerprint.utf8.count))
                state.combine(utf8: fingerprint)
            }
        }
        return ClientKey(value: state.finalize())
    }

    /// The address the `ip` part stands for.
    ///
    /// When `peer` is inside `trusted_proxies`, the right-most `X-Forwarded-For` hop that is not
    /// itself trusted (the first address no trusted proxy vouches for); if every hop is trusted,
    /// the left-most; a malformed hop stops the walk at the last trusted address, since nothing to
    /// its left was written by a proxy we believe. An untrusted peer's `X-Forwarded-For` is
    /// ignored, so nobody can evade the shield or frame another client by forging it.
    ///
    /// IPv6 addresses are cut to `ipv6_prefix` bits (one host with a /64 cannot rotate out of its
    /// key); IPv4 is unchanged. So this is an identity, not the address to log or forward.
    public func clientAddress(peer: IPAddress, forwardedFor: String?) -> IPAddress {
        guard let forwardedFor, isTrusted(peer) else { return grouped(peer) }
        var candidate = peer
        var rest = forwardedFor[...]
        while !rest.isEmpty {
            let hop: Substring
            if let comma = rest.lastIndex(of: ",") {
                hop = rest[rest.index(after: comma)...]
                rest = rest[..<comma]
            } else {
                hop = rest
                rest = rest[rest.endIndex...]
            }
            let text = ClientIdentity.trimmed(hop)
            if text.isEmpty { continue }  // an empty list element says nothing
            guard let address = ClientIdentity.parseHop(text) else { break }
            candidate = address
            if !isTrusted(address) { break }
        }
        return grouped(candidate)
    }

    private func isTrusted(_ address: IPAddress) -> Bool {
        trustedProxies.contains { $0.contains(address) }
    }

    private func grouped(_ address: IPAddress) -> IPAddress {
        address.isIPv4 ? address : address.masked(to: ipv6Prefix)
    }

    private static func trimmed(_ text: Substring) -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isSpace($0) }),
              let last = text.lastIndex(where: { !isSpace($0) }) else { return text[text.endIndex...] }
        return text[first...last]
    }

    /// One `X-Forwarded-For` element: `a.b.c.d`, `a.b.c.d:port`, `v6`, or `[v6]` / `[v6]:port`.
    private static func parseHop(_ text: Substring) -> IPAddress? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            return IPAddress(parsing: String(text[text.index(after: text.startIndex)..<close]))
        }
        if let colon = text.firstIndex(of: ":"), text.lastIndex(of: ":") == colon {
            return IPAddress(parsing: String(text[..<colon]))  // IPv4 with a port
        }
        return IPAddress(parsing: String(text))
    }
}

extension ClientIdentity {
    /// An Authorization value as its credentials, not its spelling (RFC 9110 11.4): the scheme is
    /// case-insensitive, so it is lower-cased, and the whitespace around and after it is one
    /// space; the credentials themselves are kept as sent. `bearer  T`, `BEARER T` and
    /// `Bearer<TAB>T` are one client, the one `Bearer T` is.
    public static func credentials(_ value: String) -> String {
        var trimmed = Substring(value)
        while let c = trimmed.first, c == " " || c == "\t" { trimmed.removeFirst() }
        while let c = trimmed.last, c == " " || c == "\t" { trimmed.removeLast() }
        guard let gap = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return trimmed.lowercased() }
        let scheme = trimmed[..<gap].lowercased()
        let rest = trimmed[gap...].drop { $0 == " " || $0 == "\t" }
        return scheme + " " + rest
    }
}
