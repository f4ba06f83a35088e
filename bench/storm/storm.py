#!/usr/bin/env python3
"""Fleet's expired-token storm, compressed in time, against the demo API directly or through Breakwater.

Fleet Desktop polled /device/<token> every 10 s with an expired token and no backoff; 250 hosts
sent 25 req/s and took the database down. With backoff capped at 30 min they sent ~0.14 req/s.
Here the clock runs 100x faster: every client polls every 100 ms and Breakwater's cap is 30 s.

Subcommands (bench/storm/run.sh drives them):

  storm.py run ...                  one run: load processes + the upstream counter poller,
                                    writes a compact JSON summary of the run
  storm.py worker ...               one load process (started by `run`), JSON on stdout
  storm.py attach-metrics RUN FILE  add Breakwater's /metrics counters to a run summary
  storm.py report DIR               the per-second CSV, the per-client CSV and summary.md
                                    from the run summaries in DIR

Only the Python standard library: asyncio with raw StreamReader/StreamWriter, one keep-alive
connection per client, HTTP/1.1 parsed by hand.
"""

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# small helpers


def cpu_seconds(pid):
    """utime + stime of PID (all its threads), in seconds; None when it cannot be read."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def die_with_parent():
    """Linux: deliver SIGTERM to this process when the process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def exit_on_sigterm():
    """SIGTERM raises SystemExit, so `finally` blocks run and child processes are stopped."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo = math.floor(k)
    hi = math.ceil(k)
    if lo == hi:
        return sorted_values[lo]
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def timeout_ctx(seconds):
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout(seconds)
    return _NoTimeout()


class _NoTimeout:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 over a raw asyncio stream


class Response:
    __slots__ = ("status", "retry_after", "close", "body")

    def __init__(self, status, retry_after, close, body):
        self.status = status
        self.retry_after = retry_after
        self.close = close
        self.body = body


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1."):
        raise ValueError("bad status line %r" % status_line[:60])
    status = int(status_line[9:12])
    length = None
    chunked = False
    close = status_line.startswith(b"HTTP/1.0")
    retry_after = None
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            v = value.lower()
            if b"close" in v:
                close = True
            elif b"keep-alive" in v:
                close = False
        elif name == b"retry-after":
            retry_after = value.decode("latin-1")
    if chunked:
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length) if length else b""
    else:
        body = await reader.read()
        close = True
    return Response(status, retry_after, close, body)


# ---------------------------------------------------------------------------------------------
# one load process: a slice of the clients


class Client:
    def __init__(self, index, target_host, target_port):
        self.index = index
        token = "expired-%d" % index
        self.request = (
            "GET /api/v1/device/%s HTTP/1.1\r\n"
            "Host: %s:%d\r\n"
            "Authorization: Bearer %s\r\n"
            "User-Agent: breakwater-storm\r\n"
            "Accept: */*\r\n"
            "\r\n" % (token, target_host, target_port, token)
        ).encode()
        self.reader = None
        self.writer = None
        self.sent = 0
        self.statuses = {}
        self.hits = []  # seconds since t0 of the answers that came from the upstream (the 401s)
        self.n429 = 0
        self.per_window_429 = []  # 429s between consecutive upstream hits (and after the last)
        self.current_window_429 = 0
        self.bad_retry_after = 0
        self.reasons = {}
        self.errors = {}
        self.reconnects = 0
        self.late_ticks = 0
        self.max_lateness = 0.0
        self.honour_sleeps = 0


async def connect(client, host, port):
    client.reader, client.writer = await asyncio.open_connection(host, port)
    sock = client.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def close_client(client):
    if client.writer is not None:
        try:
            client.writer.close()
        except Exception:
            pass
    client.reader = client.writer = None


async def client_loop(client, cfg, mono0, seconds_offered, seconds_status, latencies):
    """Poll every `interval` from t0 + stagger until t0 + duration, on one keep-alive connection."""
    interval = cfg["interval"]
    duration = cfg["duration"]
    honour = cfg["mode"] == "honour"
    stagger = (client.index % cfg["clients"]) * interval / cfg["clients"]
    next_at = mono0 + stagger
    end = mono0 + duration
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        if next_at >= end:
            break
        if next_at > now:
            await asyncio.sleep(next_at - now)
            now = loop.time()
        else:
            lateness = now - next_at
            if lateness > client.max_lateness:
                client.max_lateness = lateness
            if lateness > interval:
                client.late_ticks += 1
        if now >= end:
            break
        sent_at = now
        second = int(sent_at - mono0)
        try:
            if client.writer is None:
                if client.sent:
                    client.reconnects += 1
                await connect(client, cfg["host"], cfg["port"])
            async with timeout_ctx(REQUEST_TIMEOUT):
                client.writer.write(client.request)
                resp = await read_response(client.reader)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure is counted, none stops the run
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            name = type(exc).__name__
            client.errors[name] = client.errors.get(name, 0) + 1
            client.sent += 1
            if 0 <= second < len(seconds_offered):
                seconds_offered[second] += 1
                seconds_status.setdefault("error", [0] * len(seconds_offered))[second] += 1
            close_client(client)
            next_at = max(next_at + interval, loop.time())
            continue
        done = loop.time()
        client.sent += 1
        if 0 <= second < len(seconds_offered):
            seconds_offered[second] += 1
        status = resp.status
        key = str(status)
        client.statuses[key] = client.statuses.get(key, 0) + 1
        row = seconds_status.get(key)
        if row is None:
            row = seconds_status[key] = [0] * len(seconds_offered)
        if 0 <= second < len(row):
            row[second] += 1
        lat = latencies.get(key)
        if lat is None:
            lat = latencies[key] = []
        lat.append(done - sent_at)
        if status == 429:
            client.n429 += 1
            client.current_window_429 += 1
            reason = "?"
            for r in (b'"backoff"', b'"probe"', b'"rate"'):
                if r in resp.body:
                    reason = r.decode().strip('"')
                    break
            client.reasons[reason] = client.reasons.get(reason, 0) + 1
            wait = None
            try:
                wait = int(resp.retry_after)
                if wait < 1:
                    raise ValueError
            except (TypeError, ValueError):
                client.bad_retry_after += 1
                wait = None
        else:
            # Any other answer came from the upstream (Breakwater answers only 429s itself;
            # directly against the demo API every answer does).
            client.hits.append(sent_at - mono0)
            client.per_window_429.append(client.current_window_429)
            client.current_window_429 = 0
        if resp.close:
            close_client(client)
        # A ticker: the next tick is one interval after the previous one; ticks missed while a
        # request was slow are dropped (Go's time.Ticker does the same), never sent in a burst.
        next_at += interval
        if next_at < done:
            next_at = done
        if honour and status == 429 and wait is not None:
            # Honour Retry-After: poll again exactly that long after the 429, not before.
            client.honour_sleeps += 1
            next_at = max(next_at, done + wait)
    close_client(client)


async def worker_main(cfg):
    loop = asyncio.get_running_loop()
    # t0 is a wall-clock instant shared by every process of the run; map it onto this loop's clock.
    mono0 = loop.time() + (cfg["t0"] - time.time())
    duration = cfg["duration"]
    nsec = int(math.ceil(duration))
    seconds_offered = [0] * nsec
    seconds_status = {}
    latencies = {}
    clients = [Client(i, cfg["host"], cfg["port"]) for i in range(cfg["first"], cfg["first"] + cfg["count"])]
    # Open every connection before t0, so the run starts with the clients already connected.
    for c in clients:
        try:
            await connect(c, cfg["host"], cfg["port"])
        except OSError as exc:
            c.errors["connect:" + type(exc).__name__] = c.errors.get("connect:" + type(exc).__name__, 0) + 1
    connected_at = loop.time()
    cpu0 = time.process_time()
    await asyncio.gather(*(client_loop(c, cfg, mono0, seconds_offered, seconds_status, latencies) for c in clients))
    cpu = time.process_time() - cpu0
    for c in clients:
        # The window in progress when the run ended counts too.
        c.per_window_429.append(c.current_window_429)
    lat_summary = {}
    for key, values in latencies.items():
        values.sort()
        lat_summary[key] = {
            "count": len(values),
            "p50_ms": round(percentile(values, 0.5) * 1000, 3),
            "p99_ms": round(percentile(values, 0.99) * 1000, 3),
            "max_ms": round(values[-1] * 1000, 3),
        }
    return {
        "first": cfg["first"],
        "count": cfg["count"],
        "connected_before_t0_s": round(mono0 - connected_at, 3),
        "cpu_s": round(cpu, 3),
        "seconds_offered": seconds_offered,
        "seconds_status": seconds_status,
        "latency": lat_summary,
        "clients": [
            {
                "client": c.index,
                "sent": c.sent,
                "statuses": c.statuses,
                "hits": [round(h, 4) for h in c.hits],
                "n429": c.n429,
                "per_window_429": c.per_window_429,
                "bad_retry_after": c.bad_retry_after,
                "reasons": c.reasons,
                "errors": c.errors,
                "reconnects": c.reconnects,
                "late_ticks": c.late_ticks,
                "max_lateness_s": round(c.max_lateness, 4),
                "honour_sleeps": c.honour_sleeps,
            }
            for c in clients
        ],
    }


def cmd_worker(args):
    die_with_parent()
    exit_on_sigterm()
    cfg = json.loads(args.config)
    result = asyncio.run(worker_main(cfg))
    json.dump(result, sys.stdout, separators=(",", ":"))
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# one run: load processes + the poller of the demo API's request counter


async def poll_counter(port, t0, duration, out, watched, cpu_before):
    """GET /demo/requests at t0, t0+1, ..., t0+duration on one keep-alive connection.

    out gets (seconds since t0 when the answer arrived, requests served so far); cpu_before gets
    the CPU time of each watched server process at t0."""
    loop = asyncio.get_running_loop()
    mono0 = loop.time() + (t0 - time.time())
    reader, writer = await asyncio.open_connection(HOST, port)
    request = ("GET /demo/requests HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST, port)).encode()
    try:
        for k in range(int(math.ceil(duration)) + 1):
            # The first read comes 50 ms before t0, when the clients are connected but silent, so
            # the requests of the first second are all counted in it.
            at = mono0 + k if k else mono0 - 0.05
            now = loop.time()
            if at > now:
                await asyncio.sleep(at - now)
            for attempt in range(5):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(HOST, port)
                    async with timeout_ctx(5.0):
                        writer.write(request)
                        resp = await read_response(reader)
                    if resp.close:
                        writer.close()
                        writer = None
                    break
                except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError) as exc:
                    print(
                        "storm: GET /demo/requests on 127.0.0.1:%d failed at t0%+.3fs (attempt %d): %r"
                        % (port, loop.time() - mono0, attempt + 1, exc),
                        file=sys.stderr,
                        flush=True,
                    )
                    if writer is not None:
                        writer.close()
                    writer = None
                    if attempt == 4:
                        raise SystemExit("storm: the demo API's request counter cannot be read; run abandoned")
                    await asyncio.sleep(0.2)
            n = json.loads(resp.body)["requests"]
            out.append((round(loop.time() - mono0, 4), n))
            if k == 0:
                for name, pid in watched.items():
                    cpu_before[name] = cpu_seconds(pid)
    finally:
        if writer is not None:
            writer.close()


def cmd_run(args):
    exit_on_sigterm()
    clients = args.clients
    procs = max(1, min(args.procs, clients))
    host, port = args.target.rsplit(":", 1)
    port = int(port)
    lead = 2.0 + clients / 500.0  # time for the processes to start and connect before t0
    t0 = time.time() + lead
    base = {
        "host": host,
        "port": port,
        "clients": clients,
        "interval": args.interval,
        "duration": args.duration,
        "mode": args.mode,
        "t0": t0,
    }
    children = []
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    first = 0
    load_avg_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    watched = {}
    for item in args.watch_pid:
        name, _, pid = item.partition("=")
        watched[name] = int(pid)
    try:
        for n in per:
            cfg = dict(base, first=first, count=n)
            first += n
            children.append(
                subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "worker", "--config", json.dumps(cfg)],
                    stdout=subprocess.PIPE,
                )
            )
        samples = []
        cpu_before = {}
        asyncio.run(poll_counter(args.counter_port, t0, args.duration, samples, watched, cpu_before))
        server_cpu = {}
        for name, pid in watched.items():
            after = cpu_seconds(pid)
            if after is not None and cpu_before.get(name) is not None:
                server_cpu[name] = round(after - cpu_before[name], 2)
        results = []
        for child in children:
            out, _ = child.communicate(timeout=args.duration + 60)
            if child.returncode != 0:
                raise SystemExit("a load process failed (exit %s)" % child.returncode)
            results.append(json.loads(out))
        # Every client has stopped and has its last answer: the demo API's count, settled.
        settled = []
        asyncio.run(poll_counter(args.counter_port, time.time() + 0.05, 0, settled, {}, {}))
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    summary = summarize_run(args, results, samples, load_avg_before, started)
    summary["server_cpu_s"] = server_cpu
    # Requests the demo API served from t0 until every client had its last answer.
    summary["totals"]["upstream_settled"] = settled[0][1] - samples[0][1]
    write_summary(args.out, summary)
    print_run(summary)


def write_summary(path, summary):
    """JSON with one line per top-level key and one line per client: small and readable in a diff."""
    parts = []
    for key, value in summary.items():
        if key == "per_client":
            text = "[\n  " + ",\n  ".join(json.dumps(c, separators=(",", ":")) for c in value) + "\n ]"
        else:
            text = json.dumps(value, separators=(",", ":"))
        parts.append(" %s: %s" % (json.dumps(key), text))
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")


def summarize_run(args, results, samples, load_avg_before, started):
    duration = args.duration
    nsec = int(math.ceil(duration))
    offered = [0] * nsec
    status_series = {}
    for r in results:
        for i, v in enumerate(r["seconds_offered"]):
            offered[i] += v
        for key, row in r["seconds_status"].items():
            dst = status_series.setdefault(key, [0] * nsec)
            for i, v in enumerate(row):
                dst[i] += v
    counts = [n for _, n in samples]
    upstream = [counts[k + 1] - counts[k] for k in range(len(counts) - 1)]
    poll_skew = max((abs(t - (k if k else -0.05)) for k, (t, _) in enumerate(samples)), default=0.0)
    # The last 60 s (the whole run when it is shorter): the steady state, every client at the cap.
    steady = min(60, nsec)
    steady_from = nsec - steady
    interval = args.interval
    clients = []
    merged_latency = {}
    for r in results:
        for key, lat in r["latency"].items():
            merged_latency.setdefault(key, []).append(lat)
        for c in r["clients"]:
            hits = c["hits"]
            gaps = [b - a for a, b in zip(hits, hits[1:])]
            # Steady-state gaps: every gap that ends inside the last 60 s, plus the gap still open
            # when the run ended (a lower bound of the next gap).
            steady_gaps = [b - a for a, b in zip(hits, hits[1:]) if b >= steady_from]
            if hits:
                trailing = duration - hits[-1]
                steady_gaps.append(trailing)
            else:
                steady_gaps.append(float(duration))
            per_window = c["per_window_429"]
            clients.append(
                {
                    "client": c["client"],
                    "sent": c["sent"],
                    "upstream_hits": len(hits),
                    "upstream_hits_last60": sum(1 for h in hits if h >= steady_from),
                    "n429": c["n429"],
                    "max_gap_s": round(max(gaps), 3) if gaps else None,
                    "max_gap_steady_s": round(max(steady_gaps), 3),
                    "max_429_per_window": max(per_window) if per_window else 0,
                    # Windows after the first upstream hit, closed by the next hit: the per-window
                    # 429 count that the honour mode is judged on.
                    "max_429_per_closed_window": max(per_window[1:-1]) if len(per_window) > 2 else None,
                    "statuses": c["statuses"],
                    "reasons": c["reasons"],
                    "bad_retry_after": c["bad_retry_after"],
                    "errors": c["errors"],
                    "reconnects": c["reconnects"],
                    "late_ticks": c["late_ticks"],
                    "max_lateness_s": c["max_lateness_s"],
                    "hits": hits if len(hits) <= 200 else None,
                }
            )
    clients.sort(key=lambda c: c["client"])
    statuses = {}
    errors = {}
    reasons = {}
    for c in clients:
        for k, v in c["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in c["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in c["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    latency = {}
    for key, parts in merged_latency.items():
        # Per process percentiles; the run reports the worst process (a conservative merge).
        latency[key] = {
            "count": sum(p["count"] for p in parts),
            "p50_ms": max(p["p50_ms"] for p in parts),
            "p99_ms": max(p["p99_ms"] for p in parts),
            "max_ms": max(p["max_ms"] for p in parts),
        }
    target_rate = args.clients / interval
    return {
        "name": args.name,
        "mode": args.mode,
        "via": args.via,
        "clients": args.clients,
        "interval_s": interval,
        "duration_s": duration,
        "processes": len(results),
        "target_offered_rps": target_rate,
        "date": started,
        "commit": args.commit,
        "breakwater_workers": args.workers,
        "load_avg_before": [round(x, 2) for x in load_avg_before],
        "load_cpu_s": [r["cpu_s"] for r in results],
        "poll_max_skew_s": round(poll_skew, 4),
        "counter_samples": samples,
        "seconds": {
            "offered": offered,
            "upstream": upstream,
            "status": status_series,
        },
        "totals": {
            "offered": sum(offered),
            "upstream": sum(upstream),
            "offered_last60": sum(offered[steady_from:]),
            "upstream_last60": sum(upstream[steady_from:]),
            "steady_seconds": steady,
            "statuses": statuses,
            "errors": errors,
            "reasons_429": reasons,
            "bad_retry_after": sum(c["bad_retry_after"] for c in clients),
            "reconnects": sum(c["reconnects"] for c in clients),
            "late_ticks": sum(c["late_ticks"] for c in clients),
            "client_upstream_hits": sum(c["upstream_hits"] for c in clients),
        },
        "latency": latency,
        "per_client": clients,
    }


def print_run(s):
    t = s["totals"]
    d = s["duration_s"]
    print(
        "  %-10s offered %d (%.0f req/s of %.0f target), reached upstream %d (%.2f req/s), statuses %s%s"
        % (
            s["name"],
            t["offered"],
            t["offered"] / d,
            s["target_offered_rps"],
            t["upstream"],
            t["upstream"] / d,
            json.dumps(t["statuses"], sort_keys=True),
            (", errors %s" % json.dumps(t["errors"], sort_keys=True)) if t["errors"] else "",
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------------------------
# Breakwater's own counters, read from its /metrics after a run


def parse_metrics(text, route):
    """The counters of one route and the global gauges from Prometheus text."""
    out = {"requests": {}, "upstream": {}}
    for line in text.splitlines():
        if not line.startswith("breakwater_") and not line.startswith("process_resident_memory_bytes"):
            continue
        if "_bucket{" in line:
            continue
        try:
            name_labels, value = line.rsplit(" ", 1)
            value = float(value)
        except ValueError:
            continue
        name, _, labels = name_labels.partition("{")
        pairs = {}
        for part in labels.rstrip("}").split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                pairs[k] = v.strip('"')
        if pairs.get("route") not in (None, route):
            continue
        if name == "breakwater_requests_total":
            out["requests"][pairs.get("outcome", "?")] = int(value)
        elif name == "breakwater_upstream_responses_total":
            out["upstream"][pairs.get("class", "?")] = int(value)
        elif name == "breakwater_backoff_window_seconds_count":
            out["windows"] = int(value)
        elif name == "breakwater_backoff_window_seconds_sum":
            out["windows_sum_s"] = round(value, 3)
        elif name in ("breakwater_tracked_clients", "breakwater_blocked_clients", "breakwater_evictions_total",
                      "breakwater_upstream_retries_total", "process_resident_memory_bytes"):
            out[name.replace("breakwater_", "")] = int(value)
    return out


def cmd_attach_metrics(args):
    with open(args.run) as f:
        summary = json.load(f)
    try:
        with open(args.metrics) as f:
            text = f.read()
    except OSError as exc:
        text = "unavailable: %s" % exc
    if text.startswith("unavailable"):
        summary["breakwater_metrics"] = {"unavailable": text.strip()}
    else:
        summary["breakwater_metrics"] = parse_metrics(text, args.route)
    write_summary(args.run, summary)


# ---------------------------------------------------------------------------------------------
# report: CSV, per-client CSV, summary.md


def load_run(directory, name):
    path = os.path.join(directory, "run_%s.json" % name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def ratio(a, b):
    if b == 0:
        return float("inf") if a else float("nan")
    return a / b


def fmt_ratio(x):
    if x != x:
        return "n/a"
    if x == float("inf"):
        return "inf (nothing reached the upstream)"
    return "%.0fx" % x if x >= 100 else "%.1fx" % x


def fmt_rate(x):
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def cmd_report(args):
    d = args.dir
    direct = load_run(d, "direct")
    bw = load_run(d, "breakwater")
    honour = load_run(d, "honour")
    lines = []
    out = lines.append

    # per-second CSV
    series = [r for r in (direct, bw, honour) if r]
    if not series:
        raise SystemExit("no run summaries in %s" % d)
    nsec = max(len(r["seconds"]["offered"]) for r in series)

    def col(run, key, i):
        if not run:
            return ""
        row = run["seconds"][key] if key != "429" else run["seconds"]["status"].get("429", [])
        return str(row[i]) if i < len(row) else ""

    with open(os.path.join(d, "storm.csv"), "w") as f:
        f.write(
            "second,direct_upstream_rps,breakwater_upstream_rps,offered_rps,"
            "direct_offered_rps,breakwater_429_rps,honour_upstream_rps,honour_offered_rps,honour_429_rps\n"
        )
        for i in range(nsec):
            f.write(
                ",".join(
                    [
                        str(i),
                        col(direct, "upstream", i),
                        col(bw, "upstream", i),
                        col(bw, "offered", i),
                        col(direct, "offered", i),
                        col(bw, "429", i),
                        col(honour, "upstream", i),
                        col(honour, "offered", i),
                        col(honour, "429", i),
                    ]
                )
                + "\n"
            )

    # per-client CSV
    with open(os.path.join(d, "clients.csv"), "w") as f:
        f.write("run,client,sent,upstream_hits,upstream_hits_last60,n429,max_gap_s,max_gap_steady_s,max_429_per_window\n")
        for r in series:
            for c in r["per_client"]:
                f.write(
                    "%s,%d,%d,%d,%d,%d,%s,%s,%d\n"
                    % (
                        r["name"],
                        c["client"],
                        c["sent"],
                        c["upstream_hits"],
                        c["upstream_hits_last60"],
                        c["n429"],
                        "" if c["max_gap_s"] is None else "%.3f" % c["max_gap_s"],
                        "%.3f" % c["max_gap_steady_s"],
                        c["max_429_per_window"],
                    )
                )

    out("# Expired-token storm: Fleet's incident, compressed 100x in time")
    out("")
    out(
        "Fleet Desktop polled `/device/<token>` every 10 s with an expired token and no backoff: "
        "250 hosts sent 25 req/s and took a database down; with backoff capped at 30 min they sent "
        "~0.14 req/s (180x less). Here every interval is 100x shorter: 250 clients, each with its own "
        "expired token (`Authorization: Bearer expired-<i>`), each polling `GET /api/v1/device/expired-<i>` "
        "every 100 ms on its own keep-alive connection, and Breakwater's route `device` "
        "(key `[\"header:Authorization\", \"route\"]`, backoff base 1s, factor 2, max 30s, jitter 0.2) "
        "in front of `breakwater demo-api`. Requests that reach the upstream are counted by the demo "
        "API itself (`GET /demo/requests`, polled once a second; a fresh demo API per run)."
    )
    out("")
    out(
        "Regenerate: `bench/storm/run.sh` (direct, then through Breakwater: about 4.5 minutes once built), "
        "`MODE=honour bench/storm/run.sh` (about 2.5 minutes) or `MODE=all bench/storm/run.sh` (all three runs, "
        "about 6.5 minutes, as for the numbers below)."
    )
    out("")
    for r in series:
        out(
            "- run `%s`: %s, %s, %d clients, %d ms interval, %g s, %d load processes, "
            "Breakwater workers: %s, commit %s, load average before %s"
            % (
                r["name"],
                r["date"],
                r["via"],
                r["clients"],
                round(r["interval_s"] * 1000),
                r["duration_s"],
                r["processes"],
                r["breakwater_workers"] if r["via"] != "direct" else "-",
                r["commit"],
                " / ".join(str(x) for x in r["load_avg_before"]),
            )
        )
    out("")

    verdicts = []
    if direct and bw:
        dt, bt = direct["totals"], bw["totals"]
        dd, bd = direct["duration_s"], bw["duration_s"]
        ds, bs = dt["steady_seconds"], bt["steady_seconds"]
        rows = [
            ("whole run (%g s)" % bd, dt["offered"] / dd, dt["upstream"] / dd, bt["offered"] / bd, bt["upstream"] / bd,
             bt["offered"], bt["upstream"]),
            ("last %d s" % bs, dt["offered_last60"] / ds, dt["upstream_last60"] / ds, bt["offered_last60"] / bs,
             bt["upstream_last60"] / bs, bt["offered_last60"], bt["upstream_last60"]),
        ]
        out("## Ignoring Retry-After (the worst case)")
        out("")
        out(
            "| span | direct: offered req/s | direct: upstream req/s | via Breakwater: offered req/s "
            "| via Breakwater: upstream req/s | offered / reached (via Breakwater) | direct upstream / via Breakwater upstream |"
        )
        out("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for span, d_off, d_up, b_off, b_up, b_off_n, b_up_n in rows:
            out(
                "| %s | %s | %s | %s | %s | %s (%d / %d) | %s |"
                % (
                    span,
                    fmt_rate(d_off),
                    fmt_rate(d_up),
                    fmt_rate(b_off),
                    fmt_rate(b_up),
                    fmt_ratio(ratio(b_off_n, b_up_n)),
                    b_off_n,
                    b_up_n,
                    fmt_ratio(ratio(d_up, b_up)),
                )
            )
        out("")
        out(
            "Totals: direct, %d requests offered, %d reached the upstream; via Breakwater, %d offered, "
            "%d reached the upstream, %d answered 429 by Breakwater."
            % (dt["offered"], dt["upstream"], bt["offered"], bt["upstream"], bt["statuses"].get("429", 0))
        )
        out("")
        steady_red = ratio(dt["upstream_last60"] / ds, bt["upstream_last60"] / bs)
        steady_red2 = ratio(bt["offered_last60"], bt["upstream_last60"])
        ok = steady_red >= 180 and steady_red2 >= 180
        verdicts.append(
            "last-%d-s reduction %s (direct/Breakwater upstream rate) and %s (offered/reached): %s (target >= 180x, Fleet's figure)"
            % (bs, fmt_ratio(steady_red), fmt_ratio(steady_red2), "PASS" if ok else "FAIL")
        )
        out(
            "Fleet, for scale: 25 req/s -> ~0.14 req/s for 250 hosts, 180x. Here the last %d s: %s req/s -> %s req/s "
            "upstream, %s." % (bs, fmt_rate(dt["upstream_last60"] / ds), fmt_rate(bt["upstream_last60"] / bs), fmt_ratio(steady_red))
        )
        out("")
        # The clients start in step, so their probes still come in waves in the last 60 s and the
        # count in that span depends on where the waves fall. The mean gap at the cap gives the
        # long-run rate, independent of the phase.
        cap_gaps = [
            b - a
            for c in bw["per_client"]
            if c.get("hits")
            for a, b in zip(c["hits"], c["hits"][1:])
            if b >= bd - bs
        ]
        if cap_gaps:
            mean_gap = sum(cap_gaps) / len(cap_gaps)
            long_run = bw["clients"] / mean_gap
            out(
                "The clients start in step, so their probes still arrive in waves (see the chart) and a 60 s span "
                "holds 2 or 3 probes per client depending on where the waves fall. The gaps between one client's "
                "probes that end in the last %d s (%d gaps, all at the cap) are %.2f s on average (min %.2f, max %.2f); "
                "in the long run that is %d / %.2f s = %s req/s reaching the upstream, %s less than direct."
                % (bs, len(cap_gaps), mean_gap, min(cap_gaps), max(cap_gaps), bw["clients"], mean_gap,
                   fmt_rate(long_run), fmt_ratio(ratio(dt["upstream_last60"] / ds, long_run)))
            )
            out("")
        out("![upstream requests per second, direct vs through Breakwater](storm.png)")
        out("")

    for r in [x for x in (bw, honour) if x]:
        out("## Per-client probing, run `%s`" % r["name"])
        out("")
        cl = r["per_client"]
        limit = 30.0 + r["interval_s"]
        steady_max = max(c["max_gap_steady_s"] for c in cl)
        whole = [c["max_gap_s"] for c in cl if c["max_gap_s"] is not None]
        whole_max = max(whole) if whole else None
        worst = max(cl, key=lambda c: c["max_gap_steady_s"])
        hits60 = sorted(c["upstream_hits_last60"] for c in cl)
        never = sum(1 for c in cl if c["upstream_hits"] == 0)
        slack = 0.1
        over = sum(1 for c in cl if c["max_gap_steady_s"] > limit)
        out(
            "- max gap between one client's upstream hits (probes), last %d s, including the gap still open at the end: "
            "**%.3f s** (client %d); bound 30 s + one %d ms poll interval = %.1f s, plus %.0f ms allowed for the "
            "round trips and event-loop delays on this shared 2-core machine; clients whose max gap is above %.1f s: %d"
            % (r["totals"]["steady_seconds"], steady_max, worst["client"], round(r["interval_s"] * 1000), limit,
               slack * 1000, limit, over)
        )
        if r["mode"] == "honour":
            out(
                "- a client that honours Retry-After polls once more one interval after its probe, gets a 429 whose "
                "Retry-After is the rest of the window rounded up to whole seconds, and sleeps exactly that long: its gap "
                "is one interval + up to 30 s + the round trips, hence the gaps just above 30.1 s"
            )
        if whole_max is not None:
            out("- max gap over the whole run: %.3f s" % whole_max)
        out(
            "- upstream hits per client in the last %d s: min %d, median %d, max %d; clients never reaching the upstream: %d"
            % (r["totals"]["steady_seconds"], hits60[0], hits60[len(hits60) // 2], hits60[-1], never)
        )
        ok = steady_max <= limit + slack and never == 0
        verdicts.append(
            "run %s: every client still probes at least once per 30 s (+ poll interval): max steady gap %.3f s: %s"
            % (r["name"], steady_max, "PASS" if ok else "FAIL")
        )
        out("")

    if honour:
        ht = honour["totals"]
        hd = honour["duration_s"]
        cl = honour["per_client"]
        max_w = max(c["max_429_per_window"] for c in cl)
        closed = [c["max_429_per_closed_window"] for c in cl if c["max_429_per_closed_window"] is not None]
        max_closed = max(closed) if closed else None
        over = sum(1 for c in cl if c["max_429_per_window"] > 1)
        out("## Honouring Retry-After (run `honour`)")
        out("")
        out(
            "Each client sleeps for the 429's `Retry-After` before it polls again. A window is the span between "
            "two upstream hits (401s) of one client; the 429s each client got in each window are counted."
        )
        out("")
        out("| span | offered req/s | upstream req/s | 429 total | max 429s per client per window | clients with > 1 |")
        out("| --- | ---: | ---: | ---: | ---: | ---: |")
        out(
            "| whole run (%g s) | %s | %s | %d | %d | %d |"
            % (hd, fmt_rate(ht["offered"] / hd), fmt_rate(ht["upstream"] / hd), ht["statuses"].get("429", 0), max_w, over)
        )
        hs = ht["steady_seconds"]
        out(
            "| last %d s | %s | %s | | | |"
            % (hs, fmt_rate(ht["offered_last60"] / hs), fmt_rate(ht["upstream_last60"] / hs))
        )
        out("")
        if direct:
            out(
                "Against the direct run's upstream rate, the last %d s: %s less."
                % (hs, fmt_ratio(ratio(direct["totals"]["upstream_last60"] / direct["totals"]["steady_seconds"], ht["upstream_last60"] / hs)))
            )
            out("")
        verdicts.append(
            "honour: max 429s per client per window %d (closed windows: %s): %s"
            % (max_w, max_closed, "PASS" if max_w <= 1 else "FAIL")
        )

    out("## Load generator and anomalies")
    out("")
    out("| run | offered req/s achieved | target | load-generator CPU s (per process) | server CPU s | late ticks | reconnects | errors | statuses | 429 reasons | bad Retry-After | latency p50 / p99 ms | demo API count vs client-seen upstream answers | poll skew s |")
    out("| --- | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- | ---: | --- | --- | ---: |")
    for r in series:
        t = r["totals"]
        lat = "; ".join(
            "%s: %.2f / %.2f" % (k, v["p50_ms"], v["p99_ms"]) for k, v in sorted(r["latency"].items())
        )
        achieved = t["offered"] / r["duration_s"]
        out(
            "| %s | %.0f | %s | %s | %s | %d | %d | %s | %s | %s | %d | %s | %d vs %d | %.3f |"
            % (
                r["name"],
                achieved,
                "%.0f" % r["target_offered_rps"] if r["mode"] == "ignore" else "- (honours Retry-After)",
                " + ".join("%.1f" % x for x in r["load_cpu_s"]),
                ", ".join("%s %.1f" % kv for kv in sorted(r.get("server_cpu_s", {}).items())) or "-",
                t["late_ticks"],
                t["reconnects"],
                json.dumps(t["errors"], sort_keys=True) if t["errors"] else "none",
                json.dumps(t["statuses"], sort_keys=True),
                json.dumps(t["reasons_429"], sort_keys=True) if t["reasons_429"] else "-",
                t["bad_retry_after"],
                lat,
                t.get("upstream_settled", t["upstream"]),
                t["client_upstream_hits"],
                r["poll_max_skew_s"],
            )
        )
        if r["mode"] == "ignore" and achieved < 0.95 * r["target_offered_rps"]:
            verdicts.append(
                "run %s: the load generator reached only %.0f of %.0f req/s offered (%.0f%%)"
                % (r["name"], achieved, r["target_offered_rps"], 100 * achieved / r["target_offered_rps"])
            )
    out("")
    out(
        "CPU seconds are over the %g s of a run, on a 2-core machine that the load generator, the demo API "
        "and Breakwater share. " % series[0]["duration_s"] +
        "Late ticks: polls sent more than one interval after their due time (a busy load generator). "
        "The count column compares the requests the demo API served from t0 until the last client had its last "
        "answer with the answers the clients saw coming from it (every non-429); the per-second series run from a "
        "read 50 ms before t0 (the clients connected and silent) to t0 + duration, so their sum can miss the "
        "requests still in flight at the end."
    )
    out("")
    bw_runs = [r for r in series if r["via"] == "breakwater" and "breakwater_metrics" in r]
    if bw_runs:
        out("Breakwater's own counters for the route `device` (its `/metrics` after each run), next to what the clients saw:")
        out("")
        out("| run | forwarded | shielded | probe_wait | rate_limited | rejected | upstream answers by class | windows imposed (mean s) | tracked / blocked clients at the end | evictions | retries | RSS MiB | clients' 429s | demo API count |")
        out("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in bw_runs:
            m = r["breakwater_metrics"]
            if "unavailable" in m:
                out("| %s | %s | | | | | | | | | | | %d | %d |" % (r["name"], m["unavailable"], r["totals"]["statuses"].get("429", 0), r["totals"].get("upstream_settled", r["totals"]["upstream"])))
                continue
            req = m.get("requests", {})
            windows = m.get("windows")
            out(
                "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %d | %d |"
                % (
                    r["name"],
                    req.get("forwarded", "-"),
                    req.get("shielded", "-"),
                    req.get("probe_wait", "-"),
                    req.get("rate_limited", "-"),
                    req.get("rejected", "-"),
                    ", ".join("%s %d" % kv for kv in sorted(m.get("upstream", {}).items()) if kv[1]) or "-",
                    "%d (%.2f)" % (windows, m.get("windows_sum_s", 0) / windows) if windows else "-",
                    m.get("tracked_clients", "-"),
                    m.get("blocked_clients", "-"),
                    m.get("evictions_total", "-"),
                    m.get("upstream_retries_total", "-"),
                    "%.0f" % (m["process_resident_memory_bytes"] / 1048576.0) if "process_resident_memory_bytes" in m else "-",
                    r["totals"]["statuses"].get("429", 0),
                    r["totals"].get("upstream_settled", r["totals"]["upstream"]),
                )
            )
        out("")
    out("## Verdict")
    out("")
    for v in verdicts:
        out("- " + v)
    out("")
    text = "\n".join(lines)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text)
    print(text)


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("worker")
    sp.add_argument("--config", required=True)
    sp = sub.add_parser("run")
    sp.add_argument("--name", required=True)
    sp.add_argument("--via", required=True, help="direct or breakwater (for the summary)")
    sp.add_argument("--target", required=True, help="host:port the clients poll")
    sp.add_argument("--counter-port", type=int, required=True, help="the demo API's port")
    sp.add_argument("--clients", type=int, default=250)
    sp.add_argument("--interval", type=float, default=0.1)
    sp.add_argument("--duration", type=float, default=120)
    sp.add_argument("--procs", type=int, default=2)
    sp.add_argument("--mode", choices=["ignore", "honour"], default="ignore")
    sp.add_argument("--workers", default="-")
    sp.add_argument("--commit", default="unknown")
    sp.add_argument("--watch-pid", action="append", default=[], metavar="NAME=PID",
                    help="report the CPU time this server process used during the run")
    sp.add_argument("--out", required=True)
    sp = sub.add_parser("attach-metrics")
    sp.add_argument("run", help="a run summary written by `run`")
    sp.add_argument("metrics", help="Breakwater's /metrics text saved after the run")
    sp.add_argument("--route", default="device")
    sp = sub.add_parser("report")
    sp.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "worker":
        cmd_worker(args)
    elif args.cmd == "run":
        cmd_run(args)
    elif args.cmd == "attach-metrics":
        cmd_attach_metrics(args)
    elif args.cmd == "report":
        cmd_report(args)


if __name__ == "__main__":
    main()
