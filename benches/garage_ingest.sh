#!/usr/bin/env bash
# Benchmark: an archive on three S3 replicas (three single-node Garage servers on loopback, one
# bucket and key each, as benches/garage_lib.sh and the tests start them) against one on three
# local folders (the default, each copy fsynced), in the same run, both `strata serve` side by
# side, each sent the same data in turn, the order alternating:
#
# 1. Ingest of a SLICES-instance 512x512 CT by storescu (dcmtk, one association) and by STOW-RS
#    (all instances in one POST), REPS runs each, a new CT (other UIDs) every run: instances/s,
#    strata's CPU time per instance and the Garage servers' (user+sys, all threads, from
#    /proc/PID/stat before and after), and how busy the two cores were: (strata + Garage CPU)
#    / wall, out of 2.
# 2. Reindex from one replica: both servers stopped, `strata reindex --from-replica 1` of each
#    archive (every CT instance sent above plus SMALL instances of 64x64 stored by storescu before
#    stopping): instances/s and the process's CPU (GNU time).
#
# Both archives: defaults (write quorum = all three replicas, encryption on, SQLite index) with
# the background scrub off (`[scrub] blobs_per_second = 0`), so only ingest runs. Garage keeps
# its own defaults (metadata_fsync and data_fsync off) unless GARAGE_FSYNC=1.
#
#   bash benches/garage_ingest.sh
#   GARAGE_FSYNC=1 bash benches/garage_ingest.sh
#
# Knobs (environment): REPS=3, SLICES=300, SMALL=2000, REINDEX=1 (0: ingest only), GARAGE_FSYNC=0,
# GARAGE_BIN, BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR, PY (a python
# with requests and pydicom).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/benches/garage_lib.sh"

REPS="${REPS:-3}"
SLICES="${SLICES:-300}"
SMALL="${SMALL:-2000}"

LPID="" GPID=""
on_exit() {
    stop_all $LPID $GPID
    stop_garages
    cleanup
}
trap on_exit EXIT

need_garage
build
command -v storescu >/dev/null || { echo "needs dcmtk's storescu" >&2; exit 1; }
need_gnu_time
bench_python
machine
echo "# $("$GARAGE_BIN" --version 2>&1 | head -1); Garage fsync: ${GARAGE_FSYNC:-0}"
echo "# load at start: $(uptime | sed 's/.*load average/load average/')"
make_workdir

for r in $(seq "$REPS"); do
    for how in scu stow; do
        seed=$(( 200 + 2 * r )); [[ $how == stow ]] && seed=$(( seed + 1 ))
        "$GEN" --out "$WORK/ct-$how-$r" --seed "$seed" --patients 1 --studies 1 --series 1 \
            --slices "$SLICES" --rows 512 --cols 512 --modality ct >/dev/null
    done
done
"$GEN" --out "$WORK/small" --seed 9 --patients 10 --studies 20 --series 1 \
    --slices $(( SMALL / 20 )) --rows 64 --cols 64 --modality ct >/dev/null
echo "# $((2 * REPS)) CTs of $SLICES x 512x512 ($(du -sb "$WORK/ct-scu-1" | cut -f1) bytes each), one a run; $SMALL small instances for the reindex"

L="$WORK/local" G="$WORK/garage"
mkdir -p "$L" "$G"
printf '[scrub]\nblobs_per_second = 0\n' >"$L/strata.toml"
urls=()
for p in A B C; do
    start_garage "$WORK/garage-$p" "PROVIDER_${p}_"
    urls+=("\"$GARAGE_URL\"")
done
printf '[scrub]\nblobs_per_second = 0\n[store]\nreplicas = [%s]\n' "$(IFS=,; echo "${urls[*]}")" >"$G/strata.toml"
echo "# three Garage servers up (pids ${GARAGE_PIDS[*]})"

# start DATA: sets SPID, SPORT (DIMSE), SBASE.
start() {
    local http
    http=$(free_port); SPORT=$(free_port)
    "$STRATA" --data "$1" serve --http "127.0.0.1:$http" --dimse "127.0.0.1:$SPORT" >"$1.log" 2>&1 &
    SPID=$!
    wait_for 60 curl -sf "http://127.0.0.1:$http/readyz" \
        || { echo "strata did not start:"; cat "$1.log"; exit 1; }
    SBASE="http://127.0.0.1:$http/dicomweb"
}
start "$L"; LPID=$SPID L_PORT=$SPORT L_BASE=$SBASE
start "$G"; GPID=$SPID G_PORT=$SPORT G_BASE=$SBASE
SPID=""
token() {
    "$STRATA" --data "$1" token create --user admin 2>"$1.token.err" | grep -m1 '^stk_' \
        || { echo "strata token create failed:" >&2; cat "$1.token.err" >&2; exit 1; }
}
L_TOKEN=$(token "$L"); G_TOKEN=$(token "$G")

scu() {
    storescu +sd +r -aet BENCH -aec STRATA 127.0.0.1 "$1" "$2" >"$WORK/scu.log" 2>&1 \
        && ! grep -q '^E:' "$WORK/scu.log" \
        || { echo "storescu failed:" >&2; head "$WORK/scu.log" >&2; exit 1; }
}

# send WHO HOW DIR: prints "<wall s> <strata cpu s> <garage cpu s>" for one ingest of DIR.
send() {
    local who=$1 how=$2 dir=$3 pid port base tok c0 c1 g0 g1 t0 t1
    if [[ $who == local ]]; then pid=$LPID port=$L_PORT base=$L_BASE tok=$L_TOKEN
    else pid=$GPID port=$G_PORT base=$G_BASE tok=$G_TOKEN; fi
    sync
    c0=$(cpu_of "$pid"); g0=$(garage_cpu); t0=$(date +%s.%N)
    if [[ $how == scu ]]; then
        scu "$port" "$dir"
    else
        "$PY" "$REPO_ROOT/benches/dicomweb_client.py" --base "$base" --token "$tok" \
            --kinds stow --stow-dir "$dir" >"$WORK/stow.log" 2>&1 \
            || { echo "STOW failed:" >&2; cat "$WORK/stow.log" >&2; exit 1; }
    fi
    t1=$(date +%s.%N); c1=$(cpu_of "$pid"); g1=$(garage_cpu)
    echo "$(secs "$t0" "$t1") $(python3 -c "print(f'{$c1-$c0:.2f} {$g1-$g0:.2f}')")"
}

echo
echo "== 1. ingest of a $SLICES-instance CT: three local folders vs three Garage servers, $REPS runs =="
declare -A RATES CPUS GCPUS BUSY
for r in $(seq "$REPS"); do
    order="local garage"; (( r % 2 == 0 )) && order="garage local"
    for how in scu stow; do
        for who in $order; do
            out=$(send "$who" "$how" "$WORK/ct-$how-$r")
            read -r wall cpu gcpu <<<"$out"
            rate=$(rate "$SLICES" "$wall")
            read -r per gper busy < <(python3 -c "print(f'{1000*$cpu/$SLICES:.2f} {1000*$gcpu/$SLICES:.2f} {($cpu+$gcpu)/$wall:.2f}')")
            RATES[$who,$how]+="$rate "; CPUS[$who,$how]+="$per "; GCPUS[$who,$how]+="$gper "; BUSY[$who,$how]+="$busy "
            printf '  run %s %-4s %-6s %7.3f s %5s instances/s  cpu: strata %5.2f s (%s ms/instance), garage %5.2f s (%s ms/instance); cores busy %s of 2\n' \
                "$r" "$how" "$who" "$wall" "$rate" "$cpu" "$per" "$gcpu" "$gper" "$busy"
        done
    done
done
echo
for how in scu stow; do
    for who in local garage; do
        printf '  %-4s %-6s median: %5s instances/s, strata %s ms cpu an instance, garage %s ms, cores busy %s of 2\n' \
            "$how" "$who" "$(median ${RATES[$who,$how]} | sed 's/\.000$//')" "$(median ${CPUS[$who,$how]})" \
            "$(median ${GCPUS[$who,$how]})" "$(median ${BUSY[$who,$how]})"
    done
done

[[ "${REINDEX:-1}" == 1 ]] || exit 0
echo
echo "== 2. reindex from replica 1 (servers stopped) =="
scu "$L_PORT" "$WORK/small"; scu "$G_PORT" "$WORK/small"
TOTAL=$(( 2 * REPS * SLICES + SMALL ))
kill "$LPID" "$GPID"; wait "$LPID" || true; wait "$GPID" || true; LPID="" GPID=""
sync
for who in local garage; do
    d="$WORK/$who"
    g0=$(garage_cpu); t0=$(date +%s.%N)
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$STRATA" --data "$d" reindex --from-replica 1 \
        >"$WORK/reindex.out" 2>&1 || { echo "reindex failed:"; cat "$WORK/reindex.out"; exit 1; }
    t1=$(date +%s.%N); g1=$(garage_cpu)
    read -r _ user sys rss <"$WORK/time"
    wall=$(secs "$t0" "$t1")
    printf '  %-6s %s instances in %s s: %s instances/s; strata user %s s sys %s s (%s ms/instance), rss %s MB; garage cpu %s s\n' \
        "$who" "$TOTAL" "$wall" "$(rate "$TOTAL" "$wall")" "$user" "$sys" \
        "$(python3 -c "print(f'{1000*($user+$sys)/$TOTAL:.2f}')")" "$((rss / 1024))" \
        "$(python3 -c "print(f'{$g1-$g0:.2f}')")"
    sed 's/^/    | /' "$WORK/reindex.out" | tail -4
done
echo
echo "# load at end: $(uptime | sed 's/.*load average/load average/')"
