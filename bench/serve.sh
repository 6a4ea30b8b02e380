#!/usr/bin/env bash
# Benchmark of issue 6: `GET /` and `GET /metrics` at 200 requests/s (wrk, 2 threads, 32
# connections, paced by bench/pace.lua) with 1,000,000 rows in ops_activities and 10,000 dumps
# on disk, while an apply loop writes activities; beside `GET /healthz` (the server's floor) in
# the same run. Reports wrk's latency percentiles and serve's peak RSS. Writes under
# bench/out/serve (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/serve
rm -rf "$out" && mkdir -p "$out/backups/db"
export OPS_NOW=2026-11-28T10:00:00Z OPS_BACKUP_BASE=$out/backups OPS_STATE=$out/state.db
ops=("$bin" --plans plans/crm.kdl)

"${ops[@]}" run maintenance-on >/dev/null 2>&1 || true  # creates the state database
python3 bench/fixture.py state "$out/state.db" "${ROWS:-1000000}"
python3 - "$out/backups/db" <<'PY'
import os, sys
from datetime import datetime, timedelta
d = sys.argv[1]
start = datetime(2025, 12, 1, 2, 0)
for i in range(10000):
    name = (start - timedelta(hours=i)).strftime("full-%Y%m%d-%H%M.sql.gz")
    with open(os.path.join(d, name), "wb") as f:
        f.write(b"\x1f\x8b" + b"0" * 64)
    with open(os.path.join(d, name + ".sha256"), "w") as f:
        f.write("0" * 64 + "  " + name + "\n")
print(f"{d}: 10000 dumps with sidecars")
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${ops[@]}" serve --listen "127.0.0.1:$port" 2>"$out/serve.log" &
serve=$!
trap 'kill $serve $writer 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
sleep 2
echo "serve RSS idle after start: $(awk '/VmRSS/ {print $2, $3}' /proc/$serve/status)"

# The writer: an apply loop that records activities (the command fails: there is no php here).
( while true; do "${ops[@]}" run maintenance-on >/dev/null 2>&1 || true; sleep 0.2; done ) &
writer=$!

# At a steady 200 requests/s (32 clients, paced by bench/paced.py: wrk has no rate option).
# Persistent connections (what Prometheus and browsers use), then a new connection each.
for mode in keepalive close; do
    for path in /healthz / /metrics; do
        python3 bench/paced.py "http://127.0.0.1:$port$path" 200 32 "${DURATION:-20}" "$mode"
    done
done
echo "serve peak RSS at 200 req/s: $(awk '/VmHWM/ {print $2, $3}' /proc/$serve/status)"
# And what wrk (2 threads, 32 connections, unpaced) gets out of it at full speed.
for path in / /metrics; do
    echo "==> wrk -t2 -c32 GET $path (saturated)"
    wrk -t2 -c32 -d10s --latency "http://127.0.0.1:$port$path" | grep -E "50%|99%|Requests/sec|Non-2xx|Socket errors"
done
echo "serve peak RSS after the saturated runs: $(awk '/VmHWM/ {print $2, $3}' /proc/$serve/status)"
echo "activities written during the run: $("${ops[@]}" activities --json --limit 500 --type command | grep -c '"id"')+"
