#!/usr/bin/env bash
# Breakwater's TLS termination beside nginx's and HAProxy's (`bind ... ssl crt`), in the
# arrangement of bench/compare.sh, in one command of about six minutes (DURATION=5s ROUNDS=3).
#
#   bench/tls.sh
#   DURATION=2s ROUNDS=1 bench/tls.sh                              # the quick mode, about two minutes
#   QUIET_WAIT=180 QUIET_PCT=20 DURATION=5s ROUNDS=5 bench/tls.sh  # steadier, on a shared machine: 10+ minutes
#   KEY=rsa bench/tls.sh                                           # the same with an RSA-2048 certificate
#
# One certificate for the three proxies: an EC P-256 key (KEY=ec, the default) or an RSA-2048 key
# (KEY=rsa) and a self-signed certificate for localhost and 127.0.0.1, made with openssl in the
# work directory. Each proxy accepts TLS 1.2 and
# later and keeps its own defaults for the rest: cipher lists, key-exchange groups, session
# tickets and session cache. The table's header shows what each negotiated with OpenSSL's client
# (the library wrk uses) and whether it resumed a session.
#
# Everything runs on 127.0.0.1, on ports the kernel reports free:
#   upstream   the plain-HTTP nginx of bench/compare.sh (bench/compare/nginx-upstream.conf.in)
#   nginx      bench/tls/nginx-proxy.conf.in: compare.sh's nginx with `listen ... ssl`
#   haproxy    bench/tls/haproxy.cfg.in: compare.sh's HAProxy with `bind ... ssl crt`
#   breakwater bench/compare/breakwater.conf.in with bench/tls/breakwater-tls.conf.in appended: the
#              same server, upstream and /shield/ route, and a [tls] listener
#
# The cells, each run against every proxy, wrk -t1 --latency over https, the proxy alone on CPU 0
# (PROXY_CPU), wrk and the upstream on CPU 1 (LOAD_CPU), as in compare.sh:
#   keep-alive  /ok at CONNECTIONS (64) and CONNECTIONS_MANY (256) connections: requests over
#               established TLS connections, each forwarded to the upstream
#   new conns   /ok at CONNECTIONS with `Connection: close`: every request on a new TCP and TLS
#               connection, so requests per second are handshakes per second. wrk offers the
#               session of a connection's previous TLS connection (it keeps it across SSL_clear),
#               so these are resumed handshakes where the proxy resumes sessions.
#   shield      /shield/x at CONNECTIONS: every answer a 429 from the proxy itself (Breakwater's
#               blocked client, nginx limit_req, HAProxy's stick table; "haproxy deny" is its
#               unconditional deny on /deny/x)
#   full        new FULL handshakes: FULL_CLIENTS (8) `openssl s_time -new -www /ok` clients at once,
#               also on LOAD_CPU, for DURATION (whole seconds; s_time stops at the first whole second
#               past it). Each connection makes a full handshake (s_time offers no session and no
#               ticket), sends GET /ok HTTP/1.0 and reads the answer up to the proxy's close.
#               Handshakes per second and the proxy's CPU us per handshake go to a table of their
#               own; s_time's count of resumed connections (0 expected) and Breakwater's handshake
#               counter are checked against the connections.
# Before any load, each proxy in turn holds 1,000 idle TLS connections (handshake done, one /ok
# answered, kept alive) from a Python ssl client on LOAD_CPU: its RSS before, with them (VmRSS)
# and its peak (VmHWM, reset just before) go to idle-rss.tsv and the table's header.
# Rounds are interleaved (every cell and proxy once per round, the proxy order rotating), the table
# shows the medians and, for the ratios, the median of the per-round ratios. CPU us/req is the
# proxy's utime+stime over the run divided by the requests wrk completed (all of it TLS and HTTP
# work: in the new-connection row, the handshake's share included). Breakwater's
# breakwater_tls_handshakes_total{result} is read around each of its runs: the handshakes it
# completed per request are in the notes.
#
# Environment: KEY (ec or rsa), IDLE_CONNECTIONS (1000; 0 to skip), FULL_CLIENTS (8; 0 to skip the full cell), DURATION (5s), ROUNDS (3), WARMUP (1s per cell and proxy; 0 to skip), CONNECTIONS
# (64), CONNECTIONS_MANY (256), PROXY_CPU (0), LOAD_CPU (1), NICE (-20 as root, else 0),
# QUIET_WAIT (0: do not wait; else each round first waits at most this many seconds for the
# machine to fall under QUIET_PCT (20) % busy), SCRATCH_PATH (swift build's --scratch-path),
# BREAKWATER_BIN (use this binary, skip the build).
# Raw wrk and s_time outputs, configs, logs, results.tsv, handshakes.tsv, full.tsv and the table go to
# bench/out/tls-DATE-TIME/ (tls-rsa-DATE-TIME/ with KEY=rsa).

set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh

pinned_settings
CONNECTIONS=${CONNECTIONS:-64}
CONNECTIONS_MANY=${CONNECTIONS_MANY:-256}
case "$CONNECTIONS$CONNECTIONS_MANY" in '' | *[!0-9]*) bench_die "CONNECTIONS and CONNECTIONS_MANY must be positive integers" ;; esac
proxy_tools
ensure_tool openssl openssl
KEY=${KEY:-ec}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-1000}
FULL_CLIENTS=${FULL_CLIENTS:-8}
case $KEY in
    ec) KEY_ARGS=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) KEY_LABEL="EC P-256" DIR_NAME=tls ;;
    rsa) KEY_ARGS=(-newkey rsa:2048) KEY_LABEL="RSA-2048" DIR_NAME=tls-rsa ;;
    *) bench_die "KEY must be ec or rsa" ;;
esac
case "$IDLE_CONNECTIONS" in '' | *[!0-9]*) bench_die "IDLE_CONNECTIONS must be a number" ;; esac
case "$FULL_CLIENTS" in '' | *[!0-9]*) bench_die "FULL_CLIENTS must be a number" ;; esac

breakwater_binary

bench_dirs "$DIR_NAME"
read -r UP_PORT NGX_PORT HAP_PORT BW_PORT BW_TLS_PORT BW_ADMIN <<<"$(free_ports 6 | tr '\n' ' ')"

# ---- the certificate: EC P-256 or RSA-2048, self-signed, for localhost and 127.0.0.1 -------------
openssl req -x509 "${KEY_ARGS[@]}" -nodes -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    >"$OUT/openssl-req.log" 2>&1 || fail_with_log "$OUT/openssl-req.log" "openssl could not make the certificate"
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/bundle.pem" # HAProxy's crt: the certificate and its key
cp "$WORK/cert.pem" "$OUT/"

# ---- the processes ------------------------------------------------------------------------------
start_upstream

start_nginx_proxy bench/tls/nginx-proxy.conf.in

fill bench/tls/haproxy.cfg.in "$WORK/haproxy.cfg" DIR="$WORK" PORT="$HAP_PORT" UPSTREAM_PORT="$UP_PORT"
"$HAPROXY" -c -f "$WORK/haproxy.cfg" >"$OUT/haproxy-check.log" 2>&1 \
    || fail_with_log "$OUT/haproxy-check.log" "haproxy refused its conf"
pinned "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAP_PID=$!
track_pid "$HAP_PID" haproxy
wait_port "$HAP_PORT" "$HAP_PID" || fail_with_log "$OUT/haproxy.log" "HAProxy did not start"

fill bench/compare/breakwater.conf.in "$WORK/breakwater.conf" PORT="$BW_PORT" ADMIN_PORT="$BW_ADMIN" \
    UPSTREAM_PORT="$UP_PORT" WORKERS=1
{ echo; sed "s|@TLS_PORT@|$BW_TLS_PORT|g" bench/tls/breakwater-tls.conf.in; } >>"$WORK/breakwater.conf"
cp "$WORK/breakwater.conf" "$OUT/"
start_breakwater_on breakwater "$PROXY_CPU" "$BW_TLS_PORT"
BW_PID=$STARTED_PID

# ---- targets and cells --------------------------------------------------------------------------
#            TLS port     pid       log
target_info() {
    case $1 in
        bw) echo "$BW_TLS_PORT $BW_PID $OUT/breakwater.log" ;;
        ngx) echo "$NGX_PORT $NGX_PID $WORK/nginx-proxy-error.log" ;;
        hap | hapdeny) echo "$HAP_PORT $HAP_PID $OUT/haproxy.log" ;;
    esac
}
target_label() {
    case $1 in
        bw) echo "breakwater" ;;
        ngx) echo "nginx" ;;
        hap) echo "haproxy" ;;
        hapdeny) echo "haproxy deny" ;;
    esac
}
#          path       connections  connection  targets
cell_info() {
    case $1 in
        ka) echo "/ok $CONNECTIONS keep-alive bw ngx hap" ;;
        ka-many) echo "/ok $CONNECTIONS_MANY keep-alive bw ngx hap" ;;
        new) echo "/ok $CONNECTIONS close bw ngx hap" ;;
        shield) echo "/shield/x $CONNECTIONS keep-alive bw ngx hap hapdeny" ;;
    esac
}
cell_label() {
    case $1 in
        ka) echo "keep-alive /ok, $CONNECTIONS conns" ;;
        ka-many) echo "keep-alive /ok, $CONNECTIONS_MANY conns" ;;
        new) echo "new TLS conn per request, $CONNECTIONS conns" ;;
        shield) echo "shield 429, $CONNECTIONS conns" ;;
    esac
}
CELLS=(ka ka-many new shield)

https_status() { # https_status PORT PATH [CURL_OPTION...]: "CODE SIZE" of one GET
    local port=$1 path=$2
    shift 2
    curl -sk -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$@" "https://$BENCH_HOST:$port$path" || true
}

# One request through each proxy before any load: /ok is a 200 of 3 bytes, kept alive or not;
# the first /shield/x reaches the upstream (401), every later one is answered 429 by the proxy.
for port in "$BW_TLS_PORT" "$NGX_PORT" "$HAP_PORT"; do
    got=$(https_status "$port" /ok)
    [ "$got" = "200 3" ] || bench_die "GET https://$BENCH_HOST:$port/ok answered '$got', expected '200 3'"
    got=$(https_status "$port" /ok -H "Connection: close")
    [ "$got" = "200 3" ] || bench_die "GET /ok with Connection: close on port $port answered '$got', expected '200 3'"
    got=$(https_status "$port" /shield/x)
    [ "${got% *}" = 401 ] || bench_die "first GET /shield/x on port $port answered '$got', expected the upstream's 401"
    for i in 1 2 3; do
        got=$(https_status "$port" /shield/x)
        [ "${got% *}" = 429 ] || bench_die "GET /shield/x on port $port after the 401 answered '$got', expected 429"
    done
    got=$(https_status "$port" /ok)
    [ "$got" = "200 3" ] || bench_die "GET /ok on port $port answered '$got' once /shield/ was blocked, expected '200 3'"
done
# The full-handshake cell's request: HTTP/1.0, no Host, no ALPN, as openssl s_time sends it.
for port in "$BW_TLS_PORT" "$NGX_PORT" "$HAP_PORT"; do
    got=$(https_status "$port" /ok --no-alpn --http1.0 -H "Host:")
    [ "$got" = "200 3" ] || bench_die "GET /ok HTTP/1.0 without Host on port $port answered '$got', expected '200 3'"
done
got=$(https_status "$HAP_PORT" /deny/x)
[ "${got% *}" = 429 ] || bench_die "HAProxy GET /deny/x answered '$got', expected 429"

# What each proxy negotiates with OpenSSL's client, and whether it resumes the session of the
# connection before: "PROTOCOL CIPHER GROUP SIGNATURE ALPN resumed|new".
tls_parameters() {
    local port=$1 session=$WORK/session-$1.pem request first second
    request=$(printf 'GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    # -ign_eof: read to the end, so that the session tickets sent after the handshake are kept.
    first=$(printf '%s' "$request" | timeout 10 openssl s_client -connect "$BENCH_HOST:$port" -servername localhost \
        -alpn http/1.1 -ign_eof -sess_out "$session" 2>&1) || true
    second=$(printf '%s' "$request" | timeout 10 openssl s_client -connect "$BENCH_HOST:$port" -servername localhost \
        -alpn http/1.1 -ign_eof -sess_in "$session" 2>&1) || true
    printf '%s\n' "$first" >"$OUT/s_client-$port.txt"
    printf '%s\n' "$second" >>"$OUT/s_client-$port.txt"
    awk -v resumed="$(grep -q '^Reused, ' <<<"$second" && echo resumed || echo new)" '
        /^New, / && !p { p = $2; sub(/,$/, "", p); c = $NF }
        /^Server Temp Key:/ && !g { sub(/^Server Temp Key: /, ""); sub(/,.*/, ""); g = $0 }
        /^Peer signature type:/ && !s { s = $4 }
        /^ALPN protocol:/ && !a { a = $3 }
        END { print (p ? p : "?"), (c ? c : "?"), (g ? g : "?"), (s ? s : "?"), (a ? a : "none"), resumed }' <<<"$first"
}
declare -A NEGOTIATED
for t in bw ngx hap; do
    read -r port _ <<<"$(target_info "$t")"
    NEGOTIATED[$t]=$(tls_parameters "$port")
    bench_log "$(target_label "$t"): ${NEGOTIATED[$t]}"
done

# ---- RSS at IDLE_CONNECTIONS idle TLS connections --------------------------------------------
# idle_rss PORT PID: holds IDLE_CONNECTIONS TLS connections to PORT (each with one /ok answered),
# then prints "RSS_BEFORE_KIB RSS_WITH_KIB PEAK_KIB HELD" of PID, and closes them.
cat >"$WORK/idle.py" <<'PY'
import socket, ssl, sys, time
port, count, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
held = []
deadline = time.monotonic() + 60
for _ in range(count):
    if time.monotonic() > deadline:
        break
    try:
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
        tls.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\nok\n") and len(answer) < 4096:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
        if answer.startswith(b"HTTP/1.1 200"):
            held.append(tls)
    except OSError:
        pass
open(ready, "w").write(str(len(held)))
sys.stdin.read()  # held until the bench closes stdin
PY
idle_rss() {
    local port=$1 pid=$2 before with peak held ready=$WORK/idle-ready-$1 fifo=$WORK/idle-fifo-$1 client i
    rm -f "$ready" "$fifo"
    mkfifo "$fifo"
    before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    reset_peak_rss "$pid"
    pinned "$LOAD_CPU" python3 "$WORK/idle.py" "$port" "$IDLE_CONNECTIONS" "$ready" <"$fifo" >"$OUT/idle-$port.log" 2>&1 &
    client=$!
    exec 9>"$fifo"
    for i in $(seq 1 900); do
        [ -s "$ready" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    held=$(cat "$ready" 2>/dev/null || echo 0)
    with=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    peak=$(peak_rss_kib "$pid")
    exec 9>&-
    wait "$client" 2>/dev/null || true
    rm -f "$fifo"
    echo "$before $with $peak $held"
}
declare -A IDLE
if [ "$IDLE_CONNECTIONS" != 0 ]; then
    ensure_tool python3 python3
    printf 'target\trss_before_kib\trss_with_kib\tpeak_kib\tconnections_held\n' >"$OUT/idle-rss.tsv"
    for t in bw ngx hap; do
        read -r port pid _ <<<"$(target_info "$t")"
        [ "$t" = ngx ] && pid=$(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID") # nginx's worker
        IDLE[$t]=$(idle_rss "$port" "$pid")
        printf '%s\t%s\n' "$(target_label "$t")" "${IDLE[$t]// /$'\t'}" >>"$OUT/idle-rss.tsv"
        bench_log "$(target_label "$t") with $IDLE_CONNECTIONS idle TLS connections: RSS before, with, peak KiB, held: ${IDLE[$t]}"
        sleep 2 # the closes settle
    done
fi

# Breakwater's completed and failed handshakes so far: "OK FAILED TIMEOUT".
handshakes() {
    curl -s --max-time 5 "http://$BENCH_HOST:$BW_ADMIN/metrics" | awk '
        /^breakwater_tls_handshakes_total\{result="ok"\}/ { ok = $2 }
        /^breakwater_tls_handshakes_total\{result="failed"\}/ { failed = $2 }
        /^breakwater_tls_handshakes_total\{result="timeout"\}/ { timeout = $2 }
        END { printf "%d %d %d\n", ok, failed, timeout }'
}
read -r hs_ok _ <<<"$(handshakes)"
[ "$hs_ok" -gt 0 ] || bench_die "breakwater_tls_handshakes_total{result=\"ok\"} is not counted at http://$BENCH_HOST:$BW_ADMIN/metrics"
printf 'cell\tround\trequests\thandshakes_ok\thandshakes_failed\thandshakes_timeout\n' >"$OUT/handshakes.tsv"

# measure CELL TARGET ROUND DURATION: one wrk run; round 0 is a warm-up and is not recorded.
measure() {
    local cell=$1 t=$2 round=$3 duration=$4
    local path conns connection port pid log file rss before after warmup=() header=()
    read -r path conns connection _ <<<"$(cell_info "$cell")"
    read -r port pid log <<<"$(target_info "$t")"
    [ "$t" = hapdeny ] && path=/deny/x
    [ "$connection" = close ] && header=(-H "Connection: close")
    rss=$pid
    [ "$t" = ngx ] && rss=$(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID") # nginx's worker
    if [ "$round" = 0 ]; then
        file=$OUT/warmup-$cell-$t.txt
        warmup=(--warmup)
    else
        file=$OUT/$cell-$t-round$round.txt
    fi
    [ "$t" = bw ] && before=$(handshakes)
    measure_wrk "${warmup[@]}" --rss "$rss" "$cell" "$t" "$round" "$(target_label "$t")" "$pid" "$log" "$file" \
        "$LOAD_CPU" -t1 -c"$conns" -d"$duration" --timeout 5s --latency "${header[@]}" "https://$BENCH_HOST:$port$path"
    if [ "$t" = bw ] && [ "$round" != 0 ]; then
        after=$(handshakes)
        awk -v cell="$cell" -v round="$round" -v n="$WRK_REQUESTS" -v a="$before" -v b="$after" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%s\t%s\t%d\t%d\t%d\t%d\n", cell, round, n, y[1] - x[1], y[2] - x[2], y[3] - x[3]
        }' >>"$OUT/handshakes.tsv"
    fi
}

# ---- new full handshakes: FULL_CLIENTS parallel `openssl s_time -new` -----------------------------
# measure_full TARGET ROUND SECONDS: FULL_CLIENTS clients `openssl s_time -new -www /ok` at once on
# LOAD_CPU for SECONDS (s_time stops at the first whole second past them) against TARGET. Each
# client, one connection after the other, opens a TCP connection, makes a full handshake (it offers
# no session and no ticket, and keeps none), sends GET /ok HTTP/1.0, reads the answer up to the
# proxy's close, and closes. s_time prints one character a connection: '*' for a new session, 'r'
# for a resumed one; both are counted (full.tsv). Handshakes per second are the connections over
# the wall time of the run; CPU us per handshake the proxy's CPU time over the connections, as in
# measure_wrk, whose RESULTS columns it writes (no latencies: p50 and p99 are 0). Round 0 is a
# warm-up and is not recorded.
measure_full() {
    local t=$1 round=$2 seconds=$3 port pid log rss i file status failed=0 pids=() files=()
    local load ticks0 ticks1 user0 user1 wait0 wait1 c0a c0b c1a c1b up0 up1 w0 w1 peak before="" after="" counts new resumed
    read -r port pid log <<<"$(target_info "$t")"
    rss=$pid
    [ "$t" = ngx ] && rss=$(pgrep -P "$NGX_PID" | head -n 1 || echo "$NGX_PID") # nginx's worker
    load=$(load_average)
    reset_peak_rss "$rss"
    [ "$t" = bw ] && before=$(handshakes)
    up0=$(upstream_requests)
    ticks0=$(proc_ticks "$pid")
    user0=$(proc_ticks "$pid" user)
    wait0=$(proc_wait_ns "$pid")
    c0a=$(cpu_ticks "$PROXY_CPU")
    c1a=$(cpu_ticks "$LOAD_CPU")
    w0=$(date +%s.%N)
    for ((i = 1; i <= FULL_CLIENTS; i++)); do
        if [ "$round" = 0 ]; then file=$OUT/warmup-full-$t-$i.txt; else file=$OUT/full-$t-round$round-$i.txt; fi
        timeout -k 5 $((seconds + 30)) taskset -c "$LOAD_CPU" nice -n "$NICE" \
            openssl s_time -connect "$BENCH_HOST:$port" -new -time "$seconds" -www /ok >"$file" 2>&1 &
        pids+=("$!")
        files+=("$file")
        track_pid "$!" "openssl s_time"
    done
    for i in "${!pids[@]}"; do
        status=0
        wait "${pids[$i]}" || status=$?
        untrack_pid "${pids[$i]}"
        [ "$status" = 0 ] || failed=$((failed + 1))
    done
    w1=$(date +%s.%N)
    ticks1=$(proc_ticks "$pid")
    user1=$(proc_ticks "$pid" user)
    wait1=$(proc_wait_ns "$pid")
    c0b=$(cpu_ticks "$PROXY_CPU")
    c1b=$(cpu_ticks "$LOAD_CPU")
    up1=$(upstream_requests)
    peak=$(peak_rss_kib "$rss")
    kill -0 "$pid" 2>/dev/null || fail_with_log "$log" "$(target_label "$t") (pid $pid) exited during the full-handshake run"
    [ "$round" = 0 ] && return 0
    [ "$t" = bw ] && after=$(handshakes)

    # "NEW RESUMED": the characters s_time printed, one a completed connection.
    counts=$(cat "${files[@]}" | awk '/^[*r3t]+$/ { n += gsub(/[*3t]/, ""); r += gsub(/r/, "") } END { printf "%d %d\n", n, r }')
    read -r new resumed <<<"$counts"
    [ $((new + resumed)) -gt 0 ] || fail_with_log "${files[0]}" "openssl s_time made no connection to $(target_label "$t")"
    awk -v t="$t" -v round="$round" -v new="$new" -v resumed="$resumed" -v failed="$failed" -v up="$((${up1:-0} - ${up0:-0} - 1))" \
        -v a="$before" -v b="$after" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            printf "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", t, round, new + resumed, new, resumed, failed, up, (a == "" ? "-" : y[1] - x[1])
        }' >>"$OUT/full.tsv"
    awk -v cell=full -v t="$t" -v round="$round" -v n="$((new + resumed))" -v dt="$((ticks1 - ticks0))" -v hz="$CLK_TCK" \
        -v w0="$w0" -v w1="$w1" -v c0a="$c0a" -v c0b="$c0b" -v c1a="$c1a" -v c1b="$c1b" -v failed="$failed" \
        -v up="$((${up1:-0} - ${up0:-0} - 1))" -v peak="$peak" -v load="$load" -v dw="$((wait1 - wait0))" \
        -v du="$((user1 - user0))" 'BEGIN {
            split(c0a, a, " "); split(c0b, b, " "); split(c1a, x, " "); split(c1b, y, " ")
            wall = w1 - w0
            us = n > 0 ? dt / hz * 1e6 / n : 0
            user = n > 0 ? du / hz * 1e6 / n : 0
            proxy = 100 * dt / hz / wall
            busy0 = 100 * (b[1] - a[1]) / (b[2] - a[2])
            printf "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%.2f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f\t%.1f\t%.2f\t%.2f\n", cell, t, round, n / wall,
                0, 0, us, proxy, busy0, 100 * (y[1] - x[1]) / (y[2] - x[2]), n, 0, failed, up, peak, load,
                busy0 - proxy, 100 * dw / 1e9 / wall, user, us - user
        }' >>"$RESULTS"
    awk -F'\t' -v t="$t" -v r="$round" -v label="$(target_label "$t")" -v resumed="$resumed" '$1 == "full" && $2 == t && $3 == r {
        printf "  round %s %-10s %-20s %9.0f handshakes/s  %7.2f us/handshake  %d resumed  proxy %3.0f%% (waiting %2.0f%%)  CPU0 %3.0f%%  CPU1 %3.0f%%  load %s\n",
            r, "full", label, $4, $7, resumed, $8, $18, $9, $10, $16
    }' "$RESULTS" >&2
}
[ "$FULL_CLIENTS" != 0 ] && printf 'target\tround\tconnections\tnew\tresumed\tclients_failed\tupstream_requests\tbreakwater_handshakes_ok\n' >"$OUT/full.tsv"

LOAD_START=$(load_average)
MACHINE=$(machine_line)
VERSIONS="$(versions_line), $(openssl version | awk '{ print $1, $2 }')"
bench_log "$VERSIONS"
bench_log "$MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_log "wrk -d$DURATION, $ROUNDS rounds interleaved; proxies on CPU $PROXY_CPU, wrk and the upstream on CPU $LOAD_CPU"

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
    bench_log "warming up ($WARMUP per cell and proxy)"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ targets <<<"$(cell_info "$cell")"
        for t in $targets; do measure "$cell" "$t" 0 "$WARMUP"; done
    done
    if [ "$FULL_CLIENTS" != 0 ]; then
        for t in bw ngx hap; do measure_full "$t" 0 1; done
    fi
fi
for round in $(seq 1 "$ROUNDS"); do
    quiet_round
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ targets <<<"$(cell_info "$cell")"
        # shellcheck disable=SC2046 # the lists are split into words on purpose
        for t in $(rotate "$round" $targets); do measure "$cell" "$t" "$round" "$DURATION"; done
    done
    if [ "$FULL_CLIENTS" != 0 ]; then
        for t in $(rotate "$round" bw ngx hap); do measure_full "$t" "$round" "$DURATION_S"; done
    fi
done
LOAD_END=$(load_average)
curl -s --max-time 5 "http://$BENCH_HOST:$BW_ADMIN/metrics" >"$OUT/breakwater-metrics.txt" 2>/dev/null || true

# ---- the table ----------------------------------------------------------------------------------
for cell in "${CELLS[@]}"; do
    read -r _ _ _ targets <<<"$(cell_info "$cell")"
    for t in $targets; do summarize "$cell" "$t"; done
done
if [ "$FULL_CLIENTS" != 0 ]; then
    for t in bw ngx hap; do summarize full "$t"; done
fi
TABLE_CELL_WIDTH=42

{
    echo
    echo "Breakwater vs nginx vs HAProxy over TLS: median of $ROUNDS interleaved rounds of wrk -d$DURATION --latency, $(date -u +%Y-%m-%d)"
    echo "$MACHINE; load average $LOAD_START at start, $LOAD_END at end"
    echo "$VERSIONS"
    echo "Proxy alone on CPU $PROXY_CPU; wrk -t1 and the upstream nginx (plain HTTP) on CPU $LOAD_CPU. One $KEY_LABEL certificate, TLS 1.2+, each proxy's defaults otherwise."
    for t in bw ngx hap; do
        read -r protocol cipher group signature alpn resumed <<<"${NEGOTIATED[$t]}"
        echo "  $(target_label "$t"): $protocol $cipher, key exchange $group, signature $signature, ALPN $alpn; the next connection ${resumed/new/was not resumed (a full handshake)}"
    done
    if [ "$IDLE_CONNECTIONS" != 0 ]; then
        echo "RSS with $IDLE_CONNECTIONS idle TLS connections (each handshake done and one /ok answered), before any load:"
        for t in bw ngx hap; do
            read -r before with peak held <<<"${IDLE[$t]}"
            awk -v who="$(target_label "$t")" -v b="$before" -v w="$with" -v p="$peak" -v h="$held" -v bw="${IDLE[bw]}" 'BEGIN {
                split(bw, x, " ")
                printf "  %s: %.1f MiB peak (%.1f MiB before them, %.1f MiB with them: %.1f KiB a connection)%s; %d held\n", who, p / 1024, b / 1024, w / 1024, (w - b) / (h > 0 ? h : 1), (who == "breakwater" ? "" : sprintf(", breakwater/this peak %.2fx", x[3] / p)), h
            }'
        done
    fi
    echo "Shield: Breakwater blocked client (401 then 1h window), nginx limit_req 1r/m burst 0, haproxy = stick-table http_req_rate deny 429, haproxy deny = unconditional deny 429."
    echo
    table_header
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ targets <<<"$(cell_info "$cell")"
        label=$(cell_label "$cell")
        for t in $targets; do
            r1="" r2="" r3=""
            if [ "$t" != bw ]; then
                r1=$(round_ratio "$cell" bw "$t" 4)
                r2=$(round_ratio "$cell" bw "$t" 7)
                r3=$(round_ratio "$cell" bw "$t" 19)
            fi
            table_row "$label" "$(target_label "$t")" "$cell" "$t" "$r1" "$r2" "$r3"
            label=""
        done
    done
    echo
    table_legend
    echo "Peak RSS: VmHWM of the Breakwater process, the nginx worker, the HAProxy process."
    echo "new TLS conn per request: wrk sends Connection: close, so each request is one TCP connection and one TLS handshake (resumed when the proxy resumes wrk's session); req/s = handshakes/s."
    if [ "$FULL_CLIENTS" != 0 ]; then
        echo
        echo "New full handshakes (no session offered, no ticket): $FULL_CLIENTS openssl s_time -new -www /ok clients at once on CPU $LOAD_CPU, ${DURATION_S}s each round; every connection one full TLS handshake and one GET /ok HTTP/1.0, closed by the proxy."
        printf "%-21s %12s %9s %7s %7s %6s %6s %7s %8s %7s %7s %7s %5s\n" \
            "proxy" "handshakes/s" "CPU" "user" "kernel" "proxy" "proxy" "peak" "resumed" "BW/x" "BW/x" "BW/x" "load"
        printf "%-21s %12s %9s %7s %7s %6s %6s %7s %8s %7s %7s %7s %5s\n" \
            "" "" "us/hs" "us/hs" "us/hs" "CPU %" "wait %" "RSS MiB" "" "hs/s" "us/hs" "user" "max"
        for t in bw ngx hap; do
            r1="" r2="" r3=""
            if [ "$t" != bw ]; then
                r1=$(round_ratio full bw "$t" 4)
                r2=$(round_ratio full bw "$t" 7)
                r3=$(round_ratio full bw "$t" 19)
            fi
            printf "%-21s %12.0f %9.2f %7.2f %7.2f %6.0f %6s %7.1f %8s %7s %7s %7s %5s\n" "$(target_label "$t")" \
                "${M[full,$t,4]}" "${M[full,$t,7]}" "${M[full,$t,19]}" "${M[full,$t,20]}" "${M[full,$t,8]}" \
                "$(awk -v o="${M[full,$t,18]}" 'BEGIN { printf "%.1f", o }')" \
                "$(awk -v k="${M[full,$t,peak]}" 'BEGIN { printf "%.1f", k / 1024 }')" \
                "$(awk -F'\t' -v t="$t" 'NR > 1 && $1 == t { r += $5 } END { print r + 0 }' "$OUT/full.tsv")" \
                "$r1" "$r2" "$r3" "${M[full,$t,load]}"
        done
        echo "In the notes below, \"wrk\" in the full-handshake rows stands for the s_time clients."
        echo "hs: handshake (one connection, one request). resumed: connections s_time saw resumed, all rounds (0: every one a full handshake). BW/x as above."
    fi

    echo
    echo "Notes:"
    for cell in "${CELLS[@]}"; do
        read -r _ _ _ targets <<<"$(cell_info "$cell")"
        for t in $targets; do
            what="$(cell_label "$cell"), $(target_label "$t")"
            pace_notes "$what" "$cell" "$t"
            case $cell in
                shield) answer_notes "$what" "$cell" "$t" refused ;;
                *) answer_notes "$what" "$cell" "$t" forward ;;
            esac
        done
    done
    for cell in "${CELLS[@]}"; do
        awk -F'\t' -v c="$cell" -v what="$(cell_label "$cell")" 'NR > 1 && $1 == c { n += $3; ok += $4; failed += $5; timeout += $6 }
            END { if (n > 0) printf "  %s, breakwater: %d TLS handshakes completed for %d requests (%.3f a request), %d failed (wrk opens and closes one plain TCP connection before each run, to check the address: one a run), %d timed out.\n", what, ok, n, ok / n, failed, timeout }' \
            "$OUT/handshakes.tsv"
    done
    if [ "$FULL_CLIENTS" != 0 ]; then
        for t in bw ngx hap; do
            what="new full handshakes, $(target_label "$t")"
            pace_notes "$what" full "$t"
            awk -F'\t' -v t="$t" -v what="$what" 'NR > 1 && $1 == t { n += $3; up += $7; failed += $6; if ($8 != "-") { hs += $8; bw = 1 } }
                END {
                    printf "  %s: %d connections, %d of them reached the upstream", what, n, up
                    if (bw) printf ", %d TLS handshakes counted by breakwater_tls_handshakes_total{result=\"ok\"}", hs
                    printf "%s.\n", (failed > 0 ? sprintf("; %d s_time clients stopped on an error", failed) : "")
                }' "$OUT/full.tsv"
        done
    fi
    echo "  upstream requests per cell (all rounds; the forward rows should match wrk's count, the shield rows be ~0): $(
        for cell in "${CELLS[@]}"; do
            read -r _ _ _ targets <<<"$(cell_info "$cell")"
            for t in $targets; do printf '%s/%s %s, ' "$cell" "$t" "${M[$cell,$t,up]}"; done
        done | sed 's/, $//')"
    echo "  raw wrk outputs, configs, logs, s_client transcripts and results.tsv: $OUT/"
} | tee "$OUT/summary.txt"
