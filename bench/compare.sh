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

pinned_settings
SHIELD_CONNECTIONS=${SHIELD_CONNECTIONS:-64}
case "$SHIELD_CONNECTIONS" in '' | *[!0-9]* | 0) bench_die "SHIELD_CONNECTIONS must be a positive integer" ;; esac
proxy_tools

# ---- build ------------------------------------------------------------------------------------
breakwater_binary

# ---- work and output dirs ---------------------------------------------------------------------
bench_dirs compare

read -r UP_PORT NGX_PORT HAP_PORT BW_PORT BW_ADMIN BW1_PORT BW1_ADMIN BW2_PORT BW2_ADMIN \
    <<<"$(free_ports 9 | tr '\n' ' ')"

# ---- the upstream: one nginx worker on the load generator's CPU -------------------------------
start_upstream

# ---- nginx proxy ------------------------------------------------------------------------------
start_nginx_proxy bench/compare/nginx-proxy.conf.in

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
    start_breakwater_on "$name" "$cpus" "$port"
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

# measure CELL TARGET ROUND DURATION: one wrk run; round 0 is a warm-up and is not recorded.
measure() {
    local cell=$1 t=$2 round=$3 duration=$4
    local path conns wcpus wthreads name port pid log file warmup=()
    read -r path conns wcpus wthreads _ <<<"$(cell_info "$cell")"
    read -r name port pid log <<<"$(target_info "$t")"
    path=$(target_path "$t" "$path")
    if [ "$round" = 0 ]; then
        file=$OUT/warmup-$cell-$t.txt
        warmup=(--warmup)
    else
        file=$OUT/$cell-$t-round$round.txt
    fi
    measure_wrk "${warmup[@]}" --rss "$(rss_pid "$pid")" "$cell" "$t" "$round" "$(target_label "$t")" "$pid" "$log" \
        "$file" "$wcpus" -t"$wthreads" -c"$conns" -d"$duration" --timeout 5s --latency "http://$BENCH_HOST:$port$path"
}

LOAD_START=$(load_average)
MACHINE=$(machine_line)
VERSIONS=$(versions_line)
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
for round in $(seq 1 "$ROUNDS"); do
    quiet_round
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        # shellcheck disable=SC2046 # the lists are split into words on purpose
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
for cell in "${CELLS[@]}"; do
    read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
    for t in $targets; do summarize "$cell" "$t"; done
done
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
    table_header
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
                r1="$(round_ratio "$cell" "$t" "$base" 4)*"
                r2="$(round_ratio "$cell" "$t" "$base" 7)*"
            elif [ -n "$base" ]; then
                r1=$(round_ratio "$cell" "$base" "$t" 4)
                r2=$(round_ratio "$cell" "$base" "$t" 7)
                r3=$(round_ratio "$cell" "$base" "$t" 19)
            fi
            table_row "$label" "$(target_label "$t")" "$cell" "$t" "$r1" "$r2" "$r3"
        done
    done
    echo
    table_legend
    echo "*: 2 workers / 1 worker of the same arrangement; in the scale rows the proxy shares its CPUs with wrk by design."
    echo "Peak RSS: VmHWM of the Breakwater process, the nginx worker, the HAProxy process."

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
        cmp_line "$(cell_label "$cell"): req/s BW/nginx" "$(round_ratio "$cell" bw ngx 4)" ">=" 1.2
        cmp_line "$(cell_label "$cell"): req/s BW/haproxy" "$(round_ratio "$cell" bw hap 4)" ">=" 1.2
        cmp_line "$(cell_label "$cell"): CPU us/req BW/nginx" "$(round_ratio "$cell" bw ngx 7)" "<=" 0.8
        cmp_line "$(cell_label "$cell"): CPU us/req BW/haproxy" "$(round_ratio "$cell" bw hap 7)" "<=" 0.8
    done
    cmp_line "shield: CPU us/req BW/nginx limit_req" "$(round_ratio shield bw ngx 7)" "<=" 0.8
    cmp_line "shield: CPU us/req BW/haproxy deny" "$(round_ratio shield bw hapdeny 7)" "<=" 0.8
    cmp_line "shield: CPU us/req BW/haproxy stick-table" "$(round_ratio shield bw hap 7)" "<=" 0.8
    cmp_line "scale: req/s 2 workers / 1 worker, measured" "$(round_ratio scale bw2s bw1s 4)" ">=" 1.8
    cmp_line "scale: 2 x CPU us/req 1 worker / 2 workers (CPU-normalised)" \
        "$(awk -v r="$(round_ratio scale bw1s bw2s 7)" 'BEGIN { printf "%.2f", 2 * r }')" ">=" 1.8
    for cell in fwd-3B-256 fwd-4K-256; do
        bw_mib=$(awk -v k="${M[$cell,bw,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')
        ngx_mib=$(awk -v k="${M[$cell,ngx,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')
        cmp_line "$(cell_label "$cell"): peak RSS BW - nginx worker, MiB ($bw_mib vs $ngx_mib)" \
            "$(awk -v a="$bw_mib" -v b="$ngx_mib" 'BEGIN { printf "%.2f", a - b }')" "<=" 8
    done
    echo "The same CPU comparison in user space only (utime: the proxies' own code; not targets of the issue):"
    for cell in fwd-3B-64 fwd-3B-256 fwd-4K-64 fwd-4K-256 shield; do
        cmp_line "$(cell_label "$cell"): user us/req BW/nginx" "$(round_ratio "$cell" bw ngx 19)" "<=" 0.8
        cmp_line "$(cell_label "$cell"): user us/req BW/haproxy" "$(round_ratio "$cell" bw hap 19)" "<=" 0.8
    done
    cmp_line "shield: user us/req BW/haproxy deny" "$(round_ratio shield bw hapdeny 19)" "<=" 0.8

    # ---- what set the pace, and what disturbed it ----
    echo
    echo "Notes:"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ _ targets <<<"$(cell_info "$cell")"
        for t in $targets; do
            what="$(cell_label "$cell"), $(target_label "$t")"
            if [ "$cell" = scale ]; then
                awk -v what="$what" -v p="${M[$cell,$t,8]}" -v b0="${M[$cell,$t,9]}" -v b1="${M[$cell,$t,10]}" 'BEGIN {
                    if (b0 > 90 && b1 > 90) printf "  %s: both CPUs %.0f%%/%.0f%% busy with proxy %.0f%%: the rest was wrk (and other jobs): load-generator-bound.\n", what, b0, b1, p
                }'
            else
                pace_notes "$what" "$cell" "$t"
            fi
            case $cell in
                fwd-*) answer_notes "$what" "$cell" "$t" forward ;;
                *) answer_notes "$what" "$cell" "$t" refused ;;
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
