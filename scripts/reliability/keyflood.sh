#!/usr/bin/env bash
# Key flood: KEYS (default 1,000,000) distinct clients, each a fresh X-Forwarded-For from the
# trusted peer 127.0.0.1, each answered 401 by the demo API (so each is tracked), against
# max_clients = MAX_CLIENTS (default 100,000). Before the flood, BLOCKED (default 1,000) clients
# are put in a 10-minute window on another route. Passes when
#   - tracked clients, polled from /stats every 0.5 s, never exceed max_clients,
#   - resident memory at the end is within RSS_TOLERANCE % (default 10) of the value when the
#     table first filled,
#   - every client blocked before the flood is still blocked after it,
#   - every flood request was forwarded (a fresh key is never shielded).
# Writes out/keyflood.json and out/keyflood-samples.tsv; exits 1 when a check fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KEYS=${KEYS:-1000000}
MAX_CLIENTS=${MAX_CLIENTS:-100000}
BLOCKED=${BLOCKED:-1000}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUND_SECONDS=${ROUND_SECONDS:-10}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}
[ "$THREADS" -le 4 ] || bench_die "THREADS must be at most 4 (key space per round)"

setup_load_run keyflood
printf '%s\n' \
    '[server]' "listen = \"$BENCH_HOST:$port\"" \
    '[admin]' "listen = \"$BENCH_HOST:$admin\"" \
    '[upstream]' "servers = [\"$BENCH_HOST:$api_port\"]" \
    '[clients]' 'key = ["ip"]' 'trusted_proxies = ["127.0.0.1/32"]' "max_clients = $MAX_CLIENTS" \
    '[[route]]' 'name = "flood"' 'path = "/api/v1/device/flood"' 'backoff = { base = "500ms", max = "500ms" }' \
    '[[route]]' 'name = "device"' 'path = "/api/v1/device/"' 'backoff = { base = "10m", max = "10m" }' \
    >"$work/breakwater.conf"
start_breakwater "$work/breakwater.conf" "$port" "$OUT/keyflood-breakwater.log"
pid=$STARTED_PID

# blocked_check MODE: "block" sends each pre-flood client's failing request (expecting 401), then
# one more each (expecting 429); "check" only the second round. Prints "401s 429s".
blocked_check() {
    python3 "$RELIABILITY_DIR/blocked_clients.py" "$port" "$BLOCKED" "$1"
}

read -r pre401 pre429 < <(blocked_check block)
bench_log "before the flood: $pre401 of $BLOCKED clients answered 401, then $pre429 shielded (429)"
rss_start=$(rss_kib "$pid")

samples=$OUT/keyflood-samples.tsv
python3 "$RELIABILITY_DIR/stats_sampler.py" "$admin" "$pid" 0.5 1200 >"$samples" &
sampler=$!
track_pid "$sampler" sampler

sent=0 round=0 s401=0 s429=0 sother=0 errors=0
flood_start=$(date +%s)
while [ "$sent" -lt "$KEYS" ] && [ "$round" -lt 16 ]; do
    per_thread=$(((KEYS - sent + THREADS - 1) / THREADS))
    [ "$per_thread" -le 4194304 ] || per_thread=4194304
    KEY_BASE=$((round * 16777216)) KEYS_PER_THREAD=$per_thread \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${ROUND_SECONDS}s" --timeout 5s -s "$RELIABILITY_DIR/keyflood.lua" \
        "http://$BENCH_HOST:$port/" | tail -n 1 >"$work/round.json"
    read -r n a b c e < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests"], d["status_401"], d["status_429"], d["status_other"], d["connect_errors"]+d["read_errors"]+d["write_errors"]+d["timeouts"])' "$work/round.json")
    sent=$((sent + n)) s401=$((s401 + a)) s429=$((s429 + b)) sother=$((sother + c)) errors=$((errors + e)) round=$((round + 1))
    bench_log "round $round: $n requests, $sent of $KEYS keys sent"
    [ "$n" -gt 0 ] || bench_die "a round sent nothing"
done
flood_seconds=$(($(date +%s) - flood_start))
sleep 1
stop_pid "$sampler" sampler
untrack_pid "$sampler"
rss_end=$(rss_kib "$pid")
read -r _ post429 < <(blocked_check check)
kill -0 "$pid" 2>/dev/null || bench_die "breakwater died during the flood (see $OUT/keyflood-breakwater.log)"
tracked_end=$(stats_field "$admin" tracked_clients)
evictions=$(stats_field "$admin" evictions)

python3 "$RELIABILITY_DIR/keyflood_summary.py" "$samples" "$OUT/keyflood.json" \
    keys="$KEYS" keys_sent="$sent" flood_seconds="$flood_seconds" max_clients="$MAX_CLIENTS" \
    status_401="$s401" status_429="$s429" status_other="$sother" socket_errors="$errors" \
    tracked_at_end="$tracked_end" evictions="$evictions" rss_kib_before_flood="$rss_start" rss_kib_at_end="$rss_end" \
    blocked_clients="$BLOCKED" blocked_before="$pre429" blocked_after="$post429" rss_tolerance="$RSS_TOLERANCE"
