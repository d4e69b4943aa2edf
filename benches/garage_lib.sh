# Single-node Garage servers (S3) on loopback for the benchmark scripts (sourced after lib.sh,
# not run), set up as tests/common/garage.rs sets them up for the tests: replication factor 1,
# LMDB metadata, one bucket `strata` and one key with read and write rights on it. Needs
# GARAGE_BIN (default ~/.cache/strata/garage/bin/garage, which scripts/test.sh builds).
# GARAGE_FSYNC=1 sets metadata_fsync and data_fsync (Garage's defaults: both off).

GARAGE_BIN="${GARAGE_BIN:-$HOME/.cache/strata/garage/bin/garage}"
GARAGE_PIDS=()
GARAGE_RPC_SECRET=5f3c9b1e2d4a6f8071829304a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e

need_garage() {
    [[ -x "$GARAGE_BIN" ]] || { echo "missing $GARAGE_BIN (bash scripts/test.sh builds it; or set GARAGE_BIN)" >&2; exit 1; }
}

# start_garage DIR ENV_PREFIX: one node in DIR, started and given a bucket and a key. Appends
# its pid to GARAGE_PIDS, exports <ENV_PREFIX>ACCESS_KEY_ID and <ENV_PREFIX>SECRET_ACCESS_KEY,
# and sets GARAGE_URL to the archive's replica URL of that bucket.
start_garage() {
    local dir=$1 prefix=$2 s3 rpc fsync=false cfg
    s3=$(free_port); rpc=$(free_port)
    [[ "${GARAGE_FSYNC:-0}" == 1 ]] && fsync=true
    mkdir -p "$dir"
    cfg="$dir/garage.toml"
    cat >"$cfg" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = $fsync
data_fsync = $fsync
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
EOF
    RUST_LOG=garage=warn "$GARAGE_BIN" -c "$cfg" server >"$dir/garage.log" 2>&1 &
    GARAGE_PIDS+=($!)
    g() { RUST_LOG=warn "$GARAGE_BIN" -c "$cfg" "$@"; }
    wait_for 30 g status || { echo "garage did not start:"; cat "$dir/garage.log"; exit 1; }
    local id
    id=$(g node id -q); id=${id%%@*}
    g layout assign "$id" -z zone0 -c 1G >/dev/null
    g layout apply --version 1 >/dev/null
    wait_for 30 g bucket create strata || { echo "garage bucket create failed"; exit 1; }
    local key
    key=$(g json-api CreateKey '{"name":"strata"}')
    local key_id secret
    key_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["accessKeyId"])' <<<"$key")
    secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secretAccessKey"])' <<<"$key")
    g bucket allow --read --write --owner strata --key "$key_id" >/dev/null
    export "${prefix}ACCESS_KEY_ID=$key_id" "${prefix}SECRET_ACCESS_KEY=$secret"
    GARAGE_URL="s3://strata/archive?endpoint=http://127.0.0.1:$s3&region=garage&allow_http=true&env=$prefix"
}

# CPU seconds (user+sys) of every Garage server so far, summed.
garage_cpu() {
    local p t=0
    for p in "${GARAGE_PIDS[@]}"; do t=$(python3 -c "print($t + $(cpu_of "$p"))"); done
    echo "$t"
}

stop_garages() {
    local p
    for p in "${GARAGE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${GARAGE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    GARAGE_PIDS=()
}
