#!/usr/bin/env bash
# Benchmarks of issue 2: `plan apply` with nothing due (sample plans, 100,000 activity rows)
# and `plan validate` of a 200-step plan, each beside `ops-run --version` (process start-up
# alone) in the same hyperfine run. Writes only under bench/out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out
rm -rf "$out" && mkdir -p "$out"

export OPS_NOW=2026-11-28T10:00:00Z
"$bin" --state "$out/state.db" activities >/dev/null
python3 bench/fixture.py state "$out/state.db" 100000
# Sanity: nothing is due, so the benchmark measures the idle apply it claims to.
due=$("$bin" --plans plans --state "$out/state.db" plan apply --dry-run | head -1)
case "$due" in *": 0 steps would run"*) ;; *) echo "fixture is wrong: $due"; exit 1 ;; esac
python3 bench/fixture.py plan "$out/big.kdl" 200

hyperfine --warmup 20 --runs 200 -N --export-markdown "$out/apply.md" --export-json "$out/apply.json" \
    -n "ops-run --version (start-up only)" "$bin --version" \
    -n "plan apply, nothing due, 100k rows" "$bin --plans plans --state $out/state.db plan apply"
hyperfine --warmup 20 --runs 200 -N --export-markdown "$out/validate.md" --export-json "$out/validate.json" \
    -n "ops-run --version (start-up only)" "$bin --version" \
    -n "plan validate, 200 steps" "$bin --plans $out/big.kdl plan validate"
cat "$out/apply.md" "$out/validate.md"
python3 - "$out/apply.json" "$out/validate.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        print(f"median {r['median'] * 1000:6.2f} ms  {r['command']}")
PY
