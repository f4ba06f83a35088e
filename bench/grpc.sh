#!/usr/bin/env bash
# HTTP/2 to the upstream (upstream_protocol = "h2", what gRPC calls take): Breakwater beside nginx
# (grpc_pass), both reached over h2c and both reaching the same nginx upstream over h2c, each proxy
# alone on one CPU, h2load on the other, at 1 and at 100 streams per connection. A third column,
# Breakwater's HTTP/1.1 pool to the same upstream (its HTTP/1.1 port), shows what the HTTP/2 path
# costs beside the ordinary one.
#
#   bench/grpc.sh
#   DURATION=2s ROUNDS=1 bench/grpc.sh                              # a quick look
#   QUIET_WAIT=120 QUIET_PCT=20 DURATION=5s ROUNDS=5 bench/grpc.sh  # steadier, on a shared machine
#
# Everything runs on 127.0.0.1, on ports the kernel reports free:
#   upstream    the nginx of bench/compare.sh (bench/compare/nginx-upstream.conf.in), /ok answering
#               "ok\n", with a second listener speaking h2c (prior knowledge)
#   nginx       bench/grpc/nginx-proxy.conf.in, one worker, grpc_pass to the h2c listener
#   breakwater  bench/compare/breakwater.conf.in (one worker, h2c = true) with
#               bench/grpc/breakwater-h2.conf.in appended: every path upstream over h2c
#   bw-http1    the same without the route: the HTTP/1.1 keep-alive pool to the HTTP/1.1 listener
# The cells, each run against the three, h2load -t1 over h2c for DURATION:
#   1 stream    CONNECTIONS (64) connections, one request in flight on each (-m 1)
#   100 streams CONNECTIONS_MUX (8) connections, 100 requests in flight on each (-m 100)
# Rounds are interleaved, the order rotating; the table shows medians and the median of the per-round
# ratios to nginx. CPU us/req is the proxy's utime+stime over the run divided by the requests h2load
# completed. Environment: as bench/h2.sh. Outputs go to bench/out/grpc-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
CONNECTIONS=${CONNECTIONS:-64}
CONNECTIONS_MUX=${CONNECTIONS_MUX:-8}
proxy_tools
ensure_tool h2load nghttp2-client
breakwater_binary

bench_dirs grpc
read -r UP_PORT UP_H2_PORT NGX_PORT BW_PORT BW_ADMIN BW1_PORT BW1_ADMIN <<<"$(free_ports 7 | tr '\n' ' ')"

# The upstream with a second, h2c listener in the same server block.
start_upstream_h2() {
    local body_1k
    body_1k="$(head -c 1023 /dev/zero | tr '\0' 'a')\\\\n"
    fill bench/compare/nginx-upstream.conf.in "$WORK/nginx-upstream.conf" DIR="$WORK" PORT="$UP_PORT" BODY_1K="$body_1k"
    sed -i "s|^\(\s*\)listen 127.0.0.1:$UP_PORT backlog=4096;|&\n\1listen 127.0.0.1:$UP_H2_PORT http2 backlog=4096;\n\1http2_max_requests 1000000;\n\1http2_max_concurrent_streams 1000;|" \
        "$WORK/nginx-upstream.conf"
    grep -q "$UP_H2_PORT http2" "$WORK/nginx-upstream.conf" || bench_die "could not add the h2c listener to the upstream conf"
    "$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" -t >"$OUT/upstream-check.log" 2>&1 \
        || fail_with_log "$OUT/upstream-check.log" "nginx refused the upstream conf"
    pinned "$LOAD_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" \
        >"$OUT/upstream.log" 2>&1 &
    UP_PID=$!
    track_pid "$UP_PID" "upstream nginx"
    wait_port "$UP_H2_PORT" "$UP_PID" || fail_with_log "$WORK/upstream-error.log" "the upstream nginx did not start"
}
start_upstream_h2

fill bench/grpc/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$NGX_PORT" UPSTREAM_PORT="$UP_H2_PORT"
"$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" -t >"$OUT/nginx-check.log" 2>&1 \
    || fail_with_log "$OUT/nginx-check.log" "nginx refused the proxy conf"
pinned "$PROXY_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" >"$OUT/nginx-proxy.log" 2>&1 &
NGX_PID=$!
track_pid "$NGX_PID" "nginx proxy"
wait_port "$NGX_PORT" "$NGX_PID" || fail_with_log "$WORK/nginx-proxy-error.log" "the nginx proxy did not start"
NGX_WORKER=$(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID")

fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_H2_PORT" WORKERS=1
sed -i 's|^grace_period = "2s"$|&\nh2c = true|' "$WORK/breakwater.conf"
cat bench/grpc/breakwater-h2.conf.in >>"$WORK/breakwater.conf"
fill bench/compare/breakwater.conf.in "$WORK/bw-http1.conf" PORT="$BW1_PORT" ADMIN_PORT="$BW1_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
sed -i 's|^grace_period = "2s"$|&\nh2c = true|' "$WORK/bw-http1.conf"
cp "$WORK/breakwater.conf" "$WORK/bw-http1.conf" "$OUT/"
start_breakwater_on breakwater "$PROXY_CPU" "$BW_PORT"
BW_PID=$STARTED_PID
start_breakwater_on bw-http1 "$PROXY_CPU" "$BW1_PORT"
BW1_PID=$STARTED_PID

port_of() { case $1 in bw) echo "$BW_PORT" ;; bw1) echo "$BW1_PORT" ;; ngx) echo "$NGX_PORT" ;; esac; }
pid_of() { case $1 in bw) echo "$BW_PID" ;; bw1) echo "$BW1_PID" ;; ngx) echo "$NGX_WORKER" ;; esac; }
label_of() { case $1 in bw) echo "breakwater h2" ;; bw1) echo "breakwater http1" ;; ngx) echo "nginx grpc_pass" ;; esac; }
streams_of() { case $1 in one) echo 1 ;; mux) echo 100 ;; esac; }
conns_of() { case $1 in one) echo "$CONNECTIONS" ;; mux) echo "$CONNECTIONS_MUX" ;; esac; }
cell_label() { echo "$(streams_of "$1") stream(s) x $(conns_of "$1") conns"; }

for t in bw bw1 ngx; do
    got=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code} %{size_download}' --max-time 5 \
        "http://$BENCH_HOST:$(port_of "$t")/ok" || true)
    [ "$got" = "2 200 3" ] || bench_die "$(label_of "$t"): GET /ok over h2c answered '$got', expected '2 200 3'"
done

printf 'cell\tproxy\tround\trequests\tok\trps\tcpu_us\trss_kib\n' >"$OUT/grpc.tsv"
measure() {
    local cell=$1 t=$2 round=$3 pid file ticks0 ticks1 duration=$DURATION_S
    pid=$(pid_of "$t")
    [ "$round" = 0 ] && duration=${WARMUP%s}
    file=$OUT/$cell-$t-round$round.txt
    reset_peak_rss "$pid"
    ticks0=$(proc_ticks "$pid")
    taskset -c "$LOAD_CPU" h2load -t1 -c "$(conns_of "$cell")" -m "$(streams_of "$cell")" -D "$duration" \
        "http://$BENCH_HOST:$(port_of "$t")/ok" >"$file" 2>&1 || bench_die "h2load failed against $(label_of "$t"): $(tail -3 "$file")"
    ticks1=$(proc_ticks "$pid")
    [ "$round" = 0 ] && return
    awk -v cell="$cell" -v t="$t" -v round="$round" -v ticks=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v rss="$(peak_rss_kib "$pid")" '
        /^finished in/ { rps = $4 }
        /^requests:/ { succeeded = $8 }
        /^status codes:/ { two = $3 }
        END { printf "%s\t%s\t%s\t%d\t%d\t%.0f\t%.2f\t%d\n", cell, t, round, succeeded, two, rps, succeeded ? ticks * 1e6 / hz / succeeded : 0, rss }' \
        "$file" >>"$OUT/grpc.tsv"
}

MACHINE=$(machine_line)
bench_log "$MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    for cell in one mux; do for t in bw bw1 ngx; do measure "$cell" "$t" 0; done; done
fi
for round in $(seq 1 "$ROUNDS"); do
    quiet_round
    for cell in one mux; do
        for t in $(rotate "$round" bw bw1 ngx); do measure "$cell" "$t" "$round"; done
    done
done

col() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { print $k }' "$OUT/grpc.tsv"; }
ratios() { # ratios CELL PROXY COLUMN: PROXY/nginx per round
    awk -F'\t' -v c="$1" -v p="$2" -v k="$3" 'NR > 1 && $1 == c { v[$2, $3] = $k; r[$3] = 1 }
        END { for (i in r) if (v["ngx", i] > 0) print v[p, i] / v["ngx", i] }' "$OUT/grpc.tsv"
}
{
    echo
    echo "HTTP/2 to the upstream over h2c, Breakwater vs nginx grpc_pass: median of $ROUNDS interleaved rounds of h2load -D $DURATION, $(date -u +%Y-%m-%d)"
    echo "$MACHINE; breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(h2load --version 2>&1 | head -n 1)"
    echo "Proxies on CPU $PROXY_CPU (one worker each, one measured at a time); h2load -t1 and the upstream nginx on CPU $LOAD_CPU."
    echo
    printf '| %-28s | %-17s | %9s | %11s | %12s | %11s | %11s |\n' cell proxy req/s "CPU us/req" "peak RSS KiB" "req/s /ngx" "CPU /ngx"
    printf '| %-28s | %-17s | %9s | %11s | %12s | %11s | %11s |\n' --- --- ---: ---: ---: ---: ---:
    for cell in one mux; do
        for t in bw bw1 ngx; do
            r1="" r2=""
            if [ "$t" != ngx ]; then
                # shellcheck disable=SC2046
                r1=$(median $(ratios "$cell" "$t" 6))
                # shellcheck disable=SC2046
                r2=$(median $(ratios "$cell" "$t" 7))
            fi
            # shellcheck disable=SC2046
            printf '| %-28s | %-17s | %9.0f | %11.2f | %12.0f | %11s | %11s |\n' "$(cell_label "$cell")" "$(label_of "$t")" \
                "$(median $(col "$cell" "$t" 6))" "$(median $(col "$cell" "$t" 7))" "$(median $(col "$cell" "$t" 8))" "$r1" "$r2"
        done
    done
    echo
    echo "Requests answered 2xx / completed, all rounds: $(awk -F'\t' 'NR > 1 { d[$1 "/" $2] += $4; o[$1 "/" $2] += $5 }
        END { for (k in d) printf "%s %d/%d, ", k, o[k], d[k] }' "$OUT/grpc.tsv" | sed 's/, $//')"
    [ "$QUIET_MISSED" -gt 0 ] && echo "Rounds started while the machine was busy: $QUIET_MISSED of $ROUNDS."
    echo "Raw h2load outputs, configs and logs: $OUT/"
} | tee "$OUT/summary.txt"
