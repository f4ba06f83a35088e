#!/usr/bin/env python3
"""The key flood's pre-flood clients: COUNT clients behind the trusted proxy 127.0.0.1, each named
by X-Forwarded-For 198.18.x.y and sending a request the demo API answers 401.

Usage: blocked_clients.py PORT COUNT block|check
  block: each client's failing request (counts 401s), then one more each (counts 429s)
  check: one request each (counts 429s)
Prints "401s 429s".
"""
import http.client, sys

port, count, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def status(i):
    conn.request("GET", "/api/v1/device/expired-pre", headers={"X-Forwarded-For": f"198.18.{i // 256}.{i % 256}"})
    response = conn.getresponse()
    response.read()
    return response.status


first = [status(i) for i in range(count)] if mode == "block" else []
then = [status(i) for i in range(count)]
print(sum(s == 401 for s in first), sum(s == 429 for s in then))
