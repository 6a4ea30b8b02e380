#!/usr/bin/env bash
# Peak RSS of `ops-run run db` (gzip and zstd) and of the verify of that dump (two import
# sessions) at two sizes of the CRM fixture, scale=1 and scale=3 by default (SCALES="1 3"):
# memory must not grow with the database. GNU time's maximum resident set size, one run each. Loads the fixtures on first use (scale=3: a few
# minutes, ~1.8 GB in the server). Writes under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/rss
rm -rf "$out" && mkdir -p "$out"
for scale in ${SCALES:-1 3}; do
    source bench/crm-db.sh
    for codec in gzip zstd; do
        dir=$out/$scale-$codec
        mkdir -p "$dir"
        bench_plan "$dir" '    verify restore {
        dump db
    }'
        sed -i "s/^    dump db {\$/    dump db {\n        compression \"$codec\"/" "$dir/plan.kdl"
        /usr/bin/time -v "$bin" --plans "$dir/plan.kdl" --state "$dir/state.db" run db \
            2> "$dir/time.txt" >/dev/null
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
        wall=$(awk -F'): ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
        /usr/bin/time -v "$bin" --plans "$dir/plan.kdl" --state "$dir/state.db" run restore \
            2> "$dir/verify-time.txt" >/dev/null
        vrss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/verify-time.txt")
        size=$(stat -c %s "$(ls "$dir"/backups/db/full-*.sql.* | grep -v '\.sha256$')")
        printf 'scale=%-4s %-5s dump %5d MiB in %s, peak RSS %6.1f MiB; its verify %6.1f MiB\n' \
            "$scale" "$codec" $((size >> 20)) "$wall" "$(echo "$rss / 1024" | bc -l)" \
            "$(echo "$vrss / 1024" | bc -l)"
        rm -rf "$dir/backups"
    done
done
