#!/usr/bin/env bash
# Instructions per request (valgrind callgrind): deterministic where load.sh's CPU time is
# noisy, so a change of a few hundred instructions on the hot path shows.
#
#   benches/instructions.sh                         # target/release/tokengate
#   benches/instructions.sh OLD_BIN                 # and an earlier build, for a before/after
#
# Starts the bench issuer, an nginx upstream and tokengate under callgrind on loopback, sends
# 200 warm-up and then REQUESTS (default 2000) requests on one keep-alive connection for each
# workload (hot: one valid token; reject: the 1000 forged ones), and prints Ir per request.
# `callgrind_annotate --inclusive=no $WORK/<label>/cg.out.1` then says where they go.
# Needs: valgrind, nginx, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-2000}
WORK=${WORK:-$(mktemp -d /tmp/tokengate-ir.XXXXXX)}
cargo build --release --quiet --bin tokengate --example bench_issuer

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

measure() {
    local bin=$1 label=$2 w="$WORK/$2"
    mkdir -p "$w/up/logs"
    target/release/examples/bench_issuer "$w/tokens" 10 >"$w/issuer.log" &
    local issuer_pid=$!
    for _ in $(seq 1 600); do grep -q ready "$w/issuer.log" 2>/dev/null && break; sleep 0.1; done
    local issuer up tg adm
    issuer=$(cat "$w/tokens/issuer")
    up=$(free_port); tg=$(free_port); adm=$(free_port)
    cat >"$w/up/nginx.conf" <<C
worker_processes 1; daemon off; pid $w/up/nginx.pid; error_log $w/up/logs/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$up; location / { return 200 "ok"; } } }
C
    nginx -p "$w/up" -c "$w/up/nginx.conf" 2>/dev/null &
    local nginx_pid=$!
    cat >"$w/tokengate.yaml" <<C
listen: 127.0.0.1:$tg
admin_listen: 127.0.0.1:$adm
server: { worker_threads: 1 }
upstream: { url: "http://127.0.0.1:$up" }
issuers:
  - issuer: "$issuer"
    jwks_uri: "$issuer/jwks"
    audiences: [bench]
    introspection: { endpoint: "$issuer/introspect", client_id: bench-gateway, client_secret: bench-secret }
routes:
  - { id: bench, path_prefix: /, scopes: [read] }
C
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$w/cg.out" "$bin" --config "$w/tokengate.yaml" \
        2>"$w/valgrind.log" &
    local tg_pid=$!
    for _ in $(seq 1 600); do curl -sf -o /dev/null "http://127.0.0.1:$adm/readyz" && break; sleep 0.2; done
    python3 - "$tg" "$w/tokens" "$REQUESTS" "$tg_pid" <<'P'
import http.client, subprocess, sys
port, tokens, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
hot = open(tokens + "/hot.txt").read().split()
reject = open(tokens + "/reject.txt").read().split()
def send(tokens, count):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(count):
        c.request("GET", "/bench/x?y=1", headers={"Authorization": "Bearer " + tokens[i % len(tokens)],
                  "Host": "api.example", "User-Agent": "bench", "Accept": "*/*"})
        c.getresponse().read()
    c.close()
for name, tokens in (("hot", hot), ("reject", reject)):
    send(tokens, 200)
    subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
    send(tokens, n)
    subprocess.run(["callgrind_control", "-d", name, pid], capture_output=True, check=True)
P
    kill "$tg_pid" "$nginx_pid" "$issuer_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    for f in "$w"/cg.out.*; do
        local name ir
        name=$(sed -n 's/^desc: Trigger: Client Request: \(.*\)/\1/p; s/^desc: Trigger: dump \(.*\)/\1/p' "$f" | head -1)
        ir=$(awk '/^summary:/ {print $2}' "$f")
        printf "%-10s %-8s %10d Ir/request\n" "$label" "$name" $((ir / REQUESTS))
    done
}

measure target/release/tokengate current
[ -z "${1:-}" ] || measure "$1" baseline
echo "callgrind files under $WORK" >&2
