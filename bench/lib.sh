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
