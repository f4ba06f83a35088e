#!/usr/bin/env bash
# What the dashboard page costs the proxy: Breakwater's forward path (wrk -c64 on /ok, as in
# bench/compare.sh's arrangement) with the page closed, and with it open, that is with a client
# fetching /stats/series?since=... and /stats once a second, as the page does, with its token.
#
#   bench/admin.sh                          # DURATION=5s ROUNDS=3, about a minute
#   DURATION=2s ROUNDS=1 bench/admin.sh     # a quick look
#
# The rounds alternate closed and open; the table gives the medians and the ratio open/closed of
# req/s and of CPU us/req, round by round, median of the rounds.
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
proxy_tools
breakwater_binary
bench_dirs admin
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

read -r UP_PORT BW_PORT BW_ADMIN <<<"$(free_ports 3 | tr '\n' ' ')"
start_upstream
fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
# The page needs the admin token, as an operator's would.
sed -i "/^\[admin\]/a token = \"$TOKEN\"" "$WORK/breakwater.conf"
start_breakwater_on breakwater "$PROXY_CPU" "$BW_PORT"
BW_PID=$STARTED_PID
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$BENCH_HOST:$BW_ADMIN/stats/series" \
    || bench_die "GET /stats/series with the token failed"

# The page's polling, on LOAD_CPU: the series since the last point, and /stats, once a second.
start_page() {
    ( since=0
      while :; do
          since=$(curl -s -H "Authorization: Bearer $TOKEN" "http://$BENCH_HOST:$BW_ADMIN/stats/series?since=$since" \
              | awk -F'[][,]' '/"points"/ { for (i = NF; i > 0; i--) if ($i ~ /^[0-9]+$/ && $i > 1e9) { print $i; exit } }')
          since=${since:-0}
          curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$BENCH_HOST:$BW_ADMIN/stats"
          sleep 1
      done ) &
    PAGE_PID=$!
    track_pid "$PAGE_PID" page
}

for round in $(seq 1 "$ROUNDS"); do
    quiet_round
    for state in $(rotate "$round" closed open); do
        [ "$state" = open ] && start_page
        measure_wrk fwd "$state" "$round" "page $state" "$BW_PID" "$OUT/breakwater.log" "$OUT/wrk-$state-$round.txt" \
            "$LOAD_CPU" -t1 -c64 -d"$DURATION" --latency "http://$BENCH_HOST:$BW_PORT/ok"
        if [ "$state" = open ]; then stop_pid "$PAGE_PID"; untrack_pid "$PAGE_PID"; fi
    done
done

echo
echo "Breakwater's forward path with the dashboard page closed and open: median of $ROUNDS rounds of wrk -c64 -d$DURATION, $(date +%F)"
machine_line
printf '%-8s %10s %10s\n' page req/s us/req
for state in closed open; do
    # shellcheck disable=SC2046
    printf '%-8s %10.0f %10.2f\n' "$state" "$(median $(results_col fwd "$state" 4))" "$(median $(results_col fwd "$state" 7))"
done
printf 'open/closed: req/s %.3f, CPU us/req %.3f (medians of the per-round ratios)\n' \
    "$(median $(paste <(results_col fwd open 4) <(results_col fwd closed 4) | awk '{ print $1 / $2 }'))" \
    "$(median $(paste <(results_col fwd open 7) <(results_col fwd closed 7) | awk '{ print $1 / $2 }'))"
echo "results: $OUT/"
