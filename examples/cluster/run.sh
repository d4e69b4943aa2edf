#!/usr/bin/env bash
# A whole cluster on loopback, in a throwaway folder: PostgreSQL (the shared index), three
# single-node Garage S3 servers (the replicas), three `strata serve` nodes (node1.toml..node3.toml)
# and HAProxy in front of them (haproxy.cfg). Ctrl-C stops everything and removes the folder.
#
#   bash examples/cluster/run.sh
#
# Then: the viewer and DICOMweb at http://127.0.0.1:8080/, DIMSE (AE title STRATA) at
# 127.0.0.1:11112, which node gets what at http://127.0.0.1:8404/stats. At its prompt,
# `restart N` sends node N SIGTERM (it drains, then exits) and starts it again, `rolling` does so
# to every node in turn, and neither fails a request; `quit` (or Ctrl-C) stops everything and
# removes the folder.
#
# Needs: haproxy and PostgreSQL's server (Debian: apt-get install haproxy postgresql), Garage
# ($GARAGE_BIN, default ~/.cache/strata/garage/bin/garage, which scripts/test.sh builds), and the
# strata binary ($STRATA_BIN, default target/release/strata, built when missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

GARAGE_BIN="${GARAGE_BIN:-$HOME/.cache/strata/garage/bin/garage}"
strata_bin="${STRATA_BIN:-$root/target/release/strata}"
# every STRATA_* variable a node sees must be a configuration key
unset STRATA_BIN
PG_PORT=55432
[[ -x "$GARAGE_BIN" ]] || { echo "missing $GARAGE_BIN (bash scripts/test.sh builds it; or set GARAGE_BIN)" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "missing haproxy (apt-get install haproxy)" >&2; exit 1; }
if [[ ! -x "$strata_bin" ]]; then
  (cd "$root" && cargo build --release)
fi

work="$(mktemp -d /tmp/strata-cluster.XXXXXX)"
chmod 755 "$work"
pids=()
pg_bin=""
as_owner=()

stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$pg_bin" ]]; then
    "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS COMMAND...: runs COMMAND until it succeeds, for SECONDS at most.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# PostgreSQL refuses to run as root: under root its cluster belongs to the postgres user.
start_postgres() {
  pg_bin="$(pg_config --bindir 2>/dev/null || true)"
  [[ -x "$pg_bin/initdb" ]] || pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  [[ -x "$pg_bin/initdb" ]] || { echo "missing PostgreSQL's server (apt-get install postgresql)" >&2; exit 1; }
  mkdir -p "$work/pg"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$work/pg"
    as_owner=(runuser -u postgres --)
  fi
  "${as_owner[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U strata --auth=trust -E UTF8 --locale=C -N >/dev/null
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
  "${as_owner[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U strata -d postgres -q \
    -c "CREATE DATABASE strata"
}

# start_garage NAME S3_PORT RPC_PORT ENV_PREFIX: one single-node Garage with a bucket `strata`
# and a key that may read and write it, exported as <ENV_PREFIX>ACCESS_KEY_ID and
# <ENV_PREFIX>SECRET_ACCESS_KEY (the replica URLs of node*.toml name the prefix).
start_garage() {
  local name=$1 s3=$2 rpc=$3 prefix=$4 dir="$work/$1"
  mkdir -p "$dir"
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
EOF
  RUST_LOG=garage=warn "$GARAGE_BIN" -c "$dir/garage.toml" server >"$dir/garage.log" 2>&1 &
  pids+=($!)
  g() { RUST_LOG=warn "$GARAGE_BIN" -c "$dir/garage.toml" "$@"; }
  wait_for 30 g status || { echo "garage $name did not start:" >&2; cat "$dir/garage.log" >&2; exit 1; }
  local id key
  id=$(g node id -q)
  g layout assign "${id%%@*}" -z zone0 -c 1G >/dev/null
  g layout apply --version 1 >/dev/null
  wait_for 30 g bucket create strata || { echo "garage $name: bucket create failed" >&2; exit 1; }
  key=$(g json-api CreateKey '{"name":"strata"}')
  export "${prefix}ACCESS_KEY_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["accessKeyId"])' <<<"$key")"
  export "${prefix}SECRET_ACCESS_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secretAccessKey"])' <<<"$key")"
  g bucket allow --read --write --owner strata --key "$(printenv "${prefix}ACCESS_KEY_ID")" >/dev/null
}

# start_node N: `strata serve` for node N, its log in <folder>/nodeN.log; returns once it is ready.
start_node() {
  local n=$1
  "$strata_bin" --data "$work/node$n" --config "$here/node$n.toml" serve >>"$work/node$n.log" 2>&1 &
  pids+=($!)
  echo $! >"$work/node$n.pid"
  wait_for 60 curl -fsS "http://127.0.0.1:808$n/readyz" || {
    echo "node$n did not get ready:" >&2; cat "$work/node$n.log" >&2; exit 1
  }
}

echo "cluster folder: $work"
start_postgres
start_garage garage-a 3901 3902 GARAGE_A_
start_garage garage-b 3911 3912 GARAGE_B_
start_garage garage-c 3921 3922 GARAGE_C_
# one master key for every node: each encrypts and reads every other's instances
STRATA_MASTER_KEY="$(openssl rand -hex 32)"
export STRATA_MASTER_KEY
# the first node makes the admin user; the others find it
start_node 1
start_node 2
start_node 3

export CLUSTER_PROXY_HTTP_PORT=8080 CLUSTER_PROXY_DIMSE_PORT=11112 CLUSTER_PROXY_STATS_PORT=8404
for n in 1 2 3; do
  export "CLUSTER_NODE${n}_HTTP_PORT=808$n" "CLUSTER_NODE${n}_DIMSE_PORT=1111$((2 + n))"
done
haproxy -db -f "$here/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_for 30 curl -fsS http://127.0.0.1:8080/readyz || { cat "$work/haproxy.log" >&2; exit 1; }

cat <<EOF

Up: http://127.0.0.1:8080/ (user admin, password: $(cat "$work/node1/initial-admin-password")),
DIMSE STRATA@127.0.0.1:11112, the proxy's view of the nodes at http://127.0.0.1:8404/stats.
Logs in $work (node1.log ... haproxy.log).
EOF

# restart_node N: SIGTERM (the node drains and exits), then start it again and wait until the
# proxy sends it work.
restart_node() {
  local n=$1 pid status=0
  [[ "$n" =~ ^[123]$ ]] || { echo "restart 1, 2 or 3"; return; }
  pid=$(cat "$work/node$n.pid")
  echo "node$n: SIGTERM: draining"
  kill -TERM "$pid"
  wait "$pid" || status=$?
  echo "node$n: exited with status $status; starting it again"
  start_node "$n"
  wait_for 30 sh -c "curl -fsS 'http://127.0.0.1:8404/stats;csv' | grep -q '^nodes_http,node$n,.*,UP'" ||
    echo "node$n: not up at the proxy after 30 s"
  echo "node$n: serving"
}

if [[ -t 0 ]]; then
  echo "Commands: restart N (drain node N, start it again), rolling (every node in turn), quit."
  while read -r -p "> " cmd arg; do
    case "$cmd" in
      restart) restart_node "$arg" ;;
      rolling) for n in 1 2 3; do restart_node "$n"; done ;;
      quit | exit) break ;;
      "") ;;
      *) echo "restart N | rolling | quit" ;;
    esac
  done
else
  echo "Ctrl-C stops everything and removes $work."
  wait
fi
