#!/usr/bin/env bash
# Benchmark of issue 3: a PostgreSQL dump of the CRM fixture at scale=1 (~520 MB of SQL) by
# `ops-run run db` beside the shell pipeline `pg_dump | gzip -6 > f && sha256sum f`, in the
# same hyperfine run; then ops-run's peak RSS and the output sizes. Starts its own throwaway
# PostgreSQL (scripts/services.sh) unless OPS_TEST_PG_PORT points at one. Writes under
# bench/out/ (git-ignored). SCALE=0.1 gives a quicker, smaller run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }
scale=${SCALE:-1}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/dump
rm -rf "$out" && mkdir -p "$out"

source bench/crm-db.sh
bench_plan "$out"
ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")

hyperfine --runs "${RUNS:-3}" --export-markdown "$out/dump.md" --export-json "$out/dump.json" \
    --prepare "rm -rf $out/backups $out/shell.sql.gz" \
    -n "pg_dump | gzip -6 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | gzip -6 > $out/shell.sql.gz && sha256sum $out/shell.sql.gz" \
    -n "ops-run run db" "${ops[*]} run db"

# One more of each for sizes and ops-run's peak RSS (GNU time's maximum resident set size).
rm -rf "$out/backups"
pg_dump "${pg[@]}" -d "$db" | gzip -6 > "$out/shell.sql.gz"
/usr/bin/time -v "${ops[@]}" run db 2> "$out/time.txt" >/dev/null
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
ours=$(ls "$out"/backups/db/full-*.sql.gz)
python3 - "$out/dump.json" "$out/shell.sql.gz" "$ours" "$rss" <<'PY'
import json, os, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base, ops = results["pg_dump | gzip -6 > f && sha256sum f"], results["ops-run run db"]
for name, r in (("shell pipeline", base), ("ops-run run db", ops)):
    print(f"{name:16} median {r['median']:6.2f} s  mean {r['mean']:6.2f} ± {r['stddev'] or 0:4.2f} s")
print(f"ratio ops-run / shell: {ops['median'] / base['median']:.2f}")
shell, mine = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
print(f"gzip -6 {shell} bytes, ops-run {mine} bytes ({(mine / shell - 1) * 100:+.2f} %)")
print(f"ops-run peak RSS {int(sys.argv[4]) / 1024:.1f} MiB")
PY
