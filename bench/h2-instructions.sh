#!/usr/bin/env bash
# Instructions per HTTP/2 request, counted by callgrind in the proxy process alone: counts that a
# busy machine does not move, beside nginx's in the same run. The setup of bench/h2.sh (TLS, ALPN
# h2, one worker, the upstream nginx over HTTP/1.1 keep-alive, /ok); for each proxy, under
# valgrind --tool=callgrind: a warm-up of 2,000 requests, the counters zeroed, then
# `h2load -c 64 -m 1 -n REQUESTS` (one stream per connection), the counters dumped.
#
#   bench/h2-instructions.sh                                   # this tree's release build and nginx
#   BINARIES="new=.build/release/breakwater old=/tmp/bw-old" bench/h2-instructions.sh
#   REQUESTS=20000 NGINX_TOO=0 bench/h2-instructions.sh
#
# The count includes the 64 connections' TLS handshakes (SSL_do_handshake, about 2.8 million
# instructions each for either proxy); the table also gives the count without them. Valgrind 3.19
# cannot read the DWARF 5 of a Swift build, so each binary is copied without its debug sections
# (symbols stay). Results and the callgrind files go to bench/out/h2-instructions-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
REQUESTS=${REQUESTS:-20000}
NGINX_TOO=${NGINX_TOO:-1}
proxy_tools
ensure_tool h2load nghttp2-client
ensure_tool valgrind valgrind
ensure_tool openssl openssl
if [ -z "${BINARIES:-}" ]; then
    breakwater_binary
    BINARIES="breakwater=$BIN"
fi

bench_dirs h2-instructions
OUT=$(realpath "$OUT")
read -r UP_PORT NGX_PORT BW_PORT BW_TLS_PORT BW_ADMIN <<<"$(free_ports 5 | tr '\n' ' ')"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    >"$OUT/openssl-req.log" 2>&1 || fail_with_log "$OUT/openssl-req.log" "openssl could not make the certificate"
start_upstream

printf 'proxy\trequests\tok\tinstructions\tper_request\thandshakes\tper_request_without_handshakes\n' >"$OUT/instructions.tsv"
# count LABEL PORT PID: one measured run against the proxy on PORT whose callgrind runs as PID.
count() {
    local label=$1 port=$2 pid=$3 file ok total handshakes
    h2load -t1 -c 64 -m 1 -n 2000 "https://$BENCH_HOST:$port/ok" >"$OUT/$label-warmup.txt" 2>&1 ||
        bench_die "h2load failed against $label: $(tail -3 "$OUT/$label-warmup.txt")"
    callgrind_control -z "$pid" >/dev/null
    taskset -c "$LOAD_CPU" h2load -t1 -c 64 -m 1 -n "$REQUESTS" "https://$BENCH_HOST:$port/ok" >"$OUT/$label.txt" 2>&1 ||
        bench_die "h2load failed against $label: $(tail -3 "$OUT/$label.txt")"
    callgrind_control -d "$pid" >/dev/null
    file=$OUT/callgrind.$label.$pid.1
    for _ in $(seq 1 100); do [ -s "$file" ] && break; sleep 0.1; done
    ok=$(awk '/^status codes:/ { print $3 }' "$OUT/$label.txt")
    total=$(awk '/^(summary|totals):/ && !t { t = $2 } END { print t + 0 }' "$file")
    handshakes=$(callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null |
        awk '/:SSL_do_handshake / && !n { gsub(",", "", $1); n = $1 } END { print n + 0 }')
    printf '%s\t%s\t%s\t%s\t%d\t%s\t%d\n' "$label" "$REQUESTS" "$ok" "$total" $((total / REQUESTS)) "${handshakes:-0}" \
        $(((total - ${handshakes:-0}) / REQUESTS)) >>"$OUT/instructions.tsv"
}

for pair in $BINARIES; do
    label=${pair%%=*}
    objcopy --strip-debug "${pair#*=}" "$WORK/$label"
    fill bench/compare/breakwater.conf.in "$WORK/$label.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
        UPSTREAM_PORT="$UP_PORT" WORKERS=1
    { echo; sed "s|@TLS_PORT@|$BW_TLS_PORT|g" bench/h2/breakwater-h2.conf.in; } >>"$WORK/$label.conf"
    (cd "$WORK" && exec taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$label.%p" \
        "$WORK/$label" --config "$WORK/$label.conf") >"$OUT/$label.log" 2>&1 &
    pid=$!
    track_pid "$pid" "$label"
    wait_port "$BW_TLS_PORT" "$pid" 120 || fail_with_log "$OUT/$label.log" "$label did not start under callgrind"
    count "$label" "$BW_TLS_PORT" "$pid"
    stop_pid "$pid" "$label"
    untrack_pid "$pid"
done
if [ "$NGINX_TOO" = 1 ]; then
    # One process (master_process off), so that the process counted is the one that serves.
    fill bench/h2/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$NGX_PORT" UPSTREAM_PORT="$UP_PORT"
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.nginx.%p" \
        "$NGINX" -g "master_process off;" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" \
        >"$OUT/nginx.log" 2>&1 &
    pid=$!
    track_pid "$pid" nginx
    wait_port "$NGX_PORT" "$pid" 120 || fail_with_log "$WORK/nginx-proxy-error.log" "nginx did not start under callgrind"
    count nginx "$NGX_PORT" "$pid"
    stop_pid "$pid" nginx
    untrack_pid "$pid"
fi

{
    echo
    echo "Instructions per HTTP/2 request (callgrind, proxy process only), h2load -c 64 -m 1 -n $REQUESTS over TLS, $(date -u +%Y-%m-%d)"
    echo "$(machine_line); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(h2load --version 2>&1 | head -n 1)"
    echo
    printf '| %-12s | %9s | %14s | %13s | %28s |\n' proxy "2xx" instructions "per request" "per request, handshakes out"
    printf '| %-12s | %9s | %14s | %13s | %28s |\n' --- ---: ---: ---: ---:
    awk -F'\t' 'NR > 1 { printf "| %-12s | %9s | %14s | %13s | %28s |\n", $1, $3 "/" $2, $4, $5, $7 }' "$OUT/instructions.tsv"
    echo
    echo "Callgrind files and logs: $OUT/"
} | tee "$OUT/summary.txt"
