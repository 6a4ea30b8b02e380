#!/usr/bin/env bash
# What encryption to age recipients costs (issue 28), each beside its baseline in the same
# hyperfine run, on the CRM fixture (scale=1 by default):
#  - `ops-run run db` with `compression "zstd"` and `encrypt { recipient … }` vs the same dump
#    without `encrypt` (target: ≤ 1.10), and vs `pg_dump | zstd -3 -T0 | age -r R > f &&
#    sha256sum f`;
#  - `ops-run run restore` (verify, decrypting with the identity) of the encrypted dump vs
#    the verify of the plain one.
# Starts its own throwaway PostgreSQL unless OPS_TEST_PG_PORT points at one. Writes under
# bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine zstd age age-keygen; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install hyperfine zstd age)"; exit 1; }
done
scale=${SCALE:-1}
runs=${RUNS:-3}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/age
rm -rf "$out" && mkdir -p "$out/plain" "$out/sealed"

source bench/crm-db.sh
age-keygen -o "$out/restore.key" 2>/dev/null
recipient=$(age-keygen -y "$out/restore.key")
for kind in plain sealed; do
    bench_plan "$out/$kind" "    verify restore {
        dump db
        min-tables 44
        identity file=\"$out/restore.key\"
    }"
    sed -i 's/^    dump db {$/    dump db {\n        compression "zstd"/' "$out/$kind/plan.kdl"
done
sed -i "s/^        compression \"zstd\"$/        compression \"zstd\"\n        encrypt { recipient \"$recipient\"; }/" "$out/sealed/plan.kdl"
plain=("$bin" --plans "$out/plain/plan.kdl" --state "$out/plain/state.db")
sealed=("$bin" --plans "$out/sealed/plan.kdl" --state "$out/sealed/state.db")

hyperfine --runs "$runs" --export-json "$out/dump.json" \
    --prepare "rm -rf $out/plain/backups $out/sealed/backups $out/shell.sql.zst.age" \
    -n "ops-run run db (zstd)" "${plain[*]} run db" \
    -n "ops-run run db (zstd + age)" "${sealed[*]} run db" \
    -n "pg_dump | zstd -3 -T0 | age -r R > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | zstd -q -3 -T0 | age -r $recipient -o $out/shell.sql.zst.age && sha256sum $out/shell.sql.zst.age"

"${plain[@]}" run db >/dev/null
"${sealed[@]}" run db >/dev/null
hyperfine --runs "$runs" --export-json "$out/verify.json" \
    -n "ops-run run restore (zstd)" "${plain[*]} run restore" \
    -n "ops-run run restore (zstd + age)" "${sealed[*]} run restore"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("dump", "verify"):
    results = json.load(open(os.path.join(out, f"{name}.json")))["results"]
    for r in results:
        print(f"{name}: {r['command']:55} median {r['median']:7.3f} s  mean {r['mean']:7.3f} ± {r['stddev'] or 0:.3f} s")
    base, sealed = results[0], results[1]
    print(f"{name}: ratio encrypted / plain (medians) {sealed['median'] / base['median']:.3f}")
    if len(results) > 2:
        print(f"{name}: ratio encrypted / shell pipeline (medians) {sealed['median'] / results[2]['median']:.3f}")
PY
