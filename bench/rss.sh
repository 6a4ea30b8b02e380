#!/usr/bin/env bash
# Peak RSS of `ops-run run db` (gzip and zstd) at two sizes of the CRM fixture, scale=1 and
# scale=3 by default (SCALES="1 3"): memory must not grow with the database. GNU time's
# maximum resident set size, one run each. Loads the fixtures on first use (scale=3: a few
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
        bench_plan "$dir"
        sed -i "s/^    dump db {\$/    dump db {\n        compression \"$codec\"/" "$dir/plan.kdl"
        /usr/bin/time -v "$bin" --plans "$dir/plan.kdl" --state "$dir/state.db" run db \
            2> "$dir/time.txt" >/dev/null
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
        wall=$(awk -F'): ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
        size=$(stat -c %s "$dir"/backups/db/full-*)
        printf 'scale=%-4s %-5s peak RSS %6.1f MiB  dump %5d MiB  %s\n' \
            "$scale" "$codec" "$(echo "$rss / 1024" | bc -l)" $((size >> 20)) "$wall"
        rm -rf "$dir/backups"
    done
done
