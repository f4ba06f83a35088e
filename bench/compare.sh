#!/usr/bin/env bash
# Breakwater side by side with nginx and HAProxy, on the forward path and on the shield path, in
# one command of about seven minutes (DURATION=5s ROUNDS=3).
#
#   bench/compare.sh
#   DURATION=2s ROUNDS=1 bench/compare.sh      # a quick look, about a minute
#   DURATION=10s ROUNDS=5 bench/compare.sh     # steadier numbers, about 20 minutes
#
# Everything runs on 127.0.0.1, on ports the kernel reports free:
#   upstream   a one-worker nginx answering from memory (bench/compare/nginx-upstream.conf.in):
#              /ok a 3-byte "ok\n", /4k a 4096-byte body, /shield/ and /deny/ a 401
#   nginx      proxy_pass, one worker, keep-alive upstream pool (bench/compare/nginx-proxy.conf.in);
#              shield: limit_req 1r/m, burst 0, limit_req_status 429
#   haproxy    nbthread 1, http-reuse always, option http-keep-alive (bench/compare/haproxy.cfg.in);
#              shield: stick-table http_req_rate deny 429 (/shield/), plain deny 429 (/deny/)
#   breakwater workers = 1 (bench/compare/breakwater.conf.in); shield: the first request to
#              /shield/ gets the upstream's 401 and blocks the client (127.0.0.1) for about an
#              hour, every later request is answered 429 by the tracker
#
# The matrix, each cell run against every proxy, wrk -t1 with --latency:
#   forward  /ok and /4k at 64 and 256 connections: the proxy alone on CPU 0 (PROXY_CPU), wrk and
#            the upstream on CPU 1 (LOAD_CPU)
#   shield   /shield/x at SHIELD_CONNECTIONS (64), same pinning; HAProxy also with /deny/x
#   scale    Breakwater's shield path with 1 worker and with 2 workers, each a separate
#            instance. A 2-core machine has no third core for wrk, so here the proxy and wrk
#            -t2 all float over CPUs 0 and 1 (taskset -c 0,1) and share them: the req/s ratio is
#            bounded by the load generator's share of the machine, and the table also gives the
#            CPU-normalised ratio 2 x (CPU us/req with 1 worker) / (CPU us/req with 2 workers).
# Rounds are interleaved (every cell and proxy once per round, the proxy order rotating from round
# to round). The table shows the median of the rounds; a ratio is taken within each round, between
# runs seconds apart, and the median of those per-round ratios is shown. CPU us/req is utime+stime of the
# proxy's processes (all threads; nginx master + worker; the HAProxy process) over the run,
# divided by the requests wrk completed, also shown split into user space (utime) and kernel
# (stime). Peak RSS is VmHWM (the Breakwater process, the nginx
# worker, the HAProxy process), reset before each run through /proc/PID/clear_refs.
#
# Other jobs on the machine disturb the numbers: every process started here runs at nice NICE
# (-20 when run as root, else 0), and the table shows the load average and the share of the run
# the proxy's threads spent runnable but waiting for a CPU ("wait %", from /proc/PID/schedstat);
# the notes flag disturbed rows. Run again when many are. With QUIET_WAIT=S, each round first
# waits (at most S seconds) until the whole machine is under QUIET_PCT % busy.
#
# Environment: DURATION (5s), ROUNDS (3), WARMUP (1s per cell and proxy; 0 to skip),
# SHIELD_CONNECTIONS (64), PROXY_CPU (0), LOAD_CPU (1), NICE (-20 as root, else 0),
# QUIET_WAIT (0: do not wait), QUIET_PCT (20),
# SCRATCH_PATH (swift build's --scratch-path), BREAKWATER_BIN (use this binary, skip the build).
# Raw wrk outputs, configs, logs, results.tsv and the table go to bench/out/compare-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
SHIELD_CONNECTIONS=${SHIELD_CONNECTIONS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
if [ "$(id -u)" -eq 0 ]; then NICE=${NICE:--20}; else NICE=${NICE:-0}; fi
QUIET_WAIT=${QUIET_WAIT:-0}
QUIET_PCT=${QUIET_PCT:-20}
case "$QUIET_WAIT$QUIET_PCT" in *[!0-9]*) bench_die "QUIET_WAIT and QUIET_PCT must be integers" ;; esac

case "$ROUNDS" in '' | *[!0-9]* | 0) bench_die "ROUNDS must be a positive integer, got '$ROUNDS'" ;; esac
case "$SHIELD_CONNECTIONS" in '' | *[!0-9]* | 0) bench_die "SHIELD_CONNECTIONS must be a positive integer" ;; esac
DURATION_S=$(awk -v d="$DURATION" 'BEGIN {
    n = d + 0
    if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; else if (d ~ /h$/) n *= 3600
    printf "%d\n", n < 1 ? 1 : n }')

# ---- tools ------------------------------------------------------------------------------------
ensure_tool wrk wrk
ensure_tool nginx nginx-light
ensure_tool haproxy haproxy
ensure_tool taskset util-linux
ensure_tool curl curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
CLK_TCK=$(getconf CLK_TCK)

CPUS=$(nproc)
if [ "$CPUS" -lt 2 ]; then
    bench_log "note: only $CPUS CPU: everything runs on CPU 0 and the numbers mean little"
    PROXY_CPU=0
    LOAD_CPU=0
fi
SHARED_CPUS="$PROXY_CPU,$LOAD_CPU"
[ "$PROXY_CPU" = "$LOAD_CPU" ] && SHARED_CPUS=$PROXY_CPU

# pinned CPUS COMMAND... &: run COMMAND on CPUS at nice NICE. Called in the background, the
# function runs in a subshell, which execs taskset, which execs nice, which execs COMMAND: $! is
# COMMAND's own pid, the one that is measured and stopped.
pinned() {
    local cpus=$1
    shift
    exec taskset -c "$cpus" nice -n "$NICE" "$@"
}

# ---- build ------------------------------------------------------------------------------------
breakwater_binary

# ---- work and output dirs ---------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/breakwater-compare.XXXXXX")
chmod 755 "$WORK" # nginx started by root runs its worker as nobody, which must reach the temp dirs
OUT=bench/out/compare-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
on_exit "cp '$WORK'/*.log '$OUT/' 2>/dev/null || true" # the servers' own logs, then the temp dir goes
on_exit "rm -rf '$WORK'"
RESULTS=$OUT/results.tsv
printf 'cell\ttarget\tround\treq_s\tp50_ms\tp99_ms\tcpu_us_per_req\tproxy_cpu_pct\tcpu0_busy_pct\tcpu1_busy_pct\trequests\tnon2xx\tsocket_errors\tupstream_requests\tpeak_rss_kib\tload1\tcpu0_other_pct\tproxy_wait_pct\tuser_us_per_req\tsys_us_per_req\n' >"$RESULTS"

read -r UP_PORT NGX_PORT HAP_PORT BW_PORT BW_ADMIN BW1_PORT BW1_ADMIN BW2_PORT BW2_ADMIN \
    <<<"$(free_ports 9 | tr '\n' ' ')"

# ---- the upstream: one nginx worker on the load generator's CPU -------------------------------
BODY_1K="$(head -c 1023 /dev/zero | tr '\0' 'a')\\\\n" # 1023 letters and nginx's "\n": 1024 bytes
fill bench/compare/nginx-upstream.conf.in "$WORK/nginx-upstream.conf" DIR="$WORK" PORT="$UP_PORT" BODY_1K="$BODY_1K"
"$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" -t >"$OUT/upstream-check.log" 2>&1 \
    || fail_with_log "$OUT/upstream-check.log" "nginx refused the upstream conf"
pinned "$LOAD_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" \
    >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream nginx"
wait_port "$UP_PORT" "$UP_PID" || fail_with_log "$WORK/upstream-error.log" "the upstream nginx did not start"
# ---- nginx proxy ------------------------------------------------------------------------------
fill bench/compare/nginx-proxy.conf.in "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$NGX_PORT" UPSTREAM_PORT="$UP_PORT"
"$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" -t >"$OUT/nginx-check.log" 2>&1 \
    || fail_with_log "$OUT/nginx-check.log" "nginx refused the proxy conf"
pinned "$PROXY_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" \
    >"$OUT/nginx-proxy.log" 2>&1 &
NGX_PID=$!
track_pid "$NGX_PID" "nginx proxy"
wait_port "$NGX_PORT" "$NGX_PID" || fail_with_log "$WORK/nginx-proxy-error.log" "the nginx proxy did not start"

# ---- HAProxy ----------------------------------------------------------------------------------
fill bench/compare/haproxy.cfg.in "$WORK/haproxy.cfg" PORT="$HAP_PORT" UPSTREAM_PORT="$UP_PORT"
"$HAPROXY" -c -f "$WORK/haproxy.cfg" >"$OUT/haproxy-check.log" 2>&1 \
    || fail_with_log "$OUT/haproxy-check.log" "haproxy refused its conf"
pinned "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAP_PID=$!
track_pid "$HAP_PID" haproxy
wait_port "$HAP_PORT" "$HAP_PID" || fail_with_log "$OUT/haproxy.log" "HAProxy did not start"

# ---- Breakwater: 1 worker pinned; 1 and 2 workers floating, for the scaling cell --------------
start_breakwater() { # start_breakwater NAME PORT ADMIN_PORT WORKERS CPUS -> sets STARTED_PID
    local name=$1 port=$2 admin=$3 workers=$4 cpus=$5
    fill bench/compare/breakwater.conf.in "$WORK/$name.conf" PORT="$port" ADMIN_PORT="$admin" \
        UPSTREAM_PORT="$UP_PORT" WORKERS="$workers"
    "$BIN" check --config "$WORK/$name.conf" >"$OUT/$name-check.log" 2>&1 \
        || fail_with_log "$OUT/$name-check.log" "breakwater check refused $name.conf"
    pinned "$cpus" "$BIN" --config "$WORK/$name.conf" >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    track_pid "$STARTED_PID" "$name"
    wait_port "$port" "$STARTED_PID" || fail_with_log "$OUT/$name.log" "$name did not start"
}
start_breakwater breakwater "$BW_PORT" "$BW_ADMIN" 1 "$PROXY_CPU"
BW_PID=$STARTED_PID
start_breakwater breakwater-1w-shared "$BW1_PORT" "$BW1_ADMIN" 1 "$SHARED_CPUS"
BW1_PID=$STARTED_PID
start_breakwater breakwater-2w-shared "$BW2_PORT" "$BW2_ADMIN" 2 "$SHARED_CPUS"
BW2_PID=$STARTED_PID

# ---- targets and cells ------------------------------------------------------------------------
#            name        port        pid        log
target_info() {
    case $1 in
        bw) echo "breakwater $BW_PORT $BW_PID $OUT/breakwater.log" ;;
        ngx) echo "nginx $NGX_PORT $NGX_PID $WORK/nginx-proxy-error.log" ;;
        hap) echo "haproxy $HAP_PORT $HAP_PID $OUT/haproxy.log" ;;
        hapdeny) echo "haproxy $HAP_PORT $HAP_PID $OUT/haproxy.log" ;;
        bw1s) echo "breakwater $BW1_PORT $BW1_PID $OUT/breakwater-1w-shared.log" ;;
        bw2s) echo "breakwater $BW2_PORT $BW2_PID $OUT/breakwater-2w-shared.log" ;;
    esac
}
target_label() {
    case $1 in
        bw) echo "breakwater" ;;
        ngx) echo "nginx" ;;
        hap) echo "haproxy" ;;
        hapdeny) echo "haproxy deny" ;;
        bw1s) echo "breakwater 1 worker" ;;
        bw2s) echo "breakwater 2 workers" ;;
    esac
}
# The process whose VmHWM is the proxy's peak RSS: nginx's worker (its only child), else the pid.
rss_pid() {
    local pid=$1 child
    child=$(pgrep -P "$pid" 2>/dev/null | head -n 1 || true)
    if [ "$pid" = "$NGX_PID" ] && [ -n "$child" ]; then echo "$child"; else echo "$pid"; fi
}
#          path       connections  wrk CPUs     wrk threads  targets
cell_info() {
    case $1 in
        fwd-3B-64) echo "/ok 64 $LOAD_CPU 1 bw ngx hap" ;;
        fwd-3B-256) echo "/ok 256 $LOAD_CPU 1 bw ngx hap" ;;
        fwd-4K-64) echo "/4k 64 $LOAD_CPU 1 bw ngx hap" ;;
        fwd-4K-256) echo "/4k 256 $LOAD_CPU 1 bw ngx hap" ;;
        shield) echo "/shield/x $SHIELD_CONNECTIONS $LOAD_CPU 1 bw ngx hap hapdeny" ;;
        scale) echo "/shield/x $SHIELD_CONNECTIONS $SHARED_CPUS 2 bw1s bw2s" ;;
    esac
}
CELLS=(fwd-3B-64 fwd-3B-256 fwd-4K-64 fwd-4K-256 shield scale)
target_path() { # target_path TARGET CELL_PATH
    if [ "$1" = hapdeny ]; then echo /deny/x; else echo "$2"; fi
}

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$BENCH_HOST:$1$2" || true
}

# One request through each proxy before any load: the forward paths answer 200 with the right
# body size; the first shield request reaches the upstream (401) except HAProxy's plain deny, and
# from the second on every proxy answers 429 itself.
for port in "$BW_PORT" "$NGX_PORT" "$HAP_PORT" "$BW1_PORT" "$BW2_PORT"; do
    for p in /ok /4k; do
        size=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "http://$BENCH_HOST:$port$p" || true)
        want="200 3"
        [ "$p" = /4k ] && want="200 4096"
        [ "$size" = "$want" ] || bench_die "GET $p on port $port answered '$size', expected '$want'"
    done
    first=$(http_code "$port" /shield/x)
    [ "$first" = 401 ] || bench_die "first GET /shield/x on port $port answered '$first', expected the upstream's 401"
    for i in 1 2 3; do
        code=$(http_code "$port" /shield/x)
        [ "$code" = 429 ] || bench_die "GET /shield/x on port $port after the 401 answered '$code', expected 429"
    done
done
code=$(http_code "$HAP_PORT" /deny/x)
[ "$code" = 429 ] || bench_die "HAProxy GET /deny/x answered '$code', expected 429"
for port in "$BW_PORT" "$NGX_PORT" "$HAP_PORT" "$BW1_PORT" "$BW2_PORT"; do
    code=$(http_code "$port" /ok)
    [ "$code" = 200 ] || bench_die "GET /ok on port $port answered '$code' once /shield/ was blocked, expected 200"
done

upstream_requests() {
    curl -s --max-time 5 "http://$BENCH_HOST:$UP_PORT/upstream_status" | awk 'NR == 3 { print $3 }'
}

# measure CELL TARGET ROUND DURATION: one wrk run; round 0 is a warm-up and is not recorded.
measure() {
    local cell=$1 t=$2 round=$3 duration=$4
    local path conns wcpus wthreads name port pid log label rpid file
    read -r path conns wcpus wthreads _ <<<"$(cell_info "$cell")"
    read -r name port pid log <<<"$(target_info "$t")"
    label=$(target_label "$t")
    path=$(target_path "$t" "$path")
    rpid=$(rss_pid "$pid")
    if [ "$round" = 0 ]; then file=$OUT/warmup-$cell-$t.txt; else file=$OUT/$cell-$t-round$round.txt; fi

    local load ticks0 ticks1 user0 user1 c0a c0b c1a c1b up0 up1 w0 w1 wait0 wait1
    load=$(load_average)
    reset_peak_rss "$rpid"
    up0=$(upstream_requests)
    ticks0=$(proc_ticks "$pid")
    user0=$(proc_ticks "$pid" user)
    wait0=$(proc_wait_ns "$pid")
    c0a=$(cpu_ticks "$PROXY_CPU")
    c1a=$(cpu_ticks "$LOAD_CPU")
    w0=$(date +%s.%N)
    run_wrk --cpus "$wcpus" --nice "$NICE" --limit $((DURATION_S + 30)) --server "$pid" "$log" \
        "$file" "$label" \
        -t"$wthreads" -c"$conns" -d"$duration" --timeout 5s --latency "http://$BENCH_HOST:$port$path"
    w1=$(date +%s.%N)
    ticks1=$(proc_ticks "$pid")
    user1=$(proc_ticks "$pid" user)
    wait1=$(proc_wait_ns "$pid")
    c0b=$(cpu_ticks "$PROXY_CPU")
    c1b=$(cpu_ticks "$LOAD_CPU")
    up1=$(upstream_requests)
    local peak
    peak=$(peak_rss_kib "$rpid")

    [ "$round" = 0 ] && return 0

    wrk_results "$file"
    awk -v cell="$cell" -v t="$t" -v round="$round" -v rps="$WRK_RPS" -v p50="$WRK_P50" -v p99="$WRK_P99" \
        -v n="$WRK_REQUESTS" -v dt="$((ticks1 - ticks0))" -v hz="$CLK_TCK" -v w0="$w0" -v w1="$w1" \
        -v c0a="$c0a" -v c0b="$c0b" -v c1a="$c1a" -v c1b="$c1b" -v non2xx="$WRK_NON2XX" -v sockerr="$WRK_SOCKERR" \
        -v up="$((${up1:-0} - ${up0:-0} - 1))" -v peak="$peak" -v load="$load" -v dw="$((wait1 - wait0))" \
        -v du="$((user1 - user0))" 'BEGIN {
            split(c0a, a, " "); split(c0b, b, " "); split(c1a, x, " "); split(c1b, y, " ")
            wall = w1 - w0
            us = n > 0 ? dt / hz * 1e6 / n : 0
            user = n > 0 ? du / hz * 1e6 / n : 0
            proxy = 100 * dt / hz / wall
            busy0 = 100 * (b[1] - a[1]) / (b[2] - a[2])
            printf "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%.2f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f\t%.1f\t%.2f\t%.2f\n", cell, t, round, rps,
                p50, p99, us, proxy, busy0, 100 * (y[1] - x[1]) / (y[2] - x[2]), n, non2xx, sockerr, up, peak, load,
                busy0 - proxy, 100 * dw / 1e9 / wall, user, us - user
        }' >>"$RESULTS"
    awk -F'\t' -v c="$cell" -v t="$t" -v r="$round" -v label="$label" '$1 == c && $2 == t && $3 == r {
        printf "  round %s %-10s %-20s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %6.2f us/req  proxy %3.0f%% (waiting %2.0f%%)  CPU0 %3.0f%%  CPU1 %3.0f%%  load %s\n",
            r, c, label, $4, $5, $6, $7, $8, $18, $9, $10, $16
    }' "$RESULTS" >&2
}

rotate() { # rotate N WORDS...: the words, starting at the (N mod count)-th
    local n=$1
    shift
    local words=("$@") i
    for ((i = 0; i < ${#words[@]}; i++)); do
        printf '%s ' "${words[$(((i + n) % ${#words[@]}))]}"
    done
}

LOAD_START=$(load_average)
MACHINE="$(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
VERSIONS="breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), HAProxy $({ "$HAPROXY" -v || true; } | awk 'NR == 1 { print $3 }'), $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')"
bench_log "$VERSIONS"
bench_log "$MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_log "wrk -d$DURATION, $ROUNDS rounds interleaved; proxies on CPU $PROXY_CPU, wrk and the upstream on CPU $LOAD_CPU"

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    bench_log "warming up ($WARMUP per cell and proxy)"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        for t in $targets; do measure "$cell" "$t" 0 "$WARMUP"; done
    done
fi
QUIET_MISSED=0
for round in $(seq 1 "$ROUNDS"); do
    if [ "$QUIET_WAIT" -gt 0 ]; then
        wait_quiet "$QUIET_PCT" "$QUIET_WAIT" || QUIET_MISSED=$((QUIET_MISSED + 1))
    fi
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        # shellcheck disable=SC2086 # the lists are split into words on purpose
        for t in $(rotate "$round" $targets); do measure "$cell" "$t" "$round" "$DURATION"; done
    done
done
LOAD_END=$(load_average)

# Where each proxy's memory is: /proc/PID/status (VmHWM, RssAnon, RssFile) and smaps_rollup.
for pair in "breakwater:$BW_PID" "nginx-worker:$(rss_pid "$NGX_PID")" "haproxy:$HAP_PID"; do
    cat "/proc/${pair#*:}/status" "/proc/${pair#*:}/smaps_rollup" >"$OUT/memory-${pair%%:*}.txt" 2>/dev/null || true
done
for pair in "breakwater:$BW_ADMIN" "breakwater-1w-shared:$BW1_ADMIN" "breakwater-2w-shared:$BW2_ADMIN"; do
    curl -s --max-time 5 "http://$BENCH_HOST:${pair#*:}/stats" >"$OUT/${pair%%:*}-stats.json" 2>/dev/null || true
done

# ---- the table --------------------------------------------------------------------------------
col() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { print $k }' "$RESULTS"; }
colmax() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t && $k > m { m = $k } END { print m + 0 }' "$RESULTS"; }
colsum() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { s += $k } END { print s + 0 }' "$RESULTS"; }
declare -A M
for cell in "${CELLS[@]}"; do
    read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
    for t in $targets; do
        for k in 4 5 6 7 8 9 10 17 18 19 20; do
            # shellcheck disable=SC2046
            M[$cell,$t,$k]=$(median $(col "$cell" "$t" "$k"))
        done
        M[$cell,$t,peak]=$(colmax "$cell" "$t" 15)
        M[$cell,$t,load]=$(colmax "$cell" "$t" 16)
        M[$cell,$t,up]=$(colsum "$cell" "$t" 14)
        M[$cell,$t,n]=$(colsum "$cell" "$t" 11)
        M[$cell,$t,non2xx]=$(colsum "$cell" "$t" 12)
        M[$cell,$t,sockerr]=$(colsum "$cell" "$t" 13)
    done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# rratio CELL A B COLUMN: the median over the rounds of A's value / B's value in the same round.
# The two ran seconds apart, so a drift of the machine between rounds cancels out of each ratio.
rratio() {
    awk -F'\t' -v c="$1" -v a="$2" -v b="$3" -v k="$4" '
        NR > 1 && $1 == c && $2 == a { va[$3] = $k }
        NR > 1 && $1 == c && $2 == b { vb[$3] = $k }
        END {
            n = 0
            for (r in va) if ((r in vb) && vb[r] > 0) v[++n] = va[r] / vb[r]
            if (n == 0) { print "n/a"; exit }
            for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
            printf "%.2f\n", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
        }' "$RESULTS"
}
cell_label() {
    case $1 in
        fwd-3B-64) echo "forward 3 B, 64 conns" ;;
        fwd-3B-256) echo "forward 3 B, 256 conns" ;;
        fwd-4K-64) echo "forward 4 KiB, 64 conns" ;;
        fwd-4K-256) echo "forward 4 KiB, 256 conns" ;;
        shield) echo "shield 429, $SHIELD_CONNECTIONS conns" ;;
        scale) echo "shield 429 on 2 shared cores, $SHIELD_CONNECTIONS conns" ;;
    esac
}
# The baseline a row's ratio column compares against: Breakwater for nginx and HAProxy rows (the
# ratio is Breakwater / that row), 1 worker for the 2-worker row (2 workers / 1 worker).
ratio_base() {
    case $2 in ngx | hap | hapdeny) echo bw ;; bw2s) echo bw1s ;; *) echo "" ;; esac
}

{
    echo
    echo "Breakwater vs nginx vs HAProxy: median of $ROUNDS interleaved rounds of wrk -d$DURATION --latency, $(date -u +%Y-%m-%d)"
    echo "$MACHINE; load average $LOAD_START at start, $LOAD_END at end"
    echo "$VERSIONS"
    echo "Proxy alone on CPU $PROXY_CPU; wrk -t1 and the upstream nginx on CPU $LOAD_CPU. Scale rows: proxy and wrk -t2 share CPUs $SHARED_CPUS."
    echo "Shield: Breakwater blocked client (401 then 1h window), nginx limit_req 1r/m burst 0, haproxy = stick-table http_req_rate deny 429, haproxy deny = unconditional deny 429."
    echo
    printf '%-38s %-21s %9s %7s %7s %8s %7s %7s %6s %6s %7s %7s %7s %7s %5s\n' \
        "cell" "proxy" "req/s" "p50" "p99" "CPU" "user" "kernel" "proxy" "proxy" "peak" "BW/x" "BW/x" "BW/x" "load"
    printf '%-38s %-21s %9s %7s %7s %8s %7s %7s %6s %6s %7s %7s %7s %7s %5s\n' \
        "" "" "" "ms" "ms" "us/req" "us/req" "us/req" "CPU %" "wait %" "RSS MiB" "req/s" "us/req" "user" "max"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        first=1
        for t in $targets; do
            label=""
            [ "$first" = 1 ] && label=$(cell_label "$cell")
            first=0
            base=$(ratio_base "$cell" "$t")
            r1="" r2="" r3=""
            if [ "$t" = bw2s ]; then
                r1="$(rratio "$cell" "$t" "$base" 4)*"
                r2="$(rratio "$cell" "$t" "$base" 7)*"
            elif [ -n "$base" ]; then
                r1=$(rratio "$cell" "$base" "$t" 4)
                r2=$(rratio "$cell" "$base" "$t" 7)
                r3=$(rratio "$cell" "$base" "$t" 19)
            fi
            other=$(awk -v o="${M[$cell,$t,18]}" 'BEGIN { printf "%.1f", o }')
            printf '%-38s %-21s %9.0f %7.2f %7.2f %8.2f %7.2f %7.2f %6.0f %6s %7.1f %7s %7s %7s %5s\n' "$label" "$(target_label "$t")" \
                "${M[$cell,$t,4]}" "${M[$cell,$t,5]}" "${M[$cell,$t,6]}" "${M[$cell,$t,7]}" "${M[$cell,$t,19]}" "${M[$cell,$t,20]}" \
                "${M[$cell,$t,8]}" "$other" \
                "$(awk -v k="${M[$cell,$t,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')" "$r1" "$r2" "$r3" "${M[$cell,$t,load]}"
        done
    done
    echo
    echo "BW/x: Breakwater's value divided by that row's, round by round, median of the rounds (req/s: higher is better for Breakwater; us/req: lower is)."
    echo "user / kernel us/req: the CPU us/req split into utime and stime (100 Hz ticks); BW/x user compares the proxies' own code, the kernel's share being the same TCP work for all."
    echo "*: 2 workers / 1 worker of the same arrangement. Peak RSS: VmHWM of the Breakwater process, the nginx worker, the HAProxy process."
    echo "proxy wait %: time the proxy's threads were runnable but waiting for a CPU, per wall second (median; schedstat). Near 0 on a quiet machine; in the scale rows the proxy shares its CPUs with wrk by design."
    echo "load max: the highest 1-minute load average at the start of a run of that row ($(nproc) CPUs; above ~2.5 other jobs were running). Processes ran at nice $NICE."
    [ "$QUIET_WAIT" -gt 0 ] && echo "Each round waited up to ${QUIET_WAIT}s for the machine to fall under ${QUIET_PCT}% busy; $QUIET_MISSED of $ROUNDS rounds started without that."

    # ---- targets (issue 5/7) ----
    echo
    cmp_line() { # cmp_line TEXT VALUE OP LIMIT
        awk -v text="$1" -v v="$2" -v op="$3" -v lim="$4" 'BEGIN {
            ok = (op == ">=") ? (v >= lim) : (v <= lim)
            printf "  %-58s %6.2f  (target %s %s)  %s\n", text, v, op, lim, ok ? "met" : "NOT met"
        }'
    }
    echo "Targets:"
    for cell in fwd-3B-64 fwd-3B-256 fwd-4K-64 fwd-4K-256; do
        cmp_line "$(cell_label "$cell"): req/s BW/nginx" "$(rratio "$cell" bw ngx 4)" ">=" 1.2
        cmp_line "$(cell_label "$cell"): req/s BW/haproxy" "$(rratio "$cell" bw hap 4)" ">=" 1.2
        cmp_line "$(cell_label "$cell"): CPU us/req BW/nginx" "$(rratio "$cell" bw ngx 7)" "<=" 0.8
        cmp_line "$(cell_label "$cell"): CPU us/req BW/haproxy" "$(rratio "$cell" bw hap 7)" "<=" 0.8
    done
    cmp_line "shield: CPU us/req BW/nginx limit_req" "$(rratio shield bw ngx 7)" "<=" 0.8
    cmp_line "shield: CPU us/req BW/haproxy deny" "$(rratio shield bw hapdeny 7)" "<=" 0.8
    cmp_line "shield: CPU us/req BW/haproxy stick-table" "$(rratio shield bw hap 7)" "<=" 0.8
    cmp_line "scale: req/s 2 workers / 1 worker, measured" "$(rratio scale bw2s bw1s 4)" ">=" 1.8
    cmp_line "scale: 2 x CPU us/req 1 worker / 2 workers (CPU-normalised)" \
        "$(awk -v r="$(rratio scale bw1s bw2s 7)" 'BEGIN { printf "%.2f", 2 * r }')" ">=" 1.8
    for cell in fwd-3B-256 fwd-4K-256; do
        bw_mib=$(awk -v k="${M[$cell,bw,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')
        ngx_mib=$(awk -v k="${M[$cell,ngx,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')
        cmp_line "$(cell_label "$cell"): peak RSS BW - nginx worker, MiB ($bw_mib vs $ngx_mib)" \
            "$(awk -v a="$bw_mib" -v b="$ngx_mib" 'BEGIN { printf "%.2f", a - b }')" "<=" 8
    done
    echo "The same CPU comparison in user space only (utime: the proxies' own code; not targets of the issue):"
    for cell in fwd-3B-64 fwd-3B-256 fwd-4K-64 fwd-4K-256 shield; do
        cmp_line "$(cell_label "$cell"): user us/req BW/nginx" "$(rratio "$cell" bw ngx 19)" "<=" 0.8
        cmp_line "$(cell_label "$cell"): user us/req BW/haproxy" "$(rratio "$cell" bw hap 19)" "<=" 0.8
    done
    cmp_line "shield: user us/req BW/haproxy deny" "$(rratio shield bw hapdeny 19)" "<=" 0.8

    # ---- what set the pace, and what disturbed it ----
    echo
    echo "Notes:"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        for t in $targets; do
            awk -v what="$(cell_label "$cell"), $(target_label "$t")" -v cell="$cell" -v p="${M[$cell,$t,8]}" \
                -v b0="${M[$cell,$t,9]}" -v b1="${M[$cell,$t,10]}" -v pc="$PROXY_CPU" -v lc="$LOAD_CPU" -v w="${M[$cell,$t,18]}" 'BEGIN {
                if (cell == "scale") {
                    if (b0 > 90 && b1 > 90) printf "  %s: both CPUs %.0f%%/%.0f%% busy with proxy %.0f%%: the rest was wrk (and other jobs): load-generator-bound.\n", what, b0, b1, p
                    exit
                }
                if (p < 90 && b1 > 90) printf "  %s: proxy at %.0f%% of CPU %s while CPU %s (wrk + upstream) was %.0f%% busy: the load side set the pace; compare CPU us/req.\n", what, p, pc, lc, b1
                if (w > 5) printf "  %s: the proxy waited %.0f%% of the time for CPU %s (other processes ran there): disturbed.\n", what, w, pc
                if (b0 - p > 30 && p < 90) printf "  %s: CPU %s was %.0f%% busy, the proxy used %.0f%%: other jobs filled its idle time.\n", what, pc, b0, p
            }'
            [ "${M[$cell,$t,sockerr]}" -gt 0 ] && echo "  $(cell_label "$cell"), $(target_label "$t"): ${M[$cell,$t,sockerr]} socket errors over the rounds."
            case $cell in
                fwd-*)
                    [ "${M[$cell,$t,non2xx]}" -gt 0 ] && echo "  $(cell_label "$cell"), $(target_label "$t"): ${M[$cell,$t,non2xx]} non-2xx answers."
                    ;;
                *)
                    awk -v what="$(cell_label "$cell"), $(target_label "$t")" -v n="${M[$cell,$t,n]}" -v bad="${M[$cell,$t,non2xx]}" -v up="${M[$cell,$t,up]}" 'BEGIN {
                        if (n - bad > 0 || up > 0) printf "  %s: %d of %d answers were 2xx/3xx; %d requests reached the upstream.\n", what, n - bad, n, up
                    }'
                    ;;
            esac
        done
    done
    echo "  upstream requests per cell (all rounds; the forward rows should match wrk's count, the shield rows be ~0): $(
        for cell in "${CELLS[@]}"; do
            read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
            for t in $targets; do printf '%s/%s %s, ' "$cell" "$t" "${M[$cell,$t,up]}"; done
        done | sed 's/, $//')"
    echo "  raw wrk outputs, configs, logs and results.tsv: $OUT/"
} | tee "$OUT/summary.txt"
