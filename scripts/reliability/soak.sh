#!/usr/bin/env bash
# Soak: the release binary in front of the demo API (its own process), loaded by wrk with
# CONNECTIONS (default 256) keep-alive connections for DURATION seconds (default 60) after a
# WARMUP (default 10 s). Passes when
#   - every response is the expected 200 and wrk saw no socket error or timeout,
#   - resident memory at the end is within RSS_TOLERANCE % (default 10) of the value after warm-up,
#   - open file descriptors return to the count before the load within 30 s of its end (idle
#     upstream connections are closed after 4 s).
# Prints a summary and writes out/soak.json; exits 1 when a check fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-60}
WARMUP=${WARMUP:-10}
CONNECTIONS=${CONNECTIONS:-256}
THREADS=${THREADS:-2}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}

setup_load_run soak
cat >"$work/breakwater.conf" <<EOF
[server]
listen = "$BENCH_HOST:$port"
[admin]
listen = "$BENCH_HOST:$admin"
[upstream]
servers = ["$BENCH_HOST:$api_port"]
EOF
start_breakwater "$work/breakwater.conf" "$port" "$OUT/soak-breakwater.log"
pid=$STARTED_PID
url="http://$BENCH_HOST:$port/api/v1/device/valid-soak"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || bench_die "the soak URL does not answer 200"

fds_before=$(settled_fds "$pid")
rss_before=$(rss_kib "$pid")
bench_log "warm-up: ${WARMUP}s at $CONNECTIONS connections"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$RELIABILITY_DIR/wrk-summary.lua" "$url" | tail -n 1 >"$work/warmup.json"
rss_warm=$(rss_kib "$pid")

bench_log "soak: ${DURATION}s at $CONNECTIONS connections"
: >"$OUT/soak-rss.tsv"
(
    for ((t = 0; t <= DURATION + 2; t += 5)); do
        printf '%s\t%s\t%s\n' "$t" "$(rss_kib "$pid")" "$(fd_count "$pid")" >>"$OUT/soak-rss.tsv"
        sleep 5
    done
) &
sampler=$!
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$RELIABILITY_DIR/wrk-summary.lua" "$url" >"$work/soak.out"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
rss_end=$(rss_kib "$pid")
tail -n 1 "$work/soak.out" >"$work/soak.json"
read -r fds_after fds_seconds < <(fds_return "$pid" "$fds_before" 30)
kill -0 "$pid" 2>/dev/null || bench_die "breakwater died during the soak (see $OUT/soak-breakwater.log)"

python3 - "$work/warmup.json" "$work/soak.json" "$rss_before" "$rss_warm" "$rss_end" "$fds_before" "$fds_after" \
    "$RSS_TOLERANCE" "$CONNECTIONS" "$DURATION" "$OUT/soak.json" "$fds_seconds" <<'PY'
import json, sys
warm, soak = (json.load(open(p)) for p in sys.argv[1:3])
rss_before, rss_warm, rss_end, fds_before, fds_after = map(int, sys.argv[3:8])
tolerance, connections, duration, out = float(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10]), sys.argv[11]
fds_seconds = int(sys.argv[12])
errors = sum(soak[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
growth = 100.0 * (rss_end - rss_warm) / rss_warm
result = {
    "connections": connections, "seconds": soak["seconds"], "requests": soak["requests"],
    "requests_per_second": round(soak["requests"] / soak["seconds"]), "unexpected_statuses": soak["non_2xx_3xx"],
    "socket_errors": errors, "p50_ms": soak["p50_ms"], "p99_ms": soak["p99_ms"], "max_ms": soak["max_ms"],
    "rss_kib_at_start": rss_before, "rss_kib_after_warmup": rss_warm, "rss_kib_at_end": rss_end,
    "rss_growth_percent": round(growth, 2), "fds_before": fds_before, "fds_after": fds_after, "seconds_until_fds_back": fds_seconds,
    "warmup_requests": warm["requests"],
}
result["pass"] = soak["non_2xx_3xx"] == 0 and errors == 0 and abs(growth) <= tolerance and fds_after <= fds_before
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result, indent=1))
sys.exit(0 if result["pass"] else 1)
PY
