import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Session resumption on the real binary: tickets under rotating keys, read back by
/// `openssl s_client -sess_out/-sess_in`.
@Suite struct TLSSessionTests {
    private func start(upstream: UInt16, _ extra: String = "") throws -> (ProxyProcess, UInt16) {
        let certs = try TestCertificates.shared()
        let tlsPort = Binary.freePort()
        let proxy = try ProxyProcess(upstreams: [upstream], rest: """
            [tls]
            listen = "127.0.0.1:\(tlsPort)"
            \(certificatesKey([certs.localhost]))
            \(extra)
            """)
        guard eventually(10, { (try? SClient.handshake(port: tlsPort))?.succeeded == true }) else {
            throw TestSocket.Failure(description: "no TLS on \(tlsPort): \(proxy.logText)")
        }
        return (proxy, tlsPort)
    }

    /// SIGHUP, then waits for the reload to be logged.
    private func reload(_ proxy: ProxyProcess) {
        let reloads = proxy.logText.components(separatedBy: "reloaded").count
        proxy.signal(SIGHUP)
        #expect(eventually(10) { proxy.logText.components(separatedBy: "reloaded").count > reloads }, "\(proxy.logText)")
    }

    @Test(arguments: [["-tls1_3"], ["-tls1_2"]])
    func ticketsResumeWhileTheirKeyDecryptsAndGetAFullHandshakeOnceItIsRotatedOut(_ version: [String]) throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let (proxy, port) = try start(upstream: upstream.port)
        defer { proxy.stop() }
        let dir = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func session(_ name: String) -> URL { dir.appendingPathComponent(name) }
        func connect(_ sessionIn: String?, _ sessionOut: String) throws -> Handshake {
            let result = try SClient.request(port: port, caFile: certs.ca, sessionIn: sessionIn.map(session),
                                             sessionOut: session(sessionOut), extra: version)
            #expect(result.output.contains("HTTP/1.1 200"), "\(result)")
            return result
        }

        let first = try connect(nil, "a")
        #expect(first.succeeded && !first.reused, "\(first)")
        // A session lives as long as a ticket key encrypts: one hour by default.
        #expect(first.ticketLifetimeHint == 3600, "\(first.output)")
        let again = try connect("a", "a-again")
        #expect(again.reused, "a ticket of the key in use resumes: \(again)")
        if version == ["-tls1_3"] {
            // TLS 1.3 clients use a ticket once: each resumption brings a new one (s_client saves
            // a session only when a ticket arrives), and that one resumes in turn.
            #expect(FileManager.default.fileExists(atPath: session("a-again").path), "no new ticket after a resumption")
            let chained = try connect("a-again", "a-chained")
            #expect(chained.reused, "\(chained)")
        }

        // The first reload rotates: the key that made ticket a no longer encrypts, but decrypts.
        reload(proxy)
        let afterOne = try connect("a", "a-after")
        #expect(afterOne.reused, "a ticket of the previous key resumes: \(afterOne)")
        let fresh = try connect(nil, "b")
        #expect(fresh.succeeded && !fresh.reused, "\(fresh)")

        // The second reload forgets a's key; b's ticket (made after the first) still resumes.
        reload(proxy)
        let rotatedOut = try connect("a", "c")
        #expect(rotatedOut.succeeded && !rotatedOut.reused, "a ticket of a forgotten key gets a full handshake: \(rotatedOut)")
        let previous = try connect("b", "d")
        #expect(previous.reused, "\(previous)")
        #expect(proxy.isRunning)
        #expect(!proxy.logText.lowercased().contains("ticket key"), "no key is logged: \(proxy.logText)")
    }

    /// A full TLS 1.3 handshake issues one ticket unless `session_tickets_per_handshake` asks for
    /// more; a resumption issues one either way.
    @Test(arguments: [(nil, 1), (3, 3)] as [(Int?, Int)])
    func aFullHandshakeIssuesTheTicketsAskedFor(configured: Int?, expected: Int) throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let (proxy, port) = try start(upstream: upstream.port, configured.map { "session_tickets_per_handshake = \($0)" } ?? "")
        defer { proxy.stop() }
        let dir = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try SClient.request(port: port, caFile: certs.ca, sessionIn: nil, sessionOut: dir.appendingPathComponent("s"),
                                       extra: ["-tls1_3", "-msg"])
        #expect(full.succeeded && !full.reused && full.ticketsReceived == expected, "\(full.output)")
        let resumed = try SClient.request(port: port, caFile: certs.ca, sessionIn: dir.appendingPathComponent("s"),
                                          sessionOut: dir.appendingPathComponent("s2"), extra: ["-tls1_3", "-msg"])
        #expect(resumed.reused && resumed.ticketsReceived == 1, "\(resumed.output)")
    }

    @Test func theTicketLifetimeFollowsTheRotationAndTicketsCanBeTurnedOff() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream()
        defer { upstream.stop() }
        let dir = try Binary.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (rotating, rotatingPort) = try start(upstream: upstream.port, "session_ticket_rotation = \"2h\"")
        defer { rotating.stop() }
        let withTickets = try SClient.request(port: rotatingPort, caFile: certs.ca, sessionIn: nil,
                                              sessionOut: dir.appendingPathComponent("t"), extra: ["-tls1_2"])
        #expect(withTickets.ticketLifetimeHint == 7200, "\(withTickets.output)")

        let (plain, plainPort) = try start(upstream: upstream.port, "session_tickets = false")
        defer { plain.stop() }
        let without = try SClient.request(port: plainPort, caFile: certs.ca, sessionIn: nil,
                                          sessionOut: dir.appendingPathComponent("n"), extra: ["-tls1_2"])
        #expect(without.succeeded && without.ticketLifetimeHint == nil, "no ticket: \(without.output)")
        // Resumed from the server's cache by session ID instead.
        let resumed = try SClient.request(port: plainPort, caFile: certs.ca, sessionIn: dir.appendingPathComponent("n"),
                                          sessionOut: dir.appendingPathComponent("n2"), extra: ["-tls1_2"])
        #expect(resumed.reused, "\(resumed)")
    }
}
