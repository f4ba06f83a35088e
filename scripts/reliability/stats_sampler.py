#!/usr/bin/env python3
"""Samples Breakwater's /stats and the process's resident memory every INTERVAL seconds, at most
COUNT times (or until killed), as tab-separated lines: seconds, tracked, blocked, evictions, rss_kib.

Usage: stats_sampler.py ADMIN_PORT PID INTERVAL COUNT
"""
import json, sys, time, urllib.request

admin, pid, interval, count = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print("seconds\ttracked\tblocked\tevictions\trss_kib", flush=True)
start = time.time()
for _ in range(count):
    try:
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5))
        row = (stats["tracked_clients"], stats["blocked_clients"], stats["evictions"])
    except Exception:
        row = (-1, -1, -1)
    try:
        rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        rss = -1
    print(f"{time.time() - start:.2f}\t{row[0]}\t{row[1]}\t{row[2]}\t{rss}", flush=True)
    time.sleep(interval)
