#!/usr/bin/env bash
# Fleet's expired-token storm, compressed 100x in time, directly against the demo API and then
# through Breakwater; writes the numbers the README quotes to bench/storm/results/.
#
#   bench/storm/run.sh                    # about 4.5 minutes once built: direct, then through Breakwater
#   MODE=honour bench/storm/run.sh        # about 2.5 minutes: through Breakwater, clients honour Retry-After
#   MODE=all bench/storm/run.sh           # both of the above, about 6.5 minutes
#   DURATION=20 bench/storm/run.sh        # a quick look (the "last 60 s" is then the whole run)
#
# Fleet: 250 hosts polled every 10 s with expired tokens (25 req/s) and took a database down;
# with backoff capped at 30 min they sent ~0.14 req/s (180x less). Here: 250 clients, each with
# its own token `expired-<i>`, poll `GET /api/v1/device/expired-<i>` every 100 ms for 120 s
# (2500 req/s offered), each on one keep-alive connection, ignoring Retry-After (the worst case),
# against a route with backoff base 1s, max 30s, jitter 0.2. Requests that reach the upstream are
# counted by the demo API itself (GET /demo/requests once a second; a fresh demo API per run).
#
# Environment:
#   MODE       ignore (default) | honour | all
#   DURATION   seconds per run (120)          CLIENTS   clients (250)
#   INTERVAL   poll interval, seconds (0.1)   PROCS     load-generator processes (2)
#   WORKERS    Breakwater worker threads (1)
#   BREAKWATER_BIN  use this binary and skip the build
#   BREAKWATER_REV  the source revision of BREAKWATER_BIN, for the summary
#   RESULTS    where the CSV, PNG and summary.md go (bench/storm/results)
# Logs, the generated confs and Breakwater's /metrics after each run go to bench/out/storm-DATE-TIME/.
# Everything listens on 127.0.0.1 only, on ports the kernel reported free; every process started
# here is stopped when the script exits, however it exits.

set -euo pipefail

cd "$(dirname "$0")/../.."
. bench/lib.sh

MODE=${MODE:-ignore}
DURATION=${DURATION:-120}
CLIENTS=${CLIENTS:-250}
INTERVAL=${INTERVAL:-0.1}
PROCS=${PROCS:-2}
WORKERS=${WORKERS:-1}
RESULTS=${RESULTS:-bench/storm/results}
STORM=bench/storm/storm.py

case "$MODE" in ignore | honour | all) ;; *) bench_die "MODE must be ignore, honour or all, got '$MODE'" ;; esac
case "$CLIENTS" in '' | *[!0-9]* | 0) bench_die "CLIENTS must be a positive integer, got '$CLIENTS'" ;; esac
case "$PROCS" in '' | *[!0-9]* | 0) bench_die "PROCS must be a positive integer, got '$PROCS'" ;; esac
case "$WORKERS" in '' | *[!0-9]* | 0) bench_die "WORKERS must be a positive integer, got '$WORKERS'" ;; esac
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null ||
    bench_die "python3 (3.8 or newer) is needed"
python3 -c "import sys; d = float(sys.argv[1]); i = float(sys.argv[2]); sys.exit(0 if d > 0 and i > 0 else 1)" \
    "$DURATION" "$INTERVAL" 2>/dev/null || bench_die "DURATION and INTERVAL must be positive numbers"

# ---- tools ------------------------------------------------------------------------------------
PLOT_PY=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    bench_log "matplotlib not found: installing it (pip, else Debian's python3-matplotlib)"
    if ! python3 -m pip install --quiet matplotlib >&2; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        if $sudo apt-get update -qq; then
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-matplotlib >&2 || true
        fi
        if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
            PLOT_PY=/usr/bin/python3
        else
            bench_log "note: matplotlib could not be installed; the chart will be missing"
            PLOT_PY=""
        fi
    fi
fi

if [ -n "${BREAKWATER_BIN:-}" ]; then
    BIN=$BREAKWATER_BIN
    [ -x "$BIN" ] || bench_die "BREAKWATER_BIN=$BIN is not an executable"
    COMMIT=${BREAKWATER_REV:-"unknown (BREAKWATER_BIN given)"}
else
    bench_log "building: swift build -c release --product breakwater"
    swift build -c release --product breakwater >&2 || bench_die "the release build failed"
    BIN=$(swift build -c release --product breakwater --show-bin-path)/breakwater
    COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)
fi

OUT=bench/out/storm-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT" "$RESULTS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/breakwater-storm.XXXXXX")
on_exit "rm -rf '$TMP'"

# check_alive PID NAME LOG: true while PID runs; else says how it ended (exit status or signal)
check_alive() {
    local pid=$1 name=$2 logfile=$3 status=0
    kill -0 "$pid" 2>/dev/null && return 0
    wait "$pid" 2>/dev/null || status=$?
    untrack_pid "$pid"
    if [ "$status" -gt 128 ]; then
        bench_log "error: $name (pid $pid) ended during the run by signal $((status - 128)) (see $logfile)"
    else
        bench_log "error: $name (pid $pid) exited during the run with status $status (see $logfile)"
    fi
    return 1
}

# ---- one run ----------------------------------------------------------------------------------
# run_one NAME VIA(direct|breakwater) CLIENT_MODE(ignore|honour)
run_one() {
    local name=$1 via=$2 client_mode=$3 demo_port bw_port admin_port demo_pid bw_pid storm_pid target status
    local watch
    read -r demo_port bw_port admin_port <<<"$(free_ports 3 | tr '\n' ' ')"

    "$BIN" demo-api --listen "127.0.0.1:$demo_port" >"$OUT/$name-demo-api.log" 2>&1 &
    demo_pid=$!
    track_pid "$demo_pid" "demo-api"
    wait_port "$demo_port" "$demo_pid" 15 || bench_die "the demo API did not start (see $OUT/$name-demo-api.log)"
    target=127.0.0.1:$demo_port

    if [ "$via" = breakwater ]; then
        cat >"$TMP/$name.conf" <<EOF
# Generated by bench/storm/run.sh for the run "$name".
[server]
listen = "127.0.0.1:$bw_port"
workers = $WORKERS

[upstream]
servers = ["127.0.0.1:$demo_port"]

[admin]
listen = "127.0.0.1:$admin_port"

[[route]]
name = "device"
path = "/api/v1/device/"
key = ["header:Authorization", "route"]
backoff = { base = "1s", max = "30s", jitter = 0.2 }
EOF
        cp "$TMP/$name.conf" "$OUT/$name.conf"
        "$BIN" check --config "$TMP/$name.conf" >"$OUT/$name-check.txt" 2>&1 ||
            bench_die "breakwater check refused the generated conf (see $OUT/$name-check.txt)"
        "$BIN" --config "$TMP/$name.conf" >"$OUT/$name-breakwater.log" 2>&1 &
        bw_pid=$!
        track_pid "$bw_pid" "breakwater"
        wait_port "$bw_port" "$bw_pid" 15 || bench_die "Breakwater did not start (see $OUT/$name-breakwater.log)"
        target=127.0.0.1:$bw_port
    fi

    watch=(--watch-pid "demo-api=$demo_pid")
    [ "$via" = breakwater ] && watch+=(--watch-pid "breakwater=$bw_pid")
    bench_log "run $name: $CLIENTS clients -> $target ($via), every ${INTERVAL}s for ${DURATION}s, Retry-After: $client_mode"
    python3 "$STORM" run "${watch[@]}" --name "$name" --via "$via" --target "$target" --counter-port "$demo_port" \
        --clients "$CLIENTS" --interval "$INTERVAL" --duration "$DURATION" --procs "$PROCS" \
        --mode "$client_mode" --workers "$WORKERS" --commit "$COMMIT" \
        --out "$RESULTS/run_$name.json" &
    storm_pid=$!
    track_pid "$storm_pid" "storm.py"
    status=0
    wait "$storm_pid" || status=$?
    untrack_pid "$storm_pid"
    if [ "$status" -ne 0 ]; then
        # Say whether a server died under the load (and how), and who listens on its port, before giving up.
        if command -v ss >/dev/null 2>&1; then
            bench_log "listening on the demo API's port $demo_port now:"
            ss -Htlnp "sport = :$demo_port" >&2 || true
        fi
        check_alive "$demo_pid" demo-api "$OUT/$name-demo-api.log"
        [ "$via" = breakwater ] && check_alive "$bw_pid" breakwater "$OUT/$name-breakwater.log"
        bench_die "the load generator failed (exit $status)"
    fi
    check_alive "$demo_pid" demo-api "$OUT/$name-demo-api.log" || bench_die "the demo API died during the run"
    if [ "$via" = breakwater ]; then
        check_alive "$bw_pid" breakwater "$OUT/$name-breakwater.log" || bench_die "Breakwater died during the run"
    fi

    if [ "$via" = breakwater ]; then
        # What Breakwater says about the run, kept with the logs (the admin endpoint may be absent).
        python3 - "$admin_port" "$OUT/$name" <<'PY' || true
import sys, urllib.request
port, prefix = sys.argv[1], sys.argv[2]
for path, ext in (("/metrics", "metrics.txt"), ("/stats", "stats.json")):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, path), timeout=3) as r:
            body = r.read()
        open("%s-%s" % (prefix, ext), "wb").write(body)
    except Exception as exc:
        open("%s-%s" % (prefix, ext), "w").write("unavailable: %r\n" % (exc,))
PY
        python3 "$STORM" attach-metrics "$RESULTS/run_$name.json" "$OUT/$name-metrics.txt"
        stop_pid "$bw_pid" breakwater
        status=$STOP_STATUS
        untrack_pid "$bw_pid"
        [ "$status" -eq 0 ] || bench_log "note: Breakwater exited with status $status after SIGTERM (see $OUT/$name-breakwater.log)"
        echo "$status" >"$OUT/$name-breakwater.exit"
    fi
    stop_pid "$demo_pid" demo-api
    untrack_pid "$demo_pid"
}

case "$MODE" in
ignore)
    run_one direct direct ignore
    run_one breakwater breakwater ignore
    ;;
honour)
    run_one honour breakwater honour
    ;;
all)
    run_one direct direct ignore
    run_one breakwater breakwater ignore
    run_one honour breakwater honour
    ;;
esac

python3 "$STORM" report "$RESULTS"
if [ -n "$PLOT_PY" ]; then
    "$PLOT_PY" bench/storm/plot.py "$RESULTS/storm.csv" "$RESULTS/storm.png"
fi
bench_log "results: $RESULTS/summary.md, $RESULTS/storm.csv, $RESULTS/clients.csv, $RESULTS/storm.png; logs: $OUT"
