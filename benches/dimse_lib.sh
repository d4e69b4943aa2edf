# Helpers of the DIMSE benchmarks (sourced after lib.sh, not run).

# start_strata DATA_DIR [BINARY]: `strata serve` with its defaults; sets SPID, SPORT.
start_strata() {
    SPORT=$(free_port)
    "${2:-$STRATA}" --data "$1" serve --http "127.0.0.1:$(free_port)" --dimse "127.0.0.1:$SPORT" \
        >"$1.log" 2>&1 &
    SPID=$!
    wait_for 60 grep -q "serving DIMSE as STRATA" "$1.log" \
        || { echo "strata did not start:"; cat "$1.log"; exit 1; }
}

# storescu_timed AE PORT DIR...: one storescu (one association) per DIR, all at once; prints the
# wall seconds from the start to the last one done. Fails if any storescu reports an error.
storescu_timed() {
    local ae=$1 port=$2; shift 2
    local pids=() i=0 t0 t1 rc=0
    t0=$(date +%s.%N)
    for d in "$@"; do
        storescu +sd +r -aet BENCH -aec "$ae" 127.0.0.1 "$port" "$d" >"$WORK/storescu-$i.log" 2>&1 &
        pids+=($!); i=$((i + 1))
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    t1=$(date +%s.%N)
    if [[ $rc != 0 ]] || grep -q '^E:' "$WORK"/storescu-*.log; then
        echo "storescu to $ae failed:" >&2; grep -h '^[EW]:' "$WORK"/storescu-*.log | head -5 >&2; exit 1
    fi
    rm -f "$WORK"/storescu-*.log
    secs "$t0" "$t1"
}

# split_dirs SRC N: moves SRC's top-level folders (studies) round-robin into SRC-split/0..N-1.
split_dirs() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
src, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    os.makedirs(f"{src}-split/{i}", exist_ok=True)
for i, d in enumerate(sorted(os.listdir(src), key=lambda s: (len(s), s))):
    os.rename(os.path.join(src, d), f"{src}-split/{i % n}/{d}")
EOF
}
