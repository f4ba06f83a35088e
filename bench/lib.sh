# shellcheck shell=bash
# Shared helpers for the scripts in bench/. Source it; it defines functions and one EXIT trap.
#
#   free_ports N           print N distinct free TCP ports on 127.0.0.1, one a line
#   wait_port PORT PID S   wait until 127.0.0.1:PORT accepts, PID stays alive, at most S seconds
#   track_pid PID NAME     kill PID (TERM, then KILL) when the script exits, however it exits
#   untrack_pid PID        forget a tracked process that has exited
#   stop_pid PID NAME      stop a process now: SIGTERM, then SIGKILL after 5 s; its exit status in STOP_STATUS
#   proc_ticks PID         utime+stime of PID and its child processes, in clock ticks
#   cpu_ticks N            "busy total" clock ticks of CPU N so far, from /proc/stat
#   median X...            the median of the numbers given (mean of the middle two for an even count)
#   ensure_tool CMD PKG    install the Debian package PKG when CMD is missing
#   wrk_ms VALUE           a wrk latency ("812.00us", "1.20ms", "2.01s") in milliseconds
#   run_wrk [OPTION...] FILE NAME ARG...
#                          run wrk ARG... against NAME, its output in FILE, tracked; exit if it fails
#   wrk_results FILE       read a wrk --latency output into WRK_RPS WRK_REQUESTS WRK_P50 WRK_P99
#                          WRK_NON2XX WRK_SOCKERR (the latencies in ms), or fail
#   reset_peak_rss PID...  restart the peak-RSS count (VmHWM) of each PID at its current RSS
#   peak_rss_kib PID       VmHWM of PID in KiB (0 when unknown)
#   load_average           the 1-minute load average
#   machine_busy_pct S     how busy all CPUs together were over the next S seconds, in %
#   wait_quiet PCT MAX     wait (at most MAX s) until the machine is under PCT % busy; false if never
#   proc_wait_ns PID       nanoseconds the threads of PID and of its child processes have waited
#                          for a CPU while runnable (field 2 of /proc/.../schedstat), so far
#
# For proxies measured side by side, each pinned to a CPU (compare.sh, tls.sh; see that section):
#   pinned_settings, proxy_tools, bench_dirs NAME, pinned CPUS CMD..., start_upstream,
#   upstream_requests, measure_wrk, quiet_round, rotate, results_col/max/sum, round_ratio,
#   summarize, table_header, table_row, table_legend, pace_notes, answer_notes
#   other_benches          the pids of other side-by-side scripts and wrk runs (not this script's)
#   wait_other_benches MAX wait (at most MAX s) until none runs; false if one still does
#
# Every address used is 127.0.0.1: these scripts load only this machine's loopback.

BENCH_HOST=127.0.0.1

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# fail_with_log LOG MESSAGE...: says MESSAGE and the last lines of LOG (when it has any), exits 1.
fail_with_log() {
    local log=$1
    shift
    bench_log "$*"
    if [ -s "$log" ]; then
        bench_log "--- last lines of $log:"
        tail -n 20 "$log" >&2
    fi
    exit 1
}

# Sets BIN to the Breakwater binary: $BREAKWATER_BIN as given, else the release build of
# scripts/build-release.sh (in $SCRATCH_PATH when set).
breakwater_binary() {
    if [ -n "${BREAKWATER_BIN:-}" ]; then
        BIN=$BREAKWATER_BIN
        [ -x "$BIN" ] || bench_die "BREAKWATER_BIN=$BIN is not an executable"
        return
    fi
    local options=()
    [ -n "${SCRATCH_PATH:-}" ] && options+=(--scratch-path "$SCRATCH_PATH")
    BIN=$("$(dirname "${BASH_SOURCE[0]}")/../scripts/build-release.sh" "${options[@]}" | tail -n 1) ||
        bench_die "the release build failed"
}

# Ports: bind port 0 on the loopback and let the kernel choose. All N sockets are held open
# together, so the ports are distinct; they are free when this returns (a small race remains
# until the caller binds them, which is why every server start is checked with wait_port).
free_ports() {
    local count=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$count" "$BENCH_HOST" <<'EOF'
import socket, sys
count, host = int(sys.argv[1]), sys.argv[2]
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
EOF
        return
    fi
    # Without python3: random ports from the range above the usual ephemeral one, checked with ss.
    local found=() port tries=0
    while [ "${#found[@]}" -lt "$count" ]; do
        tries=$((tries + 1))
        [ "$tries" -gt 1000 ] && bench_die "no free port found"
        port=$((20000 + RANDOM % 12000))
        case " ${found[*]} " in *" $port "*) continue ;; esac
        if ! ss -Htan "sport = :$port" 2>/dev/null | grep -q .; then
            found+=("$port")
        fi
    done
    printf '%s\n' "${found[@]}"
}

# True when something accepts connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$BENCH_HOST/$1") 2>/dev/null
}

wait_port() {
    local port=$1 pid=$2 seconds=${3:-15} waited=0
    while ! port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            bench_log "process $pid exited before listening on $BENCH_HOST:$port"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
        if [ "$waited" -ge $((seconds * 10)) ]; then
            bench_log "nothing listens on $BENCH_HOST:$port after ${seconds}s"
            return 1
        fi
    done
}

# fill TEMPLATE OUTPUT NAME=VALUE...: the template with each @NAME@ replaced, written to OUTPUT
# (and copied to $OUT, the run's output directory, when that is set).
fill() {
    local template=$1 output=$2 args=() kv
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$output"
    if [ -n "${OUT:-}" ]; then cp "$output" "$OUT/"; fi
}

# Processes this script started, stopped on exit: on success, on error, on Ctrl-C, on SIGTERM.
BENCH_PIDS=()
BENCH_NAMES=()
BENCH_CLEANUP_HOOKS=()

track_pid() {
    BENCH_PIDS+=("$1")
    BENCH_NAMES+=("${2:-process}")
}

# Forget PID (it has exited and was waited for), so its number is never signalled after reuse.
untrack_pid() {
    local i
    for i in "${!BENCH_PIDS[@]}"; do
        if [ "${BENCH_PIDS[$i]}" = "$1" ]; then
            unset 'BENCH_PIDS[i]' 'BENCH_NAMES[i]'
        fi
    done
    BENCH_PIDS=("${BENCH_PIDS[@]}")
    BENCH_NAMES=("${BENCH_NAMES[@]}")
}

# Stop PID: SIGTERM, up to 5 s to exit, then SIGKILL. Says so when a process needed SIGKILL.
# Leaves the exit status of PID in STOP_STATUS (as `wait` gives it: 128 + N after signal N), also
# when it had already exited.
STOP_STATUS=0
stop_pid() {
    local pid=$1 name=${2:-process} i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            bench_log "note: $name (pid $pid) still running 5s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    STOP_STATUS=0
    wait "$pid" 2>/dev/null || STOP_STATUS=$?
}

bench_cleanup() {
    local status=$? i hook
    trap - EXIT INT TERM
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${BENCH_PIDS[$i]}" "${BENCH_NAMES[$i]}"
    done
    for hook in "${BENCH_CLEANUP_HOOKS[@]}"; do
        eval "$hook"
    done
    exit "$status"
}
trap bench_cleanup EXIT
trap 'bench_log "interrupted"; exit 130' INT
trap 'bench_log "terminated"; exit 143' TERM

# Run a command when the script exits (after the processes are stopped), e.g. removing a temp dir.
on_exit() { BENCH_CLEANUP_HOOKS+=("$1"); }

# utime + stime (fields 14 and 15 of /proc/PID/stat, all threads included) of PID and of its
# direct children (nginx's workers), in clock ticks; see `getconf CLK_TCK`. A second argument
# `user` or `system` gives only the time in user space or only the time in the kernel.
proc_ticks() {
    local pid=$1 part=${2:-all} total=0 child t
    t=$(stat_ticks "$pid" "$part") || { echo 0; return; }
    total=$t
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        t=$(stat_ticks "$child" "$part") && total=$((total + t))
    done
    echo "$total"
}

stat_ticks() {
    local stat rest part=${2:-all}
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    # The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    rest=${stat##*) }
    # rest starts at field 3 (state); utime is field 14, stime field 15.
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $rest
    case $part in
        user) echo "${12}" ;;
        system) echo "${13}" ;;
        *) echo $(( ${12} + ${13} )) ;;
    esac
}

cpu_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

median() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
            else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

ensure_tool() {
    local cmd=$1 pkg=$2 sudo=""
    if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; then
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    bench_log "$cmd not found: installing the Debian package $pkg"
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >&2; }; then
        bench_die "could not install $pkg; install it and run again"
    fi
}

wrk_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000
        else if (v ~ /ms$/) n = n
        else if (v ~ /m$/) n *= 60000
        else if (v ~ /s$/) n *= 1000
        printf "%.3f\n", n
    }'
}

# run_wrk [OPTION...] FILE NAME WRK_ARGUMENT...: one run of wrk, its output in FILE, as a tracked
# process (stopped if the script exits first). NAME is what wrk loads, for the messages. Exits, with
# the end of FILE, when wrk fails. Read FILE with wrk_results after the samples that close the run
# are taken: reading it starts a few processes, which would count in them.
#   --cpus LIST       run wrk on these CPUs only (taskset -c LIST)
#   --nice N          run wrk at nice N
#   --limit S         stop wrk if it still runs after S seconds (timeout -k 5 S)
#   --during COMMAND  evaluated once wrk has started, before waiting for it to end (a sample taken
#                     halfway through, say); it sees and sets the caller's variables
#   --server PID LOG  the process wrk loads: if it has exited by the end of the run, that is the
#                     error, shown with the end of LOG
run_wrk() {
    # Names with a leading _, so that a --during command sees the caller's variables, not these.
    local _cpus="" _nice="" _limit="" _during="" _server="" _server_log=""
    while :; do
        case $1 in
            --cpus) _cpus=$2; shift 2 ;;
            --nice) _nice=$2; shift 2 ;;
            --limit) _limit=$2; shift 2 ;;
            --during) _during=$2; shift 2 ;;
            --server) _server=$2; _server_log=$3; shift 3 ;;
            *) break ;;
        esac
    done
    local _file=$1 _name=$2
    shift 2
    local _command=(wrk "$@")
    if [ -n "$_nice" ]; then _command=(nice -n "$_nice" "${_command[@]}"); fi
    if [ -n "$_cpus" ]; then _command=(taskset -c "$_cpus" "${_command[@]}"); fi
    if [ -n "$_limit" ]; then _command=(timeout -k 5 "$_limit" "${_command[@]}"); fi
    "${_command[@]}" >"$_file" 2>&1 &
    local _wrk=$! _status=0
    track_pid "$_wrk" wrk
    if [ -n "$_during" ]; then eval "$_during"; fi
    wait "$_wrk" || _status=$?
    untrack_pid "$_wrk"
    if [ -n "$_server" ] && ! kill -0 "$_server" 2>/dev/null; then
        fail_with_log "$_server_log" "$_name (pid $_server) exited during the run ($_file)"
    fi
    [ "$_status" = 0 ] || fail_with_log "$_file" "wrk failed (exit $_status) against $_name"
}

wrk_results() {
    local file=$1 non2xx sockerr
    WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
    WRK_REQUESTS=$(awk '/ requests in / { print $1 }' "$file")
    [ -n "$WRK_RPS" ] && [ -n "$WRK_REQUESTS" ] || fail_with_log "$file" "could not read wrk's output"
    WRK_P50=$(wrk_ms "$(awk '$1 == "50%" { print $2 }' "$file")")
    WRK_P99=$(wrk_ms "$(awk '$1 == "99%" { print $2 }' "$file")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$file")
    sockerr=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$file")
    WRK_NON2XX=${non2xx:-0}
    WRK_SOCKERR=${sockerr:-0}
}

# Writing 5 to /proc/PID/clear_refs resets VmHWM to the current RSS (Linux 4.0 and later), so the
# peak of one run can be read on its own. Needs the right to write there (same user or root).
reset_peak_rss() {
    local pid
    for pid in "$@"; do
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    done
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

load_average() {
    awk '{ print $1 }' /proc/loadavg
}

proc_wait_ns() {
    local pid=$1 p
    {
        for p in "$pid" $(pgrep -P "$pid" 2>/dev/null); do
            cat /proc/"$p"/task/*/schedstat 2>/dev/null
        done
    } | awk '{ s += $2 } END { printf "%d\n", s }'
}

machine_busy_pct() {
    local a b
    a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep "$1"
    b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f\n", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# Other jobs on a shared machine come and go: wait for a gap rather than measure through them.
wait_quiet() {
    local pct=$1 max=$2 start=$SECONDS busy
    while :; do
        busy=$(machine_busy_pct 2)
        [ "$busy" -lt "$pct" ] && return 0
        if [ $((SECONDS - start)) -ge "$max" ]; then
            bench_log "note: the machine was still ${busy}% busy after waiting ${max}s for under ${pct}%; measuring anyway"
            return 1
        fi
        bench_log "machine ${busy}% busy (other jobs); waiting for under ${pct}%"
        sleep 3
    done
}

# ---- proxies side by side, each pinned to a CPU (compare.sh, tls.sh) ---------------------------
# The arrangement: the proxy under test alone on PROXY_CPU (one worker, one thread), wrk (one
# thread) and the upstream (a one-worker nginx answering from memory) together on LOAD_CPU, every
# process at nice NICE; each cell run against every proxy once per round, the rounds interleaved.

# Reads and checks the settings every such script takes, with their defaults: DURATION (5s),
# ROUNDS (3), WARMUP (1s), PROXY_CPU (0), LOAD_CPU (1), NICE (-20 as root, else 0), QUIET_WAIT
# (0), QUIET_PCT (20). Sets DURATION_S (DURATION in whole seconds, at least 1) and SHARED_CPUS
# (both CPUs), and puts everything on CPU 0 on a one-CPU machine.
pinned_settings() {
    DURATION=${DURATION:-5s}
    ROUNDS=${ROUNDS:-3}
    WARMUP=${WARMUP:-1s}
    PROXY_CPU=${PROXY_CPU:-0}
    LOAD_CPU=${LOAD_CPU:-1}
    if [ "$(id -u)" -eq 0 ]; then NICE=${NICE:--20}; else NICE=${NICE:-0}; fi
    QUIET_WAIT=${QUIET_WAIT:-0}
    QUIET_PCT=${QUIET_PCT:-20}
    case "$QUIET_WAIT$QUIET_PCT" in *[!0-9]*) bench_die "QUIET_WAIT and QUIET_PCT must be integers" ;; esac
    case "$ROUNDS" in '' | *[!0-9]* | 0) bench_die "ROUNDS must be a positive integer, got '$ROUNDS'" ;; esac
    DURATION_S=$(awk -v d="$DURATION" 'BEGIN {
        n = d + 0
        if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; else if (d ~ /h$/) n *= 3600
        printf "%d\n", n < 1 ? 1 : n }')
    if [ "$(nproc)" -lt 2 ]; then
        bench_log "note: only $(nproc) CPU: everything runs on CPU 0 and the numbers mean little"
        PROXY_CPU=0
        LOAD_CPU=0
    fi
    SHARED_CPUS="$PROXY_CPU,$LOAD_CPU"
    [ "$PROXY_CPU" = "$LOAD_CPU" ] && SHARED_CPUS=$PROXY_CPU
    QUIET_MISSED=0
}

# wrk, nginx, HAProxy, taskset and curl, installed when missing. Sets NGINX, HAPROXY and CLK_TCK.
proxy_tools() {
    ensure_tool wrk wrk
    ensure_tool nginx nginx-light
    ensure_tool haproxy haproxy
    ensure_tool taskset util-linux
    ensure_tool curl curl
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
    CLK_TCK=$(getconf CLK_TCK)
}

# pinned CPUS COMMAND... &: run COMMAND on CPUS at nice NICE. Called in the background, the
# function runs in a subshell, which execs taskset, which execs nice, which execs COMMAND: $! is
# COMMAND's own pid, the one that is measured and stopped.
pinned() {
    local cpus=$1
    shift
    exec taskset -c "$cpus" nice -n "$NICE" "$@"
}

# bench_scratch NAME: WORK, a temporary directory (removed on exit, the servers' *.log copied to
# OUT first), and OUT=bench/out/NAME-DATE-TIME for what the run keeps.
bench_scratch() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/breakwater-$1.XXXXXX")
    chmod 755 "$WORK" # nginx started by root runs its worker as nobody, which must reach the temp dirs
    OUT=bench/out/$1-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$OUT"
    on_exit "cp '$WORK'/*.log '$OUT/' 2>/dev/null || true"
    on_exit "rm -rf '$WORK'"
}

# bench_dirs NAME: bench_scratch, and RESULTS=$OUT/results.tsv with its header line.
bench_dirs() {
    bench_scratch "$1"
    RESULTS=$OUT/results.tsv
    results_header >"$RESULTS"
}

# The upstream: one nginx worker on LOAD_CPU, listening on UP_PORT, its conf and temp files in
# WORK (bench/compare/nginx-upstream.conf.in; NGINX, OUT as set). Sets UP_PID.
start_upstream() {
    local body_1k
    body_1k="$(head -c 1023 /dev/zero | tr '\0' 'a')\\\\n" # 1023 letters and nginx's "\n": 1024 bytes
    fill bench/compare/nginx-upstream.conf.in "$WORK/nginx-upstream.conf" DIR="$WORK" PORT="$UP_PORT" BODY_1K="$body_1k"
    "$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" -t >"$OUT/upstream-check.log" 2>&1 \
        || fail_with_log "$OUT/upstream-check.log" "nginx refused the upstream conf"
    pinned "$LOAD_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-upstream.conf" -e "$WORK/upstream-error.log" \
        >"$OUT/upstream.log" 2>&1 &
    UP_PID=$!
    track_pid "$UP_PID" "upstream nginx"
    wait_port "$UP_PORT" "$UP_PID" || fail_with_log "$WORK/upstream-error.log" "the upstream nginx did not start"
}

# start_nginx_proxy TEMPLATE: the nginx proxy of TEMPLATE (a conf with @DIR@, @PORT@ and
# @UPSTREAM_PORT@) on PROXY_CPU, listening on NGX_PORT, checked with -t first. Sets NGX_PID.
start_nginx_proxy() {
    fill "$1" "$WORK/nginx-proxy.conf" DIR="$WORK" PORT="$NGX_PORT" UPSTREAM_PORT="$UP_PORT"
    "$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" -t >"$OUT/nginx-check.log" 2>&1 \
        || fail_with_log "$OUT/nginx-check.log" "nginx refused the proxy conf"
    pinned "$PROXY_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log" \
        >"$OUT/nginx-proxy.log" 2>&1 &
    NGX_PID=$!
    track_pid "$NGX_PID" "nginx proxy"
    wait_port "$NGX_PORT" "$NGX_PID" || fail_with_log "$WORK/nginx-proxy-error.log" "the nginx proxy did not start"
}

# start_breakwater_on NAME CPUS PORT: Breakwater (BIN) on WORK/NAME.conf, checked by `breakwater
# check` first, on CPUS, its log in OUT/NAME.log; ready once PORT answers. Sets STARTED_PID.
start_breakwater_on() {
    local name=$1 cpus=$2 port=$3
    "$BIN" check --config "$WORK/$name.conf" >"$OUT/$name-check.log" 2>&1 \
        || fail_with_log "$OUT/$name-check.log" "breakwater check refused $name.conf"
    pinned "$cpus" "$BIN" --config "$WORK/$name.conf" >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    track_pid "$STARTED_PID" "$name"
    wait_port "$port" "$STARTED_PID" || fail_with_log "$OUT/$name.log" "$name did not start"
}

# The requests the upstream has answered so far (its stub_status), this one included.
upstream_requests() {
    curl -s --max-time 5 "http://$BENCH_HOST:$UP_PORT/upstream_status" | awk 'NR == 3 { print $3 }'
}

# The first line of RESULTS: the columns measure_wrk writes.
results_header() {
    printf 'cell\ttarget\tround\treq_s\tp50_ms\tp99_ms\tcpu_us_per_req\tproxy_cpu_pct\tcpu0_busy_pct\tcpu1_busy_pct\trequests\tnon2xx\tsocket_errors\tupstream_requests\tpeak_rss_kib\tload1\tcpu0_other_pct\tproxy_wait_pct\tuser_us_per_req\tsys_us_per_req\n'
}

# The name and version of each program measured, on one line.
versions_line() {
    echo "breakwater $("$BIN" --version 2>/dev/null || echo '?'), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), HAProxy $({ "$HAPROXY" -v || true; } | awk 'NR == 1 { print $3 }'), $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')"
}

machine_line() {
    echo "$(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
}

# measure_wrk [--warmup] [--rss PID] CELL TARGET ROUND LABEL PID LOG FILE WRK_CPUS WRK_ARGUMENT...
#   One run of wrk WRK_ARGUMENT... (run_wrk: on WRK_CPUS at nice NICE, stopped if it still runs
#   DURATION_S + 30 s) against the proxy PID (LOG: its log, shown if it exits), wrk's output in
#   FILE. Sampled around the run: the proxy's CPU time (all threads, its child processes too), its
#   wait for a CPU, its peak RSS (that of --rss PID when given: nginx's worker), how busy PROXY_CPU
#   and LOAD_CPU were, the upstream's request count. Appends one line to RESULTS (the columns of
#   results_header; CPU us/req is the proxy's CPU time over the requests wrk completed) and shows
#   it. With --warmup nothing is recorded.
measure_wrk() {
    local warmup=0 rpid=""
    while :; do
        case $1 in
            --warmup) warmup=1; shift ;;
            --rss) rpid=$2; shift 2 ;;
            *) break ;;
        esac
    done
    local cell=$1 t=$2 round=$3 label=$4 pid=$5 log=$6 file=$7 wcpus=$8
    shift 8
    [ -n "$rpid" ] || rpid=$pid

    local load ticks0 ticks1 user0 user1 c0a c0b c1a c1b up0 up1 w0 w1 wait0 wait1 peak
    load=$(load_average)
    reset_peak_rss "$rpid"
    up0=$(upstream_requests)
    ticks0=$(proc_ticks "$pid")
    user0=$(proc_ticks "$pid" user)
    wait0=$(proc_wait_ns "$pid")
    c0a=$(cpu_ticks "$PROXY_CPU")
    c1a=$(cpu_ticks "$LOAD_CPU")
    w0=$(date +%s.%N)
    run_wrk --cpus "$wcpus" --nice "$NICE" --limit $((DURATION_S + 30)) --server "$pid" "$log" "$file" "$label" "$@"
    w1=$(date +%s.%N)
    ticks1=$(proc_ticks "$pid")
    user1=$(proc_ticks "$pid" user)
    wait1=$(proc_wait_ns "$pid")
    c0b=$(cpu_ticks "$PROXY_CPU")
    c1b=$(cpu_ticks "$LOAD_CPU")
    up1=$(upstream_requests)
    peak=$(peak_rss_kib "$rpid")

    [ "$warmup" = 1 ] && return 0

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

# Before a round: with QUIET_WAIT set, wait (at most QUIET_WAIT s) for the machine to fall under
# QUIET_PCT % busy; QUIET_MISSED counts the rounds that started without that.
quiet_round() {
    if [ "$QUIET_WAIT" -gt 0 ]; then
        wait_quiet "$QUIET_PCT" "$QUIET_WAIT" || QUIET_MISSED=$((QUIET_MISSED + 1))
    fi
}

rotate() { # rotate N WORDS...: the words, starting at the (N mod count)-th
    local n=$1
    shift
    local words=("$@") i
    for ((i = 0; i < ${#words[@]}; i++)); do
        printf '%s ' "${words[$(((i + n) % ${#words[@]}))]}"
    done
}

# results_col / results_max / results_sum CELL TARGET COLUMN: that column of RESULTS over the
# rounds: every value, the largest, the sum.
results_col() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { print $k }' "$RESULTS"; }
results_max() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t && $k > m { m = $k } END { print m + 0 }' "$RESULTS"; }
results_sum() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == t { s += $k } END { print s + 0 }' "$RESULTS"; }

# round_ratio CELL A B COLUMN: the median over the rounds of A's value / B's value in the same
# round. The two ran seconds apart, so a drift of the machine between rounds cancels out of each ratio.
round_ratio() {
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

# summarize CELL TARGET: fills M[CELL,TARGET,COLUMN] with the median of each measured column of
# RESULTS over the rounds, and M[CELL,TARGET,peak|load] (the largest peak RSS and load average),
# M[CELL,TARGET,up|n|non2xx|sockerr] (upstream requests, requests, non-2xx, socket errors, summed).
declare -A M
summarize() {
    local cell=$1 t=$2 k
    for k in 4 5 6 7 8 9 10 17 18 19 20; do
        # shellcheck disable=SC2046 # one number a word
        M[$cell,$t,$k]=$(median $(results_col "$cell" "$t" "$k"))
    done
    M[$cell,$t,peak]=$(results_max "$cell" "$t" 15)
    M[$cell,$t,load]=$(results_max "$cell" "$t" 16)
    M[$cell,$t,up]=$(results_sum "$cell" "$t" 14)
    M[$cell,$t,n]=$(results_sum "$cell" "$t" 11)
    M[$cell,$t,non2xx]=$(results_sum "$cell" "$t" 12)
    M[$cell,$t,sockerr]=$(results_sum "$cell" "$t" 13)
}

# The table of medians: table_header, then table_row CELL_LABEL TARGET_LABEL CELL TARGET R1 R2 R3
# for each row (R1..R3: the ratio columns, req/s, CPU us/req and user us/req; empty for none).
# TABLE_CELL_WIDTH is the width of the first column.
TABLE_CELL_WIDTH=38
table_header() {
    printf "%-${TABLE_CELL_WIDTH}s %-21s %9s %7s %7s %8s %7s %7s %6s %6s %7s %7s %7s %7s %5s\n" \
        "cell" "proxy" "req/s" "p50" "p99" "CPU" "user" "kernel" "proxy" "proxy" "peak" "BW/x" "BW/x" "BW/x" "load"
    printf "%-${TABLE_CELL_WIDTH}s %-21s %9s %7s %7s %8s %7s %7s %6s %6s %7s %7s %7s %7s %5s\n" \
        "" "" "" "ms" "ms" "us/req" "us/req" "us/req" "CPU %" "wait %" "RSS MiB" "req/s" "us/req" "user" "max"
}
table_row() {
    local label=$1 tlabel=$2 cell=$3 t=$4 r1=$5 r2=$6 r3=$7
    printf "%-${TABLE_CELL_WIDTH}s %-21s %9.0f %7.2f %7.2f %8.2f %7.2f %7.2f %6.0f %6s %7.1f %7s %7s %7s %5s\n" "$label" "$tlabel" \
        "${M[$cell,$t,4]}" "${M[$cell,$t,5]}" "${M[$cell,$t,6]}" "${M[$cell,$t,7]}" "${M[$cell,$t,19]}" "${M[$cell,$t,20]}" \
        "${M[$cell,$t,8]}" "$(awk -v o="${M[$cell,$t,18]}" 'BEGIN { printf "%.1f", o }')" \
        "$(awk -v k="${M[$cell,$t,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')" "$r1" "$r2" "$r3" "${M[$cell,$t,load]}"
}

# The legend under the table, for the columns every such table has.
table_legend() {
    echo "BW/x: Breakwater's value divided by that row's, round by round, median of the rounds (req/s: higher is better for Breakwater; us/req: lower is)."
    echo "user / kernel us/req: the CPU us/req split into utime and stime ($CLK_TCK Hz ticks); BW/x user compares the proxies' own code, the kernel's share being the same TCP work for all."
    echo "proxy wait %: time the proxy's threads were runnable but waiting for a CPU, per wall second (median; schedstat). Near 0 on a quiet machine."
    echo "load max: the highest 1-minute load average at the start of a run of that row ($(nproc) CPUs; above ~2.5 other jobs were running). Processes ran at nice $NICE."
    [ "$QUIET_WAIT" -gt 0 ] && echo "Each round waited up to ${QUIET_WAIT}s for the machine to fall under ${QUIET_PCT}% busy; $QUIET_MISSED of $ROUNDS rounds started without that."
    return 0
}

# pace_notes WHAT CELL TARGET: what set the pace of a pinned row and what disturbed it, from M.
pace_notes() {
    awk -v what="$1" -v p="${M[$2,$3,8]}" -v b1="${M[$2,$3,10]}" -v b0="${M[$2,$3,9]}" -v pc="$PROXY_CPU" \
        -v lc="$LOAD_CPU" -v w="${M[$2,$3,18]}" 'BEGIN {
        if (p < 90 && b1 > 90) printf "  %s: proxy at %.0f%% of CPU %s while CPU %s (wrk + upstream) was %.0f%% busy: the load side set the pace; compare CPU us/req.\n", what, p, pc, lc, b1
        if (w > 5) printf "  %s: the proxy waited %.0f%% of the time for CPU %s (other processes ran there): disturbed.\n", what, w, pc
        if (b0 - p > 30 && p < 90) printf "  %s: CPU %s was %.0f%% busy, the proxy used %.0f%%: other jobs filled its idle time.\n", what, pc, b0, p
    }'
}

# answer_notes WHAT CELL TARGET forward|refused: socket errors, and answers of the wrong kind (a
# non-2xx on a forward path; a 2xx or a request that reached the upstream on a refused one).
answer_notes() {
    local what=$1 cell=$2 t=$3
    [ "${M[$cell,$t,sockerr]}" -gt 0 ] && echo "  $what: ${M[$cell,$t,sockerr]} socket errors over the rounds."
    if [ "$4" = forward ]; then
        [ "${M[$cell,$t,non2xx]}" -gt 0 ] && echo "  $what: ${M[$cell,$t,non2xx]} non-2xx answers."
    else
        awk -v what="$what" -v n="${M[$cell,$t,n]}" -v bad="${M[$cell,$t,non2xx]}" -v up="${M[$cell,$t,up]}" 'BEGIN {
            if (n - bad > 0 || up > 0) printf "  %s: %d of %d answers were 2xx/3xx; %d requests reached the upstream.\n", what, n - bad, n, up
        }'
    fi
    return 0
}

# ---- other benchmarks on the same CPUs ----------------------------------------------------------
# other_benches: the pids of the side-by-side scripts (compare.sh, tls.sh, ws.sh) and of any wrk
# that this script did not start, one a line. Those load the same two CPUs as this one.
other_benches() {
    ps -eo pid=,ppid=,args= | awk -v self=$$ '
        { pid = $1; parent[pid] = $2; $1 = ""; $2 = ""; args[pid] = $0 }
        END {
            # Ancestors of this script (a timeout around it) are not other benchmarks.
            for (q = self; q > 1; q = parent[q]) ancestor[q] = 1
            for (p in args) {
                if (args[p] !~ /(^|[ \/])wrk( |$)|bench\/(compare|tls|ws)\.sh/) continue
                if (p in ancestor) continue
                mine = 0
                for (q = p; q > 1; q = parent[q]) if (q == self) { mine = 1; break }
                if (!mine) print p
            }
        }'
}

# wait_other_benches MAX: wait (at most MAX s) until other_benches lists nothing; false if it
# still does then (the caller measures anyway, and says so).
wait_other_benches() {
    local max=$1 start=$SECONDS others
    while others=$(other_benches | tr '\n' ' ') && [ -n "$others" ]; do
        if [ $((SECONDS - start)) -ge "$max" ]; then
            bench_log "note: other benchmarks (pids $others) still ran after waiting ${max}s; measuring anyway"
            return 1
        fi
        bench_log "other benchmarks running (pids $others); waiting"
        sleep 10
    done
}
