#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those that are missing; for the tests also
# the Python packages they drive WebSocket peers (websockets), hand-written HTTP/2 frames (h2, which
# brings hyperframe and hpack) and gRPC peers (grpcio) with, from PyPI, unless importable.
# Usage: scripts/install-deps.sh build|test|bench
set -euo pipefail

build=(libevent-dev libhiredis-dev libssl-dev libnghttp2-dev pkg-config)
test=("${build[@]}" curl openssl prometheus redis-server python3 python3-pip chromium systemd nghttp2-client)
bench=("${build[@]}" curl wrk nginx-light haproxy openssl python3-matplotlib python3-uvloop valgrind nghttp2-client)

case "${1:-build}" in
  build) wanted=("${build[@]}") ;;
  test) wanted=("${test[@]}") ;;
  bench) wanted=("${bench[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# WebSocket peers (WebSocketTests.swift), HTTP/2 frames (HTTP2HostileTests.swift) and gRPC clients and servers
# (GRPCTests.swift), each as module:package. Debian's own Python refuses pip installs into it (PEP 668) unless
# told otherwise; a Python of its own (pyenv, a venv) does not.
for pair in websockets:websockets h2:h2 grpc:grpcio; do
  module="${pair%%:*}" package="${pair#*:}"
  if [ "${1:-build}" = test ] && ! python3 -c "import $module" 2>/dev/null; then
    echo "installing: $package (PyPI)" >&2
    python3 -m pip install --quiet "$package" 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages "$package"
  fi
done
