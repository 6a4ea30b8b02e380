#!/usr/bin/env bash
# A PostgreSQL dump of the CRM fixture at scale=1 (~520 MB of SQL) by `ops-run run db` (gzip,
# the default) beside the pipelines an expert would write, all in the same hyperfine run:
#   pg_dump | gzip -6 > f && sha256sum f
#   pg_dump | pigz -6 > f && sha256sum f
# then ops-run's peak RSS and the output sizes. zstd dumps: bench/zstd.sh. Starts its own
# throwaway PostgreSQL (scripts/services.sh) unless OPS_TEST_PG_PORT points at one. Writes under
# bench/out/ (git-ignored). SCALE=0.1 gives a quicker, smaller run.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine pigz; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }
done
scale=${SCALE:-1}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/dump
rm -rf "$out" && mkdir -p "$out"

source bench/crm-db.sh
bench_plan "$out"
ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")

hyperfine --runs "${RUNS:-3}" --export-json "$out/dump.json" \
    --prepare "rm -rf $out/backups $out/shell.sql.gz $out/pigz.sql.gz" \
    -n "pg_dump | gzip -6 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | gzip -6 > $out/shell.sql.gz && sha256sum $out/shell.sql.gz" \
    -n "pg_dump | pigz -6 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | pigz -6 > $out/pigz.sql.gz && sha256sum $out/pigz.sql.gz" \
    -n "ops-run run db" "${ops[*]} run db"

# One more of each for sizes and ops-run's peak RSS (GNU time's maximum resident set size).
rm -rf "$out/backups"
pg_dump "${pg[@]}" -d "$db" | gzip -6 > "$out/shell.sql.gz"
/usr/bin/time -v "${ops[@]}" run db 2> "$out/time.txt" >/dev/null
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
ours=$(ls "$out"/backups/db/full-*.sql.gz)
python3 - "$out/dump.json" "$out/shell.sql.gz" "$ours" "$rss" <<'PY'
import json, os, sys
results = json.load(open(sys.argv[1]))["results"]
gzip, pigz, ops = results
for r in results:
    print(f"{r['command']:40} median {r['median']:6.2f} s  mean {r['mean']:6.2f} ± {r['stddev'] or 0:4.2f} s")
print(f"ratio ops-run / gzip -6 pipeline: {ops['median'] / gzip['median']:.2f} (target <= 0.5)")
print(f"ratio ops-run / pigz -6 pipeline: {ops['median'] / pigz['median']:.2f} (target <= 0.75)")
shell, mine = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
print(f"gzip -6 {shell} bytes, ops-run {mine} bytes ({(mine / shell - 1) * 100:+.2f} %)")
print(f"ops-run peak RSS {int(sys.argv[4]) / 1024:.1f} MiB")
PY
