# Breakwater in a container.
#
#   docker build -t breakwater .
#   docker run --rm -p 8080:8080 -v "$PWD/my.conf:/etc/breakwater/breakwater.conf:ro" breakwater
#
# The image carries conf/breakwater.conf as /etc/breakwater/breakwater.conf, changed only to
# listen on every interface of the container (the proxy on 0.0.0.0:8080, the admin endpoint on
# 0.0.0.0:9901). Its upstream, 127.0.0.1:9000, is the container itself: mount your own conf over
# that path (or pass `--config OTHER_PATH`) to point Breakwater at your API. Publish 9901 only to
# a private network: the admin endpoint can forgive clients (POST /clients/reset).
# SIGHUP reloads the conf (`docker kill -s HUP NAME`); SIGTERM drains and exits 0.

# ---- build ------------------------------------------------------------------------------------
FROM swift:6.3-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends libevent-dev libhiredis-dev pkg-config \
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
        libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libhiredis0.14 \
        libstdc++6 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin breakwater

COPY --from=build /out/breakwater /usr/local/bin/breakwater
COPY conf/breakwater.conf /etc/breakwater/breakwater.conf

# Listen on the container's interfaces, not only its loopback; fail the build if the conf's
# listen lines ever change shape, rather than ship an image that cannot be reached.
RUN sed -i \
        -e 's|^listen = "127\.0\.0\.1:8080"|listen = "0.0.0.0:8080"|' \
        -e 's|^listen = "127\.0\.0\.1:9901"|listen = "0.0.0.0:9901"|' \
        -e 's|^file = "state/breakwater.state"|file = "/var/lib/breakwater/breakwater.state"|' \
        /etc/breakwater/breakwater.conf \
    && mkdir -p /var/lib/breakwater && chown breakwater:breakwater /var/lib/breakwater \
    && grep -q '^listen = "0\.0\.0\.0:8080"' /etc/breakwater/breakwater.conf \
    && grep -q '^listen = "0\.0\.0\.0:9901"' /etc/breakwater/breakwater.conf \
    && breakwater check --config /etc/breakwater/breakwater.conf >/dev/null

USER breakwater
EXPOSE 8080 9901
ENTRYPOINT ["breakwater"]
CMD ["--config", "/etc/breakwater/breakwater.conf"]
