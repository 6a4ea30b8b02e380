#!/usr/bin/env bash
# What counting rows costs: the dump (gzip and zstd) and the verify of the CRM fixture
# (scale=1 by default) by the binary without row counting (BEFORE, a git revision) and by this
# checkout, beside the shell pipelines, each group in one hyperfine run:
#   pg_dump | pigz -6 > f && sha256sum f        vs  ops-run run db   (before, after)
#   pg_dump | zstd -3 -T0 > f && sha256sum f    vs  ops-run run dbz  (before, after)
#   createdb + gunzip -c | psql + dropdb        vs  ops-run run restore (before, after)
# The after binary writes the manifest while dumping and compares every table's count(*) after
# the restore. Starts its own throwaway PostgreSQL unless OPS_TEST_PG_PORT points at one.
# Writes under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine pigz zstd; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }
done
scale=${SCALE:-1}
runs=${RUNS:-3}
# The last commit before manifests and row counts.
before_rev=${BEFORE:-ba7912c}
out=$PWD/bench/out/rows
mkdir -p "$out"

cargo build --locked --release --quiet
after=$PWD/target/release/ops-run
if [ ! -x "$out/before-$before_rev/ops-run" ]; then
    echo "==> building $before_rev (once)"
    rm -rf "$out/src-before" && mkdir -p "$out/src-before"
    git archive "$before_rev" | tar -x -C "$out/src-before"
    (cd "$out/src-before" && CARGO_TARGET_DIR="$out/target-before" cargo build --locked --release --quiet)
    mkdir -p "$out/before-$before_rev"
    cp "$out/target-before/release/ops-run" "$out/before-$before_rev/ops-run"
fi
before=$out/before-$before_rev/ops-run

source bench/crm-db.sh
for who in before after; do
    rm -rf "${out:?}/$who" && mkdir -p "$out/$who"
    bench_plan "$out/$who" '    dump dbz {
        database main
        compression "zstd"
    }
    verify restore {
        dump db
        min-tables 44
    }'
done
ops() { # WHO ARGS…: the command line of that binary on its own plan and state
    local who=$1 bin; shift
    bin=$([ "$who" = before ] && echo "$before" || echo "$after")
    echo "$bin --plans $out/$who/plan.kdl --state $out/$who/state.db $*"
}

hyperfine --runs "$runs" --export-json "$out/gzip.json" \
    --prepare "rm -rf $out/before/backups/db/db $out/after/backups/db/db $out/pigz.sql.gz" \
    -n "pg_dump | pigz -6 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | pigz -6 > $out/pigz.sql.gz && sha256sum $out/pigz.sql.gz" \
    -n "before: ops-run run db" "$(ops before run db)" \
    -n "after: ops-run run db" "$(ops after run db)"

hyperfine --runs "$runs" --export-json "$out/zstd.json" \
    --prepare "rm -rf $out/before/backups/db/dbz $out/after/backups/db/dbz $out/shell.sql.zst" \
    -n "pg_dump | zstd -3 -T0 > f && sha256sum f" \
    "pg_dump ${pg[*]} -d $db | zstd -q -3 -T0 -o $out/shell.sql.zst && sha256sum $out/shell.sql.zst" \
    -n "before: ops-run run dbz" "$(ops before run dbz)" \
    -n "after: ops-run run dbz" "$(ops after run dbz)"

# One good gzip dump each for the verifies (every hyperfine run's --prepare removed both).
$(ops before run db) >/dev/null
$(ops after run db) >/dev/null
dump=$(ls "$out"/after/backups/db/db/full-*.sql.gz | tail -n 1)
[ -f "$dump.manifest.json" ] || { echo "the after binary wrote no manifest"; exit 1; }
hyperfine --runs "$runs" --export-json "$out/verify.json" \
    -n "createdb + gunzip -c | psql + dropdb" \
    "createdb ${pg[*]} ops_bench_rows && gunzip -c $dump | psql ${pg[*]} -q -o /dev/null -v ON_ERROR_STOP=1 ops_bench_rows && dropdb ${pg[*]} ops_bench_rows" \
    -n "before: ops-run run restore" "$(ops before run restore)" \
    -n "after: ops-run run restore" "$(ops after run restore)"
grep -q '^rows: ' "$(find "$out/after/backups" -name 'verify-*.log' | sort | tail -n 1)" \
    || { echo "the after verify counted no rows"; exit 1; }

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
targets = {"gzip": ("pigz pipeline", 0.75), "zstd": ("zstd pipeline", 1.1), "verify": ("psql pipeline", None)}
print("| | baseline median | before median | after median | before / baseline | after / baseline | after / before |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, (what, target) in targets.items():
    base, before, after = json.load(open(os.path.join(out, f"{name}.json")))["results"]
    b, x, y = base["median"], before["median"], after["median"]
    t = f" (target ≤ {target})" if target else ""
    print(f"| {name} | {b:.2f} s | {x:.2f} s | {y:.2f} s | {x / b:.3f} | **{y / b:.3f}**{t} | {y / x:.3f} |")
PY
