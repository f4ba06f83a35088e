#!/usr/bin/env bash
# An upstream outage, 250 polling clients: how long after the upstream is back each client gets
# its first 200, with the route circuit ([circuit] enabled = true, the default) and without it
# (enabled = false: every connect error raises the client's own level, as before the circuit).
#
#   bench/outage.sh                          # 3 rounds per mode, a 30 s outage: about 7 minutes
#   ROUNDS=1 OUTAGE=10 bench/outage.sh       # a quick look
#
# Each round: the demo API behind Breakwater (the device route of the shipped conf: keyed by
# Authorization, backoff base 1s, max 30m), CLIENTS clients each with its own token polling once a
# second and honouring Retry-After (bench/outage/clients.py), the demo API killed after 3 s and
# started again OUTAGE seconds later. Rounds alternate between the modes; the table gives the
# median over rounds of each round's median, p90 and max delay.
#
# Environment: ROUNDS (3), OUTAGE (30), CLIENTS (250), QUIET_WAIT (seconds to wait for a quiet
# machine before each round, 0), QUIET_PCT (20), BREAKWATER_BIN (use this binary, skip the build).
# Outputs go to bench/out/outage-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${ROUNDS:-3}
OUTAGE=${OUTAGE:-30}
CLIENTS=${CLIENTS:-250}
QUIET_WAIT=${QUIET_WAIT:-0}
QUIET_PCT=${QUIET_PCT:-20}
case "$ROUNDS" in '' | *[!0-9]* | 0) bench_die "ROUNDS must be a positive integer, got '$ROUNDS'" ;; esac

breakwater_binary
OUT=bench/out/outage-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

run_round() {
    local mode=$1 round=$2 enabled
    [ "$mode" = on ] && enabled=true || enabled=false
    local ports proxy upstream admin
    ports=$(free_ports 3)
    proxy=$(sed -n 1p <<<"$ports")
    upstream=$(sed -n 2p <<<"$ports")
    admin=$(sed -n 3p <<<"$ports")
    local conf=$OUT/$mode-$round.conf
    cat >"$conf" <<EOF
[server]
listen = "$BENCH_HOST:$proxy"
[upstream]
servers = ["$BENCH_HOST:$upstream"]
[admin]
listen = "$BENCH_HOST:$admin"
[circuit]
enabled = $enabled
[[route]]
name = "device"
path = "/api/v1/device/"
key = ["header:Authorization", "route"]
backoff = { base = "1s", max = "30m" }
rate = "5r/s"
burst = 10
EOF
    if [ "$QUIET_WAIT" -gt 0 ]; then wait_quiet "$QUIET_PCT" "$QUIET_WAIT" || bench_log "note: machine still busy"; fi
    "$BIN" --config "$conf" >"$OUT/$mode-$round.log" 2>&1 &
    local pid=$!
    track_pid "$pid" breakwater
    wait_port "$proxy" "$pid" 10 || fail_with_log "$OUT/$mode-$round.log" "Breakwater did not start"
    python3 bench/outage/clients.py --bin "$BIN" --proxy "$proxy" --upstream "$upstream" --clients "$CLIENTS" \
        --outage "$OUTAGE" >"$OUT/$mode-$round.json"
    stop_pid "$pid" breakwater
    untrack_pid "$pid"
    bench_log "circuit $mode, round $round: $(cat "$OUT/$mode-$round.json")"
}

for round in $(seq 1 "$ROUNDS"); do
    run_round off "$round"
    run_round on "$round"
done

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
{
    echo "Outage of ${OUTAGE}s, $CLIENTS clients, $ROUNDS rounds per mode, binary $BIN"
    echo
    echo "| circuit | recovered clients | median delay s | p90 delay s | max delay s |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for mode in off on; do
        med=() p90=() max=() rec=()
        for round in $(seq 1 "$ROUNDS"); do
            f=$OUT/$mode-$round.json
            rec+=("$(field "$f" recovered_clients)")
            med+=("$(field "$f" median_s)")
            p90+=("$(field "$f" p90_s)")
            max+=("$(field "$f" max_s)")
        done
        echo "| $mode | $(median "${rec[@]}") | $(median "${med[@]}") | $(median "${p90[@]}") | $(median "${max[@]}") |"
    done
} | tee "$OUT/table.md"
