#!/usr/bin/env bash
# Builds the libFuzzer harnesses in Fuzz/ and runs each for FUZZ_SECONDS (default 60), starting
# from its seed corpus (Fuzz/Corpus/<target>) and its past findings (Fuzz/Regressions/<target>
# and Fuzz/Regressions/<target>-*), with the dictionary Fuzz/Dictionaries/<target>.dict where
# there is one. New inputs go to a work corpus under OUT; a crash or a broken oracle leaves its
# input in OUT/fuzz/<target>-crash-* and fails the run: copy it to Fuzz/Regressions/<target>/
# (HostileFuzzRegressionTests runs those on every `make test`).
#
# Fuzz/ is a package of its own that depends on the main one by path: the harnesses link the
# shipped BreakwaterCore and BreakwaterHTTP and the oracles of BreakwaterFuzzOracles, all built
# here with -sanitize=fuzzer,address. The C++ inside TOMLKit (toml++) is built with coverage and
# AddressSanitizer too, so the conf fuzzer is guided through the TOML parser itself.
#
#   FUZZ_SECONDS=300 FUZZ_TARGETS="config http-head" scripts/reliability/fuzz.sh
#
# Leak detection is off: TOMLKit 0.6.0 never frees a parsed document (about 15 KB per parse of
# the shipped conf), which would stop the conf fuzzer at its first input. For the same reason a
# target runs in sessions of at most FUZZ_SESSION_SECONDS (default 120) sharing one work corpus:
# a single process fuzzing the conf parser for five minutes leaks past the 2 GB RSS limit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TARGETS=${FUZZ_TARGETS:-config identity http-head chunked}
FUZZ_SCRATCH=${FUZZ_SCRATCH:-$ROOT/Fuzz/.build}
FUZZ_SESSION_SECONDS=${FUZZ_SESSION_SECONDS:-120}

bench_log "building the fuzz harnesses in $FUZZ_SCRATCH"
swift build --package-path "$ROOT/Fuzz" -c release --scratch-path "$FUZZ_SCRATCH" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    -Xcxx -fsanitize=fuzzer-no-link,address >&2 \
    || bench_die "the fuzz build failed (it needs the swift.org toolchain, which ships libFuzzer)"

binary_of() {
    case "$1" in
        config) echo FuzzConfig ;;
        identity) echo FuzzIdentity ;;
        http-head) echo FuzzHTTPHead ;;
        chunked) echo FuzzChunked ;;
        *) bench_die "unknown fuzz target $1" ;;
    esac
}

failed=()
for target in $FUZZ_TARGETS; do
    work=$OUT/fuzz/$target
    mkdir -p "$work"
    bench_log "fuzzing $target for ${FUZZ_SECONDS}s"
    corpora=("$ROOT/Fuzz/Corpus/$target")
    for dir in "$ROOT/Fuzz/Regressions/$target" "$ROOT/Fuzz/Regressions/$target"-*; do
        [ -d "$dir" ] && corpora+=("$dir")
    done
    dict=()
    [ -f "$ROOT/Fuzz/Dictionaries/$target.dict" ] && dict=(-dict="$ROOT/Fuzz/Dictionaries/$target.dict")
    : >"$OUT/fuzz/$target.log"
    left=$FUZZ_SECONDS
    status=0
    while [ "$left" -gt 0 ] && [ "$status" -eq 0 ]; do
        session=$((left < FUZZ_SESSION_SECONDS ? left : FUZZ_SESSION_SECONDS))
        left=$((left - session))
        set +e
        ASAN_OPTIONS=detect_leaks=0 SWIFT_BACKTRACE=enable=no timeout $((session + 120)) "$FUZZ_SCRATCH/release/$(binary_of "$target")" \
            "$work" "${corpora[@]}" \
            "${dict[@]}" -max_total_time="$session" -detect_leaks=0 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$OUT/fuzz/$target-" >>"$OUT/fuzz/$target.log" 2>&1
        status=$?
        set -e
    done
    runs=$(grep -o 'Done [0-9]* runs' "$OUT/fuzz/$target.log" | awk '{ n += $2 } END { print n + 0 }')
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        bench_log "$target: FAILED (exit $status); see $OUT/fuzz/$target.log and $OUT/fuzz/$target-*"
        grep -m 1 -E 'Fatal error|ERROR:' "$OUT/fuzz/$target.log" >&2 || true
    else
        bench_log "$target: ok, $runs runs; corpus $(find "$work" -type f | wc -l) inputs"
    fi
done
[ "${#failed[@]}" -eq 0 ] || bench_die "findings in: ${failed[*]}"
