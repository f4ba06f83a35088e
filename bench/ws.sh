#!/usr/bin/env bash
# Breakwater's WebSocket tunnel beside nginx's, in the arrangement of bench/compare.sh: an echo
# over 64 WebSocket connections, small and large messages, in one command of about two minutes
# (DURATION=5s ROUNDS=3).
#
#   bench/ws.sh
#   DURATION=2s ROUNDS=1 bench/ws.sh                              # the quick mode, under a minute
#   QUIET_WAIT=180 QUIET_PCT=20 DURATION=5s ROUNDS=5 bench/ws.sh  # steadier numbers on a shared machine
#
# Everything runs on 127.0.0.1, on ports the kernel reports free:
#   upstream   bench/ws/echo.py server: a WebSocket echo on asyncio (uvloop, Debian's python3-uvloop,
#              when installed) with its own framing, that echoes a frame's payload as it arrives
#   nginx      bench/ws/nginx-proxy.conf.in: one worker, proxy_http_version 1.1, Upgrade passed
#              on, Connection from the usual $connection_upgrade map
#   breakwater bench/compare/breakwater.conf.in (workers = 1): /ws matches no route, so the
#              default upgrades (["websocket"]) apply and the shield checks each handshake
#   direct     no proxy: the client talks to the upstream itself, which shows what the load side
#              can do on its CPU; its CPU columns are empty
#
# The load: bench/ws/echo.py client opens CONNECTIONS (64) WebSocket connections through the
# proxy, then each sends a binary message and sends the next as soon as its echo has fully come
# back (one message in flight per connection) for DURATION. Two cells: SMALL (64) and LARGE
# (65536) bytes of payload. The proxy runs alone on CPU 0 (PROXY_CPU), the client and the upstream
# on CPU 1 (LOAD_CPU), every process at nice NICE, as in compare.sh. The handshakes happen before
# the measured window; the proxy's CPU time, its wait for a CPU and the CPUs' busy time are
# sampled (lib.sh's proc_ticks, proc_wait_ns, cpu_ticks) right before the client starts sending
# and right after the last echo.
#
#   msg/s      echoed messages per second (a message is counted when its whole echo is back)
#   MB/s       payload bytes echoed per second, 10^6 bytes; every such byte crossed the proxy
#              twice, to the upstream and back
#   CPU        the proxy's utime+stime per message (us/msg) and per MB echoed (ms/MB), and the
#              latter split into user space and kernel
# Rounds are interleaved (each cell against every target once a round, the order rotating); the
# table shows the medians, and for the ratios BW/nginx the median of the per-round ratios.
#
# Before it measures, the script waits (at most OTHERS_WAIT, 1800 s) until no other side-by-side
# script (compare.sh, tls.sh) and no wrk is running: they load the same two CPUs.
#
# Environment: DURATION (5s), ROUNDS (3), WARMUP (1s per cell and target; 0 to skip), CONNECTIONS
# (64), SMALL (64), LARGE (65536), PROXY_CPU (0), LOAD_CPU (1), NICE (-20 as root, else 0),
# QUIET_WAIT (0: do not wait; else each round first waits at most this many seconds for the
# machine to fall under QUIET_PCT (20) % busy), OTHERS_WAIT (1800), PYTHON (/usr/bin/python3),
# SCRATCH_PATH (swift build's --scratch-path), BREAKWATER_BIN (use this binary, skip the build).
# Client outputs, configs, logs, results.tsv and the table go to bench/out/ws-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
CONNECTIONS=${CONNECTIONS:-64}
SMALL=${SMALL:-64}
LARGE=${LARGE:-65536}
OTHERS_WAIT=${OTHERS_WAIT:-1800}
PYTHON=${PYTHON:-/usr/bin/python3}
case "$CONNECTIONS$SMALL$LARGE$OTHERS_WAIT" in '' | *[!0-9]*) bench_die "CONNECTIONS, SMALL, LARGE and OTHERS_WAIT must be integers" ;; esac
ensure_tool nginx nginx-light
ensure_tool taskset util-linux
ensure_tool curl curl
[ -x "$PYTHON" ] || ensure_tool python3 python3
if ! "$PYTHON" -c 'import uvloop' 2>/dev/null && [ "$PYTHON" = /usr/bin/python3 ]; then
    ensure_tool_module() { # Debian's uvloop, for Debian's python3
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        bench_log "uvloop not found: installing the Debian package python3-uvloop"
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-uvloop >&2; } ||
            bench_log "note: could not install python3-uvloop; the echo runs on asyncio's own loop, slower"
    }
    ensure_tool_module
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
CLK_TCK=$(getconf CLK_TCK)
LOOP=$("$PYTHON" -c 'import uvloop; print("uvloop", uvloop.__version__)' 2>/dev/null || echo "asyncio's loop")

breakwater_binary

bench_scratch ws
RESULTS=$OUT/results.tsv
printf 'cell\ttarget\tround\tmsg_s\tmb_s\tp50_ms\tp99_ms\tcpu_us_per_msg\tcpu_ms_per_mb\tuser_ms_per_mb\tsys_ms_per_mb\tproxy_cpu_pct\tcpu0_busy_pct\tcpu1_busy_pct\tmessages\tpayload_bytes\tpeak_rss_kib\tload1\tproxy_wait_pct\n' >"$RESULTS"

read -r UP_PORT NGX_PORT BW_PORT BW_ADMIN <<<"$(free_ports 4 | tr '\n' ' ')"

# ---- the processes ------------------------------------------------------------------------------
pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py server "$UP_PORT" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream echo"
wait_port "$UP_PORT" "$UP_PID" || fail_with_log "$OUT/upstream.log" "the upstream echo did not start"

start_nginx_proxy bench/ws/nginx-proxy.conf.in

fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
start_breakwater_on breakwater "$PROXY_CPU" "$BW_PORT"
BW_PID=$STARTED_PID

# ---- targets and cells --------------------------------------------------------------------------
#            port       pid       log                              RSS of
target_info() {
    case $1 in
        bw) echo "$BW_PORT $BW_PID $OUT/breakwater.log $BW_PID" ;;
        ngx) echo "$NGX_PORT $NGX_PID $WORK/nginx-proxy-error.log $(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID")" ;;
        direct) echo "$UP_PORT - $OUT/upstream.log -" ;;
    esac
}
target_label() {
    case $1 in
        bw) echo "breakwater" ;;
        ngx) echo "nginx" ;;
        direct) echo "direct (no proxy)" ;;
    esac
}
cell_size() {
    case $1 in
        small) echo "$SMALL" ;;
        large) echo "$LARGE" ;;
    esac
}
cell_label() {
    awk -v s="$(cell_size "$1")" -v c="$CONNECTIONS" 'BEGIN {
        if (s >= 1024 && s % 1024 == 0) printf "echo %d KiB, %d conns\n", s / 1024, c
        else printf "echo %d B, %d conns\n", s, c }'
}
CELLS=(small large)
TARGETS=(bw ngx direct)

# measure CELL TARGET ROUND SECONDS: one client run; round 0 is a warm-up and is not recorded.
measure() {
    local cell=$1 t=$2 round=$3 seconds=$4
    local size port pid log rss file line load ticks0 ticks1 user0 user1 wait0 wait1 c0a c0b c1a c1b peak status=0
    size=$(cell_size "$cell")
    read -r port pid log rss <<<"$(target_info "$t")"
    [ "$pid" = - ] && pid="" && rss=""
    if [ "$round" = 0 ]; then file=$OUT/warmup-$cell-$t.txt; else file=$OUT/$cell-$t-round$round.txt; fi

    coproc CLIENT { pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py client "$port" /ws "$size" "$CONNECTIONS" "$seconds" 2>"$file"; }
    local cpid=$CLIENT_PID cin cout
    exec {cin}<&"${CLIENT[0]}" {cout}>&"${CLIENT[1]}"
    track_pid "$cpid" "echo client"
    if ! read -r -t 60 -u "$cin" line || [ "$line" != ready ]; then
        fail_with_log "$file" "the echo client did not get its $CONNECTIONS WebSocket connections through $(target_label "$t")"
    fi

    load=$(load_average)
    [ -n "$rss" ] && reset_peak_rss "$rss"
    ticks0=$( [ -n "$pid" ] && proc_ticks "$pid" || echo 0)
    user0=$( [ -n "$pid" ] && proc_ticks "$pid" user || echo 0)
    wait0=$( [ -n "$pid" ] && proc_wait_ns "$pid" || echo 0)
    c0a=$(cpu_ticks "$PROXY_CPU")
    c1a=$(cpu_ticks "$LOAD_CPU")
    echo go >&"$cout"
    read -r -t $((${seconds%.*} + 60)) -u "$cin" line || true
    ticks1=$( [ -n "$pid" ] && proc_ticks "$pid" || echo 0)
    user1=$( [ -n "$pid" ] && proc_ticks "$pid" user || echo 0)
    wait1=$( [ -n "$pid" ] && proc_wait_ns "$pid" || echo 0)
    c0b=$(cpu_ticks "$PROXY_CPU")
    c1b=$(cpu_ticks "$LOAD_CPU")
    peak=$( [ -n "$rss" ] && peak_rss_kib "$rss" || echo 0)
    exec {cout}>&-
    wait "$cpid" || status=$?
    untrack_pid "$cpid"
    exec {cin}<&-
    echo "$line" >>"$file"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        fail_with_log "$log" "$(target_label "$t") (pid $pid) exited during the run"
    fi
    [ "$status" = 0 ] && [ "${line%% *}" = done ] || fail_with_log "$file" "the echo client failed (exit $status) through $(target_label "$t")"
    [ "$round" = 0 ] && return 0

    # shellcheck disable=SC2086 # the client's line is split into fields on purpose
    set -- $line
    awk -v cell="$cell" -v t="$t" -v round="$round" -v n="$2" -v bytes="$3" -v secs="$4" -v p50="$5" -v p99="$6" \
        -v dt="$((ticks1 - ticks0))" -v du="$((user1 - user0))" -v hz="$CLK_TCK" -v dw="$((wait1 - wait0))" \
        -v c0a="$c0a" -v c0b="$c0b" -v c1a="$c1a" -v c1b="$c1b" -v peak="$peak" -v load="$load" 'BEGIN {
            split(c0a, a, " "); split(c0b, b, " "); split(c1a, x, " "); split(c1b, y, " ")
            mb = bytes / 1e6
            cpu = dt / hz; user = du / hz
            printf "%s\t%s\t%s\t%.1f\t%.2f\t%.3f\t%.3f\t%.2f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%s\t%.1f\n",
                cell, t, round, n / secs, mb / secs, p50, p99, (n > 0 ? cpu * 1e6 / n : 0), (mb > 0 ? cpu * 1e3 / mb : 0),
                (mb > 0 ? user * 1e3 / mb : 0), (mb > 0 ? (cpu - user) * 1e3 / mb : 0), 100 * cpu / secs,
                100 * (b[1] - a[1]) / (b[2] - a[2]), 100 * (y[1] - x[1]) / (y[2] - x[2]), n, bytes, peak, load,
                100 * dw / 1e9 / secs
        }' >>"$RESULTS"
    awk -F'\t' -v c="$cell" -v t="$t" -v r="$round" -v label="$(target_label "$t")" '$1 == c && $2 == t && $3 == r {
        printf "  round %s %-6s %-18s %9.0f msg/s %8.1f MB/s  p50 %6.2f ms  p99 %6.2f ms  %6.2f us/msg %7.3f ms/MB  proxy %3.0f%% (waiting %2.0f%%)  CPU0 %3.0f%%  CPU1 %3.0f%%\n",
            r, c, label, $4, $5, $6, $7, $8, $9, $12, $19, $13, $14
    }' "$RESULTS" >&2
}

MACHINE=$(machine_line)
VERSIONS="breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), Python $("$PYTHON" -c 'import platform; print(platform.python_version())') with $LOOP"
bench_log "$VERSIONS"
bench_log "$MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_log "echo for $DURATION over $CONNECTIONS connections, $ROUNDS rounds interleaved; proxies on CPU $PROXY_CPU, client and upstream on CPU $LOAD_CPU"

OTHERS_MISSED=0
wait_other_benches "$OTHERS_WAIT" || OTHERS_MISSED=1
LOAD_START=$(load_average)
if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    bench_log "warming up ($WARMUP per cell and target)"
    for cell in "${CELLS[@]}"; do
        for t in "${TARGETS[@]}"; do measure "$cell" "$t" 0 "$(awk -v d="$WARMUP" 'BEGIN { print d + 0 }')"; done
    done
fi
for round in $(seq 1 "$ROUNDS"); do
    wait_other_benches "$OTHERS_WAIT" || OTHERS_MISSED=$((OTHERS_MISSED + 1))
    quiet_round
    for cell in "${CELLS[@]}"; do
        for t in $(rotate "$round" "${TARGETS[@]}"); do measure "$cell" "$t" "$round" "$DURATION_S"; done
    done
done
LOAD_END=$(load_average)
curl -s --max-time 5 "http://$BENCH_HOST:$BW_ADMIN/metrics" >"$OUT/breakwater-metrics.txt" 2>/dev/null || true

# ---- the table ----------------------------------------------------------------------------------
med() { # med CELL TARGET COLUMN: the median over the rounds
    # shellcheck disable=SC2046 # one number a word
    median $(results_col "$1" "$2" "$3")
}
{
    echo
    echo "Breakwater vs nginx, WebSocket echo: median of $ROUNDS interleaved rounds of ${DURATION_S}s, $(date -u +%Y-%m-%d)"
    echo "$MACHINE; load average $LOAD_START at start, $LOAD_END at end"
    echo "$VERSIONS"
    echo "Proxy alone on CPU $PROXY_CPU; the echo client and the echo upstream (bench/ws/echo.py) on CPU $LOAD_CPU. One message in flight per connection."
    echo
    printf '%-22s %-18s %9s %8s %7s %7s %7s %7s %7s %7s %6s %6s %6s %7s %7s %7s\n' \
        "cell" "target" "msg/s" "MB/s" "p50" "p99" "CPU" "CPU" "user" "kernel" "proxy" "CPU 1" "proxy" "peak" "BW/x" "BW/x"
    printf '%-22s %-18s %9s %8s %7s %7s %7s %7s %7s %7s %6s %6s %6s %7s %7s %7s\n' \
        "" "" "" "" "ms" "ms" "us/msg" "ms/MB" "ms/MB" "ms/MB" "CPU %" "busy %" "wait %" "RSS MiB" "msg/s" "ms/MB"
    for cell in "${CELLS[@]}"; do
        label=$(cell_label "$cell")
        for t in "${TARGETS[@]}"; do
            r1="" r2=""
            if [ "$t" = ngx ]; then
                r1=$(round_ratio "$cell" bw ngx 4)
                r2=$(round_ratio "$cell" bw ngx 9)
            fi
            if [ "$t" = direct ]; then
                printf '%-22s %-18s %9.0f %8.1f %7.2f %7.2f %7s %7s %7s %7s %6s %6.0f %6s %7s %7s %7s\n' "$label" "$(target_label "$t")" \
                    "$(med "$cell" "$t" 4)" "$(med "$cell" "$t" 5)" "$(med "$cell" "$t" 6)" "$(med "$cell" "$t" 7)" \
                    - - - - - "$(med "$cell" "$t" 14)" - - "" ""
            else
                printf '%-22s %-18s %9.0f %8.1f %7.2f %7.2f %7.2f %7.3f %7.3f %7.3f %6.0f %6.0f %6.1f %7.1f %7s %7s\n' "$label" "$(target_label "$t")" \
                    "$(med "$cell" "$t" 4)" "$(med "$cell" "$t" 5)" "$(med "$cell" "$t" 6)" "$(med "$cell" "$t" 7)" \
                    "$(med "$cell" "$t" 8)" "$(med "$cell" "$t" 9)" "$(med "$cell" "$t" 10)" "$(med "$cell" "$t" 11)" \
                    "$(med "$cell" "$t" 12)" "$(med "$cell" "$t" 14)" "$(med "$cell" "$t" 19)" \
                    "$(awk -v k="$(results_max "$cell" "$t" 17)" 'BEGIN { printf "%.1f", k / 1024 }')" "$r1" "$r2"
            fi
            label=""
        done
    done
    echo
    echo "msg/s: echoed messages per second; MB/s: their payload, 10^6 bytes, each byte having crossed the proxy to the upstream and back."
    echo "CPU: the proxy's utime+stime ($CLK_TCK Hz ticks) per message and per MB echoed, the latter split into user space and kernel."
    echo "BW/x: Breakwater's value divided by nginx's, round by round, median of the rounds (msg/s: higher is better for Breakwater; ms/MB: lower is)."
    echo "CPU 1 busy: the load side's CPU (client + upstream) during the run; near 100 % it set the pace, and the direct row is what it does with no proxy at all."
    echo "proxy wait %: time the proxy's threads were runnable but waiting for a CPU, per wall second (schedstat). Peak RSS: Breakwater's process, nginx's worker."
    [ "$QUIET_WAIT" -gt 0 ] && echo "Each round waited up to ${QUIET_WAIT}s for the machine to fall under ${QUIET_PCT}% busy; $QUIET_MISSED of $ROUNDS rounds started without that."
    [ "$OTHERS_MISSED" -gt 0 ] && echo "Other benchmarks (compare.sh, tls.sh or wrk) were still running at the start of $OTHERS_MISSED of the waits before the warm-up and the rounds."
    echo
    echo "Notes:"
    for cell in "${CELLS[@]}"; do
        for t in bw ngx; do
            awk -v what="$(cell_label "$cell"), $(target_label "$t")" -v p="$(med "$cell" "$t" 12)" -v b1="$(med "$cell" "$t" 14)" \
                -v w="$(med "$cell" "$t" 19)" -v pc="$PROXY_CPU" -v lc="$LOAD_CPU" 'BEGIN {
                if (p < 90 && b1 > 90) printf "  %s: proxy at %.0f%% of CPU %s while CPU %s (client + upstream) was %.0f%% busy: the load side set the pace; compare CPU per MB.\n", what, p, pc, lc, b1
                if (w > 5) printf "  %s: the proxy waited %.0f%% of the time for CPU %s (other processes ran there): disturbed.\n", what, w, pc
            }'
        done
    done
    awk '/^breakwater_tunnels_total/ { n += $2 } /^breakwater_tunnel_bytes_total/ { b += $2 }
        END { if (n > 0) printf "  breakwater counted %d tunnels and %.0f MB relayed (both directions, warm-up and handshakes included).\n", n, b / 1e6 }' \
        "$OUT/breakwater-metrics.txt"
    echo "  client outputs, configs, logs and results.tsv: $OUT/"
} | tee "$OUT/summary.txt"
