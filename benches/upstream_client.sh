#!/usr/bin/env bash
# Upstream client benchmark (issue 10's choice): tokengate's own HTTP/1.1 pool and shared HTTP/2
# connection (`proxy::forward`) against hyper-util's pooled `Client`, in the same bare
# pass-through proxy (examples/passthrough.rs, `legacy` selects hyper-util), on one run.
#
#   benches/upstream_client.sh                 # 3 interleaved rounds, 8 s per run
#   ROUNDS=5 DURATION=10 benches/upstream_client.sh
#
# Two upstream protocols, both to nginx answering 200 "ok": HTTP/1.1 (pooled keep-alive
# connections) and h2c (one HTTP/2 connection with prior knowledge; hyper-util's `http2_only`).
# The pass-through runs pinned to CPU 0 (one current-thread runtime); wrk (HTTP/1.1 to the
# pass-through, CONNECTIONS connections) and nginx run on CPU 1. The figure is the pass-through's
# CPU time (utime+stime from /proc) per completed request. TLS would add the same record crypto
# to both clients, so the clients are compared in cleartext.
# Needs: wrk, nginx, taskset, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
SUT_CPU=${SUT_CPU:-0}
AUX_CPU=${AUX_CPU:-1}

for tool in wrk nginx taskset python3; do
    command -v "$tool" >/dev/null || { echo "upstream_client.sh needs $tool" >&2; exit 1; }
done
echo "building the pass-through…" >&2
cargo build --release --quiet --example passthrough

tag=client
# shellcheck source=benches/common.sh
source benches/common.sh

h1_port=$(port)
h2_port=$(port)
mkdir -p "$work/up/logs"
cat >"$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 10000000;
  server { listen 127.0.0.1:$h1_port; location / { return 200 "ok"; } }
  server { listen 127.0.0.1:$h2_port http2; location / { return 200 "ok"; } } }
CONF
taskset -c "$AUX_CPU" nginx -p "$work/up" -c "$work/up/nginx.conf" 2>/dev/null &
pids+=($!)
wait_port "$h1_port"
wait_port "$h2_port"

# One pass-through per client and upstream protocol, all started now; each run measures one.
declare -A port_of pid_of
for client in tokengate hyper-util; do
    for proto in h1 h2c; do
        p=$(port)
        up="127.0.0.1:$h1_port"
        [ "$proto" = h2c ] && up="h2c://127.0.0.1:$h2_port"
        mode=()
        [ "$client" = hyper-util ] && mode=(legacy)
        taskset -c "$SUT_CPU" target/release/examples/passthrough "127.0.0.1:$p" "$up" "${mode[@]}" &
        pid_of[$client-$proto]=$!
        pids+=($!)
        port_of[$client-$proto]=$p
        wait_port "$p"
    done
done

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores; rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS"
echo "# examples/passthrough at $(git rev-parse --short HEAD); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1)"
results="$work/results"
for _ in $(seq "$ROUNDS"); do
    for proto in h1 h2c; do
        for client in tokengate hyper-util; do
            key=$client-$proto
            before=$(cpu_ticks "${pid_of[$key]}")
            out=$(taskset -c "$AUX_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:${port_of[$key]}/" 2>&1)
            after=$(cpu_ticks "${pid_of[$key]}")
            n=$(echo "$out" | awk '/requests in/ {print $1}')
            bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
            awk -v c="$client" -v p="$proto" -v n="$n" -v t=$((after - before)) -v hz="$hz" -v bad="${bad:-0}" \
                'BEGIN { printf "%-11s %-4s %9d requests  %7.2f us CPU/request  %d non-2xx\n", c, p, n, t * 1e6 / hz / n, bad }' |
                tee -a "$results"
        done
    done
done
echo "# medians of CPU us per request, and tokengate's client / hyper-util's"
for proto in h1 h2c; do
    ours=$(awk -v p="$proto" '$1 == "tokengate" && $2 == p {print $5}' "$results" | median)
    theirs=$(awk -v p="$proto" '$1 == "hyper-util" && $2 == p {print $5}' "$results" | median)
    awk -v p="$proto" -v a="$ours" -v b="$theirs" \
        'BEGIN { printf "%-4s tokengate %7.2f   hyper-util %7.2f   ratio %.2f   difference %+.2f us\n", p, a, b, a / b, a - b }'
done
