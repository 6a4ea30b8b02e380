#!/usr/bin/env bash
# Restore benchmarks, each beside its baseline in the same hyperfine run:
#  - verify of the CRM fixture's dump at scale=1 vs
#    `createdb t && gunzip -c dump | psql -v ON_ERROR_STOP=1 t && dropdb t`;
#  - a snapshot of a 10,000-file tree vs the bare `restic backup` of it (a fresh repository
#    before every run of either, so both do the same full backup).
#  - `ops-run restore db` of that dump into a new database vs
#    `createdb t && gunzip -c dump | psql -v ON_ERROR_STOP=1 t` (both dropped before each run);
#  - a drill of the 10,000-file snapshot (sample 200) vs `restic restore` of it and
#    `sha256sum` of the same 200 files, restored and live.
# Starts its own throwaway PostgreSQL unless OPS_TEST_PG_PORT points at one. Writes under
# bench/out/ (git-ignored). SCALE=0.1 for a quicker run; ONLY=verify, snapshot, restore or
# drill for one.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }
scale=${SCALE:-1}
runs=${RUNS:-3}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/restore
rm -rf "$out" && mkdir -p "$out"

# A 10,000-file tree of random 200 B–8 KB files in 700 folders, at $out/tree.
make_tree() {
    tree=$out/tree
    [ -d "$tree" ] && return
    echo "==> building a 10,000-file tree"
    python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(7)
for i in range(10000):
    d = os.path.join(root, f"d{i % 100:02d}", f"e{i % 7}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.bin"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(200, 8000)))
PY
}

if [ "${ONLY:-verify}" = verify ]; then
    source bench/crm-db.sh
    bench_plan "$out" '    verify restore {
        dump db
        min-tables 44
        expect "SELECT count(*) FROM activities" min=1
    }'
    ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")
    "${ops[@]}" run db >/dev/null
    dump=$(ls "$out"/backups/db/full-*.sql.gz)
    echo "==> dump: $dump ($(du -h "$dump" | cut -f1))"
    hyperfine --runs "$runs" --export-markdown "$out/verify.md" --export-json "$out/verify.json" \
        -n "createdb + gunzip | psql + dropdb" \
        "createdb ${pg[*]} ops_bench_t && gunzip -c $dump | psql ${pg[*]} -q -o /dev/null -v ON_ERROR_STOP=1 ops_bench_t && dropdb ${pg[*]} ops_bench_t" \
        -n "ops-run run restore" "${ops[*]} run restore"
fi

if [ "${ONLY:-restore}" = restore ]; then
    [ -n "${dump:-}" ] || {
        source bench/crm-db.sh
        bench_plan "$out"
        ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")
        "${ops[@]}" run db >/dev/null
        dump=$(ls "$out"/backups/db/full-*.sql.gz)
    }
    hyperfine --runs "$runs" --export-markdown "$out/restore.md" --export-json "$out/restore.json" \
        --prepare "dropdb ${pg[*]} --if-exists ops_bench_t && dropdb ${pg[*]} --if-exists ops_bench_r" \
        -n "createdb + gunzip | psql" \
        "createdb ${pg[*]} ops_bench_t && gunzip -c $dump | psql ${pg[*]} -q -o /dev/null -v ON_ERROR_STOP=1 ops_bench_t" \
        -n "ops-run restore db" "${ops[*]} restore db db --to ops_bench_r"
    dropdb "${pg[@]}" --if-exists ops_bench_t; dropdb "${pg[@]}" --if-exists ops_bench_r
fi

if [ "${ONLY:-snapshot}" = snapshot ]; then
    command -v restic >/dev/null || { echo "needs restic (apt-get install restic)"; exit 1; }
    make_tree
    export RESTIC_PASSWORD=bench-restic-pw
    repo=$out/repo
    cat > "$out/snap.kdl" <<KDL
plan snap {
    base "$out/snap-backups"
    snapshot tree {
        paths "$tree"
        repository "$repo"
        password env=RESTIC_PASSWORD
    }
}
KDL
    snap=("$bin" --plans "$out/snap.kdl" --state "$out/snap-state.db")
    hyperfine --runs "$runs" --export-markdown "$out/snapshot.md" --export-json "$out/snapshot.json" \
        --prepare "rm -rf $repo $out/snap-backups && RESTIC_REPOSITORY=$repo restic init -q" \
        -n "restic backup (bare)" "env RESTIC_REPOSITORY=$repo restic backup --json --quiet $tree" \
        -n "ops-run run tree" "${snap[*]} run tree"
fi

if [ "${ONLY:-drill}" = drill ]; then
    command -v restic >/dev/null || { echo "needs restic (apt-get install restic)"; exit 1; }
    make_tree
    export RESTIC_PASSWORD=bench-restic-pw
    repo=$out/repo
    cat > "$out/drill.kdl" <<KDL
plan drill {
    base "$out/drill-backups"
    snapshot tree {
        paths "$out/tree"
        repository "$repo"
        password env=RESTIC_PASSWORD
        init #true
    }
    drill rehearsal {
        snapshot tree
        sample "200"
    }
}
KDL
    rm -rf "$repo" "$out/drill-backups"
    drill=("$bin" --plans "$out/drill.kdl" --state "$out/drill-state.db")
    "${drill[@]}" run tree >/dev/null
    find "$out/tree" -type f | shuf -n 200 --random-source=<(yes) > "$out/sample.txt"
    sed "s|^|$out/restored|" "$out/sample.txt" > "$out/sample-restored.txt"
    hyperfine --runs "$runs" --export-markdown "$out/drill.md" --export-json "$out/drill.json" \
        --prepare "rm -rf $out/restored" \
        -n "restic restore + sha256sum of the sample" \
        "env RESTIC_REPOSITORY=$repo restic restore latest -q --target $out/restored && xargs -a $out/sample.txt sha256sum >/dev/null && xargs -a $out/sample-restored.txt sha256sum >/dev/null" \
        -n "ops-run run rehearsal" "${drill[*]} run rehearsal"
fi

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for name in ("verify", "restore", "snapshot", "drill"):
    path = os.path.join(out, f"{name}.json")
    if not os.path.exists(path):
        continue
    base, ops = json.load(open(path))["results"]
    for r in (base, ops):
        print(f"{name}: {r['command']:40} median {r['median']:7.3f} s  mean {r['mean']:7.3f} ± {r['stddev'] or 0:.3f} s")
    print(f"{name}: ratio ops-run / baseline (medians) {ops['median'] / base['median']:.3f}")
PY
