extension Config {
    /// What is valid but likely to hurt, one sentence each: `breakwater check` prints these and
    /// the server logs them at start and on reload.
    ///
    /// A route that counts 401 or 403 and knows its clients by address alone blocks everyone
    /// behind one NAT or load balancer for one user's expired token.
    public var warnings: [String] {
        var found: [String] = []
        let routeTable = RouteTable(config: self)
        for route in routeTable.routes where !route.bypass {
            let statuses = route.policy.on.statuses.intersection([401, 403]).sorted()
            guard !statuses.isEmpty, route.keyParts.allSatisfy({ $0 == .ip || $0 == .route }) else { continue }
            let at = route.name == "default" ? "[clients] key with [backoff] on (the default route)" : "route \"\(route.name)\""
            found.append("\(at): \(statuses.map(String.init).joined(separator: " and ")) count against a client known "
                         + "by its address alone, so one user's bad token blocks everyone behind the same NAT or load "
                         + "balancer; add \"header:Authorization\" to its key, or take those statuses out of its on")
        }
        return found
    }
}
