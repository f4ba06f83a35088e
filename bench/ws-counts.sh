#!/usr/bin/env bash
# What the 64 B cell of bench/ws.sh costs per message in the kernel, Breakwater beside nginx, in
# counts that other jobs on the machine barely move: system calls, epoll waits, context switches,
# wake-ups and TCP segments per echoed message, the proxy's CPU time per message from the
# scheduler (nanoseconds, not ticks), and with PROFILE=1 perf's samples per million messages split
# into kernel and user space, with the kernel functions that differ most.
#
#   bench/ws-counts.sh                                  # ROUNDS=3 of SECONDS=3, about a minute
#   BASE_BIN=/path/to/other/breakwater bench/ws-counts.sh   # a second Breakwater build beside
#   PROFILE=1 ROUNDS=5 bench/ws-counts.sh
#
# The arrangement is bench/ws.sh's: bench/ws/echo.py as upstream and client on CPU 1, each proxy
# alone on CPU 0 with bench/ws/nginx-proxy.conf.in or bench/compare/breakwater.conf.in (one
# worker), 64 connections with one 64 B message in flight each. Runs are interleaved, one per
# target a round. Counts come from perf stat's software and tracepoint events on the proxy's
# process (this machine's guest has no hardware counters, so no instruction counts), TCP segments
# from nstat (the whole machine: other jobs' loopback traffic adds to them), the socket options and
# epoll registrations from ss and /proc/PID/fdinfo once per target.
#
# Environment: ROUNDS (3), SECONDS_PER_RUN (3), PROFILE (0), BASE_BIN, BREAKWATER_BIN /
# SCRATCH_PATH (as bench/ws.sh), PROXY_CPU (0), LOAD_CPU (1), NICE. Root (perf, nstat).
# Output: a table of medians; runs, perf outputs and snapshots in bench/out/ws-counts-DATE-TIME/.

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
SECS=${SECONDS_PER_RUN:-3}
PROFILE=${PROFILE:-0}
PYTHON=${PYTHON:-/usr/bin/python3}
case "$SECS" in '' | *[!0-9]* | 0) bench_die "SECONDS_PER_RUN must be a positive integer" ;; esac
[ "$(id -u)" -eq 0 ] || bench_die "perf's tracepoints need root"
ensure_tool nginx nginx-light
ensure_tool perf linux-perf
ensure_tool nstat iproute2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
breakwater_binary

bench_scratch ws-counts
RESULTS=$OUT/results.tsv
EVENTS=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,sched:sched_waking,timer:hrtimer_start
printf 'cell\ttarget\tround\tmessages\tns_per_msg\tsyscalls\tepoll_waits\tcontext_switches\twakeups\thrtimers\tout_segs\tpure_acks\tdelayed_acks\tkernel_samples_per_mmsg\tuser_samples_per_mmsg\n' >"$RESULTS"

read -r UP_PORT NGX_PORT <<<"$(free_ports 2 | tr '\n' ' ')"
pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py server "$UP_PORT" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
track_pid "$UP_PID" "upstream echo"
wait_port "$UP_PORT" "$UP_PID" || fail_with_log "$OUT/upstream.log" "the upstream echo did not start"
start_nginx_proxy bench/ws/nginx-proxy.conf.in

declare -A PORT PID
TARGETS=(nginx breakwater)
PORT[nginx]=$NGX_PORT
PID[nginx]=$(pgrep -P "$NGX_PID" | head -n 1)
start_bw() { # start_bw NAME BINARY
    local ports
    read -r -a ports <<<"$(free_ports 2 | tr '\n' ' ')"
    fill bench/compare/breakwater.conf.in "$WORK/$1.conf" PORT="${ports[0]}" ADMIN_PORT="${ports[1]}" \
        UPSTREAM_PORT="$UP_PORT" WORKERS=1
    BIN=$2 start_breakwater_on "$1" "$PROXY_CPU" "${ports[0]}"
    PORT[$1]=${ports[0]}
    PID[$1]=$STARTED_PID
}
start_bw breakwater "$BIN"
if [ -n "${BASE_BIN:-}" ]; then
    start_bw base "$BASE_BIN"
    TARGETS+=(base)
fi

runtime_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# measure TARGET ROUND: one client run through TARGET with the counters on its process.
measure() {
    local t=$1 round=$2 pid=${PID[$1]} line r0 r1 statp recp="" msgs
    coproc CLIENT { pinned "$LOAD_CPU" "$PYTHON" bench/ws/echo.py client "${PORT[$t]}" /ws 64 64 "$SECS" 2>"$OUT/client-$t-$round.err"; }
    local cpid=$CLIENT_PID cin cout
    exec {cin}<&"${CLIENT[0]}" {cout}>&"${CLIENT[1]}"
    track_pid "$cpid" "echo client"
    read -r -t 60 -u "$cin" line && [ "$line" = ready ] || fail_with_log "$OUT/client-$t-$round.err" "no connections through $t"
    if [ "$round" = 1 ]; then
        ss -tnoiem state established "( sport = :${PORT[$t]} )" >"$OUT/ss-$t.txt" 2>/dev/null || true
        for fd in /proc/"$pid"/fd/*; do
            [ "$(readlink "$fd")" = "anon_inode:[eventpoll]" ] && cat /proc/"$pid"/fdinfo/"${fd##*/}" >>"$OUT/epoll-$t.txt"
        done
    fi
    nstat -n >/dev/null
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$OUT/stat-$t-$round.csv" &
    statp=$!
    if [ "$PROFILE" = 1 ]; then
        perf record -F 1999 -p "$pid" -o "$OUT/perf-$t-$round.data" 2>/dev/null &
        recp=$!
    fi
    sleep 1 # perf attaches before the first message (the client waits, the proxy is idle)
    r0=$(runtime_ns "$pid")
    echo go >&"$cout"
    read -r -t $((SECS + 60)) -u "$cin" line || true
    kill -INT "$statp" $recp
    wait "$statp" $recp || true
    r1=$(runtime_ns "$pid")
    nstat >"$OUT/nstat-$t-$round.txt"
    exec {cout}>&-
    wait "$cpid" || true
    untrack_pid "$cpid"
    exec {cin}<&-
    [ "${line%% *}" = done ] || fail_with_log "$OUT/client-$t-$round.err" "the echo client failed through $t"
    read -r _ msgs _ <<<"$line"
    local ks=0 us=0
    if [ "$PROFILE" = 1 ]; then
        perf report -i "$OUT/perf-$t-$round.data" --no-children -g none --sort sym --stdio -F sample,sym 2>/dev/null |
            grep -E '^ +[0-9]' >"$OUT/profile-$t-$round.txt" || true
        read -r ks us <<<"$(awk '$2 == "[k]" { k += $1 } $2 != "[k]" { u += $1 } END { print k + 0, u + 0 }' "$OUT/profile-$t-$round.txt")"
    fi
    awk -F, -v t="$t" -v round="$round" -v n="$msgs" -v ns=$((r1 - r0)) -v ks="$ks" -v us="$us" -v nstat="$OUT/nstat-$t-$round.txt" '
        $1 ~ /^[0-9.]+$/ { c[$3] = $1 }
        END {
            while ((getline l < nstat) > 0) { split(l, f, " "); s[f[1]] = f[2] }
            printf "64B\t%s\t%s\t%d\t%.0f\t%.3f\t%.4f\t%.4f\t%.4f\t%.4f\t%.3f\t%.4f\t%.4f\t%.0f\t%.0f\n", t, round, n, ns / n,
                c["raw_syscalls:sys_enter"] / n, c["syscalls:sys_enter_epoll_wait"] / n, c["context-switches"] / n,
                c["sched:sched_waking"] / n, c["timer:hrtimer_start"] / n, s["TcpOutSegs"] / n, s["TcpExtTCPPureAcks"] / n,
                s["TcpExtDelayedACKs"] / n, ks * 1e6 / n, us * 1e6 / n
        }' "$OUT/stat-$t-$round.csv" >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "  round %s %-10s %8d msgs  %6d ns/msg  %.2f syscalls  %.3f epoll_wait  %.4f cs  %.2f segs/msg\n", $3, $2, $4, $5, $6, $7, $8, $11 }' >&2
}

bench_log "$(machine_line); load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_log "64 B echo over 64 connections, $ROUNDS rounds of ${SECS}s, targets: ${TARGETS[*]}"
for round in $(seq 1 "$ROUNDS"); do
    for t in $(rotate "$round" "${TARGETS[@]}"); do measure "$t" "$round"; done
done

{
    echo
    echo "Per echoed 64 B message (median of $ROUNDS rounds of ${SECS}s, $(date -u '+%Y-%m-%d %H:%M') UTC; load average $(cut -d' ' -f1 /proc/loadavg)):"
    printf '%-11s %8s %9s %9s %9s %9s %9s %9s %9s %9s %10s %10s\n' target "CPU ns" syscalls epoll_wait "ctx sw" wakeups hrtimers "TCP segs" "pure ACK" "del. ACK" "kernel/M" "user/M"
    for t in "${TARGETS[@]}"; do
        row=$(printf '%-11s' "$t")
        for k in 5 6 7 8 9 10 11 12 13 14 15; do
            # shellcheck disable=SC2046 # one number a word
            row+=$(printf ' %9s' "$(median $(awk -F'\t' -v t="$t" -v k="$k" 'NR > 1 && $2 == t { print $k }' "$RESULTS"))")
        done
        echo "$row"
    done
    echo "CPU ns: the proxy's run time per message (all its threads, /proc/PID/task/*/schedstat); the counts are perf stat's on its process."
    echo "kernel/M, user/M: perf samples (1999 Hz) per million messages, with PROFILE=1. TCP segments and ACKs: nstat, the whole machine."
    for t in "${TARGETS[@]}"; do
        printf 'epoll registrations of %s during the run (events mask: count): %s\n' "$t" \
            "$(grep -o 'events: *[0-9a-f]*' "$OUT/epoll-$t.txt" 2>/dev/null | awk '{ c[$2]++ } END { for (e in c) printf "%s: %d  ", e, c[e] }')"
    done
    echo "runs, perf outputs, ss and epoll snapshots: $OUT/"
} | tee "$OUT/summary.txt"
