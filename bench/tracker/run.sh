#!/usr/bin/env bash
# The tracker core benchmark (bench/tracker/Sources/tracker-bench/main.swift says what it measures):
# builds it in release mode and runs it; the output also goes to bench/out/tracker-DATE-TIME.txt.
#
#   bench/tracker/run.sh
#   KEYS=100000 SECONDS=1 ROUNDS=1 bench/tracker/run.sh     # a quick look
#
# Environment: KEYS (1000000), SECONDS (2), ROUNDS (3), ERROR_PERCENT (2), THREADS (2),
# SCRATCH_PATH (swift build's --scratch-path; default bench/tracker/.build).
# Takes about a minute after the build.

set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)

# The benchmark uses BreakwaterCore through a path dependency, which sees only the root
# package's products.
if ! grep -q '\.library(name: "BreakwaterCore"' "$ROOT/Package.swift"; then
    echo "error: the root Package.swift exports no BreakwaterCore library; add to its products:" >&2
    echo '    .library(name: "BreakwaterCore", targets: ["BreakwaterCore"]),' >&2
    exit 1
fi

build=(swift build -c release)
[ -n "${SCRATCH_PATH:-}" ] && build+=(--scratch-path "$SCRATCH_PATH")
echo "building: ${build[*]} (in bench/tracker)" >&2
"${build[@]}" >&2
BIN=$("${build[@]}" --show-bin-path)/tracker-bench

mkdir -p "$ROOT/bench/out"
OUT=$ROOT/bench/out/tracker-$(date +%Y%m%d-%H%M%S).txt
{
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
    if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
        git -C "$ROOT" diff --quiet HEAD -- Sources Package.swift || commit="$commit, with uncommitted changes to Sources or Package.swift"
    else
        commit="unknown (not a git checkout)"
    fi
    echo "commit: $commit"
    "$BIN"
} | tee "$OUT"
echo "output: bench/out/$(basename "$OUT")" >&2
