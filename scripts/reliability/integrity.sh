#!/usr/bin/env bash
# Byte integrity through the release binary: REQUESTS (default 10,000) random binary bodies of
# 0..1 MiB, Content-Length or chunked, answered with Content-Length or chunked, over CLIENTS
# keep-alive connections; SHA-256 of what was sent, of what the upstream received and of what
# came back must agree for every request. Prints one JSON line (also in out/integrity.json).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_binary
REQUESTS=${REQUESTS:-10000}
CLIENTS=${CLIENTS:-8}
python3 "$RELIABILITY_DIR/integrity.py" "$BREAKWATER" --requests "$REQUESTS" --clients "$CLIENTS" --timeout "${TIMEOUT:-1800}" \
    | tee "$OUT/integrity.json"
