#!/usr/bin/env bash
# Keep-alive latency of `serve` (issue 11 #15): 200 requests to `/metrics` and to `/` over one
# persistent connection (one curl invocation, as Prometheus and browsers reuse theirs), beside
# the same requests on a new connection each (the baseline) in the same run. Small state: this
# measures the connection, not the page. Writes under bench/out/keepalive (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release --quiet --bin ops-run
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/keepalive
rm -rf "$out" && mkdir -p "$out/plans"
cat > "$out/plans/p.kdl" <<KDL
plan bench {
    base "$out/backups"
    command hello { run "true" }
}
KDL
ops=("$bin" --plans "$out/plans" --state "$out/state.db")
"${ops[@]}" run hello >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${ops[@]}" serve --listen "127.0.0.1:$port" >"$out/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
sleep 1
n=${N:-200}
stats() { sort -n | awk -v label="$1" '{a[NR]=$1*1000} END {printf "%-32s p50 %7.2f ms  p99 %7.2f ms  (%d requests)\n", label, a[int(NR*0.5)], a[int(NR*0.99)], NR}'; }
for path in /metrics /; do
    url="http://127.0.0.1:$port$path"
    args=(); for _ in $(seq "$n"); do args+=(-o /dev/null "$url"); done
    curl -s -w '%{time_total}\n' "${args[@]}" | stats "$path keep-alive"
    for _ in $(seq "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$url"; done | stats "$path new connection (baseline)"
done
