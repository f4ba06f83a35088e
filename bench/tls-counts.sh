#!/usr/bin/env bash
# What a TLS connection and a request over kept-alive TLS cost Breakwater and nginx, in counts that
# other jobs on the machine do not move: user-space instructions (valgrind's callgrind) and system
# calls (strace -c), with the configs of bench/tls.sh (one EC P-256 or RSA-2048 certificate, TLS
# 1.2 and later, each proxy's own defaults otherwise; every client here negotiates TLS 1.3).
#
#   bench/tls-counts.sh                                  # about 3 minutes
#   BASE_BIN=/path/to/other/breakwater bench/tls-counts.sh   # the same for a second build beside it (A/B)
#
# Two loads, from a Python ssl client (not measured), one after the other:
#   full  FULL (200) new connections one after another, each a full handshake (no session offered),
#         one GET /ok with Connection: close, read to the end
#   keep  KEEP (2000) GET /ok over 4 kept-alive TLS connections, one request in flight
# Each proxy runs with one worker, first under callgrind (counters zeroed after a warm-up, dumped
# after each load; the instructions per connection or request, all user space: the proxy, OpenSSL,
# libc, libevent), then on its own under strace -c -f (system calls per connection or request).
# Breakwater's breakwater_tls_handshakes_total{result="ok"} is checked to grow by FULL in each full
# load.
#
# Environment: FULL (200), KEEP (2000), KEY (ec or rsa), BASE_BIN (a second Breakwater binary,
# shown as "breakwater-base"), BREAKWATER_BIN / SCRATCH_PATH (as in bench/compare.sh).
# Output: one table; callgrind files, strace summaries and logs go to bench/out/tls-counts-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

FULL=${FULL:-200}
KEEP=${KEEP:-2000}
KEY=${KEY:-ec}
case "$FULL$KEEP" in '' | *[!0-9]*) bench_die "FULL and KEEP must be positive integers" ;; esac
case $KEY in
    ec) KEY_ARGS=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) KEY_ARGS=(-newkey rsa:2048) ;;
    *) bench_die "KEY must be ec or rsa" ;;
esac
ensure_tool valgrind valgrind
ensure_tool strace strace
ensure_tool nginx nginx-light
ensure_tool python3 python3
ensure_tool openssl openssl
ensure_tool curl curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
LOAD_CPU=${LOAD_CPU:-1}
pinned() { shift; exec "$@"; } # no pinning: counts do not depend on where a process runs

breakwater_binary
bench_dirs tls-counts
read -r UP_PORT TLS_PORT PLAIN_PORT ADMIN_PORT <<<"$(free_ports 4 | tr '\n' ' ')"

openssl req -x509 "${KEY_ARGS[@]}" -nodes -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    >"$OUT/openssl-req.log" 2>&1 || fail_with_log "$OUT/openssl-req.log" "openssl could not make the certificate"
start_upstream

fill bench/tls/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$TLS_PORT" UPSTREAM_PORT="$UP_PORT"
fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$PLAIN_PORT" ADMIN_PORT="$ADMIN_PORT" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
{ echo; sed "s|@TLS_PORT@|$TLS_PORT|g" bench/tls/breakwater-tls.conf.in; } >>"$WORK/breakwater.conf"

cat >"$WORK/drive.py" <<'EOF'
import socket, ssl, sys
from http1_answer import read_answer
port, mode, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["http/1.1"])

def answer(s):
    read_answer(s, want_status=b"200")

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    return context.wrap_socket(s, server_hostname="localhost")

if mode == "full":
    for _ in range(count):
        s = connect()
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer(s)
        s.close()
else:
    conns = [connect() for _ in range(4)]
    for i in range(count):
        conns[i % 4].sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer(conns[i % 4])
EOF
drive() { PYTHONPATH=bench timeout 600 python3 "$WORK/drive.py" "$TLS_PORT" "$@" || bench_die "the client failed ($*)"; }

handshakes_ok() { # handshakes_ok NAME: Breakwater's completed handshakes so far (0 for nginx)
    [ "${1%%-*}" = breakwater ] || { echo 0; return; }
    curl -s --max-time 10 "http://$BENCH_HOST:$ADMIN_PORT/metrics" |
        awk '/^breakwater_tls_handshakes_total\{result="ok"\}/ { print $2 + 0; found = 1 } END { if (!found) print 0 }'
}

# command_for NAME: the command line that starts NAME, one worker, in the foreground
command_for() {
    case $1 in
        breakwater) echo "$WORK/breakwater --config $WORK/breakwater.conf" ;;
        breakwater-base) echo "$WORK/breakwater-base --config $WORK/breakwater.conf" ;;
        nginx) echo "$NGINX -p $WORK/ -c $WORK/nginx-proxy.conf -e $WORK/nginx-proxy-error.log -g 'master_process off;'" ;;
    esac
}

# valgrind 3.19 cannot read the DWARF of a binary with the Swift runtime linked in statically.
objcopy --strip-debug "$BIN" "$WORK/breakwater"
NAMES=(breakwater)
if [ -n "${BASE_BIN:-}" ]; then
    objcopy --strip-debug "$BASE_BIN" "$WORK/breakwater-base"
    NAMES+=(breakwater-base)
fi
NAMES+=(nginx)

checked_handshakes() { # checked_handshakes NAME BEFORE: the full load made FULL handshakes
    [ "${1%%-*}" = breakwater ] || return 0
    local after
    after=$(handshakes_ok "$1")
    [ $((after - $2)) -eq "$FULL" ] || bench_die "$1: $((after - $2)) handshakes counted for $FULL connections"
}

declare -A COUNT
callgrind_run() {
    local name=$1 pid file before
    eval "set -- $(command_for "$name")"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$name.%p" "$@" >"$OUT/$name-callgrind.log" 2>&1 &
    pid=$!
    track_pid "$pid" "$name under callgrind"
    wait_port "$TLS_PORT" "$pid" 180 || bench_die "$name did not start under valgrind (see $OUT/$name-callgrind.log)"
    drive full 20
    drive keep 200
    for load in full keep; do
        bench_log "$name: $load load under callgrind"
        before=$(handshakes_ok "$name")
        callgrind_control -z "$pid" >/dev/null 2>&1
        if [ $load = full ]; then drive full "$FULL"; else drive keep "$KEEP"; fi
        callgrind_control -d "$load" "$pid" >/dev/null 2>&1
        sleep 1
        [ $load = full ] && checked_handshakes "$name" "$before"
        file=$(ls -t "$OUT/callgrind-$name".* | head -n 1)
        COUNT[$name,ir,$load]=$(awk -v n="$([ $load = full ] && echo "$FULL" || echo "$KEEP")" \
            '/^(summary|totals):/ { printf "%.0f\n", $2 / n; exit }' "$file")
    done
    stop_pid "$pid" "$name"
    untrack_pid "$pid"
}

strace_run() {
    local name=$1 pid tracer before
    eval "set -- $(command_for "$name")"
    "$@" >"$OUT/$name.log" 2>&1 &
    pid=$!
    track_pid "$pid" "$name"
    wait_port "$TLS_PORT" "$pid" || bench_die "$name did not start (see $OUT/$name.log)"
    drive full 20
    drive keep 200
    for load in full keep; do
        bench_log "$name: $load load under strace"
        before=$(handshakes_ok "$name")
        strace -c -f -p "$pid" -o "$OUT/strace-$name-$load.txt" 2>/dev/null &
        tracer=$!
        sleep 1
        if [ $load = full ]; then drive full "$FULL"; else drive keep "$KEEP"; fi
        sleep 0.5
        kill -INT "$tracer"
        wait "$tracer" || true
        [ $load = full ] && checked_handshakes "$name" "$before"
        COUNT[$name,sys,$load]=$(awk -v n="$([ $load = full ] && echo "$FULL" || echo "$KEEP")" \
            '$NF == "total" { printf "%.1f\n", $(NF - 2) / n }' "$OUT/strace-$name-$load.txt")
        COUNT[$name,calls,$load]=$(awk -v n="$([ $load = full ] && echo "$FULL" || echo "$KEEP")" \
            '$1 ~ /^[0-9]/ && $NF != "total" { printf "%s %.2f, ", $NF, $4 / n }' "$OUT/strace-$name-$load.txt")
    done
    stop_pid "$pid" "$name"
    untrack_pid "$pid"
}

for name in "${NAMES[@]}"; do
    callgrind_run "$name"
    strace_run "$name"
done

{
    echo
    echo "TLS costs in counts ($(date -u +%Y-%m-%d), KEY=$KEY): $FULL new connections with a full handshake and one GET each; $KEEP GETs over 4 kept-alive connections"
    echo "breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(openssl version), $(valgrind --version)"
    printf '%-16s %16s %16s %14s %14s\n' "proxy" "instr/new conn" "instr/kept req" "syscalls/conn" "syscalls/req"
    for name in "${NAMES[@]}"; do
        printf '%-16s %16s %16s %14s %14s\n' "$name" "${COUNT[$name,ir,full]}" "${COUNT[$name,ir,keep]}" \
            "${COUNT[$name,sys,full]}" "${COUNT[$name,sys,keep]}"
    done
    for name in "${NAMES[@]}"; do
        [ "$name" = nginx ] && continue
        printf '%-16s %16s %16s %14s %14s\n' "$name/nginx" \
            "$(awk -v a="${COUNT[$name,ir,full]}" -v b="${COUNT[nginx,ir,full]}" 'BEGIN { printf "%.3f", a / b }')" \
            "$(awk -v a="${COUNT[$name,ir,keep]}" -v b="${COUNT[nginx,ir,keep]}" 'BEGIN { printf "%.3f", a / b }')" \
            "$(awk -v a="${COUNT[$name,sys,full]}" -v b="${COUNT[nginx,sys,full]}" 'BEGIN { printf "%.3f", a / b }')" \
            "$(awk -v a="${COUNT[$name,sys,keep]}" -v b="${COUNT[nginx,sys,keep]}" 'BEGIN { printf "%.3f", a / b }')"
    done
    echo "instr: user-space instructions (callgrind); syscalls: strace -c -f. System calls by name:"
    for name in "${NAMES[@]}"; do
        echo "  $name, per new connection: ${COUNT[$name,calls,full]%, }"
        echo "  $name, per kept-alive request: ${COUNT[$name,calls,keep]%, }"
    done
    echo "callgrind files, strace summaries and logs: $OUT/"
} | tee "$OUT/summary.txt"
