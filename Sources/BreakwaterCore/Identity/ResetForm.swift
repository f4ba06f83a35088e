/// What `POST /clients/reset` names a client by, and the tracker key that comes of it: the hashed
/// key itself (`key=`, as `/stats` shows it), or the parts Breakwater hashes the way the request
/// path does, for operators who know an address or a token but not its keyed hash (`ip=`,
/// `header=NAME&value=`, with `route=` for a route other than the default one). The values are
/// hashed and never kept or logged.
public struct ResetForm: Sendable {
    /// Why a form names no client, said to the operator.
    public struct Problem: Error, Equatable, Sendable {
        public var message: String
    }

    private var fields: [String: String] = [:]

    /// A form from its fields (query and body); the first value of a name wins.
    public init(items: [(name: String, value: String?)]) {
        for item in items where fields[item.name] == nil { fields[item.name] = item.value ?? "" }
    }

    /// The key the form names, for the routes and identity in force.
    public func key(routes: RouteTable, identity: ClientIdentity) -> Result<ClientKey, Problem> {
        if let hex = fields["key"] {
            guard let key = ClientKey(hex: hex) else { return .failure(Problem(message: "key: expected 16 hex digits, as /stats shows it")) }
            return .success(key)
        }
        let routeName = fields["route"] ?? "default"
        guard let route = routes.routes.first(where: { $0.name == routeName }), !route.bypass else {
            let names = routes.routes.filter { !$0.bypass }.map(\.name).joined(separator: ", ")
            return .failure(Problem(message: "route: no tracked route \"\(routeName)\" (tracked routes: \(names))"))
        }
        let header = fields["header"]?.lowercased()
        guard fields["ip"] != nil || header != nil else {
            return .failure(Problem(message: "expected key=HASH, or ip=ADDRESS and/or header=NAME&value=VALUE, with route=NAME (default: \"default\")"))
        }
        if let header {
            guard route.keyParts.contains(.header(header)) else {
                return .failure(Problem(message: "header: route \"\(route.name)\" keys clients by \(route.keyParts.map(\.description)), not header:\(header)"))
            }
            guard fields["value"] != nil else { return .failure(Problem(message: "value: missing, the header's value to hash")) }
        }
        // Parts that stand for the address: `ip`, and a header part whose header is not given
        // (a client without it is keyed by its address).
        let needsAddress = route.keyParts.isEmpty || route.keyParts.contains {
            switch $0 {
            case .ip, .tlsFingerprint: return true
            case .header(let name): return name != header
            case .route: return false
            }
        }
        var peer = IPAddress(ipv4: 0)
        if let text = fields["ip"] {
            guard let address = IPAddress(parsing: text) else { return .failure(Problem(message: "ip: not an IPv4 or IPv6 address")) }
            peer = address
        } else if needsAddress {
            return .failure(Problem(message: "ip: missing; route \"\(route.name)\" keys clients by \(route.keyParts.map(\.description)), which needs the address"))
        }
        let value = fields["value"]
        let key = identity.key(parts: route.keyParts, routeName: route.name, peer: peer) { name in
            name == header ? value : nil
        }
        return .success(key)
    }
}
