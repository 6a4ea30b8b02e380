# Throwaway database servers for the tests, on loopback, in temporary folders. Sourced by
# scripts/test (and usable by hand: `source scripts/services.sh; start_postgres; …; stop_services`).
# Each start_* exports the OPS_TEST_* variables the ignored tests read.

OPS_TEST_TMP=${OPS_TEST_TMP:-$(mktemp -d /tmp/ops-run-services.XXXXXX)}
chmod 755 "$OPS_TEST_TMP"
_services_pids=()

_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

# Runs a command as the `postgres` user when we are root (PostgreSQL refuses to run as root).
_as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$bin/initdb" ] || { echo "PostgreSQL server not installed (apt-get install postgresql)"; return 1; }
    local dir=$OPS_TEST_TMP/pg port; port=$(_free_port)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    _as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >"$OPS_TEST_TMP/pg-initdb.log"
    _as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
    export OPS_TEST_PG_HOST=127.0.0.1 OPS_TEST_PG_PORT=$port OPS_TEST_PG_USER=ops_test \
        OPS_TEST_PG_PASSWORD="pg-Secret-$RANDOM$RANDOM" OPS_TEST_PG_SOCKET=$dir
    _as_pg psql -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE ops_test LOGIN CREATEDB CREATEROLE PASSWORD '$OPS_TEST_PG_PASSWORD'" \
        -c "CREATE DATABASE ops_fixture OWNER ops_test"
    # The CRM-shaped fixture at a test size, as a template the tests copy.
    local fixture=../shared/bench/crm-fixture.pg.sql
    if [ ! -f "$fixture" ]; then
        echo "cannot find $fixture (the shared folder beside this checkout): the PostgreSQL tests need it"
        return 1
    fi
    if [ -f "$fixture" ]; then
        PGPASSWORD=$OPS_TEST_PG_PASSWORD psql -q -h 127.0.0.1 -p "$port" -U ops_test -d ops_fixture \
            -v ON_ERROR_STOP=1 -v scale=0.01 -f "$fixture" >"$OPS_TEST_TMP/pg-fixture.log" 2>&1 \
            || { cat "$OPS_TEST_TMP/pg-fixture.log"; return 1; }
        export OPS_TEST_PG_FIXTURE=ops_fixture
    fi
    _services_stop+=("_as_pg $bin/pg_ctl -D $dir/data -m immediate stop")
    echo "==> PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

start_mariadb() {
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null \
        || { echo "MariaDB server not installed (apt-get install mariadb-server)"; return 1; }
    local dir=$OPS_TEST_TMP/my port; port=$(_free_port)
    mkdir -p "$dir"
    local user; user=$(id -un)
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
        --auth-root-authentication-method=socket >"$OPS_TEST_TMP/my-install.log" 2>&1
    mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port="$port" \
        --bind-address=127.0.0.1 --user="$user" --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
        --pid-file="$dir/pid" >"$dir/server.log" 2>&1 &
    local i
    for i in $(seq 1 100); do
        mariadb --no-defaults -S "$dir/sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    export OPS_TEST_MY_HOST=127.0.0.1 OPS_TEST_MY_PORT=$port OPS_TEST_MY_USER=ops_test \
        OPS_TEST_MY_PASSWORD="my-Secret-$RANDOM$RANDOM" OPS_TEST_MY_SOCKET=$dir/sock
    mariadb --no-defaults -S "$dir/sock" -u root -e \
        "CREATE USER 'ops_test'@'127.0.0.1' IDENTIFIED BY '$OPS_TEST_MY_PASSWORD';
         GRANT ALL ON *.* TO 'ops_test'@'127.0.0.1' WITH GRANT OPTION;"
    _services_stop+=("kill $(cat "$dir/pid")")
    echo "==> MariaDB $(mariadbd --version | awk '{print $3}') on 127.0.0.1:$port"
}

stop_services() {
    local c
    for c in "${_services_stop[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
    _services_stop=()
    rm -rf "$OPS_TEST_TMP"
}
_services_stop=()
