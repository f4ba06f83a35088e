import Foundation

/// An HTTP/2 client that writes frames by hand, with Python's `hyperframe` and `hpack` (from the
/// `h2` package, which scripts/install-deps.sh test installs), for the attacks a well-behaved
/// client library would never send. Each mode prints what it saw, one fact a line, and exits 0.
enum PythonH2 {
    static let script = #"""
        import socket, ssl, sys, time
        from hyperframe.frame import (Frame, SettingsFrame, HeadersFrame, ContinuationFrame, RstStreamFrame,
                                      PingFrame, GoAwayFrame, DataFrame, WindowUpdateFrame)
        from hpack import Encoder, Decoder

        PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        mode, port = sys.argv[1], int(sys.argv[2])
        args = sys.argv[3:]
        tls = "--tls" in args
        args = [a for a in args if a != "--tls"]

        def say(*parts):
            print(*parts, flush=True)

        def connect():
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.set_alpn_protocols(["h2"])
                s = ctx.wrap_socket(s, server_hostname="localhost")
                say("ALPN", s.selected_alpn_protocol())
            return s

        class Reader:
            def __init__(self, s):
                self.s, self.buf, self.closed, self.decoder = s, b"", False, Decoder()
            def frames(self, until, timeout=5):
                """Frames read until `until(frame)` is true, the peer closes, or the timeout."""
                seen, deadline = [], time.time() + timeout
                self.s.settimeout(0.2)
                while time.time() < deadline:
                    while len(self.buf) >= 9:
                        f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                        if len(self.buf) < 9 + length:
                            break
                        f.parse_body(memoryview(self.buf[9:9 + length]))
                        self.buf = self.buf[9 + length:]
                        if isinstance(f, HeadersFrame):
                            f.headers = self.decoder.decode(f.data)
                        seen.append(f)
                        if until(f):
                            return seen
                    if self.closed:
                        return seen
                    try:
                        data = self.s.recv(65536)
                    except (socket.timeout, ssl.SSLWantReadError):
                        continue
                    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                        self.closed = True
                        return seen
                    if not data:
                        self.closed = True
                    self.buf += data
                return seen

        def start(s, settings=None):
            s.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

        def request(encoder, stream, path, end_stream=True, extra=()):
            block = encoder.encode([(":method", "GET" if end_stream else "POST"), (":scheme", "https" if tls else "http"),
                                    (":path", path), (":authority", "localhost")] + list(extra))
            return HeadersFrame(stream, block, flags=["END_HEADERS"] + (["END_STREAM"] if end_stream else [])).serialize()

        def send(s, data):
            try:
                s.sendall(data)
                return True
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
                return False

        def report_end(reader, frames):
            goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
            if goaway:
                say("GOAWAY", goaway[-1].error_code)
            if reader.closed:
                say("CLOSED")

        def status_of(frames, stream):
            for f in frames:
                if isinstance(f, HeadersFrame) and f.stream_id == stream:
                    return dict(f.headers).get(":status")
                if isinstance(f, RstStreamFrame) and f.stream_id == stream:
                    return "RST %d" % f.error_code
            return None

        def ack_settings(s, reader):
            """Reads the server's SETTINGS, acknowledges them, and returns them."""
            frames = reader.frames(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
            settings = [f for f in frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags]
            s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            return settings[0].settings if settings else {}

        s = connect()
        reader = Reader(s)
        enc = Encoder()

        if mode == "get":
            # One request; prints the status and the body's length.
            start(s)
            ack_settings(s, reader)
            s.sendall(request(enc, 1, args[0]))
            frames = reader.frames(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
            say("STATUS", status_of(frames, 1), "BODY", len(body))

        elif mode == "early":
            # A POST whose head is sent and whose body is not: the answer must come from the head.
            start(s)
            ack_settings(s, reader)
            s.sendall(request(enc, 1, args[0], end_stream=False, extra=[("authorization", args[1])]))
            frames = reader.frames(lambda f: f.stream_id == 1 and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)))
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
            say("STATUS", status_of(frames, 1), "BODY", body.decode(errors="replace"))
            frames = reader.frames(lambda f: isinstance(f, RstStreamFrame), timeout=2)
            resets = [f.error_code for f in frames if isinstance(f, RstStreamFrame)]
            say("RESET", resets[0] if resets else "none")

        elif mode == "cancel":
            # One request, reset by the client after a moment; the connection stays open a while.
            start(s)
            ack_settings(s, reader)
            s.sendall(request(enc, 1, args[0]))
            time.sleep(0.5)
            s.sendall(RstStreamFrame(1, error_code=8).serialize())
            say("RESET SENT")
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=float(args[1])))
            say("DONE")

        elif mode == "idle":
            # Opens the connection and sends nothing more: the server ends it after idle_timeout.
            started = time.time()
            start(s)
            ack_settings(s, reader)
            frames = reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=10)
            frames += reader.frames(lambda f: False, timeout=3)
            report_end(reader, frames)
            say("AFTER %.1f" % (time.time() - started))

        elif mode == "slow-body":
            # A POST that announces 100,000 bytes, sends 10 and stops.
            started = time.time()
            start(s)
            ack_settings(s, reader)
            s.sendall(request(enc, 1, args[0], end_stream=False, extra=[("content-length", "100000")])
                      + DataFrame(1, data=b"0123456789").serialize())
            frames = reader.frames(lambda f: f.stream_id == 1 and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)),
                                   timeout=10)
            say("STATUS", status_of(frames, 1), "AFTER %.1f" % (time.time() - started))

        elif mode == "refused-upload":
            # A POST of args[1] bytes in DATA frames of 10,000 (within the first window), refused
            # once past max_body_bytes; with args[2] == "stop" the client stops halfway instead of
            # ending the stream. Prints the status, then whether and when the stream was reset.
            path, total, how = args[0], int(args[1]), args[2]
            start(s)
            ack_settings(s, reader)
            sent_bytes = total if how == "finish" else total // 2
            frames = [request(enc, 1, path, end_stream=False, extra=[("content-length", str(total))])]
            for offset in range(0, sent_bytes, 10000):
                last = how == "finish" and offset + 10000 >= sent_bytes
                frames.append(DataFrame(1, data=b"x" * min(10000, sent_bytes - offset),
                                        flags=["END_STREAM"] if last else []).serialize())
            started = time.time()
            s.sendall(b"".join(frames))
            seen = reader.frames(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1, timeout=4)
            say("STATUS", status_of(seen, 1))
            reset = [f for f in seen if isinstance(f, RstStreamFrame) and f.stream_id == 1]
            if reset:
                say("RST", reset[0].error_code, "AFTER %.1f" % (time.time() - started))
            ended = [f for f in seen if f.stream_id == 1 and "END_STREAM" in f.flags]
            say("ENDED" if ended else "NOT ENDED")

        elif mode == "slow-headers":
            # A header block that is never finished (no END_HEADERS, no CONTINUATION).
            started = time.time()
            start(s)
            ack_settings(s, reader)
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")])
            s.sendall(HeadersFrame(1, block, flags=["END_STREAM"]).serialize())
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=10))
            say("AFTER %.1f" % (time.time() - started))

        elif mode == "rapid-reset":
            # Opens streams and resets each at once, far faster than any is answered.
            count = int(args[0])
            start(s)
            ack_settings(s, reader)
            sent = 0
            for i in range(count):
                sid = 1 + 2 * i
                if not send(s, request(enc, sid, "/slow") + RstStreamFrame(sid, error_code=8).serialize()):
                    break
                sent += 1
            say("SENT", sent)
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=5))

        elif mode == "continuation":
            # A HEADERS frame followed by CONTINUATION frames that never end the header block.
            start(s)
            ack_settings(s, reader)
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")])
            sent = 1 if send(s, HeadersFrame(1, block, flags=["END_STREAM"]).serialize()) else 0
            chunk = b"".join(ContinuationFrame(1, data=enc.encode([("x-filler", "a" * 100)])).serialize() for _ in range(100))
            for _ in range(100):
                if not send(s, chunk):
                    break
                sent += 100
            say("SENT", sent)
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=5))

        elif mode == "hpack-bomb":
            # A 4,000-byte field in the dynamic table, then referred to 4,000 times in one request:
            # 16 MB of header list from a block of a few kilobytes. Then a normal request.
            start(s)
            ack_settings(s, reader)
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/bomb"), (":authority", "localhost")]
                               + [("x-bomb", "b" * 4000)] * 4000)
            say("BLOCK", len(block))
            frames = [HeadersFrame(1, block[:16384], flags=["END_STREAM"] + (["END_HEADERS"] if len(block) <= 16384 else []))]
            rest = block[16384:]
            while rest:
                piece, rest = rest[:16384], rest[16384:]
                frames.append(ContinuationFrame(1, data=piece, flags=[] if rest else ["END_HEADERS"]))
            s.sendall(b"".join(f.serialize() for f in frames))
            got = reader.frames(lambda f: f.stream_id == 1 and ("END_STREAM" in f.flags or isinstance(f, RstStreamFrame)))
            say("BOMB", status_of(got, 1))
            s.sendall(request(enc, 3, args[0]))
            got = reader.frames(lambda f: f.stream_id == 3 and "END_STREAM" in f.flags)
            say("AFTER", status_of(got, 3))

        elif mode in ("settings-flood", "ping-flood"):
            # Frames that each ask for an acknowledgement, sent without reading any.
            count = int(args[0])
            start(s)
            one = SettingsFrame(0).serialize() if mode == "settings-flood" else PingFrame(0, opaque_data=b"12345678").serialize()
            batch = one * 1000
            sent = 0
            s.settimeout(5)
            for _ in range(count // 1000):
                if not send(s, batch):
                    break
                sent += 1000
            say("SENT", sent)
            # Now read: the acknowledgements the server made, then its GOAWAY or its close.
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=10))

        elif mode == "big-settings":
            # One SETTINGS frame with more entries than the server takes.
            s.sendall(PREFACE)
            entries = b"".join((0x2).to_bytes(2, "big") + (0).to_bytes(4, "big") for _ in range(100))
            s.sendall(len(entries).to_bytes(3, "big") + b"\x04\x00\x00\x00\x00\x00" + entries)
            report_end(reader, reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=5))

        elif mode == "bad-preface":
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SettingsFrame(0).serialize())
            frames = reader.frames(lambda f: isinstance(f, GoAwayFrame), timeout=5)
            if reader.buf.startswith(b"HTTP/1.1 "):
                say("HTTP1", reader.buf.split(b"\r\n")[0].decode())
            report_end(reader, frames)

        elif mode == "max-streams":
            # Opens `count` streams that stay open (a body is announced and never sent), then one more.
            count = int(args[0])
            start(s)
            settings = ack_settings(s, reader)
            say("MAX_CONCURRENT_STREAMS", settings.get(0x3))
            say("MAX_HEADER_LIST_SIZE", settings.get(0x6))
            s.sendall(b"".join(request(enc, 1 + 2 * i, "/open", end_stream=False) for i in range(count)))
            frames = reader.frames(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)), timeout=1.5)
            say("WITHIN", "REFUSED" if any(isinstance(f, (GoAwayFrame, RstStreamFrame)) for f in frames) else "OK")
            s.sendall(request(enc, 1 + 2 * count, "/open", end_stream=False))
            frames = reader.frames(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)), timeout=3)
            for f in frames:
                if isinstance(f, RstStreamFrame):
                    say("RST", f.stream_id, f.error_code)
            report_end(reader, frames)

        elif mode == "drain":
            # A request in flight when the server is told to stop: GOAWAY, then its response.
            start(s)
            ack_settings(s, reader)
            s.sendall(request(enc, 1, args[0]))
            say("SENT")
            frames = reader.frames(lambda f: f.stream_id == 1 and "END_STREAM" in f.flags, timeout=15)
            goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
            say("GOAWAY", goaway[0].error_code, goaway[0].last_stream_id) if goaway else say("NO-GOAWAY")
            say("STATUS", status_of(frames, 1), "BODY", body.decode(errors="replace"))
            report_end(reader, reader.frames(lambda f: False, timeout=3))

        elif mode == "stall":
            # Many streams asking for large responses, and the client never opens its window.
            count = int(args[0])
            start(s, settings={0x4: 65535})
            ack_settings(s, reader)
            s.sendall(b"".join(request(enc, 1 + 2 * i, args[1]) for i in range(count)))
            frames = reader.frames(lambda f: False, timeout=float(args[2]))
            data = sum(len(f.data) for f in frames if isinstance(f, DataFrame))
            say("HEADERS", len([f for f in frames if isinstance(f, HeadersFrame)]), "DATA", data)
            say("HOLDING")
            time.sleep(float(args[3]))
        """#

    /// Runs `mode` against 127.0.0.1:port; `tls`: over TLS with ALPN "h2".
    static func run(_ mode: String, port: UInt16, _ arguments: [String] = [], tls: Bool = false,
                    timeout: Double = 60) throws -> Binary.Result {
        let dir = try Binary.tempDirectory()
        let path = dir.appendingPathComponent("h2client.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        return try Tool.run(try Tool.path("python3"), [path.path, mode, "\(port)"] + arguments + (tls ? ["--tls"] : []),
                            timeout: timeout)
    }

    /// Starts `mode` in the background; its output goes to `log`.
    static func start(_ mode: String, port: UInt16, _ arguments: [String] = [], log: URL) throws -> Spawned {
        let dir = try Binary.tempDirectory()
        let path = dir.appendingPathComponent("h2client.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        return try Tool.start(try Tool.path("python3"), [path.path, mode, "\(port)"] + arguments, log: log)
    }
}
