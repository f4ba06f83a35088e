#!/usr/bin/env python3
"""Stalls of a proxy's event loop, seen by a bystander, for bench/loop.sh (asyncio, uvloop when installed).

    stall.py upstream PORT
    stall.py bystander PORT SECONDS FILE
    stall.py load PORT PARKED BURST > PHASES
    stall.py summarize PHASES FILE

upstream: HTTP/1.1 keep-alive on 127.0.0.1:PORT; GET /slow is answered after 300 ms (so that
concurrent ones need an upstream connection each), anything else at once; 2-byte bodies.

bystander, through the proxy on 127.0.0.1:PORT: GET /fast on one keep-alive connection, the next
2 ms after each answer, for SECONDS; each round trip is written to FILE with the time it ended.
It runs as a process of its own, so that the load's own work does not delay it.

load, through the proxy, while the bystander runs:
  1. park: PARKED connections send GET /slow together, so the proxy opens PARKED upstream
     connections and parks them when the answers are in; the client then waits 8 s, during which
     the proxy's idle sweep (4 s) closes the parked connections all in the same period;
  2. burst: BURST new connections open as fast as they can, each sending one GET /fast and
     staying open (keep-alive) until every one has its answer.
It prints each phase's window (for park: from the last answer to the end of the 8 s; for burst:
from the first connect to 0.5 s after the last answer) in monotonic seconds, which summarize
turns into "PHASE max_ms p99_ms p50_ms samples" of the bystander's round trips inside it. A
failed request exits 1. Every address is
127.0.0.1; every loop is bounded in time and count.
"""
import asyncio
import sys
import time

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass

HOST = "127.0.0.1"


async def upstream(port):
    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET /slow"):
                    await asyncio.sleep(0.3)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


async def exchange(reader, writer, path):
    writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("answer: %r" % head[:40])
    await reader.readexactly(2)


def summary(name, samples):
    if not samples:
        return "%s 0 0 0 0" % name
    s = sorted(samples)
    return "%s %.2f %.2f %.2f %d" % (name, s[-1], s[int(0.99 * (len(s) - 1))], s[len(s) // 2], len(s))


async def bystander(port, seconds, out):
    """One keep-alive connection, a request 2 ms after each answer, for SECONDS: one line per
    answer, "MONOTONIC_TIME ROUND_TRIP_MS", into OUT."""
    reader, writer = await asyncio.open_connection(HOST, port)
    deadline = time.monotonic() + seconds
    with open(out, "w", buffering=1) as f:  # a line at a time: the script stops it when the load ends
        while time.monotonic() < deadline:
            start = time.monotonic()
            await exchange(reader, writer, b"/fast")
            now = time.monotonic()
            f.write("%.6f %.3f\n" % (now, (now - start) * 1000))
            await asyncio.sleep(0.002)
    writer.close()


async def load(port, parked, burst):
    """The two phases; prints "PHASE START END" (monotonic seconds) for each."""
    conns = [await asyncio.open_connection(HOST, port) for _ in range(parked)]
    await asyncio.gather(*(exchange(r, w, b"/slow") for r, w in conns))
    t0 = time.monotonic()
    for _, w in conns:
        w.close()
    await asyncio.sleep(8)
    print("park %.6f %.6f" % (t0, time.monotonic()), flush=True)

    async def one():
        r, w = await asyncio.open_connection(HOST, port)
        await exchange(r, w, b"/fast")
        return w

    t0 = time.monotonic()
    writers = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(burst))), 60)
    await asyncio.sleep(0.5)
    print("burst %.6f %.6f" % (t0, time.monotonic()), flush=True)
    for w in writers:
        w.close()


def summarize(phases, samples):
    """One line per phase of PHASES: the bystander's round trips (SAMPLES) inside its window."""
    points = [tuple(map(float, line.split())) for line in open(samples) if line.strip()]
    for line in open(phases):
        name, t0, t1 = line.split()
        print(summary(name, [ms for t, ms in points if float(t0) <= t <= float(t1)]))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "upstream":
        asyncio.run(upstream(int(sys.argv[2])))
    elif len(sys.argv) == 5 and sys.argv[1] in ("load", "bystander"):
        try:
            if sys.argv[1] == "load":
                asyncio.run(load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
            else:
                asyncio.run(bystander(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
        except Exception as error:  # a failed request: say it and exit 1
            print("error: %s" % error, file=sys.stderr)
            sys.exit(1)
    elif len(sys.argv) == 4 and sys.argv[1] == "summarize":
        summarize(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
