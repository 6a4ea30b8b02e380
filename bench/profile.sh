#!/usr/bin/env bash
# The release profile: today's fat LTO with one codegen unit, against thin LTO with the default
# units — how long `cargo build --release` takes (what `cargo deb` spends), and the idle apply,
# a SQLite dump (the compressor and the proof) and its verify with each binary, side by side
# in the same hyperfine runs. Writes only under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }
out=$PWD/bench/out/profile
# The builds stay between runs (kept apart from the measurements): `CLEAN=1` starts them over.
targets=$PWD/bench/out/profile-targets
[ "${CLEAN:-}" = 1 ] && rm -rf "$targets"
rm -rf "$out" && mkdir -p "$out" "$targets"

build() { # NAME, then environment overrides of the release profile
    local name=$1; shift
    local start end
    start=$(date +%s)
    env "$@" CARGO_TARGET_DIR="$targets/$name" cargo build --locked --release --quiet --bin ops-run
    end=$(date +%s)
    echo "$name: release build $((end - start)) s" | tee -a "$out/builds.txt"
}
build fat
build thin CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fat=$targets/fat/release/ops-run
thin=$targets/thin/release/ops-run

export OPS_NOW=2026-11-28T10:00:00Z
# The idle apply: the sample plans and 100,000 activity rows, nothing due.
"$fat" --plans plans --state "$out/state.db" health --alert >/dev/null || true
python3 bench/fixture.py state "$out/state.db" 100000
# A SQLite database of ~60 MB of rows for the dump and its verify.
python3 - "$out/app.db" <<'PY'
import random, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, name TEXT, note TEXT)")
random.seed(7)
words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
db.executemany("INSERT INTO users (email, name, note) VALUES (?, ?, ?)",
    ((f"user{i}@example.com", " ".join(random.choices(words, k=3)), " ".join(random.choices(words, k=20)))
     for i in range(400000)))
db.commit()
PY
cat >"$out/dump.kdl" <<KDL
plan bench {
    base "$out/backups"
    database main {
        engine sqlite
        path "$out/app.db"
    }
    dump db {
        database main
    }
    verify restore {
        dump db
        min-tables 1
    }
}
KDL
"$fat" --plans "$out/dump.kdl" --state "$out/dump-state.db" run db >/dev/null
hyperfine --warmup 10 --runs 100 -N --export-markdown "$out/apply.md" \
    -n "fat: plan apply, nothing due" "$fat --plans plans --state $out/state.db plan apply" \
    -n "thin: plan apply, nothing due" "$thin --plans plans --state $out/state.db plan apply"
hyperfine --warmup 1 --runs 8 --export-markdown "$out/dump.md" \
    -n "fat: dump (SQLite, 400k rows)" "$fat --plans $out/dump.kdl --state $out/dump-state.db run db" \
    -n "thin: dump (SQLite, 400k rows)" "$thin --plans $out/dump.kdl --state $out/dump-state.db run db"
hyperfine --warmup 1 --runs 8 --export-markdown "$out/verify.md" \
    -n "fat: verify" "$fat --plans $out/dump.kdl --state $out/dump-state.db run restore" \
    -n "thin: verify" "$thin --plans $out/dump.kdl --state $out/dump-state.db run restore"
cat "$out/builds.txt" "$out/apply.md" "$out/dump.md" "$out/verify.md"
