#!/usr/bin/env bash
# Point-in-time recovery benchmarks on a cluster of its own (initdb, archiving through
# `ops-run wal push`), holding the CRM fixture (scale=1 by default), each beside its baseline:
#   pg_basebackup -Ft -X fetch --compress=client-zstd && sha256sum   vs  ops-run run base, and
#     ops-run run sealed (the same with `encrypt`: the tar streamed through zstd and age, checked
#     against its manifest on the way)
#   cp SEGMENT DIR && sync FILE (one 16 MiB segment full of data)      vs  ops-run wal push
#   ops-run restore db (a dump of the same data)   vs  ops-run restore cluster --start, to an
#     instant just after the base (the base alone) and --at latest (plus about 1 GiB of WAL)
# Writes under bench/out/pitr (git-ignored); stops its server on exit. SCALE=0.1 for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine zstd age-keygen; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install $t)"; exit 1; }
done
scale=${SCALE:-1}
runs=${RUNS:-3}
wal_mb=${WAL_MB:-1024}
cargo build --locked --release --quiet
bin=$PWD/target/release/ops-run
out=$PWD/bench/out/pitr
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
servers=()
cleanup() {
    for d in "${servers[@]}"; do as_pg "$bindir/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
rm -rf "$out" && mkdir -p "$out/sock" "$out/data"
age-keygen -o "$out/restore.key" 2>/dev/null
recipient=$(age-keygen -y "$out/restore.key")
chmod 755 "$out" "$out/sock"
[ "$(id -u)" = 0 ] && chown postgres "$out/sock" "$out/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$out/plan.kdl" <<KDL
plan bench {
    base "$out/backups"
    timezone "UTC"
    database main {
        engine postgres
        host "$out/sock"
        port $port
        user postgres
        name crm
    }
    dump db {
        database main
    }
    base-backup base {
        database main
    }
    base-backup sealed {
        database main
        encrypt { recipient "$recipient"; }
    }
    wal wal {
        database main
        base-backup base
    }
}
KDL
ops=("$bin" --plans "$out/plan.kdl" --state "$out/state.db")
"${ops[@]}" run wal >/dev/null
[ "$(id -u)" = 0 ] && chgrp postgres "$out/backups" "$out/backups/wal" "$out/backups/wal/wal"
as_pg "$bindir/initdb" -D "$out/data" -U postgres --auth-local=trust >/dev/null
{
    "${ops[@]}" plan show --json | python3 -c 'import json,sys; [print(l) for s in json.load(sys.stdin)["steps"] if s["postgresql_conf"] for l in s["postgresql_conf"]]'
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$out/sock'"
    echo "port = $port"
    echo "max_wal_size = 4GB"
} >> "$out/data/postgresql.conf"
servers+=("$out/data")
as_pg "$bindir/pg_ctl" -D "$out/data" -l "$out/sock/server.log" -w start >/dev/null
psql=(psql -X -q -h "$out/sock" -p "$port" -U postgres)
"${psql[@]}" -d postgres -c "CREATE DATABASE crm"
echo "==> loading the CRM fixture at scale=$scale"
"${psql[@]}" -d crm -v ON_ERROR_STOP=1 -v scale="$scale" -f ../shared/bench/crm-fixture.pg.sql >/dev/null 2>&1
"${psql[@]}" -d crm -c "CHECKPOINT"
echo "==> database: $("${psql[@]}" -d crm -Atc "SELECT pg_size_pretty(pg_database_size('crm'))")"

echo "==> base backup"
hyperfine --runs "$runs" --export-json "$out/base.json" \
    --prepare "rm -rf $out/d $out/backups/base" \
    -n "pg_basebackup -Ft -X fetch --compress=client-zstd && sha256sum" \
    "$bindir/pg_basebackup -h $out/sock -p $port -U postgres -D $out/d -Ft -X fetch --compress=client-zstd --checkpoint=fast && sha256sum $out/d/base.tar.zst" \
    -n "ops-run run base" "${ops[*]} run base" \
    -n "ops-run run sealed (encrypted)" "${ops[*]} run sealed"
rm -rf "$out/d"

echo "==> wal push of one segment"
seg=$(ls "$out"/backups/wal/wal/*.zst | grep -E '/[0-9A-F]{24}\.zst$' | tail -n 2 | head -n 1)
zstd -dcq "$seg" > "$out/segment"
name=000000FF00000000000000FF
mkdir -p "$out/cp"
hyperfine --runs 20 --warmup 2 --export-json "$out/push.json" \
    --prepare "rm -f $out/cp/$name $out/backups/wal/wal/$name.zst" \
    -n "cp + sync" "cp $out/segment $out/cp/$name && sync $out/cp/$name" \
    -n "ops-run wal push" "${ops[*]} wal push bench/wal $out/segment $name"
rm -f "$out/backups/wal/wal/$name.zst"

echo "==> writing about $wal_mb MiB of WAL after the base"
"${ops[@]}" run base >/dev/null
# An instant just after the base, before any of the WAL below (a commit on each side of it).
"${psql[@]}" -d crm -c "CREATE TABLE bench_mark (i int)"
sleep 1.2
just_after=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1.2
"${psql[@]}" -d crm -c "INSERT INTO bench_mark VALUES (1)"
start=$("${psql[@]}" -d crm -Atc "SELECT pg_current_wal_lsn()")
while :; do
    "${psql[@]}" -d crm -c "UPDATE activities SET body = body || '' WHERE id % 10 = (random() * 9)::int"
    done_mb=$("${psql[@]}" -d crm -Atc "SELECT (pg_current_wal_lsn() - '$start'::pg_lsn) / 1048576")
    [ "${done_mb%.*}" -ge "$wal_mb" ] && break
done
last=$("${psql[@]}" -d crm -Atc "SELECT pg_walfile_name(pg_switch_wal())")
until [ -f "$out/backups/wal/wal/$last.zst" ]; do sleep 1; done
echo "==> archive: $(du -sh "$out/backups/wal/wal" | cut -f1) compressed, $done_mb MiB of WAL"
"${ops[@]}" run db >/dev/null
"${psql[@]}" -d postgres -c "CHECKPOINT"

rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
servers+=("$out/r")
stop_r="if [ \$(id -u) = 0 ]; then runuser -u postgres -- $bindir/pg_ctl -D $out/r -m immediate stop; else $bindir/pg_ctl -D $out/r -m immediate stop; fi >/dev/null 2>&1; rm -rf $out/r"
drop="${psql[*]} -d postgres -c 'DROP DATABASE IF EXISTS crm_restored'"
# The physical restore first: the logical one writes WAL of its own into the archive.
hyperfine --runs "${RESTORE_RUNS:-2}" --export-json "$out/recovery.json" \
    --prepare "$stop_r; $drop" --cleanup "$stop_r; $drop" \
    -n "ops-run restore cluster --at (just after the base) --start" \
    "${ops[*]} restore cluster base --at $just_after --to $out/r --port $rport --start" \
    -n "ops-run restore cluster --at latest --start (base + WAL)" \
    "${ops[*]} restore cluster base --at latest --to $out/r --port $rport --start" \
    -n "ops-run restore db (the dump)" "${ops[*]} restore db db --to crm_restored"
grep -h "redo done" "$out"/r/log/*.log 2>/dev/null || true
