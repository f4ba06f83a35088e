import Foundation
import Testing

/// OpenSSL reads ahead on the TLS listener: one read from the socket may bring several records,
/// and the socket does not become readable again for the ones OpenSSL keeps. A client that
/// packs records together (Python's `ssl` on memory buffers, every record written before one
/// send) gets every request answered, in order: requests sent with its last handshake message,
/// forty requests in one segment (pipelined: the proxy stops reading between them while OpenSSL
/// holds the rest), and a 1 MiB body with two requests behind it in the same write.
@Suite struct TLSReadAheadTests {
    @Test(arguments: ["1.2", "1.3"])
    func recordsThatArriveTogetherAreAllRead(version: String) throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]), workers: 1)
        let script = try Binary.tempDirectory().appendingPathComponent("records.py")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let result = try Tool.run(Tool.path("python3"), [script.path, "\(proxy.tlsPort)", certs.ca.path, version, "mixed"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")

        let lines = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let responses = lines.filter { $0.count == 5 && $0[0] == "response" }
        let targets = (1...3).map { "/finished/\($0)" } + (1...40).map { "/segment/\($0)" } + ["/body", "/after/1", "/after/2"]
        #expect(responses.map { $0[2] } == targets, "\(result.stdout)")
        #expect(responses.allSatisfy { $0[1] == "200" }, "\(result.stdout)")
        let sent: String = try #require(lines.first { $0.count == 2 && $0[0] == "sent" }?[1])
        let echoed: [String] = try #require(responses.first { $0[2] == "/body" })
        #expect(echoed[3] == String(1 << 20))
        #expect(echoed[4] == sent)
        #expect(upstream.requestCount == targets.count)
    }

    /// 320 pipelined requests in small records, 96 KiB in one write: several wake-ups read them,
    /// OpenSSL reading ahead of each, and the proxy holds off reading while it answers (more
    /// than twice `max_header_bytes` waiting), so reading stops and resumes between records that
    /// OpenSSL has already taken from the socket or not.
    @Test func manyPipelinedRecordsWithReadingStoppedBetweenAnswersAreAllRead() throws {
        let certs = try TestCertificates.shared()
        let upstream = try TestUpstream(handler: TestUpstream.echo)
        defer { upstream.stop() }
        let proxy = try TLSHarness(upstreamPorts: [upstream.port], tls: certificatesKey([certs.localhost]), workers: 1,
                                   server: "max_header_bytes = 1024")
        let script = try Binary.tempDirectory().appendingPathComponent("records.py")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let result = try Tool.run(Tool.path("python3"), [script.path, "\(proxy.tlsPort)", certs.ca.path, "1.3", "flood:320"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        let responses = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            .filter { $0.count == 5 && $0[0] == "response" }
        #expect(responses.map { $0[2] } == (1...320).map { "/flood/\($0)" })
        #expect(responses.allSatisfy { $0[1] == "200" })
        #expect(upstream.requestCount == 320)
    }

    /// The client: prints "sent DIGEST" for the body and "response STATUS X-TARGET LENGTH DIGEST"
    /// for each answer, in the order they come. Bounded: it exits by itself after 40 s.
    private static let script = #"""
        import hashlib, os, random, socket, ssl, sys, threading

        port, ca, version, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        threading.Timer(40, os._exit, [3]).start()
        context = ssl.create_default_context(cafile=ca)
        context.minimum_version = context.maximum_version = (
            ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3)
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")

        def receive():
            data = sock.recv(65536)
            if not data:
                sys.exit("the proxy closed the connection")
            incoming.write(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                receive()

        def get(target, pad=0):
            padding = "X-Pad: %s\r\n" % ("p" * pad) if pad else ""
            return ("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (target, padding)).encode()

        pending = b""

        def answers(count):
            global pending
            while count > 0:
                end = pending.find(b"\r\n\r\n")
                if end >= 0:
                    head = pending[:end].decode("latin-1").split("\r\n")
                    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
                    length = int(fields.get("content-length", "0"))
                    if len(pending) >= end + 4 + length:
                        body = pending[end + 4:end + 4 + length]
                        pending = pending[end + 4 + length:]
                        print("response", head[0].split()[1], fields.get("x-target", "-"), len(body),
                              hashlib.sha256(body).hexdigest())
                        count -= 1
                        continue
                try:
                    pending += tls.read(65536)
                except ssl.SSLWantReadError:
                    receive()

        if mode.startswith("flood"):
            # Requests of about 300 bytes, a record each, all in one write.
            count = int(mode.split(":")[1])
            for i in range(1, count + 1):
                tls.write(get("/flood/%d" % i, pad=240))
            sender = threading.Thread(target=sock.sendall, args=(outgoing.read(),))
            sender.start()
            answers(count)
            sender.join()
            sys.stdout.flush()
            os._exit(0)

        # Three requests, a record each, in the segment of the client's last handshake message
        # (TLS 1.3: its Finished; TLS 1.2: the first segment after the handshake).
        for i in range(1, 4):
            tls.write(get("/finished/%d" % i))
        sock.sendall(outgoing.read())
        answers(3)

        # Forty requests, a record each, in one segment.
        for i in range(1, 41):
            tls.write(get("/segment/%d" % i))
        sock.sendall(outgoing.read())
        answers(40)

        # A 1 MiB body in 16 KiB records and two requests behind it, in one write, sent from a
        # thread while the answers are read (the echo comes back as the body goes).
        body = random.Random(7).randbytes(1 << 20)
        tls.write(b"POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        for at in range(0, len(body), 16384):
            tls.write(body[at:at + 16384])
        for i in range(1, 3):
            tls.write(get("/after/%d" % i))
        print("sent", hashlib.sha256(body).hexdigest())
        sender = threading.Thread(target=sock.sendall, args=(outgoing.read(),))
        sender.start()
        answers(3)
        sender.join()
        sys.stdout.flush()
        os._exit(0)
        """#
}
