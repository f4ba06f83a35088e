#!/usr/bin/env bash
# What saving a full tracker costs the requests being served: Breakwater starts on a state file of
# KEYS (1,000,000) blocked clients, then wrk loads it for DURATION while the file is saved every
# second (save_interval = "1s", a save of the whole table each second) and, alternating, with no
# save during the run ("1h"). Request latency (p50, p99, max from wrk --latency) of the two cases
# side by side, and how long each save took (breakwater_state_save_seconds).
#
#   bench/state-save.sh                       # 3 rounds of 10 s per case, about 3 minutes once built
#   DURATION=5 ROUNDS=1 bench/state-save.sh   # a quick look
#
# The load: wrk, 1 thread, CONNECTIONS (32) keep-alive connections, GET /api/v1/device/valid-1
# (forwarded to the demo API, a success) and, as a second cell, a blocked client's requests
# (answered 429 by the shield, which looks its entry up under its shard's lock, the lock a save
# takes shard by shard). The state file is written by bench/tracker (WORKLOADS=statefile).
# Environment: KEYS, DURATION (10, seconds), ROUNDS (3), CONNECTIONS (32), WORKERS (2),
# BREAKWATER_BIN (skip the build), QUIET_WAIT (0), QUIET_PCT (20).
# Output: bench/out/state-save-DATE-TIME/ (confs, logs, wrk outputs, summary.txt). 127.0.0.1 only.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

KEYS=${KEYS:-1000000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-2}
QUIET_WAIT=${QUIET_WAIT:-0}
QUIET_PCT=${QUIET_PCT:-20}
for n in KEYS DURATION ROUNDS CONNECTIONS WORKERS; do
    case "${!n}" in '' | *[!0-9]* | 0) bench_die "$n must be a positive integer, got '${!n}'" ;; esac
done
ensure_tool wrk wrk
HASH_KEY=state-save-bench-hash-key

breakwater_binary
bench_log "building bench/tracker (release) to write the state file"
(cd bench/tracker && swift build -c release >&2)
TRACKER_BENCH=$(cd bench/tracker && swift build -c release --show-bin-path)/tracker-bench
bench_scratch state-save
WORKLOADS=statefile STATE_FILE="$WORK/full.state" HASH_KEY=$HASH_KEY KEYS=$KEYS "$TRACKER_BENCH" | tee "$OUT/statefile.txt" >&2
read -r API_PORT PROXY_PORT ADMIN_PORT <<<"$(free_ports 3 | tr '\n' ' ')"
metric() { curl -s --max-time 5 "http://$BENCH_HOST:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 + 0 }'; }

"$BIN" demo-api --listen "$BENCH_HOST:$API_PORT" >"$OUT/api.log" 2>&1 &
API_PID=$!
track_pid "$API_PID" "demo API"
wait_port "$API_PORT" "$API_PID" || fail_with_log "$OUT/api.log" "the demo API did not start"

# one_run CASE ROUND (CASE: 1s | 1h): one Breakwater on a fresh copy of the full file, both cells.
one_run() {
    local interval=$1 round=$2 dir=$WORK/$1-$2 pid loaded cell target header file max
    mkdir -p "$dir/state"
    cp "$WORK/full.state" "$dir/state/bw.state"
    cat >"$dir/bw.conf" <<CONF
[server]
listen = "$BENCH_HOST:$PROXY_PORT"
workers = $WORKERS
[admin]
listen = "$BENCH_HOST:$ADMIN_PORT"
[upstream]
servers = ["$BENCH_HOST:$API_PORT"]
[clients]
key = ["header:Authorization"]
hash_key = "$HASH_KEY"
[backoff]
base = "10m"
[state]
file = "state/bw.state"
save_interval = "$interval"
CONF
    cp "$dir/bw.conf" "$OUT/save-$interval.conf"
    "$BIN" --config "$dir/bw.conf" >"$OUT/bw-$interval-$round.log" 2>&1 &
    pid=$!
    track_pid "$pid" breakwater
    wait_port "$PROXY_PORT" "$pid" 60 || fail_with_log "$OUT/bw-$interval-$round.log" "breakwater did not start"
    loaded=$(metric breakwater_state_loaded_entries)
    # The blocked client of the second cell: its 401 opens a 10-minute window.
    curl -s -o /dev/null -H "Authorization: Bearer expired-bench" "http://$BENCH_HOST:$PROXY_PORT/api/v1/device/expired-bench"
    for cell in forwarded shielded; do
        if [ "$cell" = forwarded ]; then target=/api/v1/device/valid-1; header="Authorization: Bearer valid-1"
        else target=/api/v1/device/expired-bench; header="Authorization: Bearer expired-bench"; fi
        file=$OUT/wrk-$interval-$cell-$round.txt
        run_wrk --limit $((DURATION + 30)) --server "$pid" "$OUT/bw-$interval-$round.log" "$file" breakwater \
            -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$header" "http://$BENCH_HOST:$PROXY_PORT$target"
        wrk_results "$file"
        max=$(wrk_ms "$(awk '$1 == "Latency" { print $4 }' "$file")")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$interval" "$cell" "$round" "$WRK_RPS" "$WRK_P50" "$WRK_P99" "$max" \
            "$(metric breakwater_state_saved_entries)" "$(metric breakwater_state_save_seconds)" >>"$OUT/results.tsv"
    done
    stop_pid "$pid" breakwater
    untrack_pid "$pid"
    bench_log "save_interval $interval, round $round: loaded $loaded clients; $(tail -n 2 "$OUT/results.tsv" | awk -F'\t' '{ printf "%s p99 %s ms max %s ms; ", $2, $6, $7 }')"
}

printf 'save_interval\tcell\tround\treq_s\tp50_ms\tp99_ms\tmax_ms\tsaved_entries\tsave_seconds\n' >"$OUT/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    [ "$QUIET_WAIT" -gt 0 ] && { wait_quiet "$QUIET_PCT" "$QUIET_WAIT" || true; }
    if [ $((round % 2)) = 1 ]; then one_run 1s "$round"; one_run 1h "$round"; else one_run 1h "$round"; one_run 1s "$round"; fi
done
col() { awk -F'\t' -v i="$1" -v c="$2" -v k="$3" 'NR > 1 && $1 == i && $2 == c { print $k }' "$OUT/results.tsv"; }
{
    echo "state-save: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs, load average $(load_average) at the end"
    echo "$(grep '^statefile:' "$OUT/statefile.txt" | sed 's/ written to .*/ in the state file/'); wrk -t1 -c$CONNECTIONS, ${DURATION}s per run, $ROUNDS rounds, medians"
    printf '%-10s %-9s %9s %8s %8s %8s %14s %10s\n' save_interval cell req/s p50_ms p99_ms max_ms saved_entries save_s
    for interval in 1s 1h; do
        for cell in forwarded shielded; do
            # shellcheck disable=SC2046
            printf '%-10s %-9s %9s %8s %8s %8s %14s %10s\n' "$interval" "$cell" \
                "$(median $(col "$interval" "$cell" 4))" "$(median $(col "$interval" "$cell" 5))" \
                "$(median $(col "$interval" "$cell" 6))" "$(median $(col "$interval" "$cell" 7))" \
                "$(median $(col "$interval" "$cell" 8))" "$(median $(col "$interval" "$cell" 9))"
        done
    done
} | tee "$OUT/summary.txt"
