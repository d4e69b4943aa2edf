#!/usr/bin/env bash
# Benchmark: whole-process figures of an archive whose index already holds INSTANCES instances,
# against an empty archive, in the same run (both `strata serve`, side by side, each sent the
# same data in turn, the order alternating):
#
# 1. Ingest of a SLICES-instance 512x512 CT: by storescu (dcmtk, one association) and by STOW-RS
#    (all instances in one POST, benches/dicomweb_client.py), REPS runs each, a new CT (another
#    seed: other UIDs) for every run; instances/s and strata's CPU time per instance (user+sys,
#    all threads, from /proc). Target: at scale >= 90 % of the empty archive's rate.
# 2. (FIND=1) study-level C-FIND over one association (benches/dimse_find_latency.py, pynetdicom):
#    by StudyInstanceUID (cycling through studies of the pre-filled index; the CT studies in the
#    empty one) and by a PatientName wildcard; p50 and p99.
# 3. (FIND=1) WADO-RS metadata of a series of META_SERIES small (64x64) instances, stored by
#    storescu into both: GET /studies/{study}/series/{series}/metadata, META_RUNS timed; p50.
#
# The pre-filled index is made by examples/index_scale.rs in the archive's own data folder
# (`--dir <data>`: <data>/index.sqlite is where `strata serve --data <data>` looks), through the
# catalog's own insert path: INSTANCES instances, ten a study, two studies a patient, no DICOM
# stored (their blobs do not exist, so the background scrub is turned off in both archives).
# ENGINE=postgres starts a throwaway PostgreSQL cluster (benches/pg_lib.sh) and puts both
# archives' indexes in databases of their own on it (`[index] url`).
#
#   bash benches/ingest_at_scale.sh
#   ENGINE=postgres INSTANCES=200000 bash benches/ingest_at_scale.sh
#
# Knobs (environment): INSTANCES=1000000, ENGINE=sqlite, REPS=3, SLICES=300, FIND=1,
# FIND_N=500, FIND_NAME='SMITH^PATIENT48*' (matches a few dozen studies of the pre-filled index),
# META_SERIES=1000, META_RUNS=30, BENCH_DIR, IN_DIR (where the generated DICOM files go, e.g.
# /dev/shm to spare the disk: every run's CT stays in three replicas, ~0.5 GB a run), KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR, PY (a python
# with requests, pydicom and pynetdicom).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/benches/pg_lib.sh"

INSTANCES="${INSTANCES:-1000000}"
ENGINE="${ENGINE:-sqlite}"
REPS="${REPS:-3}"
SLICES="${SLICES:-300}"
FIND="${FIND:-1}"
FIND_N="${FIND_N:-500}"
FIND_NAME="${FIND_NAME:-SMITH^PATIENT48*}"
META_SERIES="${META_SERIES:-1000}"
META_RUNS="${META_RUNS:-30}"
SCALE="$TARGET_DIR/release/examples/index_scale"

# both servers, the PostgreSQL cluster, then the work dir
EPID="" FPID=""
on_exit() {
    stop_all $EPID $FPID
    stop_pg
    [[ -n "${IN:-}" && "$IN" != "${WORK:-}" && "${KEEP:-0}" != 1 ]] && rm -rf "$IN"
    cleanup
}
trap on_exit EXIT

build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --example index_scale)
fi
[[ -x "$SCALE" ]] || { echo "missing $SCALE" >&2; exit 1; }
command -v storescu >/dev/null || { echo "needs dcmtk's storescu" >&2; exit 1; }
bench_python
"$PY" -c 'import pynetdicom' 2>/dev/null || { echo "$PY lacks pynetdicom (set PY)" >&2; exit 1; }
machine
echo "# load at start: $(uptime | sed 's/.*load average/load average/')"
make_workdir
IN="$WORK"
[[ -n "${IN_DIR:-}" ]] && IN="$(mkdir -p "$IN_DIR" && mktemp -d "$IN_DIR/strata-bench-in.XXXXXX")"

# ---- data -------------------------------------------------------------------------------------
for r in $(seq "$REPS"); do
    for how in scu stow; do
        seed=$(( 100 + 2 * r )); [[ $how == stow ]] && seed=$(( seed + 1 ))
        "$GEN" --out "$IN/ct-$how-$r" --seed "$seed" --patients 1 --studies 1 --series 1 \
            --slices "$SLICES" --rows 512 --cols 512 --modality ct >/dev/null
    done
done
echo "# $((2 * REPS)) CTs of $SLICES x 512x512 ($(du -sb "$IN/ct-scu-1" | cut -f1) bytes each), one a run"

# ---- the two archives -------------------------------------------------------------------------
E="$WORK/empty" F="$WORK/full"
mkdir -p "$E" "$F"
conf() { printf '[scrub]\nblobs_per_second = 0\n' >"$1/strata.toml"; }
conf "$E"; conf "$F"
FILL_ARGS=(--dir "$F")
if [[ $ENGINE == postgres ]]; then
    start_pg "$WORK/pg"
    E_URL=$(pg_createdb empty); F_URL=$(pg_createdb full)
    printf '[index]\nurl = "%s"\n' "$E_URL" >>"$E/strata.toml"
    printf '[index]\nurl = "%s"\n' "$F_URL" >>"$F/strata.toml"
    FILL_ARGS+=(--url "$F_URL")
elif [[ $ENGINE != sqlite ]]; then
    echo "ENGINE is sqlite or postgres" >&2; exit 1
fi

echo
echo "== filling the index of one archive: $INSTANCES instances ($ENGINE), examples/index_scale.rs =="
"$SCALE" --instances "$INSTANCES" --queries 200 "${FILL_ARGS[@]}" 2>&1 | sed 's/^/  /'
[[ $ENGINE == sqlite ]] && echo "  index.sqlite: $(du -sh "$F/index.sqlite" | cut -f1)"
sync

# start DATA: sets SPID, SHTTP, SPORT (DIMSE), SBASE.
start() {
    SHTTP=$(free_port); SPORT=$(free_port)
    "$STRATA" --data "$1" serve --http "127.0.0.1:$SHTTP" --dimse "127.0.0.1:$SPORT" >"$1.log" 2>&1 &
    SPID=$!
    wait_for 120 curl -sf "http://127.0.0.1:$SHTTP/readyz" \
        || { echo "strata did not start:"; cat "$1.log"; exit 1; }
    SBASE="http://127.0.0.1:$SHTTP/dicomweb"
}
t0=$(date +%s.%N); start "$E"
EPID=$SPID E_HTTP=$SHTTP E_PORT=$SPORT E_BASE=$SBASE
echo "# empty archive ready in $(secs "$t0" "$(date +%s.%N)") s"
t0=$(date +%s.%N); start "$F"
FPID=$SPID F_HTTP=$SHTTP F_PORT=$SPORT F_BASE=$SBASE
echo "# full archive ready in $(secs "$t0" "$(date +%s.%N)") s"
SPID=""
token() {
    "$STRATA" --data "$1" token create --user admin 2>"$1.token.err" | grep -m1 '^stk_' \
        || { echo "strata token create failed:" >&2; cat "$1.token.err" >&2; exit 1; }
}
E_TOKEN=$(token "$E"); F_TOKEN=$(token "$F")

# send WHO HOW DIR: prints "<wall s> <strata cpu s>" for one ingest of DIR into archive WHO.
send() {
    local who=$1 how=$2 dir=$3 pid port base tok c0 c1 t0 t1
    if [[ $who == empty ]]; then pid=$EPID port=$E_PORT base=$E_BASE tok=$E_TOKEN
    else pid=$FPID port=$F_PORT base=$F_BASE tok=$F_TOKEN; fi
    sync
    c0=$(cpu_of "$pid"); t0=$(date +%s.%N)
    if [[ $how == scu ]]; then
        storescu +sd +r -aet BENCH -aec STRATA 127.0.0.1 "$port" "$dir" >"$WORK/scu.log" 2>&1 \
            && ! grep -q '^E:' "$WORK/scu.log" \
            || { echo "storescu failed:" >&2; head "$WORK/scu.log" >&2; exit 1; }
    else
        "$PY" "$REPO_ROOT/benches/dicomweb_client.py" --base "$base" --token "$tok" \
            --kinds stow --stow-dir "$dir" >"$WORK/stow.log" 2>&1 \
            || { echo "STOW failed:" >&2; cat "$WORK/stow.log" >&2; exit 1; }
    fi
    t1=$(date +%s.%N); c1=$(cpu_of "$pid")
    echo "$(secs "$t0" "$t1") $(python3 -c "print(f'{$c1-$c0:.2f}')")"
}

echo
echo "== 1. ingest of a $SLICES-instance CT, empty archive vs $INSTANCES instances ($ENGINE), $REPS runs =="
declare -A RATES CPUS
for r in $(seq "$REPS"); do
    order="empty full"; (( r % 2 == 0 )) && order="full empty"
    for how in scu stow; do
        for who in $order; do
            out=$(send "$who" "$how" "$IN/ct-$how-$r")
            read -r wall cpu <<<"$out"
            rate=$(rate "$SLICES" "$wall")
            per=$(python3 -c "print(f'{1000*$cpu/$SLICES:.2f}')")
            RATES[$who,$how]+="$rate "; CPUS[$who,$how]+="$per "
            printf '  run %s %-4s %-5s %7.3f s  %5s instances/s  strata cpu %6.2f s (%s ms an instance)\n' \
                "$r" "$how" "$who" "$wall" "$rate" "$cpu" "$per"
        done
    done
done
echo
for how in scu stow; do
    e=$(median ${RATES[empty,$how]}); f=$(median ${RATES[full,$how]})
    ec=$(median ${CPUS[empty,$how]}); fc=$(median ${CPUS[full,$how]})
    pct=$(python3 -c "print(f'{100*$f/$e:.0f}')")
    e=${e%.000} f=${f%.000}
    verdict=FAIL; (( pct >= 90 )) && verdict=PASS
    printf '  %-4s median: empty %s/s (%s ms cpu an instance), full %s/s (%s ms): %s %% of empty, target >= 90 %%: %s\n' \
        "$how" "$e" "$ec" "$f" "$fc" "$pct" "$verdict"
done

[[ $FIND == 1 ]] || exit 0

# ---- 2. C-FIND at study level -----------------------------------------------------------------
echo
echo "== 2. study-level C-FIND over one association, $FIND_N timed each (pynetdicom) =="
studies=$(( INSTANCES / 10 ))
python3 -c "
import sys
n, k = int(sys.argv[1]), 500
print(''.join(f'2.25.{100_000_000_000 + (i * 7919) % n}\n' for i in range(k)), end='')
" "$studies" >"$WORK/full-uids.txt"
# the empty archive's studies are the CTs sent above; its name query, the last CT's family name
"$PY" - "$IN" >"$WORK/empty-uids.txt" 2>"$WORK/empty-name.txt" <<'EOF'
import glob, sys
import pydicom
seen = []
for d in sorted(glob.glob(f"{sys.argv[1]}/ct-*")):
    f = sorted(glob.glob(f"{d}/**/*.dcm", recursive=True))[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    seen.append(ds.StudyInstanceUID)
print("\n".join(seen))
print(str(ds.PatientName).split("^")[0] + "*", file=sys.stderr)
EOF
for who in empty full; do
    if [[ $who == empty ]]; then port=$E_PORT name=$(cat "$WORK/empty-name.txt")
    else port=$F_PORT name=$FIND_NAME; fi
    echo "  ($who: PatientName $name)"
    "$PY" "$REPO_ROOT/benches/dimse_find_latency.py" --port "$port" --aec STRATA --label "  $who" \
        --n "$FIND_N" --kinds echo,uid,name --uids "$WORK/$who-uids.txt" --name "$name"
done

# ---- 3. WADO-RS metadata of a large series ----------------------------------------------------
echo
echo "== 3. WADO-RS metadata of one series of $META_SERIES instances (64x64), $META_RUNS timed =="
"$GEN" --out "$IN/series" --seed 7 --patients 1 --studies 1 --series 1 --slices "$META_SERIES" \
    --rows 64 --cols 64 --modality ct >/dev/null
read -r META_STUDY META_SERIES_UID < <("$PY" - "$IN/series" <<'EOF'
import glob, sys
import pydicom
f = sorted(glob.glob(f"{sys.argv[1]}/**/*.dcm", recursive=True))[0]
ds = pydicom.dcmread(f, stop_before_pixels=True)
print(ds.StudyInstanceUID, ds.SeriesInstanceUID)
EOF
)
for who in empty full; do
    if [[ $who == empty ]]; then port=$E_PORT base=$E_BASE tok=$E_TOKEN
    else port=$F_PORT base=$F_BASE tok=$F_TOKEN; fi
    storescu +sd +r -aet BENCH -aec STRATA 127.0.0.1 "$port" "$IN/series" >"$WORK/scu.log" 2>&1 \
        && ! grep -q '^E:' "$WORK/scu.log" \
        || { echo "storescu to $who failed:"; grep -m5 '^[EW]:' "$WORK/scu.log"; tail -5 "$WORK/$who.log"; exit 1; }
    "$PY" "$REPO_ROOT/benches/dicomweb_client.py" --base "$base" --token "$tok" --label "  $who" \
        --kinds metadata --study "$META_STUDY" --series "$META_SERIES_UID" --runs "$META_RUNS" \
        --expect-instances "$META_SERIES"
done
echo
echo "# load at end: $(uptime | sed 's/.*load average/load average/')"
