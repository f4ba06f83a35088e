import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A bounded load over TLS from Python's `ssl` (verifying against a CA): `threads` threads, half
/// opening a new connection for every request (`Connection: close`), half keeping one connection
/// alive, for `seconds` or `maxRequests` requests in all, whichever ends first. Every request
/// records its status (0 for any error) and the serial number of the certificate its connection
/// got. `started` is true once the first answer came.
final class TLSLoadClient: @unchecked Sendable {
    /// What the run came to.
    struct Report: Decodable, CustomStringConvertible {
        /// Requests answered, by status ("0": an error, with `errors` saying which).
        var statuses: [String: Int]
        /// Requests answered over a connection that got each certificate serial (upper-case hex).
        var serials: [String: Int]
        /// The serial the last new connection got.
        var lastNewSerial: String
        /// The first errors met (at most 10).
        var errors: [String]

        var total: Int { statuses.values.reduce(0, +) }
        var description: String { "statuses \(statuses), serials \(serials), last \(lastNewSerial), errors \(errors)" }
    }

    private let process: Spawned
    private let dir: URL

    init(port: UInt16, ca: URL, threads: Int = 4, seconds: Double = 4, maxRequests: Int = 20_000) throws {
        dir = try Binary.tempDirectory()
        let script = dir.appendingPathComponent("load.py")
        try Self.script.write(to: script, atomically: true, encoding: .utf8)
        process = try Tool.start("python3", [script.path, "\(port)", ca.path, "\(threads)", "\(seconds)", "\(maxRequests)",
                                             dir.appendingPathComponent("started").path, dir.appendingPathComponent("report.json").path],
                                 log: dir.appendingPathComponent("load.log"))
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    var started: Bool { FileManager.default.fileExists(atPath: dir.appendingPathComponent("started").path) }

    /// Waits for the end of the run (bounded: the script stops itself) and reads its report.
    func finish() throws -> Report {
        process.waitUntilExit()
        let log = (try? String(contentsOf: dir.appendingPathComponent("load.log"), encoding: .utf8)) ?? ""
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("report.json")) else {
            throw TestSocket.Failure(description: "the load client wrote no report: \(log)")
        }
        return try JSONDecoder().decode(Report.self, from: data)
    }

    private static let script = #"""
        import json, os, socket, ssl, sys, threading, time

        port, ca, threads, seconds, max_requests, started_file, report_file = sys.argv[1:8]
        port, threads, seconds, max_requests = int(port), int(threads), float(seconds), int(max_requests)
        threading.Timer(seconds + 30, os._exit, [3]).start()
        context = ssl.create_default_context(cafile=ca)
        deadline = time.monotonic() + seconds
        lock = threading.Lock()
        state = {"count": 0, "statuses": {}, "serials": {}, "last_new": "", "errors": []}

        def take():
            with lock:
                if state["count"] >= max_requests or time.monotonic() >= deadline:
                    return False
                state["count"] += 1
                return True

        def record(status, serial, new, error=None):
            with lock:
                state["statuses"][str(status)] = state["statuses"].get(str(status), 0) + 1
                if serial:
                    state["serials"][serial] = state["serials"].get(serial, 0) + 1
                    if new:
                        state["last_new"] = serial
                if error and len(state["errors"]) < 10:
                    state["errors"].append(error)
            if status == 200 and not os.path.exists(started_file):
                open(started_file, "w").close()

        def connect():
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            tls = context.wrap_socket(raw, server_hostname="localhost")
            return tls, tls.getpeercert()["serialNumber"].upper().lstrip("0"), tls.makefile("rb")

        def exchange(tls, reader, close):
            tls.sendall(b"GET /load HTTP/1.1\r\nHost: localhost\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n")
            status = int(reader.readline().split()[1])
            length = 0
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            reader.read(length)
            return status

        def fresh():
            while take():
                serial = ""
                try:
                    tls, serial, reader = connect()
                    with tls:
                        record(exchange(tls, reader, True), serial, True)
                except Exception as e:
                    record(0, serial, True, "new connection: %r" % e)

        def kept():
            tls = None
            while take():
                try:
                    if tls is None:
                        tls, serial, reader = connect()
                    record(exchange(tls, reader, False), serial, False)
                except Exception as e:
                    record(0, "", False, "kept connection: %r" % e)
                    tls = None

        workers = [threading.Thread(target=fresh if i % 2 == 0 else kept) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        with open(report_file + ".tmp", "w") as f:
            json.dump({"statuses": state["statuses"], "serials": state["serials"], "lastNewSerial": state["last_new"],
                       "errors": state["errors"]}, f)
        os.rename(report_file + ".tmp", report_file)
        os._exit(0)
        """#
}
