# Breakwater in a container.
#
#   docker build -t breakwater .
#   docker run --rm -p 8080:8080 -v "$PWD/my.conf:/etc/breakwater/breakwater.conf:ro" breakwater
#
# The image carries conf/breakwater.conf as /etc/breakwater/breakwater.conf, changed only to
# listen for clients on every interface of the container (0.0.0.0:8080). The admin endpoint stays
# on the container's loopback (127.0.0.1:9901): it can forgive clients (POST /clients/reset), so it
# is never open on a network. Its upstream, 127.0.0.1:9000, is the container itself: mount your own
# conf over that path (or pass `--config OTHER_PATH`) to point Breakwater at your API. To reach the
# admin endpoint from outside, your conf sets in [admin]
#   listen = "0.0.0.0:9901"
#   token_file = "/run/secrets/breakwater_admin_token"
# and you provide that file (a secret or a read-only mount; `openssl rand -hex 32` makes a token):
# without a token Breakwater refuses to start with a non-loopback admin listener.
# SIGHUP reloads the conf (`docker kill -s HUP NAME`); SIGTERM drains and exits 0.

# ---- build ------------------------------------------------------------------------------------
FROM swift:6.3-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends libevent-dev libhiredis-dev libssl-dev libnghttp2-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first, so that a change to the sources does not fetch them again.
# (Package.* also picks up Package.resolved when the build context has one.)
COPY Package.* ./
RUN swift package resolve

COPY Sources ./Sources
COPY Tests ./Tests
COPY scripts/build-release.sh ./scripts/
RUN install -D -m 0755 "$(scripts/build-release.sh | tail -n 1)" /out/breakwater

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libhiredis0.14 libnghttp2-14 \
        libssl3 libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin breakwater

COPY --from=build /out/breakwater /usr/local/bin/breakwater
COPY conf/breakwater.conf /etc/breakwater/breakwater.conf

# Clients connect on the container's interfaces, the admin endpoint stays on its loopback; fail
# the build if the conf's listen lines ever change shape, rather than ship an image that cannot
# be reached or one whose admin endpoint is open.
RUN sed -i \
        -e 's|^listen = "127\.0\.0\.1:8080"|listen = "0.0.0.0:8080"|' \
        -e 's|^file = "state/breakwater.state"|file = "/var/lib/breakwater/breakwater.state"|' \
        /etc/breakwater/breakwater.conf \
    && mkdir -p /var/lib/breakwater && chown breakwater:breakwater /var/lib/breakwater \
    && grep -q '^listen = "0\.0\.0\.0:8080"' /etc/breakwater/breakwater.conf \
    && grep -q '^listen = "127\.0\.0\.1:9901"' /etc/breakwater/breakwater.conf \
    && breakwater check --config /etc/breakwater/breakwater.conf >/dev/null

USER breakwater
EXPOSE 8080
ENTRYPOINT ["breakwater"]
CMD ["--config", "/etc/breakwater/breakwater.conf"]
