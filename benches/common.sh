# Shared by benches/tls_handshake.sh and benches/upstream_client.sh (sourced, not run): a
# scratch directory and the processes to stop on exit, free ports, readiness, CPU time.
# The caller sets `tag` (the scratch directory's name) before sourcing.

work=$(mktemp -d "/tmp/tokengate-${tag:-bench}.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Wait (at most 10 s) until something accepts on port $1.
wait_port() {
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing on port $1" >&2
    exit 1
}
# utime+stime, in clock ticks, of the processes given.
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
# The median of the numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
