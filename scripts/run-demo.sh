#!/usr/bin/env bash
# Starts the demo API in the background and Breakwater in the foreground on the shipped conf;
# stops the demo API when Breakwater exits, and exits with Breakwater's status.
#
# Ctrl-C reaches every process of the terminal's group: Breakwater drains and exits 0, the demo
# API stops. This script only tidies up (the demo API may already be gone, which is no error),
# so a clean Ctrl-C ends `make run` without an error.
set -uo pipefail
bin="${1:-.build/release/breakwater}"
conf="${2:-conf/breakwater.conf}"
demo_listen="${DEMO_LISTEN:-127.0.0.1:9000}"

"$bin" demo-api --listen "$demo_listen" &
demo=$!
stop_demo() {
    kill "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
}
trap stop_demo EXIT
# Breakwater takes SIGINT and SIGTERM itself; the script waits for it either way.
trap : INT TERM
status=0
"$bin" --config "$conf" || status=$?
exit "$status"
