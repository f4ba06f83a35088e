#!/usr/bin/env bash
# A restart in the middle of the storm, with and without [state]: how many requests reach the
# upstream in the WINDOW seconds after Breakwater has been stopped (SIGTERM) and started again.
#
#   bench/storm/restart.sh                     # 3 rounds of each case, about 2 minutes once built
#   CLIENTS=200 ROUNDS=1 bench/storm/restart.sh
#
# CLIENTS clients (default 500), each with its own expired token, poll GET
# /api/v1/device/expired-<i> every INTERVAL seconds (0.1) on a keep-alive connection, ignoring
# Retry-After and reconnecting at once when refused (bench/storm/restart.py), through Breakwater
# (one route keyed by Authorization, backoff base 30s, jitter 0.2) to the demo API, which counts
# what it serves. Once every client is blocked, Breakwater is stopped and started again on the
# same conf; the upstream's count is read just before the start and WINDOW (2) seconds after the
# port answers. The two cases alternate, ROUNDS (3) times each; medians are printed.
# Environment: CLIENTS, INTERVAL, WINDOW, ROUNDS, WORKERS (2), BREAKWATER_BIN (skip the build),
# QUIET_WAIT (seconds to wait for the machine to calm down before each round, 0), QUIET_PCT (20).
# Logs and confs go to bench/out/restart-DATE-TIME/. Everything listens on 127.0.0.1 only.

set -euo pipefail

cd "$(dirname "$0")/../.."
. bench/lib.sh

CLIENTS=${CLIENTS:-500}
INTERVAL=${INTERVAL:-0.1}
WINDOW=${WINDOW:-2}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
QUIET_WAIT=${QUIET_WAIT:-0}
QUIET_PCT=${QUIET_PCT:-20}
for n in CLIENTS ROUNDS WORKERS WINDOW; do
    case "${!n}" in '' | *[!0-9]* | 0) bench_die "$n must be a positive integer, got '${!n}'" ;; esac
done
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null || bench_die "python3 (3.8 or newer) is needed"

breakwater_binary
bench_scratch restart
read -r API_PORT PROXY_PORT ADMIN_PORT <<<"$(free_ports 3 | tr '\n' ' ')"

# metric NAME: the value of an unlabelled metric of the running Breakwater.
metric() { curl -s --max-time 5 "http://$BENCH_HOST:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 + 0 }'; }
upstream_count() { curl -s --max-time 5 "http://$BENCH_HOST:$API_PORT/demo/requests" | tr -dc '0-9'; }

# one_round CASE ROUND (CASE: state | nostate): sets HITS, the upstream hits in the window after the restart.
one_round() {
    local case=$1 round=$2 dir=$WORK/$1-$2 state="" api_pid bw_pid storm_pid before after waited=0 blocked
    mkdir -p "$dir"
    [ "$case" = state ] && state=$'[state]\nfile = "state/bw.state"\nsave_interval = "1h"'
    cat >"$dir/bw.conf" <<CONF
[server]
listen = "$BENCH_HOST:$PROXY_PORT"
workers = $WORKERS
[admin]
listen = "$BENCH_HOST:$ADMIN_PORT"
[upstream]
servers = ["$BENCH_HOST:$API_PORT"]
[backoff]
base = "30s"
jitter = 0.2
[[route]]
name = "device"
path = "/api/v1/device/"
key = ["header:Authorization"]
$state
CONF
    cp "$dir/bw.conf" "$OUT/$case.conf"
    "$BIN" demo-api --listen "$BENCH_HOST:$API_PORT" >"$OUT/api-$case-$round.log" 2>&1 &
    api_pid=$!
    track_pid "$api_pid" "demo API"
    wait_port "$API_PORT" "$api_pid" || fail_with_log "$OUT/api-$case-$round.log" "the demo API did not start"
    "$BIN" --config "$dir/bw.conf" >"$OUT/bw-$case-$round-1.log" 2>&1 &
    bw_pid=$!
    track_pid "$bw_pid" "breakwater"
    wait_port "$PROXY_PORT" "$bw_pid" || fail_with_log "$OUT/bw-$case-$round-1.log" "breakwater did not start"
    python3 bench/storm/restart.py "$PROXY_PORT" "$CLIENTS" "$INTERVAL" >"$OUT/storm-$case-$round.json" 2>"$OUT/storm-$case-$round.log" &
    storm_pid=$!
    track_pid "$storm_pid" "storm clients"
    while blocked=$(metric breakwater_blocked_clients); [ "${blocked:-0}" -lt "$CLIENTS" ]; do
        sleep 0.2
        waited=$((waited + 1))
        [ "$waited" -lt 300 ] || bench_die "only ${blocked:-0} of $CLIENTS clients blocked after 60 s"
    done
    stop_pid "$bw_pid" breakwater
    untrack_pid "$bw_pid"
    [ "$STOP_STATUS" = 0 ] || bench_die "breakwater exited with $STOP_STATUS on SIGTERM"
    before=$(upstream_count)
    "$BIN" --config "$dir/bw.conf" >"$OUT/bw-$case-$round-2.log" 2>&1 &
    bw_pid=$!
    track_pid "$bw_pid" "breakwater"
    wait_port "$PROXY_PORT" "$bw_pid" 30 || fail_with_log "$OUT/bw-$case-$round-2.log" "breakwater did not start again"
    sleep "$WINDOW"
    after=$(upstream_count)
    stop_pid "$storm_pid" "storm clients"
    untrack_pid "$storm_pid"
    stop_pid "$bw_pid" breakwater
    untrack_pid "$bw_pid"
    stop_pid "$api_pid" "demo API"
    untrack_pid "$api_pid"
    HITS=$((after - before))
}

bench_log "restart storm: $CLIENTS clients every ${INTERVAL}s, $ROUNDS rounds per case, window ${WINDOW}s; logs in $OUT"
with=()
without=()
for round in $(seq 1 "$ROUNDS"); do
    [ "$QUIET_WAIT" -gt 0 ] && { wait_quiet "$QUIET_PCT" "$QUIET_WAIT" || true; }
    one_round state "$round"
    with+=("$HITS")
    one_round nostate "$round"
    without+=("$HITS")
    bench_log "round $round: upstream hits in the ${WINDOW} s after the restart: with [state] ${with[-1]}, without ${without[-1]}"
done
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "restart storm, commit $commit, $(nproc) CPUs, load average $(load_average) at the end"
    echo "$CLIENTS clients polling every ${INTERVAL}s, ignoring Retry-After; upstream hits in the ${WINDOW} s after the restart"
    echo "with [state]:    ${with[*]} (median $(median "${with[@]}"))"
    echo "without [state]: ${without[*]} (median $(median "${without[@]}"))"
} | tee "$OUT/summary.txt"
