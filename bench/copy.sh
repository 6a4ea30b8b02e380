#!/usr/bin/env bash
# Offsite copy benchmark: `ops-run run offsite` of the CRM fixture's dump (scale=1 by default)
# to a `rest:` destination (`rclone serve restic` on loopback) beside the bare
# `restic backup` of the same dump and sidecar to the same server, in the same hyperfine run.
# Each run of either starts from an empty, initialised repository (--prepare), so both do the
# same full upload. Starts its own throwaway PostgreSQL unless OPS_TEST_PG_PORT points at one.
# Writes under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine restic rclone; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }
done
scale=${SCALE:-1}
runs=${RUNS:-5}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/copy
rm -rf "$out" && mkdir -p "$out/served"

source bench/crm-db.sh
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rclone serve restic --addr "127.0.0.1:$port" "$out/served" >/dev/null 2>&1 &
rclone_pid=$!
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        break
    except OSError:
        time.sleep(0.1)
PY
trap 'kill $rclone_pid 2>/dev/null; stop_services 2>/dev/null || true' EXIT
url=rest:http://127.0.0.1:$port
export RESTIC_PASSWORD=bench-copy-pw RESTIC_CACHE_DIR=$out/cache BENCH_COPY_REPO=$url/ops1
bench_plan "$out" "    copy offsite {
        dump db
        repository env=BENCH_COPY_REPO
        password env=RESTIC_PASSWORD
    }"
ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")
"${ops[@]}" run db >/dev/null
dump=$(ls "$out"/backups/db/full-*.sql.gz)
echo "==> dump: $dump ($(du -h "$dump" | cut -f1))"
# Every run of either gets new, empty, initialised repositories (rclone keeps a removed
# repository's config in its cache, so names are never reused): `prepare` counts, and the
# commands read the current number from $out/n.
echo 0 > "$out/n"
prepare="n=\$((\$(cat $out/n) + 1)) && echo \$n > $out/n && restic -r $url/plain\$n init -q && restic -r $url/ops\$n init -q"
sh -c "$prepare" || { echo "cannot create a repository on rclone serve restic"; exit 1; }
hyperfine --runs "$runs" --export-markdown "$out/copy.md" --export-json "$out/copy.json" \
    --prepare "$prepare" \
    -n "restic backup (dump + sidecar)" \
    "restic -r $url/plain\$(cat $out/n) backup -q $dump $dump.sha256" \
    -n "ops-run run offsite" \
    "env BENCH_COPY_REPO=$url/ops\$(cat $out/n) ${ops[*]} run offsite"

python3 - "$out" <<'PY'
import json, os, sys
base, ops = json.load(open(os.path.join(sys.argv[1], "copy.json")))["results"]
for r in (base, ops):
    print(f"copy: {r['command']:40} median {r['median']:7.3f} s  mean {r['mean']:7.3f} ± {r['stddev'] or 0:.3f} s")
print(f"copy: ratio ops-run / baseline (medians) {ops['median'] / base['median']:.3f}")
PY
