import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// gRPC peers written with Python's `grpcio` (which scripts/install-deps.sh test installs): real
/// gRPC clients that speak to Breakwater over h2c with prior knowledge, and a real gRPC server as
/// its upstream, calls made with raw bytes (no generated code). Each mode prints what it saw, one
/// fact a line.
enum GRPCPeer {
    static let script = #"""
        import json, sys, time
        import grpc

        mode, port = sys.argv[1], int(sys.argv[2])
        args = sys.argv[3:]

        def say(*parts):
            print(*parts, flush=True)

        RETRY = json.dumps({"methodConfig": [{
            "name": [{"service": "pkg.Service"}],
            "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]}}]})

        def channel(retry):
            options = [("grpc.service_config", RETRY), ("grpc.enable_retries", 1)] if retry else [("grpc.enable_retries", 0)]
            return grpc.insecure_channel("127.0.0.1:%d" % port, options=options)

        def unary(ch, path, payload, timeout=10):
            call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
            started = time.time()
            try:
                reply, info = call.with_call(payload, timeout=timeout)
                return "OK", reply, dict(info.trailing_metadata() or ()), time.time() - started
            except grpc.RpcError as e:
                return e.code().name, e.details(), dict(e.trailing_metadata() or ()), time.time() - started

        if mode == "call":
            # call PORT PATH COUNT [--retry]: COUNT unary calls in a row, one line each.
            path, count, retry = args[0], int(args[1]), "--retry" in args
            ch = channel(retry)
            for _ in range(count):
                code, detail, trailers, elapsed = unary(ch, path, b"ping")
                say("CALL", code, "pushback=%s" % trailers.get("grpc-retry-pushback-ms", "-"),
                    "elapsed=%.3f" % elapsed, "detail=%r" % (detail,))
        elif mode == "parallel":
            # parallel PORT PATH COUNT: COUNT unary calls at once on one channel (one HTTP/2 connection).
            path, n = args[0], int(args[1])
            call = channel(False).unary_unary(path, request_serializer=None, response_deserializer=None)
            futures = [call.future(b"p%d" % i, timeout=20) for i in range(n)]
            for i, f in enumerate(futures):
                try:
                    say("CALL", "OK" if f.result() == b"p%d" % i else "WRONG")
                except grpc.RpcError as e:
                    say("CALL", e.code().name)
        elif mode == "cancel":
            # cancel PORT PATH MESSAGE AFTER: a call without a deadline that the client cancels after AFTER s.
            path, message, after = args[0], args[1].encode(), float(args[2])
            call = channel(False).unary_unary(path, request_serializer=None, response_deserializer=None)
            future = call.future(message)
            time.sleep(after)
            say("CANCELLED", future.cancel())
        elif mode == "loop":
            # loop PORT PATH SECONDS: unary calls with the retry policy for SECONDS (at most 200 calls).
            path, seconds = args[0], float(args[1])
            ch = channel(True)
            deadline, n = time.time() + seconds, 0
            while time.time() < deadline and n < 200:
                code, detail, trailers, elapsed = unary(ch, path, b"ping", timeout=seconds + 5)
                n += 1
                say("CALL", code, "elapsed=%.3f" % elapsed)
            say("CALLS", n)
        elif mode == "serve":
            # serve SECONDS [--tls CERT KEY]: a gRPC server on a free port (printed as PORT n) for at most
            # SECONDS; every call is printed as SERVED.
            import threading
            from concurrent import futures
            lock, served = threading.Lock(), {}

            def count(name, context=None):
                with lock:
                    served[name] = served.get(name, 0) + 1
                    say("SERVED", name, served[name], "peer=%s" % (context.peer() if context else "-"))

            def echo(request, context):
                count("Echo", context)
                context.set_trailing_metadata((("x-echo-length", str(len(request))),))
                return request

            def chat(requests, context):
                count("Chat")
                for message in requests:
                    yield b"echo:" + message

            def slow(request, context):
                count("Slow")
                time.sleep(float(request.decode() or "2"))
                # Whether the call was cancelled meanwhile (its client gave up, and the proxy passed it on).
                say("SLOW", "active" if context.is_active() else "cancelled")
                return b"late"

            def auth(request, context):
                count("Auth")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")

            def not_found(request, context):
                count("NotFound")
                context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

            def big(request, context):
                count("Big")
                size = int(request.decode())
                return b"x" * size

            handlers = {
                "Echo": grpc.unary_unary_rpc_method_handler(echo),
                "Chat": grpc.stream_stream_rpc_method_handler(chat),
                "Slow": grpc.unary_unary_rpc_method_handler(slow),
                "Auth": grpc.unary_unary_rpc_method_handler(auth),
                "Big": grpc.unary_unary_rpc_method_handler(big),
                "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
            }
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                 options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pkg.Service", handlers),))
            if "--tls" in args:
                # --tls CERT KEY: h2 over TLS (grpcio offers "h2" by ALPN).
                at = args.index("--tls")
                with open(args[at + 1], "rb") as c, open(args[at + 2], "rb") as k:
                    credentials = grpc.ssl_server_credentials(((k.read(), c.read()),))
                bound = server.add_secure_port("127.0.0.1:0", credentials)
            else:
                bound = server.add_insecure_port("127.0.0.1:0")
            server.start()
            say("PORT", bound)
            server.wait_for_termination(timeout=float(args[0]))
        elif mode == "bidi":
            # bidi PORT PATH COUNT: one bidirectional call; each message is sent only after the answer
            # to the previous one came back, so a proxy that held the request body until its end would hang.
            import queue
            path, n = args[0], int(args[1])
            ch = channel(False)
            call = ch.stream_stream(path, request_serializer=None, response_deserializer=None)
            outbox = queue.Queue()
            def requests():
                while True:
                    item = outbox.get()
                    if item is None:
                        return
                    yield item
            outbox.put(b"m0")
            responses = call(requests(), timeout=20)
            got = 0
            try:
                for reply in responses:
                    got += 1
                    say("REPLY", reply.decode())
                    outbox.put(b"m%d" % got if got < n else None)
                say("DONE", responses.code().name, got)
            except grpc.RpcError as e:
                say("DONE", e.code().name, got)
        elif mode == "deadline":
            # deadline PORT PATH SECONDS: a call given SECONDS to finish.
            path, seconds = args[0], float(args[1])
            code, detail, trailers, elapsed = unary(channel(False), path, args[2].encode() if len(args) > 2 else b"", timeout=seconds)
            say("CALL", code, "elapsed=%.3f" % elapsed)
        elif mode == "echo":
            # echo PORT PATH SIZE: one unary call with a SIZE-byte message; prints the reply's length and trailers.
            path, size = args[0], int(args[1])
            ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.max_receive_message_length", 64 << 20),
                                                                       ("grpc.max_send_message_length", 64 << 20)])
            code, reply, trailers, elapsed = unary(ch, path, b"y" * size)
            say("CALL", code, "length=%d" % (len(reply) if code == "OK" else -1),
                "trailer=%s" % trailers.get("x-echo-length", "-"))
        elif mode == "h2-echo":
            # h2-echo 0 SECONDS: a plain HTTP/2 (h2c) server, not gRPC, on a free port (printed as PORT n):
            # each request is answered 200 with "METHOD PATH BODY" and a trailer, but for a path with
            # "stall" in it, which is never answered.
            import socket, threading
            import h2.connection, h2.config, h2.events

            def serve(sock):
                conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
                conn.initiate_connection()
                sock.sendall(conn.data_to_send())
                requests = {}
                while True:
                    data = sock.recv(65536)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            requests[event.stream_id] = [dict(event.headers), b""]
                            if b"hold" in requests[event.stream_id][0][b":path"]:
                                # Reads nothing for a second, then opens both windows by 16 MiB at once
                                # and never again: the proxy must send the whole body on that one opening.
                                time.sleep(1)
                                conn.increment_flow_control_window(16 << 20)
                                conn.increment_flow_control_window(16 << 20, event.stream_id)
                        elif isinstance(event, h2.events.DataReceived):
                            requests[event.stream_id][1] += event.data
                            if b"hold" not in requests[event.stream_id][0][b":path"]:
                                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, h2.events.StreamEnded):
                            headers, body = requests.pop(event.stream_id)
                            say("SERVED", headers[b":method"].decode(), headers[b":path"].decode())
                            if b"stall" in headers[b":path"]:
                                continue   # never answered
                            # A held body is answered with its length: the whole of it would not fit the window.
                            held = b"hold" in headers[b":path"]
                            reply = b" ".join([headers[b":method"], headers[b":path"], b"%d" % len(body) if held else body])
                            conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "text/plain")])
                            conn.send_data(event.stream_id, reply)
                            conn.send_headers(event.stream_id, [("x-checksum", str(len(reply)))], end_stream=True)
                    sock.sendall(conn.data_to_send())

            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.settimeout(float(args[0]))
            say("PORT", listener.getsockname()[1])
            while True:
                try:
                    client, _ = listener.accept()
                except socket.timeout:
                    break
                threading.Thread(target=serve, args=(client,), daemon=True).start()
        """#

    private static func scriptPath() throws -> URL {
        let dir = try Binary.tempDirectory()
        let path = dir.appendingPathComponent("grpcpeer.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs client `mode` against 127.0.0.1:port.
    static func run(_ mode: String, port: UInt16, _ arguments: [String] = [], timeout: Double = 60) throws -> Binary.Result {
        try Tool.run(try Tool.path("python3"), [try scriptPath().path, mode, "\(port)"] + arguments, timeout: timeout)
    }

    /// The `CALL` lines of a run: each call's status name and the rest of its line.
    static func calls(_ output: String) -> [(code: String, line: String)] {
        output.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count >= 2, parts[0] == "CALL" else { return nil }
            return (String(parts[1]), String(line))
        }
    }

    /// A `key=value` of a CALL line, such as `pushback`.
    static func field(_ line: String, _ key: String) -> String? {
        line.split(separator: " ").first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }
}

/// A grpcio server on a free loopback port, serving `pkg.Service`: Echo (unary, the message back,
/// its length as trailer `x-echo-length`), Chat (bidirectional, each message back), Slow (sleeps
/// the seconds its message names), Auth (fails UNAUTHENTICATED), NotFound (fails NOT_FOUND), Big
/// (a reply of the size its message names). It counts the calls it served.
final class GRPCServer {
    let port: UInt16
    private let process: Spawned
    private let log: URL

    /// `tls`: h2 over TLS with this certificate, else h2c. `plain`: not gRPC but a plain HTTP/2
    /// server (Python's `h2`) that answers every request 200 with "METHOD PATH BODY" and a
    /// trailer `x-checksum` (the body's length), counting them as calls of their method; a path
    /// with "stall" in it is never answered.
    init(tls: CertificatePair? = nil, plain: Bool = false) throws {
        let log = try Binary.tempDirectory().appendingPathComponent("grpcserver.log")
        let path = try Binary.tempDirectory().appendingPathComponent("grpcpeer.py")
        try GRPCPeer.script.write(to: path, atomically: true, encoding: .utf8)
        let process = try Tool.start(try Tool.path("python3"), [path.path, plain ? "h2-echo" : "serve", "0", "120"]
                                   + (tls.map { ["--tls", $0.cert.path, $0.key.path] } ?? []), log: log)
        func text() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        var found: UInt16?
        _ = eventually(20) {
            found = text().split(separator: "\n").first { $0.hasPrefix("PORT ") }.flatMap { UInt16($0.dropFirst(5)) }
            return found != nil
        }
        guard let found else {
            kill(process.processIdentifier, SIGKILL)
            throw TestSocket.Failure(description: "the gRPC server did not start: \(text())")
        }
        self.log = log
        self.process = process
        port = found
    }

    deinit { stop() }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// How many calls of `method` it served.
    func served(_ method: String) -> Int {
        output.split(separator: "\n").filter { $0.hasPrefix("SERVED \(method) ") }.count
    }

    /// The peers (address and port) the calls of `method` came from.
    func peers(_ method: String) -> Set<String> {
        Set(output.split(separator: "\n").filter { $0.hasPrefix("SERVED \(method) ") }
            .compactMap { $0.split(separator: " ").first { $0.hasPrefix("peer=") }.map(String.init) })
    }

    /// Kills the server at once (SIGKILL): its connections die with it.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
