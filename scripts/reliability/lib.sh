# shellcheck shell=bash
# Shared by the reliability scripts: the release binary, processes, ports and /proc readings.
# Sources bench/lib.sh for ports, process tracking and cleanup on exit. Everything runs on
# 127.0.0.1 with ports chosen by the kernel; every loop is bounded in time.

RELIABILITY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$RELIABILITY_DIR/../.." && pwd)
# shellcheck source=../../bench/lib.sh
. "$ROOT/bench/lib.sh"

# BREAKWATER=path uses that binary; otherwise the release build is made in SCRATCH (default .build).
SCRATCH=${SCRATCH:-$ROOT/.build}
OUT=${OUT:-$RELIABILITY_DIR/out}
mkdir -p "$OUT"

release_binary() {
    if [ -z "${BREAKWATER:-}" ]; then
        bench_log "building the release binary in $SCRATCH"
        BREAKWATER=$("$ROOT/scripts/build-release.sh" --scratch-path "$SCRATCH" | tail -n 1) || bench_die "release build failed"
    fi
    [ -x "$BREAKWATER" ] || bench_die "no executable at $BREAKWATER"
}

# Resident memory of PID in KiB (VmRSS).
rss_kib() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status 2>/dev/null || echo 0; }

# Open file descriptors of PID.
fd_count() { find /proc/"$1"/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Open descriptors once the count has held still for 6 s (longer than the 4 s after which idle
# upstream connections are closed), waiting at most S seconds (default 30).
settled_fds() {
    local pid=$1 seconds=${2:-30} last now i still=0
    last=$(fd_count "$pid")
    for ((i = 0; i < seconds && still < 6; i++)); do
        sleep 1
        now=$(fd_count "$pid")
        if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; fi
        last=$now
    done
    echo "$last"
}

# fds_return PID TARGET [S]: waits up to S seconds (default 30) for PID's open descriptors to come
# back to TARGET (idle upstream connections are swept a few seconds after the load); prints
# "COUNT SECONDS", the count reached and how long it took.
fds_return() {
    local pid=$1 target=$2 seconds=${3:-30} i now
    for ((i = 0; i <= seconds; i++)); do
        now=$(fd_count "$pid")
        if [ "$now" -le "$target" ]; then
            echo "$now $i"
            return
        fi
        sleep 1
    done
    echo "$now $seconds"
}

# One field of the admin /stats JSON.
stats_field() {
    curl -fsS "http://$BENCH_HOST:$1/stats" 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])" 2>/dev/null || echo -1
}

# start_demo_api PORT LOG: the demo API as its own process; its pid goes to STARTED_PID.
# (Not printed: a command substitution would run it in a subshell that cleanup cannot see.)
start_demo_api() {
    "$BREAKWATER" demo-api --listen "$BENCH_HOST:$1" >"$2" 2>&1 &
    STARTED_PID=$!
    track_pid "$STARTED_PID" demo-api
    wait_port "$1" "$STARTED_PID" 15 || bench_die "demo-api did not start (see $2)"
}

# setup_load_run NAME: what a run under wrk needs first: wrk and curl, the release binary, a temp
# dir `work` (removed on exit), free ports `api_port`, `port` and `admin`, and the demo API
# started on `api_port` (its log: OUT/NAME-demo-api.log).
setup_load_run() {
    ensure_tool wrk wrk
    ensure_tool curl curl
    release_binary
    work=$(mktemp -d)
    on_exit "rm -rf '$work'"
    local ports
    mapfile -t ports < <(free_ports 3)
    api_port=${ports[0]} port=${ports[1]} admin=${ports[2]}
    start_demo_api "$api_port" "$OUT/$1-demo-api.log"
}

# start_breakwater CONF PORT LOG: the proxy, once it accepts on PORT; its pid goes to STARTED_PID.
start_breakwater() {
    "$BREAKWATER" --config "$1" >"$3" 2>&1 &
    STARTED_PID=$!
    track_pid "$STARTED_PID" breakwater
    wait_port "$2" "$STARTED_PID" 15 || bench_die "breakwater did not start (see $3)"
}
