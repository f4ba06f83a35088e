import Foundation

/// gRPC peers written with Python's `grpcio` (which scripts/install-deps.sh test installs): real
/// gRPC clients that speak to Breakwater over h2c with prior knowledge, calls made with raw bytes
/// (no generated code). Each mode prints what it saw, one fact a line, and exits 0.
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
        """#

    /// Runs `mode` against 127.0.0.1:port.
    static func run(_ mode: String, port: UInt16, _ arguments: [String] = [], timeout: Double = 60) throws -> Binary.Result {
        let dir = try Binary.tempDirectory()
        let path = dir.appendingPathComponent("grpcpeer.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        return try Tool.run(try Tool.path("python3"), [path.path, mode, "\(port)"] + arguments, timeout: timeout)
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
