# Sourced by the PostgreSQL benchmarks: a server (the throwaway one of scripts/services.sh
# unless OPS_TEST_PG_PORT points at one) holding the CRM fixture at $scale in database $db,
# and `pg` (psql's connection options). The caller sets `scale`.

if [ -z "${OPS_TEST_PG_PORT:-}" ]; then
    source scripts/services.sh
    trap stop_services EXIT
    start_postgres
fi
export PGPASSWORD=$OPS_TEST_PG_PASSWORD
pg=(-h "$OPS_TEST_PG_HOST" -p "$OPS_TEST_PG_PORT" -U "$OPS_TEST_PG_USER")
db=crm_bench_$(echo "$scale" | tr . _)
if ! psql "${pg[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    echo "==> loading the CRM fixture at scale=$scale into $db"
    psql "${pg[@]}" -d postgres -qc "CREATE DATABASE $db"
    psql "${pg[@]}" -d "$db" -q -v ON_ERROR_STOP=1 -v scale="$scale" -f ../shared/bench/crm-fixture.pg.sql >/dev/null 2>&1
fi

# A plan dumping $db into $1/backups, written to $1/plan.kdl; more steps may follow in $2.
bench_plan() {
    cat > "$1/plan.kdl" <<KDL
plan bench {
    base "$1/backups"
    database main {
        engine postgres
        host "$OPS_TEST_PG_HOST"
        port $OPS_TEST_PG_PORT
        name $db
        user $OPS_TEST_PG_USER
        password env=PGPASSWORD
    }
    dump db {
        database main
    }
${2:-}
}
KDL
}
