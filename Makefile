# Breakwater: `make run` starts the proxy in front of the demo API; `make test` runs every test.
# `make run CONF=my.conf` and `make check CONF=my.conf` use another conf file.
SWIFT ?= swift
CONF ?= conf/breakwater.conf
PREFIX ?= /usr/local
RELEASE_BIN = .build/release/breakwater

.PHONY: all build release run test test-unit tsan asan check install bench clean deps-build deps-test deps-bench fuzz soak reliability

all: build

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

deps-bench:
	@scripts/install-deps.sh bench

build: deps-build
	$(SWIFT) build

# Static Swift runtime, position-dependent unless PIE=1 (scripts/build-release.sh says why).
release: deps-build
	scripts/build-release.sh >/dev/null

run: release
	scripts/run-demo.sh $(RELEASE_BIN) $(CONF)

# The release binary, as `make run` builds it (so nothing is rebuilt in debug after a `make run`).
check: release
	$(RELEASE_BIN) check --config $(CONF)

# The release binary to $(PREFIX)/bin (DESTDIR for packaging); the conf file stays yours to place.
install: release
	install -D -m 0755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/breakwater

test: deps-test
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) tsan
	$(MAKE) asan

# The TLS path (handshakes, SNI, client certificates, tickets, reloads, relaying, records read ahead, the upstream over
# TLS, stalled handshakes and a rotation under load), in process and in the breakwater binary the
# tests start, which is built with the same sanitizer and stops at its first report.
SANITIZED_TLS_TESTS = TLSTests|TLSChainTests|TLSReadAheadTests|TLSReloadTests|TLSUpstreamTests|TLSSessionTests|TLSLoadTests|TicketKeyRingTests

# The shared tracker (many threads, shared keys), a worker's inbox (blocks posted from other threads)
# and the TLS path under ThreadSanitizer.
tsan: deps-test
	$(SWIFT) build --build-tests --scratch-path .build-tsan --sanitize=thread
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --scratch-path .build-tsan --sanitize=thread \
		--filter 'BreakwaterCoreTests|WorkerInboxTests|$(SANITIZED_TLS_TESTS)'

# The TLS path, hot upgrades (descriptors handed over) and tunnels under AddressSanitizer
# (out-of-bounds, use after free, double free).
asan: deps-test
	$(SWIFT) build --build-tests --scratch-path .build-asan --sanitize=address
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:suppressions=$(CURDIR)/scripts/sanitizers/asan.supp $(SWIFT) test --skip-build --scratch-path .build-asan --sanitize=address \
		--filter '$(SANITIZED_TLS_TESTS)|HotUpgradeTests|HotUpgradeStormTests|WebSocketTests'

# Breakwater beside nginx and HAProxy (about 7 minutes), the same over TLS with an EC and with an
# RSA certificate (about 5 minutes each), a WebSocket echo beside nginx (about 2 minutes), HTTP/2
# beside nginx (about 3 minutes), an upstream outage with and without the route circuit (about 7
# minutes), then the tracker alone and the instruction counts (a few minutes each).
# bench/proxy.sh, bench/loop.sh, bench/ws-counts.sh and bench/storm/run.sh are run by hand.
bench: deps-bench release
	BREAKWATER_BIN=.build/release/breakwater bench/compare.sh
	BREAKWATER_BIN=.build/release/breakwater bench/tls.sh
	BREAKWATER_BIN=.build/release/breakwater KEY=rsa bench/tls.sh
	BREAKWATER_BIN=.build/release/breakwater bench/ws.sh
	BREAKWATER_BIN=.build/release/breakwater bench/h2.sh
	BREAKWATER_BIN=.build/release/breakwater bench/admin.sh
	BREAKWATER_BIN=.build/release/breakwater bench/outage.sh
	bench/tracker/run.sh
	BREAKWATER_BIN=.build/release/breakwater bench/instructions.sh
	BREAKWATER_BIN=.build/release/breakwater bench/h2-instructions.sh

clean:
	rm -rf .build .build-tsan .build-asan

# Not part of `make test`: bounded, but minutes long. Reports go to scripts/reliability/out/.
# libFuzzer harnesses (Fuzz/) for the conf parser, identity and routes, the request head and the
# chunked body decoder, FUZZ_SECONDS each.
fuzz: deps-build
	scripts/reliability/fuzz.sh

# 60 s at 256 connections against the release binary: statuses, memory, descriptors.
soak: deps-build
	scripts/reliability/soak.sh

# The long runs: 10,000-request integrity, the soak, the 1,000,000-key flood.
reliability: deps-build
	scripts/reliability/integrity.sh
	scripts/reliability/soak.sh
	scripts/reliability/keyflood.sh
