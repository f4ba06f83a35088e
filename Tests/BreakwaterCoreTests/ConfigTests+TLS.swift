import Foundation
import Testing
@testable import BreakwaterCore

extension ConfigTests {
    @Test func aFullTLSSectionAndTheUpstreamTLSKeysParse() throws {
        let text = """
            [tls]
            listen = "[::]:443"
            certificates = [
                { cert = "certs/api.pem", key = "certs/api.key" },
                { cert = "/etc/ssl/other.pem", key = "./keys/other.key" },
            ]
            min_version = "1.3"
            alpn = ["http/1.1"]
            client_ca = "../ca/clients.pem"
            client_auth = "required"
            handshake_timeout = "2500ms"
            session_tickets = false
            session_ticket_rotation = "12h"
            session_tickets_per_handshake = 2

            [upstream]
            servers = ["api.internal:443"]
            tls = true
            tls_server_name = "api.example.com"
            tls_ca = "/etc/ssl/internal-ca.pem"
            tls_verify = false
            """
        let config = try Config.parse(text, file: "/etc/breakwater/breakwater.conf")
        var tls = TLSConfig(listen: HostPort(host: "::", port: 443), certificates: [
            .init(cert: "/etc/breakwater/certs/api.pem", key: "/etc/breakwater/certs/api.key"),
            .init(cert: "/etc/ssl/other.pem", key: "/etc/breakwater/keys/other.key"),
        ])
        tls.minVersion = .v1_3
        tls.alpn = ["http/1.1"]
        tls.clientCA = "/etc/breakwater/../ca/clients.pem"
        tls.clientAuth = .required
        tls.handshakeTimeout = .milliseconds(2500)
        tls.sessionTickets = false
        tls.sessionTicketRotation = .seconds(12 * 3600)
        tls.sessionTicketsPerHandshake = 2
        #expect(config.tls == tls)
        #expect(config.upstream.servers == [HostPort(host: "api.internal", port: 443)])
        #expect(config.upstream.tls)
        #expect(config.upstream.tlsServerName == "api.example.com")
        #expect(config.upstream.tlsCA == "/etc/ssl/internal-ca.pem")
        #expect(!config.upstream.tlsVerify)
    }

    @Test func tlsDefaults() throws {
        #expect(Config().tls == nil)
        #expect(try Config.parse("", file: "empty.conf").tls == nil)
        let upstream = UpstreamConfig()
        #expect(!upstream.tls && upstream.tlsServerName == "" && upstream.tlsCA == "" && upstream.tlsVerify)

        let config = try Config.parse("[tls]\ncertificates = [ { cert = \"/a.pem\", key = \"/a.key\" } ]\n", file: "t.conf")
        let tls = try #require(config.tls)
        #expect(tls.listen == HostPort(host: "0.0.0.0", port: 8443))
        #expect(tls.certificates == [.init(cert: "/a.pem", key: "/a.key")])
        #expect(tls.minVersion == .v1_2)
        #expect(tls.alpn == ["h2", "http/1.1"])
        #expect(tls.clientCA == "")
        #expect(tls.clientAuth == .off)
        #expect(tls.handshakeTimeout == .seconds(10))
        #expect(tls.sessionTickets && tls.sessionTicketRotation == .seconds(3600) && tls.sessionTicketsPerHandshake == 1)
        #expect(tls == TLSConfig(certificates: [.init(cert: "/a.pem", key: "/a.key")]))
        #expect(config.upstream == UpstreamConfig())
    }

    @Test func certificatesMayBeAnArrayOfTables() throws {
        let text = """
            [[tls.certificates]]
            cert = "/a.pem"
            key = "/a.key"

            [[tls.certificates]]
            cert = "/b.pem"
            key = "/b.key"
            """
        let config = try Config.parse(text, file: "t.conf")
        #expect(config.tls?.certificates == [.init(cert: "/a.pem", key: "/a.key"), .init(cert: "/b.pem", key: "/b.key")])
    }

    @Test func relativePathsAreReadFromTheConfFilesDirectory() throws {
        let text = """
            [tls]
            certificates = [ { cert = "certs/api.pem", key = "certs/api.key" } ]
            client_ca = "ca.pem"
            client_auth = "optional"
            [upstream]
            tls = true
            tls_ca = "upstream-ca.pem"
            """
        let cwd = FileManager.default.currentDirectoryPath
        for (file, directory) in [("/etc/breakwater/b.conf", "/etc/breakwater"), ("/b.conf", ""),
                                  ("conf/b.conf", cwd + "/conf"), ("b.conf", cwd), ("./conf/./b.conf", cwd + "/conf")] {
            let config = try Config.parse(text, file: file)
            #expect(config.tls?.certificates == [.init(cert: directory + "/certs/api.pem", key: directory + "/certs/api.key")],
                    "\(file)")
            #expect(config.tls?.clientCA == directory + "/ca.pem", "\(file)")
            #expect(config.upstream.tlsCA == directory + "/upstream-ca.pem", "\(file)")
            // Absolute now, so the rendered config means the same files wherever it is read from.
            #expect(try Config.parse(config.render(), file: "elsewhere/rendered.conf") == config)
        }
        #expect(Config.join("/etc/bw/", "./certs//a.pem") == "/etc/bw/certs/a.pem")
        #expect(Config.join("/etc/bw", "../shared/a.pem") == "/etc/bw/../shared/a.pem")
        #expect(Config.join(".", "a.pem") == "a.pem")
    }

    @Test func emptyAndAbsolutePathsAreKeptAsWritten() throws {
        let text = "[tls]\ncertificates = [ { cert = \"/x/./a.pem\", key = \"/x//a.key\" } ]\n[upstream]\ntls_ca = \"\"\n"
        let config = try Config.parse(text, file: "conf/b.conf")
        #expect(config.tls?.certificates == [.init(cert: "/x/./a.pem", key: "/x//a.key")])
        #expect(config.tls?.clientCA == "")
        #expect(config.upstream.tlsCA == "")
    }

    @Test func shippedTLSSectionUncommentedParses() throws {
        let text = try readFile(Self.shippedPath)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex(of: "# [tls]"))
        let end = try #require(lines[start...].firstIndex(of: ""))
        for i in start..<end { lines[i] = lines[i].dropFirst(2) }
        let config = try Config.parse(lines.joined(separator: "\n"), file: Self.shippedPath)
        let directory = String(Self.shippedPath[...Self.shippedPath.lastIndex(of: "/")!].dropLast())
        #expect(config.tls == TLSConfig(certificates: [
            .init(cert: directory + "/certs/api.pem", key: directory + "/certs/api.key"),
        ]))
    }

    @Test func renderParsesBackToAnEqualConfigWithTLS() throws {
        var config = try Config.load(path: Self.shippedPath)
        var tls = TLSConfig(listen: HostPort(host: "::1", port: 0), certificates: [
            .init(cert: "/etc/breakwater/api.pem", key: "/etc/breakwater/api.key"),
            .init(cert: "/etc/breakwater/a \"quoted\" \\ path.pem", key: "/etc/breakwater/ü.key"),
        ])
        tls.minVersion = .v1_3
        tls.clientCA = "/etc/breakwater/clients.pem"
        tls.clientAuth = .optional
        tls.handshakeTimeout = .milliseconds(1500)
        tls.sessionTickets = false
        tls.sessionTicketRotation = .seconds(90)
        config.tls = tls
        config.upstream.tls = true
        config.upstream.tlsServerName = "api.example.com"
        config.upstream.tlsCA = "/etc/ssl/ca.pem"
        config.upstream.tlsVerify = false
        config.clients.key = [.tlsFingerprint, .route]
        config.routes[0].key = [.tlsFingerprint, .header("authorization")]

        var minimal = Config()
        minimal.tls = TLSConfig(certificates: [.init(cert: "/a.pem", key: "/a.key")])
        for c in [config, minimal] {
            let text = c.render()
            #expect(try Config.parse(text, file: "rendered.conf") == c, "\(text)")
        }

        let text = minimal.render()
        for key in ["certificates", "min_version", "alpn", "client_ca", "client_auth", "handshake_timeout", "session_tickets",
                    "session_ticket_rotation", "session_tickets_per_handshake"] {
            #expect(text.contains("\n\(key) = "), "\(key)")
        }
        #expect(text.contains("\n[tls]\nlisten = \"0.0.0.0:8443\"\n"))
        #expect(text.contains("\ncertificates = [{ cert = \"/a.pem\", key = \"/a.key\" }]\n"))
    }

    @Test func upstreamServerNamesAreDNSNames() {
        for name in ["api.example.com", "localhost", "api-1.internal", "my_api", "xn--bcher-kva.example"] {
            #expect(validServerName(name), "\(name)")
        }
        for name in ["", "10.0.0.1", "::1", "[::1]", "api.example.com.", ".example.com", "api..example", "-api.example",
                     "api-.example", "api.example.com:443", "ápi.example", "1.2.3", String(repeating: "a", count: 64) + ".com",
                     Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".") + ".com"] {
            #expect(!validServerName(name), "\(name)")
        }
    }

    @Test func aTLSErrorSaysWhatIsAllowed() throws {
        let error = #expect(throws: ConfigError.self) {
            try Config.parse(BadConf.tls("alpn = [\"h2\", \"h2c\"]"), file: "conf/x.conf")
        }
        #expect(error?.description
            == "conf/x.conf: tls.alpn: got \"h2c\"; allowed: a non-empty array of distinct protocols, each \"h2\" or \"http/1.1\"")
        let unknown = #expect(throws: ConfigError.self) {
            try Config.parse("[tls]\ncertificates = [ { crt = \"a.pem\", key = \"a.key\" } ]\n", file: "conf/x.conf")
        }
        let rotation = #expect(throws: ConfigError.self) {
            try Config.parse(BadConf.tls("session_ticket_rotation = \"500ms\""), file: "conf/x.conf")
        }
        #expect(rotation?.description
            == "conf/x.conf: tls.session_ticket_rotation: got \"500ms\"; allowed: a duration of at least 1s, such as \"1h\"")
        for count in ["0", "9"] {
            let tickets = #expect(throws: ConfigError.self) {
                try Config.parse(BadConf.tls("session_tickets_per_handshake = \(count)"), file: "conf/x.conf")
            }
            #expect(tickets?.description
                == "conf/x.conf: tls.session_tickets_per_handshake: got \(count); allowed: an integer from 1 to 8")
        }
        #expect(unknown?.description
            == "conf/x.conf: tls.certificates[0].crt: unknown key \"crt\" (did you mean \"cert\"?); allowed: the keys of a tls.certificates entry: cert, key")
    }
}
