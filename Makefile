# Breakwater: `make run` starts the proxy in front of the demo API; `make test` runs every test.
# `make run CONF=my.conf` and `make check CONF=my.conf` use another conf file.
SWIFT ?= swift
CONF ?= conf/breakwater.conf
PREFIX ?= /usr/local
RELEASE_BIN = .build/release/breakwater

.PHONY: all build release run test test-unit tsan check install bench clean deps-build deps-test deps-bench fuzz soak reliability

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

# The shared tracker under ThreadSanitizer: many threads, shared keys.
tsan: deps-build
	$(SWIFT) test --scratch-path .build-tsan --sanitize=thread --filter 'BreakwaterCoreTests'

# Breakwater beside nginx and HAProxy (about 7 minutes), the same over TLS (about 5 minutes), a
# WebSocket echo beside nginx (about 2 minutes), HTTP/2 beside nginx (about 3 minutes), an upstream
# outage with and without the route circuit (about 7 minutes), then the tracker alone and the
# instruction counts (a few minutes each). bench/proxy.sh and bench/storm/run.sh are run by hand.
bench: deps-bench release
	BREAKWATER_BIN=.build/release/breakwater bench/compare.sh
	BREAKWATER_BIN=.build/release/breakwater bench/tls.sh
	BREAKWATER_BIN=.build/release/breakwater bench/ws.sh
	BREAKWATER_BIN=.build/release/breakwater bench/h2.sh
	BREAKWATER_BIN=.build/release/breakwater bench/admin.sh
	BREAKWATER_BIN=.build/release/breakwater bench/outage.sh
	bench/tracker/run.sh
	BREAKWATER_BIN=.build/release/breakwater bench/instructions.sh

clean:
	rm -rf .build .build-tsan

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
