#!/usr/bin/env python3
"""Storm clients for bench/storm/restart.sh: CLIENTS clients, each with its own expired token,
polling GET /api/v1/device/expired-<i> every INTERVAL seconds on one keep-alive connection,
ignoring Retry-After, reconnecting whenever the connection is refused or closed (as a client of
a restarting server does). Runs until SIGTERM or SIGINT, then prints a JSON summary: responses
by status, refused connections, broken exchanges.

  restart.py PORT CLIENTS INTERVAL
"""

import asyncio
import json
import signal
import sys

HOST = "127.0.0.1"


async def client(i, port, interval, counts, stop):
    request = ("GET /api/v1/device/expired-%d HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer expired-%d\r\n\r\n" % (i, i)).encode()
    reader = writer = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head[9:12])
            length = 0
            closing = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"connection" and b"close" in value.lower():
                    closing = True
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            counts[str(status)] = counts.get(str(status), 0) + 1
            if closing:
                writer.close()
                writer = None
        except ConnectionRefusedError:
            counts["refused"] = counts.get("refused", 0) + 1
            writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            counts["broken"] = counts.get("broken", 0) + 1
            if writer is not None:
                writer.close()
            writer = None
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass
    if writer is not None:
        writer.close()


async def main():
    port, clients, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, stop.set)
    counts = {}
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(client(i, port, interval, counts, stop)))
        await asyncio.sleep(interval / clients)  # spread the first requests over one interval
    await asyncio.gather(*tasks)
    print(json.dumps(counts, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
