#!/usr/bin/env bash
# Builds the release binary the way it ships, and prints its path on the last line of stdout.
#
#   scripts/build-release.sh [extra swift build options, e.g. --scratch-path DIR]
#   PIE=1 scripts/build-release.sh      # a position-independent executable instead
#
# The Swift runtime and libraries are linked in (--static-swift-stdlib): no Swift shared libraries
# to install, and only the pages of them that are used become resident. By default the executable is
# position-dependent (-no-pie, as Go links its programs on Linux): PIE would add a 1.8 MB table of
# relocations that the loader reads at every start and a megabyte of data pages it rewrites, about
# 3 MiB more resident memory per process. The shared libraries (libc, libevent, hiredis) still load
# at random addresses either way; PIE=1 randomises the executable's own code as well.
set -euo pipefail
cd "$(dirname "$0")/.."

build=(swift build -c release --product breakwater --static-swift-stdlib)
[ "${PIE:-0}" = 1 ] || build+=(-Xlinker -no-pie)
build+=("$@")
echo "building: ${build[*]}" >&2
"${build[@]}" >&2
echo "$("${build[@]}" --show-bin-path)/breakwater"
