#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind, for Breakwater and for
# nginx, on the two paths of bench/compare.sh and with its configs:
#   /ok         forwarded: the upstream's 3-byte 200, through a keep-alive upstream connection
#   /shield/x   answered 429 by the proxy itself (Breakwater's tracker, nginx's limit_req)
#
#   bench/instructions.sh                 # REQUESTS=2000 per path and proxy, about 2 minutes
#
# Each proxy runs with one worker under callgrind (one process at a time); a small client sends
# REQUESTS requests one after another, spread over 4 keep-alive connections, after a warm-up of
# 300; the counters are zeroed before and dumped after. Unlike CPU time, the count does not move
# when other jobs share the machine, so differences of a few percent in the proxies' own code
# show. It covers user space only (libc and libevent included; the kernel's TCP work, the larger
# part and the same for every proxy, is in bench/compare.sh's kernel column) and weighs every
# instruction alike: a cache miss or an atomic operation counts as one.
#
# Environment: REQUESTS (2000), BREAKWATER_BIN / SCRATCH_PATH (as in bench/compare.sh).
# Output: one table; the callgrind files and logs go to bench/out/instructions-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

REQUESTS=${REQUESTS:-2000}
case "$REQUESTS" in '' | *[!0-9]* | 0) bench_die "REQUESTS must be a positive integer" ;; esac
WARMUP_REQUESTS=300

ensure_tool valgrind valgrind
ensure_tool nginx nginx-light
ensure_tool python3 python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

breakwater_binary
bench_scratch instructions

# valgrind 3.19 cannot read the DWARF of a binary with the Swift runtime linked in statically;
# the symbol table is enough to count.
objcopy --strip-debug "$BIN" "$WORK/breakwater"

read -r UP_PORT NGX_PORT BW_PORT BW_ADMIN <<<"$(free_ports 4 | tr '\n' ' ')"

# ---- the upstream (not measured) --------------------------------------------------------------
BODY_1K="$(head -c 1023 /dev/zero | tr '\0' 'a')\\\\n"
fill bench/compare/nginx-upstream.conf.in "$WORK/nginx-upstream.conf" DIR="$WORK" PORT="$UP_PORT" BODY_1K="$BODY_1K"
"$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream nginx"
wait_port "$UP_PORT" "$UP_PID" || bench_die "the upstream nginx did not start"

fill bench/compare/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$NGX_PORT" UPSTREAM_PORT="$UP_PORT"
fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1

# The client: COUNT requests for PATH, round-robin over 4 keep-alive connections, each response
# read whole (Content-Length) before the next request goes.
drive() { # drive PORT PATH COUNT
    PYTHONPATH=bench python3 - "$@" <<'EOF'
import socket, sys
from http1_answer import read_answer
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n" % (path, port)).encode()
for i in range(count):
    conns[i % 4].sendall(request)
    read_answer(conns[i % 4])
EOF
}

# measure NAME PORT PID PATH: instructions per request of PID for PATH.
measure() {
    local name=$1 port=$2 pid=$3 path=$4 file
    drive "$port" "$path" "$WARMUP_REQUESTS"
    callgrind_control -z "$pid" >/dev/null 2>&1
    drive "$port" "$path" "$REQUESTS"
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 0.5
    # The newest dump of that process holds the counts since the zeroing.
    file=$(ls -t "$OUT/callgrind-$name".* 2>/dev/null | head -n 1)
    [ -n "$file" ] || bench_die "no callgrind dump from $name"
    awk -v n="$REQUESTS" '/^(summary|totals):/ { printf "%.0f\n", $2 / n; exit }' "$file"
}

declare -A COUNT
# run NAME PORT COMMAND...: starts COMMAND under callgrind, measures both paths, stops it.
run() {
    local name=$1 port=$2 pid first
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$name.%p" "$@" >"$OUT/$name.log" 2>&1 &
    pid=$!
    track_pid "$pid" "$name under callgrind"
    wait_port "$port" "$pid" 120 || bench_die "$name did not start under valgrind (see $OUT/$name.log)"
    # The first request to /shield/ reaches the upstream (401) and blocks the client, or spends
    # nginx's one request per minute; from the second on, every answer is the proxy's 429.
    first=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "http://$BENCH_HOST:$port/shield/x" || true)
    [ "$first" = 401 ] || bench_die "$name: first /shield/x answered '$first', expected the upstream's 401"
    for path in /ok /shield/x; do
        bench_log "$name $path: $REQUESTS requests under callgrind"
        COUNT[$name,$path]=$(measure "$name" "$port" "$pid" "$path")
    done
    stop_pid "$pid" "$name"
    untrack_pid "$pid"
}

run breakwater "$BW_PORT" "$WORK/breakwater" --config "$WORK/breakwater.conf"
run nginx "$NGX_PORT" "$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" \
    -g "master_process off;"

{
    echo
    echo "User-space instructions per request (callgrind, $REQUESTS requests on 4 keep-alive connections, $(date -u +%Y-%m-%d))"
    echo "breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(valgrind --version)"
    printf '%-34s %12s %12s %10s\n' "path" "breakwater" "nginx" "BW/nginx"
    for path in /ok /shield/x; do
        label="forwarded 200 ($path)"
        [ "$path" = /shield/x ] && label="429 from the proxy ($path)"
        printf '%-34s %12s %12s %10s\n' "$label" "${COUNT[breakwater,$path]}" "${COUNT[nginx,$path]}" \
            "$(awk -v a="${COUNT[breakwater,$path]}" -v b="${COUNT[nginx,$path]}" 'BEGIN { printf "%.2f", a / b }')"
    done
    echo "callgrind files and logs: $OUT/"
} | tee "$OUT/summary.txt"
