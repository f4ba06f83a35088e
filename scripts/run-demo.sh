#!/usr/bin/env bash
# Starts the demo API in the background and Breakwater in the foreground on the shipped conf;
# stops the demo API when Breakwater exits.
set -euo pipefail
bin="${1:-.build/release/breakwater}"
conf="${2:-conf/breakwater.conf}"

"$bin" demo-api --listen 127.0.0.1:9000 &
demo=$!
trap 'kill "$demo" 2>/dev/null; wait "$demo" 2>/dev/null || true' EXIT INT TERM
"$bin" --config "$conf"
