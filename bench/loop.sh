#!/usr/bin/env bash
# Stalls of Breakwater's event loop as a bystander sees them (bench/loop/stall.py): the worst
# round trip of one keep-alive client sending a request every 2 ms while (park) the idle sweep
# closes PARKED (500) parked upstream connections, and while (burst) BURST (2000) new keep-alive
# connections arrive at once. One worker on CPU 0 (PROXY_CPU), the client and a Python upstream on
# CPU 1 (LOAD_CPU; the bystander is a process of its own there, at nice -20, the load at 19).
# ROUNDS (3) runs per binary, each a fresh process, about 15 s each.
#
#   bench/loop.sh                                   # the release build of this tree
#   BINARIES="/tmp/before /tmp/after" bench/loop.sh # several binaries, rounds interleaved
#   MAX_CONNECTIONS=4096 bench/loop.sh              # [upstream] max_connections set (default: 512)
#   PEERS="nginx haproxy" bench/loop.sh             # nginx and HAProxy too, with bench/compare/'s
#                                                   # confs (their idle upstream connections live
#                                                   # 300 s: only the burst phase compares)
#
# Output: per run "binary round phase max_ms p99_ms p50_ms samples", then the medians per binary
# and phase; everything also in bench/out/loop-DATE-TIME/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
PARKED=${PARKED:-500}
BURST=${BURST:-2000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-}   # [upstream] max_connections; empty: the default
case "$ROUNDS$PARKED$BURST" in '' | *[!0-9]*) bench_die "ROUNDS, PARKED and BURST must be integers" ;; esac
ensure_tool taskset util-linux
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((2 * BURST + PARKED + 100)) ] || bench_die "ulimit -n $(ulimit -n) is too low for BURST=$BURST"
if [ -z "${BINARIES:-}" ]; then
    breakwater_binary
    BINARIES=$BIN
fi
OUT=bench/out/loop-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/breakwater-loop.XXXXXX")
on_exit "rm -rf '$WORK'"
RESULTS=$OUT/results.txt
: >"$RESULTS"

PEERS=${PEERS:-}
NICE=0
if [ -n "$PEERS" ]; then
    proxy_tools
    chmod 755 "$WORK" # nginx started by root runs its worker as nobody, which must reach WORK
fi

read -r UP_PORT <<<"$(free_ports 1)"
taskset -c "$LOAD_CPU" "$PYTHON" bench/loop/stall.py upstream "$UP_PORT" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream"
wait_port "$UP_PORT" "$UP_PID" 10 || fail_with_log "$OUT/upstream.log" "the upstream did not start"

for round in $(seq 1 "$ROUNDS"); do
    for bin in $BINARIES $PEERS; do
        read -r PORT ADMIN <<<"$(free_ports 2 | tr '\n' ' ')"
        case "$bin" in
        nginx)
            NGX_PORT=$PORT
            start_nginx_proxy bench/compare/nginx-proxy.conf.in
            pid=$NGX_PID
            ;;
        haproxy)
            fill bench/compare/haproxy.cfg.in "$WORK/haproxy.cfg" PORT="$PORT" UPSTREAM_PORT="$UP_PORT"
            "$HAPROXY" -c -f "$WORK/haproxy.cfg" >"$OUT/haproxy-check.log" 2>&1 \
                || fail_with_log "$OUT/haproxy-check.log" "haproxy refused its conf"
            taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >>"$OUT/haproxy.log" 2>&1 &
            pid=$!
            track_pid "$pid" "haproxy"
            wait_port "$PORT" "$pid" 10 || fail_with_log "$OUT/haproxy.log" "HAProxy did not start"
            ;;
        *)
            fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$PORT" ADMIN_PORT="$ADMIN" \
                UPSTREAM_PORT="$UP_PORT" WORKERS=1
            if [ -n "$MAX_CONNECTIONS" ]; then sed -i "/^servers = /a max_connections = $MAX_CONNECTIONS" "$WORK/breakwater.conf"; fi
            taskset -c "$PROXY_CPU" "$bin" --config "$WORK/breakwater.conf" >>"$OUT/breakwater.log" 2>&1 &
            pid=$!
            track_pid "$pid" "breakwater"
            wait_port "$PORT" "$pid" 10 || fail_with_log "$OUT/breakwater.log" "$bin did not start"
            ;;
        esac
        # The bystander at the highest priority, the load at the lowest, both on LOAD_CPU.
        timeout 120 nice -n -20 taskset -c "$LOAD_CPU" "$PYTHON" bench/loop/stall.py bystander "$PORT" 40 "$WORK/samples.txt" \
            2>>"$OUT/client.log" &
        bystander=$!
        track_pid "$bystander" "bystander"
        sleep 1
        timeout 120 nice -n 19 taskset -c "$LOAD_CPU" "$PYTHON" bench/loop/stall.py load "$PORT" "$PARKED" "$BURST" \
            >"$WORK/phases.txt" 2>>"$OUT/client.log" || fail_with_log "$OUT/client.log" "the load failed against $bin"
        kill -0 "$bystander" 2>/dev/null || fail_with_log "$OUT/client.log" "the bystander failed against $bin"
        stop_pid "$bystander" "bystander"
        untrack_pid "$bystander"
        "$PYTHON" bench/loop/stall.py summarize "$WORK/phases.txt" "$WORK/samples.txt" >"$OUT/client.txt"
        while read -r phase max p99 p50 n; do
            printf '%s %s %s %s %s %s %s\n' "$bin" "$round" "$phase" "$max" "$p99" "$p50" "$n" | tee -a "$RESULTS" >&2
        done <"$OUT/client.txt"
        stop_pid "$pid" "$bin"
        untrack_pid "$pid"
    done
done

{
    echo
    echo "Bystander round trips (ms), median of $ROUNDS runs: PARKED=$PARKED parked upstream connections swept, BURST=$BURST new connections"
    printf '%-50s %-6s %8s %8s %8s\n' binary phase max p99 p50
    for bin in $BINARIES $PEERS; do
        for phase in park burst; do
            # shellcheck disable=SC2046
            printf '%-50s %-6s %8s %8s %8s\n' "$bin" "$phase" \
                "$(median $(awk -v b="$bin" -v p="$phase" '$1 == b && $3 == p { print $4 }' "$RESULTS"))" \
                "$(median $(awk -v b="$bin" -v p="$phase" '$1 == b && $3 == p { print $5 }' "$RESULTS"))" \
                "$(median $(awk -v b="$bin" -v p="$phase" '$1 == b && $3 == p { print $6 }' "$RESULTS"))"
        done
    done
    echo "runs and logs: $OUT/"
} | tee "$OUT/summary.txt"
