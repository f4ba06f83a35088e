#!/usr/bin/env python3
"""Judges a key flood run from its samples and totals; writes and prints the JSON summary.

Usage: keyflood_summary.py SAMPLES.tsv OUT.json name=value...
Exits 1 when a check fails (see keyflood.sh).
"""
import csv, json, sys

samples, out = sys.argv[1], sys.argv[2]
v = {k: int(x) for k, x in (a.split("=", 1) for a in sys.argv[3:])}
rows = [r for r in csv.DictReader(open(samples), delimiter="\t") if int(r["tracked"]) >= 0]
max_tracked = max((int(r["tracked"]) for r in rows), default=-1)
full = next((r for r in rows if int(r["tracked"]) >= 0.99 * v["max_clients"]), None)
rss_full = int(full["rss_kib"]) if full else None
growth = round(100.0 * (v["rss_kib_at_end"] - rss_full) / rss_full, 2) if rss_full else None
result = dict(v)
result.update({
    "samples": len(rows), "max_tracked_seen": max_tracked, "rss_kib_when_full": rss_full,
    "seconds_until_full": round(float(full["seconds"]), 1) if full else None,
    "rss_growth_after_full_percent": growth,
    "max_rss_kib_after_full": max((int(r["rss_kib"]) for r in rows[rows.index(full):]), default=None) if full else None,
})
result["pass"] = (0 <= max_tracked <= v["max_clients"] and v["tracked_at_end"] <= v["max_clients"]
                  and growth is not None and abs(growth) <= v["rss_tolerance"]
                  and v["blocked_before"] == v["blocked_clients"] and v["blocked_after"] == v["blocked_clients"]
                  and v["keys_sent"] >= v["keys"] and v["status_429"] == 0 and v["status_other"] == 0
                  and v["socket_errors"] == 0)
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result, indent=1))
sys.exit(0 if result["pass"] else 1)
