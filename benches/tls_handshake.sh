#!/usr/bin/env bash
# TLS benchmark: tokengate terminating TLS versus nginx terminating TLS, both proxying to the
# same upstream (nginx answering 200 "ok"), with the same ECDSA P-256 certificate, TLS 1.3.
#
#   benches/tls_handshake.sh                     # 3 interleaved rounds, 8 s per run
#   ROUNDS=5 DURATION=10 benches/tls_handshake.sh
#   BIN=/path/to/tokengate benches/tls_handshake.sh   # default target/release/tokengate
#
# Two workloads: keep-alive (CONNECTIONS connections, many requests each: record crypto only)
# and new-connection (`Connection: close`: one full TLS 1.3 handshake per request, no session
# resumption by the client). As in load.sh, the system under test runs pinned to CPU 0 with one
# worker; wrk and the upstream run on CPU 1. The figure is CPU time of the system under test
# (utime+stime from /proc) per completed request, and tokengate's over nginx's.
# No token is checked (a public route): this measures TLS and proxying, not authentication.
# Needs: wrk, nginx (with the ssl module), openssl, taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
SUT_CPU=${SUT_CPU:-0}
AUX_CPU=${AUX_CPU:-1}
BIN=${BIN:-target/release/tokengate}

for tool in wrk nginx openssl taskset python3; do
    command -v "$tool" >/dev/null || { echo "tls_handshake.sh needs $tool" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release (or set BIN)" >&2; exit 1; }

tag=tls
# shellcheck source=benches/common.sh
source benches/common.sh

# One ECDSA P-256 certificate for both.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl req -x509 -new -key "$work/key.pem" -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -days 2 -out "$work/cert.pem" 2>/dev/null

up_port=$(port)
ng_port=$(port)
tg_port=$(port)
admin_port=$(port)
mkdir -p "$work/up/logs" "$work/px/logs"
cat >"$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$up_port; location / { return 200 "ok"; } } }
CONF
taskset -c "$AUX_CPU" nginx -p "$work/up" -c "$work/up/nginx.conf" 2>/dev/null &
pids+=($!)
cat >"$work/px/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log $work/px/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$up_port; keepalive 64; }
  server { listen 127.0.0.1:$ng_port ssl http2;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.3; ssl_session_tickets off; ssl_session_cache off;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto https; } } }
CONF
taskset -c "$SUT_CPU" nginx -p "$work/px" -c "$work/px/nginx.conf" 2>/dev/null &
pids+=($!)
cat >"$work/tokengate.yaml" <<CONF
listen: 127.0.0.1:$tg_port
admin_listen: 127.0.0.1:$admin_port
server: {worker_threads: 1}
access_log: {enabled: false}
tls: {certificates: [{cert: $work/cert.pem, key: $work/key.pem}]}
upstream: {url: "http://127.0.0.1:$up_port"}
issuers: [{issuer: "https://idp.invalid", jwks_uri: "https://idp.invalid/jwks", audiences: [api]}]
routes: [{id: public, path_prefix: /, auth: none}]
CONF
RUST_LOG=error taskset -c "$SUT_CPU" "$BIN" --config "$work/tokengate.yaml" >"$work/tokengate.log" 2>&1 &
tg_pid=$!
pids+=($tg_pid)
wait_port "$up_port"
wait_port "$ng_port"
wait_port "$tg_port"
ng_master=$(cat "$work/px/nginx.pid")
ng_pids="$ng_master $(pgrep -P "$ng_master" | tr '\n' ' ')"

# run NAME PORT WORKLOAD PIDS…: one wrk run, printed as "NAME WORKLOAD requests cpu_us_per_req".
run() {
    local name=$1 port=$2 workload=$3
    shift 3
    local extra=(-H "X-Bench: 1")
    [ "$workload" = new-connection ] && extra=(-H "Connection: close")
    local before after out n
    before=$(cpu_ticks "$@")
    out=$(taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${extra[@]}" "https://localhost:$port/" 2>&1)
    after=$(cpu_ticks "$@")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    awk -v name="$name" -v w="$workload" -v n="$n" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "%-10s %-15s %9d requests  %8.1f us CPU/request\n", name, w, n, t * 1e6 / hz / n }'
}


getent hosts localhost | grep -q 127.0.0.1 || { echo "localhost does not resolve to 127.0.0.1" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS"
echo "# tokengate: $BIN ($(git rev-parse --short HEAD)); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1)"
results="$work/results"
for _ in $(seq "$ROUNDS"); do
    for workload in keep-alive new-connection; do
        run tokengate "$tg_port" "$workload" "$tg_pid" | tee -a "$results"
        # shellcheck disable=SC2086
        run nginx "$ng_port" "$workload" $ng_pids | tee -a "$results"
    done
done
echo "# medians of CPU us per request, and tokengate / nginx"
for workload in keep-alive new-connection; do
    tg=$(awk -v w="$workload" '$1 == "tokengate" && $2 == w {print $5}' "$results" | median)
    ng=$(awk -v w="$workload" '$1 == "nginx" && $2 == w {print $5}' "$results" | median)
    awk -v w="$workload" -v tg="$tg" -v ng="$ng" \
        'BEGIN { printf "%-15s tokengate %8.1f   nginx %8.1f   ratio %.2f\n", w, tg, ng, tg / ng }'
done
