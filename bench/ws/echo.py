#!/usr/bin/env python3
"""A WebSocket echo server and load client for bench/ws.sh, on asyncio (uvloop when installed).

    echo.py server PORT
    echo.py client PORT PATH SIZE CONNECTIONS SECONDS

Both do their own RFC 6455 framing on raw transports, so that no per-message library code stands
between the proxy and the load: the client builds its one frame once and writes the same bytes
for every message; the server unmasks only when the mask is not zero.

The server answers any GET with Upgrade: websocket with a 101 and then echoes every data frame
as one unmasked frame with the same payload (a close frame is answered with a close frame).

The client opens CONNECTIONS WebSocket connections to 127.0.0.1:PORT (through the proxy under
test), then prints "ready" and waits for a line on its standard input. On it, every connection
sends a binary message of SIZE bytes and sends the next as soon as the echo has fully arrived
(one message in flight per connection), for SECONDS seconds; then no new message is sent, the
messages in flight arrive, and the client prints

    done MESSAGES PAYLOAD_BYTES SECONDS P50_MS P99_MS

(messages echoed, their payload bytes, the seconds from the start to the last echo, the median
and 99th percentile of a message's round trip), closes the connections and exits. The first echo
of each connection is compared byte for byte with what was sent; a wrong or short echo, a closed
connection or a refused handshake is an error (exit 1, the reason on stderr).

The client masks with the key 0 (a valid key: RFC 6455 asks clients for unpredictable keys to
protect caches that read the stream, not for a particular value), which leaves the payload as is,
so neither side spends time on XOR. Every address is 127.0.0.1.
"""

import asyncio
import base64
import hashlib
import os
import socket
import sys
import time

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def frame_header(opcode, length, masked):
    first = 0x80 | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 65536:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"")


ECHO_HEADERS = {}


def echo_header(opcode, length):
    """The header of a server's (unmasked) frame, kept for the lengths seen."""
    head = ECHO_HEADERS.get((opcode, length))
    if head is None:
        head = ECHO_HEADERS[(opcode, length)] = frame_header(opcode, length, False)
    return head


def no_delay(transport):
    """Small writes (a frame header, a close) go out at once, not after the peer's delayed ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def unmask(payload, key):
    if key == b"\0\0\0\0" or not payload:
        return payload
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


# ---- the server -----------------------------------------------------------------------------------


class EchoServer(asyncio.Protocol):
    """Echoes as it reads: a frame's header is answered as soon as it is whole, and its payload is
    written back piece by piece as it arrives (unmasked on the way when the mask is not zero), so
    a large message is never gathered in memory."""

    def connection_made(self, transport):
        self.transport = transport
        no_delay(transport)
        self.buf = bytearray()  # the handshake, then an incomplete frame header
        self.open = False
        self.remaining = 0  # payload bytes of the current frame still to come
        self.key = b"\0\0\0\0"
        self.done = 0  # payload bytes of the current frame already echoed (for the mask's phase)
        self.control = None  # a control frame's payload, gathered whole: (opcode, bytearray)

    def handshake(self):
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 16384:
                self.transport.close()
            return None
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        rest = bytes(buf[end + 4 :])
        self.buf = bytearray()
        key = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip().encode()
        if key is None:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()
            return None
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True
        return rest

    def data_received(self, data):
        if not self.open:
            self.buf += data
            data = self.handshake()
            if not data:
                return
        write = self.transport.write
        view = memoryview(data)
        off, n = 0, len(data)
        while off < n:
            if self.remaining:
                k = min(self.remaining, n - off)
                piece = view[off : off + k]
                if self.key != b"\0\0\0\0":
                    phase = self.done % 4
                    piece = unmask(bytes(piece), self.key[phase:] + self.key[:phase])
                if self.control is None:
                    write(piece)
                else:
                    self.control[1].extend(piece)
                off += k
                self.remaining -= k
                self.done += k
                if not self.remaining and self.control is not None:
                    self.end_control()
                continue
            # A frame header: at most 14 bytes, gathered in buf when it comes in pieces.
            buf = self.buf
            take = min(14 - len(buf), n - off)
            buf += view[off : off + take]
            m = len(buf)
            if m < 2:
                off += take
                continue
            length = buf[1] & 0x7F
            pos = 2
            if length == 126:
                pos = 4
            elif length == 127:
                pos = 10
            masked = buf[1] & 0x80
            end = pos + (4 if masked else 0)
            if m < end:
                off += take
                continue
            if pos == 4:
                length = int.from_bytes(buf[2:4], "big")
            elif pos == 10:
                length = int.from_bytes(buf[2:10], "big")
            opcode = buf[0] & 0x0F
            self.key = bytes(buf[pos:end]) if masked else b"\0\0\0\0"
            off += take - (m - end)  # what of buf lies past the header goes back to the payload
            self.buf = bytearray()
            self.remaining = length
            self.done = 0
            if opcode >= 8:
                self.control = (opcode, bytearray())
                if not length:
                    self.end_control()
            elif length <= n - off and self.key == b"\0\0\0\0":
                # The whole payload is here: the echo goes out in one write, one system call.
                self.control = None
                write(echo_header(opcode, length) + view[off : off + length])
                off += length
                self.remaining = 0
            else:
                self.control = None
                write(echo_header(opcode, length))

    def end_control(self):
        opcode, payload = self.control
        self.control = None
        if opcode == 8:  # close: answer it and end the connection
            self.transport.write(frame_header(8, len(payload), False) + bytes(payload))
            self.transport.close()
        elif opcode == 9:  # ping: pong
            self.transport.write(frame_header(10, len(payload), False) + bytes(payload))


async def serve(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServer, HOST, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


# ---- the client -----------------------------------------------------------------------------------


class Failure(Exception):
    pass


class EchoClient(asyncio.Protocol):
    def __init__(self, bench, index):
        self.bench = bench
        self.index = index
        self.buf = bytearray()
        self.handshake = asyncio.get_running_loop().create_future()
        self.open = False
        self.sending = False
        self.pending = 0  # bytes of the echo in flight still to arrive
        self.first = True
        self.sent_at = 0.0
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        no_delay(transport)
        transport.write(self.bench.request)

    def data_received(self, data):
        if not self.open:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buf[: self.buf.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self.fail("the handshake was answered %r" % status.decode("latin-1"))
                return
            rest = bytes(self.buf[end + 4 :])
            self.buf = bytearray()
            self.open = True
            if not self.handshake.done():
                self.handshake.set_result(None)
            if rest:
                self.fail("%d bytes came before any message was sent" % len(rest))
            return
        if not self.sending:
            if not self.closing:
                self.fail("%d bytes came that no message asked for" % len(data))
            return
        if self.first:
            self.buf += data
            if len(self.buf) < self.bench.echo_len:
                return
            if bytes(self.buf[: self.bench.echo_len]) != self.bench.echo:
                self.fail("the first echo differs from the message sent")
                return
            extra = len(self.buf) - self.bench.echo_len
            self.buf = bytearray()
            self.first = False
            if extra:
                self.fail("%d bytes more than the echo came" % extra)
                return
            self.echoed()
            return
        self.pending -= len(data)
        if self.pending > 0:
            return
        if self.pending < 0:
            self.fail("%d bytes more than the echo came" % -self.pending)
            return
        self.echoed()

    def echoed(self):
        bench = self.bench
        now = time.perf_counter()
        bench.latencies.append(now - self.sent_at)
        bench.messages += 1
        bench.last = now
        if bench.stopping:
            self.sending = False
            bench.in_flight -= 1
            if bench.in_flight == 0 and not bench.drained.done():
                bench.drained.set_result(None)
            return
        self.send()

    def send(self):
        self.sending = True
        self.pending = self.bench.echo_len
        self.sent_at = time.perf_counter()
        self.transport.write(self.bench.frame)

    def fail(self, why):
        self.bench.fail("connection %d: %s" % (self.index, why))

    def connection_lost(self, exc):
        if not self.closing:
            self.fail("closed by the other side" + (" (%s)" % exc if exc else ""))


class Bench:
    def __init__(self, port, path, size):
        key = base64.b64encode(os.urandom(16))
        self.request = (
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " % (path, HOST, port)
        ).encode() + key + b"\r\n\r\n"
        payload = bytes((i * 7 + 1) & 0xFF for i in range(size))
        self.frame = frame_header(2, size, True) + payload
        self.echo = frame_header(2, size, False) + payload
        self.echo_len = len(self.echo)
        self.size = size
        self.messages = 0
        self.latencies = []
        self.stopping = False
        self.in_flight = 0
        self.last = 0.0
        self.failed = asyncio.get_running_loop().create_future()
        self.drained = asyncio.get_running_loop().create_future()

    def fail(self, why):
        if not self.failed.done():
            self.failed.set_result(why)


async def until(awaitable, bench, timeout, what):
    """Waits for awaitable; a failure of any connection or the timeout ends the client."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait([task, bench.failed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if bench.failed.done():
        raise Failure(bench.failed.result())
    if task not in done:
        task.cancel()
        raise Failure("%s: nothing after %ss" % (what, timeout))
    return task.result()


async def client(port, path, size, connections, seconds):
    loop = asyncio.get_running_loop()
    bench = Bench(port, path, size)
    clients = []
    for i in range(connections):
        _, proto = await until(loop.create_connection(lambda i=i: EchoClient(bench, i), HOST, port), bench, 10, "connect")
        clients.append(proto)
    await until(asyncio.gather(*(c.handshake for c in clients)), bench, 10, "the handshakes")
    print("ready", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        return 1
    start = time.perf_counter()
    for c in clients:
        c.send()
    await until(asyncio.sleep(seconds), bench, seconds + 5, "the run")
    bench.stopping = True
    bench.in_flight = sum(1 for c in clients if c.sending)
    if bench.in_flight:
        await until(bench.drained, bench, 30, "the last echoes")
    elapsed = bench.last - start
    lat = sorted(bench.latencies)
    p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
    print("done %d %d %.6f %.3f %.3f" % (bench.messages, bench.messages * size, elapsed, p50, p99), flush=True)
    close = frame_header(8, 2, True) + (1000).to_bytes(2, "big")
    for c in clients:
        c.closing = True
        c.transport.write(close)
    await asyncio.sleep(0.2)
    for c in clients:
        c.transport.close()
    return 0


def main():
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if len(sys.argv) == 3 and sys.argv[1] == "server":
        try:
            asyncio.run(serve(int(sys.argv[2])))
        except KeyboardInterrupt:
            pass
        return 0
    if len(sys.argv) == 7 and sys.argv[1] == "client":
        port, path, size, connections, seconds = sys.argv[2:7]
        try:
            return asyncio.run(client(int(port), path, int(size), int(connections), float(seconds)))
        except (Failure, OSError) as e:
            print("error: %s" % e, file=sys.stderr, flush=True)
            return 1
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
