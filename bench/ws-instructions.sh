#!/usr/bin/env bash
# User-space instructions per tunnelled WebSocket message, counted by callgrind in the proxy
# process alone, beside nginx's in the same run: counts that a busy machine does not move. The
# setup of bench/ws.sh (one worker, bench/ws/echo.py as upstream and client, 64 B messages, one
# in flight on each of 64 connections); for each proxy, under valgrind --tool=callgrind: the 64
# WebSocket handshakes, the counters zeroed, SECONDS of echo, the counters dumped.
#
#   bench/ws-instructions.sh                                     # this tree's release build and nginx
#   BINARIES="new=.build/release/breakwater old=/tmp/bw-old" bench/ws-instructions.sh
#   SECONDS_PER_RUN=8 SIZE=64 NGINX_TOO=0 bench/ws-instructions.sh
#
# Under callgrind a proxy runs some fifty times slower, so the echo client (on LOAD_CPU) keeps it
# busy: each wake-up finds many sockets ready, and the loop's own work per message is smaller than
# in bench/ws.sh. The kernel's work (four system calls and four TCP segments a message for either
# proxy, bench/ws-counts.sh) is not counted. Valgrind 3.19 cannot read the DWARF 5 of a Swift
# build, so each binary is copied without its debug sections (symbols stay). Results and the
# callgrind files go to bench/out/ws-instructions-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
SIZE=${SIZE:-64}
CONNECTIONS=${CONNECTIONS:-64}
NGINX_TOO=${NGINX_TOO:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
case "$SECONDS_PER_RUN$SIZE$CONNECTIONS" in '' | *[!0-9]*) bench_die "SECONDS_PER_RUN, SIZE and CONNECTIONS must be integers" ;; esac
ensure_tool valgrind valgrind
ensure_tool nginx nginx-light
ensure_tool taskset util-linux
[ -x "$PYTHON" ] || ensure_tool python3 python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${BINARIES:-}" ]; then
    breakwater_binary
    BINARIES="breakwater=$BIN"
fi

bench_scratch ws-instructions
OUT=$(realpath "$OUT")
read -r UP_PORT PROXY_PORT ADMIN_PORT <<<"$(free_ports 3 | tr '\n' ' ')"
pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py server "$UP_PORT" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream echo"
wait_port "$UP_PORT" "$UP_PID" || fail_with_log "$OUT/upstream.log" "the upstream echo did not start"

printf 'proxy\tmessages\tinstructions\tper_message\n' >"$OUT/instructions.tsv"
# count LABEL PID: one measured echo through the proxy on PROXY_PORT whose callgrind runs as PID.
count() {
    local label=$1 pid=$2 line file total cpid cin cout
    coproc CLIENT { pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py client "$PROXY_PORT" /ws "$SIZE" "$CONNECTIONS" \
        "$SECONDS_PER_RUN" 2>"$OUT/client-$label.err"; }
    cpid=$CLIENT_PID
    exec {cin}<&"${CLIENT[0]}" {cout}>&"${CLIENT[1]}"
    track_pid "$cpid" "echo client"
    if ! read -r -t 120 -u "$cin" line || [ "$line" != ready ]; then
        fail_with_log "$OUT/client-$label.err" "the echo client did not get its $CONNECTIONS connections through $label"
    fi
    callgrind_control -z "$pid" >/dev/null
    echo go >&"$cout"
    read -r -t $((SECONDS_PER_RUN + 120)) -u "$cin" line || true
    callgrind_control -d "$pid" >/dev/null
    exec {cout}>&-
    wait "$cpid" || true
    untrack_pid "$cpid"
    exec {cin}<&-
    [ "${line%% *}" = done ] || fail_with_log "$OUT/client-$label.err" "the echo client failed through $label"
    file=$OUT/callgrind.$label.$pid.1
    for _ in $(seq 1 100); do [ -s "$file" ] && break; sleep 0.1; done
    total=$(awk '/^(summary|totals):/ && !t { t = $2 } END { print t + 0 }' "$file")
    # shellcheck disable=SC2086 # the client's line is split into fields on purpose
    set -- $line
    printf '%s\t%s\t%s\t%d\n' "$label" "$2" "$total" $((total / $2)) >>"$OUT/instructions.tsv"
}

# run LABEL COMMAND...: starts COMMAND under callgrind on PROXY_CPU, counts, stops it.
run() {
    local label=$1 pid
    shift
    (cd "$WORK" && exec taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$label.%p" "$@") \
        >"$OUT/$label.log" 2>&1 &
    pid=$!
    track_pid "$pid" "$label"
    wait_port "$PROXY_PORT" "$pid" 120 || fail_with_log "$OUT/$label.log" "$label did not start under callgrind"
    count "$label" "$pid"
    stop_pid "$pid" "$label"
    untrack_pid "$pid"
}

for pair in $BINARIES; do
    label=${pair%%=*}
    objcopy --strip-debug "${pair#*=}" "$WORK/$label"
    fill bench/compare/breakwater.conf.in "$WORK/$label.conf" PORT="$PROXY_PORT" ADMIN_PORT="$ADMIN_PORT" \
        UPSTREAM_PORT="$UP_PORT" WORKERS=1
    run "$label" "$WORK/$label" --config "$WORK/$label.conf"
done
if [ "$NGINX_TOO" = 1 ]; then
    # One process (master_process off), so that the process counted is the one that serves.
    fill bench/ws/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$PROXY_PORT" UPSTREAM_PORT="$UP_PORT"
    run nginx "$NGINX" -g "master_process off;" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log"
fi

{
    echo
    echo "User-space instructions per echoed $SIZE B WebSocket message (callgrind, proxy process only), $CONNECTIONS connections, ${SECONDS_PER_RUN}s, $(date -u +%Y-%m-%d)"
    echo "$(machine_line); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(valgrind --version)"
    echo
    printf '| %-12s | %9s | %14s | %12s |\n' proxy messages instructions "per message"
    printf '| %-12s | %9s | %14s | %12s |\n' --- ---: ---: ---:
    awk -F'\t' 'NR > 1 { printf "| %-12s | %9s | %14s | %12s |\n", $1, $2, $3, $4 }' "$OUT/instructions.tsv"
    echo
    echo "A message is counted once, when its echo is back: it crossed the proxy twice (to the upstream and back)."
    echo "Callgrind files and logs: $OUT/"
} | tee "$OUT/summary.txt"
