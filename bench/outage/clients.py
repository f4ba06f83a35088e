#!/usr/bin/env python3
"""An upstream outage seen by polling clients: how long after the upstream is back each client
gets its first 200.

    clients.py --bin BREAKWATER --proxy PORT --upstream PORT [--clients 250] [--outage 30]

Starts `BREAKWATER demo-api` on 127.0.0.1:UPSTREAM, then CLIENTS clients, each with its own
token and keep-alive connection to the proxy on 127.0.0.1:PROXY, each polling
/api/v1/device/valid-N once a second and honouring Retry-After on a 429 or 503 (as a well-behaved
client does). After WARMUP seconds the demo API is killed; OUTAGE seconds later it is started
again on the same port. Each client's delay is the time from that restart (the port accepting)
to its first 200. Prints one JSON line: the delays' median, p90 and max, how many clients got a
200 within the bound, and what the clients saw while the upstream was down.

Bounded: every client stops at its first 200 after recovery, and all stop RECOVERY_LIMIT seconds
after the restart whatever happens.
"""
import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


def start_upstream(binary, port):
    process = subprocess.Popen([binary, "demo-api", "--listen", f"{HOST}:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.01)
    process.kill()
    sys.exit("the demo API did not start")


async def read_response(reader):
    """Status, headers (lower-case names) of one response; its Content-Length body is read and dropped."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return status, headers


class Client:
    def __init__(self, index, port):
        self.index = index
        self.port = port
        self.reader = self.writer = None
        self.first_ok_after_recovery = None
        self.seen = {}

    async def request(self):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        token = f"valid-{self.index}"
        self.writer.write(f"GET /api/v1/device/{token} HTTP/1.1\r\nHost: api\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n".encode())
        try:
            status, headers = await asyncio.wait_for(read_response(self.reader), 35)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
            self.close()
            return 0, {}
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def run(self, state, stop_at):
        await asyncio.sleep(random.random())   # clients do not start in step
        while time.monotonic() < stop_at:
            status, headers = await self.request()
            now = time.monotonic()
            if state["down"] is not None and state["recovered"] is None:
                self.seen[status] = self.seen.get(status, 0) + 1
            if status == 200 and state["recovered"] is not None and now >= state["recovered"]:
                self.first_ok_after_recovery = now - state["recovered"]
                break
            wait = 1.0
            if status in (429, 503) and headers.get("retry-after", "").isdigit():
                wait = max(wait, float(headers["retry-after"]))
            await asyncio.sleep(wait)
        self.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--proxy", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--clients", type=int, default=250)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--outage", type=float, default=30)
    parser.add_argument("--recovery-limit", type=float, default=120)
    args = parser.parse_args()

    upstream = start_upstream(args.bin, args.upstream)
    state = {"down": None, "recovered": None}
    stop_at = time.monotonic() + args.warmup + args.outage + args.recovery_limit + 10
    clients = [Client(i, args.proxy) for i in range(args.clients)]
    tasks = [asyncio.create_task(c.run(state, stop_at)) for c in clients]
    try:
        await asyncio.sleep(args.warmup)
        upstream.kill()
        upstream.wait()
        state["down"] = time.monotonic()
        await asyncio.sleep(args.outage)
        upstream = await asyncio.get_running_loop().run_in_executor(None, start_upstream, args.bin, args.upstream)
        state["recovered"] = time.monotonic()
        await asyncio.wait(tasks, timeout=args.recovery_limit)
    finally:
        for t in tasks:
            t.cancel()
        upstream.kill()
        upstream.wait()
    delays = sorted(c.first_ok_after_recovery for c in clients if c.first_ok_after_recovery is not None)
    seen = {}
    for c in clients:
        for status, n in c.seen.items():
            seen[str(status)] = seen.get(str(status), 0) + n
    result = {
        "clients": args.clients,
        "recovered_clients": len(delays),
        "outage_s": args.outage,
        "median_s": round(statistics.median(delays), 2) if delays else None,
        "p90_s": round(delays[int(0.9 * (len(delays) - 1))], 2) if delays else None,
        "max_s": round(delays[-1], 2) if delays else None,
        "statuses_during_outage": dict(sorted(seen.items())),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
