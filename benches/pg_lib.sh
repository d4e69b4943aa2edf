# A throwaway PostgreSQL cluster for the benchmark scripts (sourced after lib.sh, not run).
# As crates/testkit/src/postgres.rs makes one for the tests: initdb in a folder of the work dir,
# `postgres` on a free loopback port, trust authentication for the user `strata`, fsync on and
# the server's defaults otherwise. Under root the cluster belongs to the `postgres` system user.

PG_PID="" PG_PORT="" PG_DIR=""

pg_bin() {
    local d
    d="$(pg_config --bindir 2>/dev/null || true)"
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [[ -x "$d/initdb" ]] || { echo "no initdb (apt-get install postgresql)" >&2; exit 1; }
    echo "$d"
}

as_pg_owner() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_pg DIR: a cluster in DIR; sets PG_PID, PG_PORT. Stopped by stop_pg (call it on exit).
start_pg() {
    local bin
    bin="$(pg_bin)"
    PG_DIR=$1
    mkdir -p "$PG_DIR"
    if [[ $(id -u) == 0 ]]; then
        chown postgres:postgres "$PG_DIR"
        chmod a+x "$(dirname "$PG_DIR")"   # the work dir (mktemp: 0700) must be passable
    fi
    as_pg_owner "$bin/initdb" -D "$PG_DIR/data" -U strata --auth=trust -E UTF8 --locale=C -N \
        >"$PG_DIR.initdb.log" 2>&1 || { cat "$PG_DIR.initdb.log"; exit 1; }
    PG_PORT=$(free_port)
    as_pg_owner "$bin/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR" \
        -c listen_addresses=127.0.0.1 -c max_connections=200 >"$PG_DIR.log" 2>&1 &
    PG_PID=$!
    wait_for 60 as_pg_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || { echo "PostgreSQL did not start:"; cat "$PG_DIR.log"; exit 1; }
    echo "# $("$bin/postgres" --version), cluster on 127.0.0.1:$PG_PORT (its defaults, fsync on)"
}

# pg_createdb NAME: prints the URL of a new database NAME.
pg_createdb() {
    as_pg_owner "$(pg_bin)/createdb" -h 127.0.0.1 -p "$PG_PORT" -U strata "$1"
    echo "postgres://strata@127.0.0.1:$PG_PORT/$1"
}

stop_pg() {
    [[ -n "$PG_PID" ]] || return 0
    # SIGINT to the postmaster itself (not its runuser wrapper): a fast shutdown
    local pm
    pm=$(head -1 "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)
    [[ -n "$pm" ]] && kill -INT "$pm" 2>/dev/null || true
    wait "$PG_PID" 2>/dev/null || true
    PG_PID=""
}
