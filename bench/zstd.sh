#!/usr/bin/env bash
# zstd dumps (issue 15), each beside its baseline in the same hyperfine run, on the CRM
# fixture (scale=1 by default):
#  - `ops-run run db` with `compression "zstd"` vs `pg_dump | zstd -3 -T0 > f && sha256sum f`;
#  - `ops-run run restore` (verify) of that dump vs
#    `createdb t && zstd -dc dump | psql -v ON_ERROR_STOP=1 t && dropdb t`;
# then the sizes and ops-run's peak RSS while dumping. Starts its own throwaway PostgreSQL
# unless OPS_TEST_PG_PORT points at one. Writes under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine zstd; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }
done
scale=${SCALE:-1}
runs=${RUNS:-3}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/zstd
rm -rf "$out" && mkdir -p "$out"

source bench/crm-db.sh
bench_plan "$out" '    verify restore {
        dump db
        min-tables 44
    }'
sed -i 's/^    dump db {$/    dump db {\n        compression "zstd"/' "$out/plan.kdl"
ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")

hyperfine --runs "$runs" --export-json "$out/dump.json" \
    --prepare "rm -rf $out/backups $out/shell.sql.zst" \
    -n "pg_dump | zstd -3 -T0 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | zstd -q -3 -T0 -o $out/shell.sql.zst && sha256sum $out/shell.sql.zst" \
    -n "ops-run run db (zstd)" "${ops[*]} run db"

rm -rf "$out/backups"
/usr/bin/time -v "${ops[@]}" run db 2> "$out/time.txt" >/dev/null
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
dump=$(ls "$out"/backups/db/full-*.sql.zst)
pg_dump "${pg[@]}" -d "$db" | zstd -q -3 -T0 -o "$out/shell.sql.zst" -f

hyperfine --runs "$runs" --export-json "$out/verify.json" \
    -n "createdb + zstd -dc | psql + dropdb" \
    "createdb ${pg[*]} ops_bench_z && zstd -dc $dump | psql ${pg[*]} -q -o /dev/null -v ON_ERROR_STOP=1 ops_bench_z && dropdb ${pg[*]} ops_bench_z" \
    -n "ops-run run restore" "${ops[*]} run restore"

python3 - "$out" "$out/shell.sql.zst" "$dump" "$rss" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("dump", "verify"):
    base, ops = json.load(open(os.path.join(out, f"{name}.json")))["results"]
    for r in (base, ops):
        print(f"{name}: {r['command']:40} median {r['median']:7.3f} s  mean {r['mean']:7.3f} ± {r['stddev'] or 0:.3f} s")
    print(f"{name}: ratio ops-run / baseline (medians) {ops['median'] / base['median']:.3f}")
shell, mine = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
print(f"zstd -3 {shell} bytes, ops-run {mine} bytes ({(mine / shell - 1) * 100:+.2f} %)")
print(f"ops-run peak RSS while dumping {int(sys.argv[4]) / 1024:.1f} MiB")
PY
