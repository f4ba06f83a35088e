import Testing
@testable import BreakwaterCore

/// The key `POST /clients/reset` computes from an address or a token is the key the request path
/// gives that client.
@Suite struct ResetFormTests {
    private let identity = ClientIdentity(clients: ClientsConfig(), hasher: KeyedHasher(secret: "reset-form-tests-key"))
    private let routes: RouteTable = {
        var config = Config()
        var tokens = RouteConfig(name: "tokens", path: "/t/")
        tokens.key = [.header("authorization"), .route]
        var both = RouteConfig(name: "both", path: "/b/")
        both.key = [.ip, .header("authorization")]
        config.routes = [tokens, both]
        return RouteTable(config: config)
    }()

    private func key(_ fields: [(String, String)]) -> Result<ClientKey, ResetForm.Problem> {
        ResetForm(items: fields.map { (name: $0.0, value: $0.1) }).key(routes: routes, identity: identity)
    }

    private func requestKey(route: String, peer: String, authorization: String?) -> ClientKey {
        let r = routes.routes.first { $0.name == route }!
        return identity.key(parts: r.keyParts, routeName: r.name, peer: IPAddress(parsing: peer)!) {
            $0 == "authorization" ? authorization : nil
        }
    }

    @Test func aTokenGivesTheKeyOfItsRequests() throws {
        let expected = requestKey(route: "tokens", peer: "10.1.2.3", authorization: "Bearer T")
        #expect(try key([("header", "Authorization"), ("value", "Bearer T"), ("route", "tokens")]).get() == expected)
        #expect(try key([("header", "authorization"), ("value", "bearer   T"), ("route", "tokens")]).get() == expected,
                "spelt as the request path reads it")
    }

    @Test func anAddressGivesTheKeyOfTheDefaultRoutesClient() throws {
        #expect(try key([("ip", "10.1.2.3")]).get() == requestKey(route: "default", peer: "10.1.2.3", authorization: nil))
        #expect(try key([("ip", "2001:db8::1")]).get() == requestKey(route: "default", peer: "2001:db8::ffff", authorization: nil),
                "IPv6 grouped by ipv6_prefix")
    }

    @Test func aRouteKeyedByAddressAndTokenNeedsBoth() throws {
        #expect(try key([("ip", "10.0.0.9"), ("header", "Authorization"), ("value", "Bearer T"), ("route", "both")]).get()
                == requestKey(route: "both", peer: "10.0.0.9", authorization: "Bearer T"))
        #expect(try key([("ip", "10.0.0.9"), ("route", "both")]).get()
                == requestKey(route: "both", peer: "10.0.0.9", authorization: nil), "a client without the header")
        guard case .failure(let problem) = key([("header", "Authorization"), ("value", "Bearer T"), ("route", "both")]) else {
            Issue.record("no address given")
            return
        }
        #expect(problem.message.hasPrefix("ip: missing"))
    }

    @Test func whatNamesNoClientIsRefusedSayingWhy() {
        for (fields, start) in [([("route", "tokens")], "expected key=HASH"), ([("ip", "10.0.0.300")], "ip: not an"),
                                ([("ip", "1.2.3.4"), ("route", "nope")], "route: no tracked route"),
                                ([("header", "Authorization"), ("route", "tokens")], "value: missing"),
                                ([("key", "xyz")], "key: expected 16 hex digits")] {
            guard case .failure(let problem) = key(fields) else {
                Issue.record("\(fields) accepted")
                continue
            }
            #expect(problem.message.hasPrefix(start), "\(problem.message)")
        }
    }
}
