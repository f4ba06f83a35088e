#!/usr/bin/env bash
# HTTP/2 over TLS: Breakwater beside nginx (`listen ... ssl http2`), the same certificate, the same
# upstream, each proxy alone on one CPU, h2load on the other, at 1 and at 100 streams per connection.
#
#   bench/h2.sh
#   DURATION=2s ROUNDS=1 bench/h2.sh                              # a quick look, about a minute
#   QUIET_WAIT=120 QUIET_PCT=20 DURATION=5s ROUNDS=5 bench/h2.sh  # steadier, on a shared machine
#
# Everything runs on 127.0.0.1, on ports the kernel reports free:
#   upstream   the plain-HTTP nginx of bench/compare.sh (bench/compare/nginx-upstream.conf.in), /ok
#              answering "ok\n"; both proxies reach it over HTTP/1.1 keep-alive
#   nginx      bench/h2/nginx-proxy.conf.in, one worker
#   breakwater bench/compare/breakwater.conf.in (one worker) with bench/h2/breakwater-h2.conf.in
#              appended: a [tls] listener offering h2
# The cells, each run against both proxies, h2load -t1 over https (ALPN h2) for DURATION:
#   1 stream   CONNECTIONS (64) connections, one request in flight on each (-m 1)
#   100 streams CONNECTIONS_MUX (8) connections, 100 requests in flight on each (-m 100)
# Rounds are interleaved, the proxy order rotating; the table shows medians and the median of the
# per-round ratios. CPU us/req is the proxy's utime+stime over the run divided by the requests
# h2load completed; peak RSS is VmHWM (reset before each run) of Breakwater and of nginx's worker.
#
# Environment: DURATION (5s), ROUNDS (3), WARMUP (1s; 0 to skip), CONNECTIONS (64), CONNECTIONS_MUX
# (8), PROXY_CPU (0), LOAD_CPU (1), NICE, QUIET_WAIT, QUIET_PCT, SCRATCH_PATH, BREAKWATER_BIN (as in
# bench/tls.sh). Raw h2load outputs, configs, logs, results and the table go to bench/out/h2-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
CONNECTIONS=${CONNECTIONS:-64}
CONNECTIONS_MUX=${CONNECTIONS_MUX:-8}
proxy_tools
ensure_tool h2load nghttp2-client
ensure_tool openssl openssl
breakwater_binary

bench_dirs h2
read -r UP_PORT NGX_PORT BW_PORT BW_TLS_PORT BW_ADMIN <<<"$(free_ports 5 | tr '\n' ' ')"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    >"$OUT/openssl-req.log" 2>&1 || fail_with_log "$OUT/openssl-req.log" "openssl could not make the certificate"

start_upstream
start_nginx_proxy bench/h2/nginx-proxy.conf.in
fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
{ echo; sed "s|@TLS_PORT@|$BW_TLS_PORT|g" bench/h2/breakwater-h2.conf.in; } >>"$WORK/breakwater.conf"
cp "$WORK/breakwater.conf" "$OUT/"
start_breakwater_on breakwater "$PROXY_CPU" "$BW_TLS_PORT"
BW_PID=$STARTED_PID
NGX_WORKER=$(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID")

port_of() { case $1 in bw) echo "$BW_TLS_PORT" ;; ngx) echo "$NGX_PORT" ;; esac; }
pid_of() { case $1 in bw) echo "$BW_PID" ;; ngx) echo "$NGX_WORKER" ;; esac; }
label_of() { case $1 in bw) echo breakwater ;; ngx) echo nginx ;; esac; }
streams_of() { case $1 in one) echo 1 ;; mux) echo 100 ;; esac; }
conns_of() { case $1 in one) echo "$CONNECTIONS" ;; mux) echo "$CONNECTIONS_MUX" ;; esac; }
cell_label() { echo "$(streams_of "$1") stream(s) x $(conns_of "$1") conns"; }

# Both proxies answer /ok over HTTP/2 with the upstream's 3 bytes.
for t in bw ngx; do
    got=$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code} %{size_download}' --max-time 5 \
        "https://$BENCH_HOST:$(port_of "$t")/ok" || true)
    [ "$got" = "2 200 3" ] || bench_die "$(label_of "$t"): GET /ok over h2 answered '$got', expected '2 200 3'"
done

printf 'cell\tproxy\tround\trequests\tok\trps\tcpu_us\trss_kib\n' >"$OUT/h2.tsv"
# measure CELL PROXY ROUND: one h2load run (round 0: a warm-up, not recorded).
measure() {
    local cell=$1 t=$2 round=$3 pid file ticks0 ticks1 duration=$DURATION_S
    pid=$(pid_of "$t")
    [ "$round" = 0 ] && duration=${WARMUP%s}
    file=$OUT/$cell-$t-round$round.txt
    reset_peak_rss "$pid"
    ticks0=$(proc_ticks "$pid")
    taskset -c "$LOAD_CPU" h2load -t1 -c "$(conns_of "$cell")" -m "$(streams_of "$cell")" -D "$duration" \
        "https://$BENCH_HOST:$(port_of "$t")/ok" >"$file" 2>&1 || bench_die "h2load failed against $(label_of "$t"): $(tail -3 "$file")"
    ticks1=$(proc_ticks "$pid")
    [ "$round" = 0 ] && return
    awk -v cell="$cell" -v t="$t" -v round="$round" -v ticks=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v rss="$(peak_rss_kib "$pid")" '
        /^finished in/ { rps = $4 }
        /^requests:/ { succeeded = $8 }
        /^status codes:/ { two = $3 }
        END { printf "%s\t%s\t%s\t%d\t%d\t%.0f\t%.2f\t%d\n", cell, t, round, succeeded, two, rps, succeeded ? ticks * 1e6 / hz / succeeded : 0, rss }' \
        "$file" >>"$OUT/h2.tsv"
}

MACHINE=$(machine_line)
bench_log "$MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    for cell in one mux; do for t in bw ngx; do measure "$cell" "$t" 0; done; done
fi
for round in $(seq 1 "$ROUNDS"); do
    quiet_round
    for cell in one mux; do
        for t in $(rotate "$round" bw ngx); do measure "$cell" "$t" "$round"; done
    done
done

col() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { print $k }' "$OUT/h2.tsv"; }
ratios() { # ratios CELL COLUMN: bw/nginx per round
    awk -F'\t' -v c="$1" -v k="$2" 'NR > 1 && $1 == c { v[$2, $3] = $k; r[$3] = 1 }
        END { for (i in r) if (v["ngx", i] > 0) print v["bw", i] / v["ngx", i] }' "$OUT/h2.tsv"
}
{
    echo
    echo "HTTP/2 over TLS, Breakwater vs nginx: median of $ROUNDS interleaved rounds of h2load -D $DURATION, $(date -u +%Y-%m-%d)"
    echo "$MACHINE; breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(h2load --version 2>&1 | head -n 1)"
    echo "Proxy alone on CPU $PROXY_CPU (one worker each); h2load -t1 and the upstream nginx on CPU $LOAD_CPU; one EC P-256 certificate."
    echo
    printf '| %-28s | %-10s | %9s | %11s | %12s | %10s | %10s |\n' cell proxy req/s "CPU us/req" "peak RSS KiB" "req/s BW/x" "CPU BW/x"
    printf '| %-28s | %-10s | %9s | %11s | %12s | %10s | %10s |\n' --- --- ---: ---: ---: ---: ---:
    for cell in one mux; do
        for t in bw ngx; do
            r1="" r2=""
            if [ "$t" = ngx ]; then
                # shellcheck disable=SC2046
                r1=$(median $(ratios "$cell" 6))
                # shellcheck disable=SC2046
                r2=$(median $(ratios "$cell" 7))
            fi
            # shellcheck disable=SC2046
            printf '| %-28s | %-10s | %9.0f | %11.2f | %12.0f | %10s | %10s |\n' "$(cell_label "$cell")" "$(label_of "$t")" \
                "$(median $(col "$cell" "$t" 6))" "$(median $(col "$cell" "$t" 7))" "$(median $(col "$cell" "$t" 8))" "$r1" "$r2"
        done
    done
    echo
    echo "Requests answered 2xx / completed, all rounds: $(awk -F'\t' 'NR > 1 { d[$1 "/" $2] += $4; o[$1 "/" $2] += $5 }
        END { for (k in d) printf "%s %d/%d, ", k, o[k], d[k] }' "$OUT/h2.tsv" | sed 's/, $//')"
    [ "$QUIET_MISSED" -gt 0 ] && echo "Rounds started while the machine was busy: $QUIET_MISSED of $ROUNDS."
    echo "Raw h2load outputs, configs and logs: $OUT/"
} | tee "$OUT/summary.txt"
