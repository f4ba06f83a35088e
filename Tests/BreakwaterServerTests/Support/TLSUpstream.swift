import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTPS upstream on 127.0.0.1: Python's `http.server` behind `ssl`, serving `pair`. Every
/// answer is 200 with body "tls upstream" and headers that show what it saw: `X-Upstream-TLS`
/// (the TLS version of the connection), `X-Seen-SNI` (the server name the client sent, "-" for
/// none), `X-Seen-Proto` (the request's X-Forwarded-Proto) and `X-Connection` (1 for the first
/// connection accepted, 2 for the next...). A connection idle for `idleTimeout` seconds is closed.
/// It stops itself after 5 minutes whatever happens to the test.
final class TLSUpstream: @unchecked Sendable {
    let port: UInt16
    let dir: URL
    private let process: Spawned

    init(pair: CertificatePair, idleTimeout: Double = 10) throws {
        dir = try Binary.tempDirectory()
        let script = dir.appendingPathComponent("upstream.py")
        let portFile = dir.appendingPathComponent("port")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        let process = try Tool.start("python3", [script.path, pair.cert.path, pair.key.path, portFile.path, "\(idleTimeout)"],
                                     log: dir.appendingPathComponent("upstream.log"))
        self.process = process
        var found: UInt16?
        _ = eventually(10) {
            found = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { UInt16($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return found != nil || !process.isRunning
        }
        guard let found else {
            Self.stop(process)
            let log = (try? String(contentsOf: dir.appendingPathComponent("upstream.log"), encoding: .utf8)) ?? ""
            throw TestSocket.Failure(description: "the TLS upstream did not start: \(log)")
        }
        port = found
    }

    deinit { stop() }

    func stop() { Self.stop(process) }

    /// SIGKILL: started from a test thread, the process inherits its signal mask, which blocks
    /// SIGTERM; and a test server has nothing to finish.
    private static func stop(_ process: Spawned) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    private static let script = #"""
        import http.server, itertools, os, ssl, sys, threading

        cert, key, port_file, idle_timeout = sys.argv[1:5]
        serials = itertools.count(1)
        threading.Timer(300, os._exit, [0]).start()

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        def remember_sni(connection, name, ctx):
            connection.seen_sni = name
        context.sni_callback = remember_sni

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b"tls upstream"
                self.send_response(200)
                self.send_header("X-Upstream-TLS", self.connection.version() or "-")
                self.send_header("X-Seen-SNI", getattr(self.connection, "seen_sni", None) or "-")
                self.send_header("X-Seen-Proto", self.headers.get("X-Forwarded-Proto", "-"))
                self.send_header("X-Connection", str(self.connection.serial))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            # The handshake runs on the connection's own thread, so a client that stalls in it
            # holds up no other.
            def finish_request(self, request, client_address):
                request.settimeout(float(idle_timeout))
                serial = next(serials)
                try:
                    connection = context.wrap_socket(request, server_side=True)
                except OSError:
                    return
                connection.serial = serial
                try:
                    self.RequestHandlerClass(connection, client_address, self)
                finally:
                    connection.close()

        server = Server(("127.0.0.1", 0), Handler)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(port_file + ".tmp", port_file)
        server.serve_forever()
        """#
}
