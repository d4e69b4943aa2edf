#!/usr/bin/env bash
# Benchmark: Strata vs Orthanc over DIMSE, side by side in one run, same machine, same data.
#
#   bash benches/dimse_vs_orthanc.sh
#
# 1. C-STORE of one CT series (SLICES x 512x512) from dcmtk `storescu +sd +r` over ONE
#    association: instances/s (storescu wall time). Target: Strata >= 2x Orthanc.
# 2. SMALL instances of 64x64 (SMALL/4 studies x 4 slices) over PAR parallel associations (the
#    files split into PAR folders, one storescu each; start to the last one done): instances/s.
#    Target: Strata >= 2x Orthanc.
#    For both, in the same run: `storescp --ignore` (receives, stores nothing) as the
#    network/client ceiling, and the disk's ceilings (benches/disk_ceiling.py, no archive):
#    3 copies fsynced file + dirs, 3 copies made durable by one shared syncfs (Strata's pattern:
#    copies of 128 KiB or more written with O_DIRECT), and 1 copy with a file fsync only
#    (Orthanc's pattern).
# 3. C-FIND, study level, Study Root, on an index of STUDIES studies (1 instance of 32x32 each):
#    latency of a query on StudyInstanceUID (one match) and on a PatientName wildcard
#    (NAME_QUERY), QUERIES timed queries over ONE association (benches/dimse_find_latency.py,
#    pynetdicom), plus C-ECHO as the client/protocol floor. Target: Strata p50 < 5 ms.
#
# Each server is a foreground process started here, on free ports, with its data in the work
# dir: `strata serve` with its defaults (3 local replicas, each write made durable before the
# response; index in SQLite WAL, synchronous=FULL); Orthanc with a generated config (Debian's
# defaults otherwise: SyncStorageArea true, StorageCompression false, SQLite WAL with
# synchronous=NORMAL, no plugins) and TCP_NODELAY=1 (else its DCMTK receiver waits 40 ms per
# instance; the dcmtk clients get it too). A fresh archive for every store run.
#
# Knobs (environment): SLICES=300, SMALL=1000, PAR=4, STUDIES=10000, QUERIES=500, REPS=3 (runs of
# each measurement; medians reported), NAME_QUERY='Smith^Ja*', REV=<git rev> (build strata from
# that commit instead of the work tree), BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR,
# PY (a python with pynetdicom + pydicom; default .venv, else a venv made in /tmp).
# Needs root or the packages already there: it apt-get installs orthanc and dcmtk if missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/dimse_lib.sh"

SLICES="${SLICES:-300}"
SMALL="${SMALL:-1000}"
PAR="${PAR:-4}"
STUDIES="${STUDIES:-10000}"
QUERIES="${QUERIES:-500}"
REPS="${REPS:-3}"
NAME_QUERY="${NAME_QUERY:-Smith^Ja*}"
export TCP_NODELAY=1

# ---- tools -------------------------------------------------------------------------------------
missing=()
command -v Orthanc >/dev/null || missing+=(orthanc)
command -v storescu >/dev/null && command -v storescp >/dev/null || missing+=(dcmtk)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    echo "# installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY="${PY:-}"
if [[ -z "$PY" ]]; then
    for c in "$REPO_ROOT/.venv/bin/python" /tmp/strata-bench-venv/bin/python; do
        if [[ -x "$c" ]] && "$c" -c 'import pynetdicom, pydicom' 2>/dev/null; then PY="$c"; break; fi
    done
fi
if [[ -z "$PY" ]]; then
    python3 -m venv /tmp/strata-bench-venv
    /tmp/strata-bench-venv/bin/pip install -q pynetdicom pydicom
    PY=/tmp/strata-bench-venv/bin/python
fi

# What the binary was built from is noted next to it (others commit while we measure).
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    if [[ -n "${REV:-}" ]]; then
        src="$(mktemp -d /tmp/strata-src.XXXXXX)"
        git -C "$REPO_ROOT" archive "$REV" | tar -x -m -C "$src"
        (cd "$src" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --bin strata --example gen)
        rm -rf "$src"
        echo "commit $(git -C "$REPO_ROOT" rev-parse --short "$REV")" >"$STRATA.built-from"
    else
        build
        echo "work tree at $(git -C "$REPO_ROOT" rev-parse --short HEAD)$(git -C "$REPO_ROOT" diff --quiet || echo '+dirty')" >"$STRATA.built-from"
    fi
fi
SKIP_BUILD=1 build
machine
echo "# strata binary built from: $(cat "$STRATA.built-from" 2>/dev/null || echo 'unknown (built outside this script)')"
echo "# $(Orthanc --version 2>&1 | head -1); $(storescu --version 2>&1 | head -1); $("$PY" -c 'import pynetdicom; print("pynetdicom", pynetdicom.__version__)')"
make_workdir

# Servers this script started and has not stopped yet (only these are killed on exit).





# start_orthanc DIR: sets OPID, OPORT, OHTTP.
start_orthanc() {
    local d=$1
    OPORT=$(free_port); OHTTP=$(free_port)
    mkdir -p "$d"
    cat >"$d/orthanc.json" <<EOF
{
  "Name": "bench",
  "StorageDirectory": "$d/storage",
  "IndexDirectory": "$d/index",
  "DicomAet": "ORTHANC",
  "DicomPort": $OPORT,
  "HttpPort": $OHTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "StorageCompression": false,
  "OverwriteInstances": false,
  "SyncStorageArea": true,
  "DicomAlwaysAllowStore": true,
  "DicomAlwaysAllowFind": true,
  "Plugins": []
}
EOF
    Orthanc "$d/orthanc.json" >"$d.log" 2>&1 &
    OPID=$!
    wait_for 60 grep -q "DICOM server listening" "$d.log" \
        && wait_for 60 curl -sf "http://127.0.0.1:$OHTTP/system" \
        || { echo "Orthanc did not start:"; tail -20 "$d.log"; exit 1; }
}

ceiling_rate() { sed -E 's/.* = ([0-9]+) instances\/s.*/\1/' <<<"$1"; }

# ---- data --------------------------------------------------------------------------------------
"$GEN" --out "$WORK/ct" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen ct: /'
"$GEN" --out "$WORK/small" --seed 2 --patients $(( (SMALL / 4 + 1) / 2 )) --studies $(( SMALL / 4 )) \
    --series 1 --slices 4 --rows 64 --cols 64 | sed 's/^/# gen small: /'
split_dirs "$WORK/small" "$PAR"
SMALL_N=$(find "$WORK/small-split" -name '*.dcm' | wc -l)
CT_BYTES=$(( $(du -sb "$WORK/ct" | cut -f1) / SLICES ))
SMALL_BYTES=$(( $(du -sb "$WORK/small-split" | cut -f1) / SMALL_N ))
SMALL_DIRS=("$WORK"/small-split/*)
sync

# Nothing is deleted until the script exits. On an ext4 without a journal (this VM's), creating
# a file or folder skips every free inode freed in the last minute or more (`recently_deleted`
# in the kernel's inode allocator), one lookup each: deleting thousands of files between runs made
# the next run's creates a third of the server's CPU, and more so for the archive that creates
# more files per instance.
# One store scenario, REPS runs; each run: the sink, the disk ceilings, then the two archives
# (order alternating between runs), each on a fresh archive. Sets R_<name> to the median rates.
# store_scenario NAME N JOBS SIZE DIR...
store_scenario() {
    local name=$1 n=$2 jobs=$3 size=$4; shift 4
    local sink=() c3=() csf=() c1=() st=() or=() stcpu=() orcpu=()
    for r in $(seq "$REPS"); do
        # network/client ceiling: storescp --ignore, one child per association
        local sp; sp=$(free_port)
        storescp --fork --ignore -aet SINK "$sp" >/dev/null 2>&1 &
        SINK_PID=$!
        wait_for 30 echoscu -aec SINK 127.0.0.1 "$sp"
        local w; w=$(storescu_timed SINK "$sp" "$@")
        kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=""
        sink+=("$(rate "$n" "$w")")
        # disk ceilings
        local line
        line=$(python3 "$REPO_ROOT/benches/disk_ceiling.py" --dir "$WORK/ceil-$name-$r-fsync" --instances "$n" --size "$size" --jobs "$jobs")
        sync; c3+=("$(ceiling_rate "$line")")
        [[ $r == 1 ]] && echo "  $line"
        line=$(python3 "$REPO_ROOT/benches/disk_ceiling.py" --dir "$WORK/ceil-$name-$r-syncfs" --instances "$n" --size "$size" --jobs "$jobs" --mode syncfs)
        sync; csf+=("$(ceiling_rate "$line")")
        [[ $r == 1 ]] && echo "  $line"
        line=$(python3 "$REPO_ROOT/benches/disk_ceiling.py" --dir "$WORK/ceil-$name-$r-one" --instances "$n" --size "$size" --jobs "$jobs" --replicas 1 --no-dir-fsync)
        sync; c1+=("$(ceiling_rate "$line")")
        [[ $r == 1 ]] && echo "  $line"
        local order=(strata orthanc); (( r % 2 == 0 )) && order=(orthanc strata)
        for who in "${order[@]}"; do
            local cpu0 cpu1 got
            if [[ $who == strata ]]; then
                local d="$WORK/strata-$name-$r"
                start_strata "$d"; sync; sleep 0.5
                cpu0=$(cpu_of "$SPID"); w=$(storescu_timed STRATA "$SPORT" "$@"); cpu1=$(cpu_of "$SPID")
                got=$(strata_count "$d"); stop_strata
                st+=("$(rate "$n" "$w")"); stcpu+=("$(python3 -c "print(f'{1000*($cpu1-$cpu0)/$n:.2f}')")")
            else
                local d="$WORK/orthanc-$name-$r"
                start_orthanc "$d"; sync; sleep 0.5
                cpu0=$(cpu_of "$OPID"); w=$(storescu_timed ORTHANC "$OPORT" "$@"); cpu1=$(cpu_of "$OPID")
                got=$(orthanc_count); stop_orthanc
                or+=("$(rate "$n" "$w")"); orcpu+=("$(python3 -c "print(f'{1000*($cpu1-$cpu0)/$n:.2f}')")")
            fi
            [[ $got == "$n" ]] || { echo "$who stored $got of $n instances"; exit 1; }
            echo "  run $r $(printf '%-7s' "$who"): $n instances in ${w}s = $(rate "$n" "$w")/s, server CPU $(python3 -c "print(f'{$cpu1-$cpu0:.2f}')")s"
        done
    done
    echo "  storescp --ignore (sink):          runs ${sink[*]}/s, median $(median "${sink[@]}")"
    echo "  disk, 3 copies, fsync file+4 dirs: runs ${c3[*]}/s, median $(median "${c3[@]}")"
    echo "  disk, 3 copies, syncfs (Strata):   runs ${csf[*]}/s, median $(median "${csf[@]}")"
    echo "  disk, 1 copy, fsync file (Orthanc):runs ${c1[*]}/s, median $(median "${c1[@]}")"
    echo "  strata:                            runs ${st[*]}/s, median $(median "${st[@]}"); server CPU ms/instance ${stcpu[*]}"
    echo "  orthanc:                           runs ${or[*]}/s, median $(median "${or[@]}"); server CPU ms/instance ${orcpu[*]}"
    printf -v "R_${name}" '%s' "$(median "${sink[@]}") $(median "${c3[@]}") $(median "${csf[@]}") $(median "${c1[@]}") $(median "${st[@]}") $(median "${or[@]}")"
}

echo
echo "== 1. C-STORE, $SLICES x 512x512 CT ($CT_BYTES B each), storescu, 1 association, $REPS runs =="
load
store_scenario ct "$SLICES" 1 "$CT_BYTES" "$WORK/ct"
load

echo
echo "== 2. C-STORE, $SMALL_N x 64x64 ($SMALL_BYTES B each), $PAR storescu in parallel (1 association each), $REPS runs =="
load
store_scenario small "$SMALL_N" "$PAR" "$SMALL_BYTES" "${SMALL_DIRS[@]}"
load

# ---- 3. C-FIND -----------------------------------------------------------------------------
echo
echo "== 3. C-FIND, study level, index of $STUDIES studies (1 instance of 32x32 each), $QUERIES queries per kind over 1 association, $REPS runs =="
"$GEN" --out "$WORK/find" --seed 3 --patients $(( (STUDIES + 4) / 5 )) --studies "$STUDIES" \
    --series 1 --slices 1 --rows 32 --cols 32 | sed 's/^/  gen: /'
"$PY" - "$WORK/find" "$WORK/uids.txt" <<'EOF'
import os, random, sys
import pydicom
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs if f.endswith(".dcm")]
random.seed(7)
with open(sys.argv[2], "w") as out:
    for f in random.sample(files, 200):
        out.write(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).StudyInstanceUID + "\n")
EOF
SD="$WORK/strata-find"
t0=$(date +%s.%N)
"$STRATA" --data "$SD" import "$WORK/find" >"$WORK/import.out" 2>&1 || { cat "$WORK/import.out"; exit 1; }
echo "  setup: strata import of $STUDIES instances in $(secs "$t0" "$(date +%s.%N)")s: $(grep '^imported in' "$WORK/import.out")"
split_dirs "$WORK/find" "$PAR"
start_orthanc "$WORK/orthanc-find"
w=$(storescu_timed ORTHANC "$OPORT" "$WORK"/find-split/*)
echo "  setup: orthanc, $STUDIES instances by $PAR parallel storescu in ${w}s ($(rate "$STUDIES" "$w")/s); it holds $(orthanc_count)"
start_strata "$SD"
echo "  strata holds $(strata_count "$SD")"
sync
load
declare -A P
for r in $(seq "$REPS"); do
    for who in strata orthanc; do
        if [[ $who == strata ]]; then port=$SPORT; ae=STRATA; else port=$OPORT; ae=ORTHANC; fi
        out=$("$PY" "$REPO_ROOT/benches/dimse_find_latency.py" --port "$port" --aec "$ae" \
            --label "$who" --n "$QUERIES" --uids "$WORK/uids.txt" --name "$NAME_QUERY")
        sed "s/^/  run $r /" <<<"$out"
        while read -r _ kind rest; do
            kind=${kind%:}
            for q in p50 p90 p99; do
                P[$who,$kind,$q]+="$(sed -E "s/.* $q=([0-9.]+).*/\1/" <<<"$rest") "
            done
            P[$who,$kind,matches]=$(sed -E 's/.*matches=([0-9.]+).*/\1/' <<<"$rest")
        done <<<"$out"
    done
done
load
stop_strata
stop_orthanc

# ---- summary ---------------------------------------------------------------------------------
read -r ct_sink ct_c3 ct_csf ct_c1 ct_st ct_or <<<"$R_ct"
read -r sm_sink sm_c3 sm_csf sm_c1 sm_st sm_or <<<"$R_small"
verdict() { python3 -c "import sys; s,o=float(sys.argv[1]),float(sys.argv[2]); print(f'{s/o:.2f}x', 'PASS' if s>=2*o else 'FAIL')" "$1" "$2"; }
echo
echo "== summary (medians of $REPS runs; instances/s) =="
printf '| %-34s | %8s | %8s | %8s | %8s | %8s | %8s | %-18s |\n' figure "sink" "disk 3×fsync" "disk 3×syncfs" "disk 1×fsync" strata orthanc "strata/orthanc (≥2x)"
printf '| %-34s | %8.0f | %8.0f | %8.0f | %8.0f | %8.0f | %8.0f | %-18s |\n' \
    "C-STORE ${SLICES}×512² CT, 1 assoc" "$ct_sink" "$ct_c3" "$ct_csf" "$ct_c1" "$ct_st" "$ct_or" "$(verdict "$ct_st" "$ct_or")"
printf '| %-34s | %8.0f | %8.0f | %8.0f | %8.0f | %8.0f | %8.0f | %-18s |\n' \
    "C-STORE ${SMALL_N}×64², $PAR assoc" "$sm_sink" "$sm_c3" "$sm_csf" "$sm_c1" "$sm_st" "$sm_or" "$(verdict "$sm_st" "$sm_or")"
# What the disk allows for our durability (3 copies made durable before the response): over one
# association storescu waits for each response, so an instance's transfer and its writes follow
# each other, and no archive doing that work passes sink and disk in series; over parallel
# associations they overlap, and the lower of the two is the bound.
python3 - "$ct_sink" "$ct_csf" "$ct_st" "$ct_or" "$sm_sink" "$sm_csf" "$sm_st" "$sm_or" <<'EOF'
import sys
ct_sink, ct_disk, ct_st, ct_or, sm_sink, sm_disk, sm_st, sm_or = map(float, sys.argv[1:])
for name, bound, st, orth in [
    ("CT, 1 assoc (sink and disk in series)", 1 / (1 / ct_sink + 1 / ct_disk), ct_st, ct_or),
    ("small, parallel (lower of sink and disk)", min(sm_sink, sm_disk), sm_st, sm_or),
]:
    print(f"bound for 3 durable copies, {name}: {bound:.0f}/s = {bound / orth:.2f}x Orthanc; Strata reaches {st / bound:.0%} of it")
EOF
echo
echo "C-FIND latency, ms (median over runs of each run's percentile; target Strata p50 < 5 ms):"
printf '| %-32s | %-22s | %-22s | %-8s |\n' query "strata p50/p90/p99" "orthanc p50/p90/p99" "matches"
for kind in echo uid name; do
    case $kind in
        echo) label="C-ECHO (floor)";; uid) label="StudyInstanceUID = <one>";; name) label="PatientName = $NAME_QUERY";;
    esac
    s="$(median ${P[strata,$kind,p50]})/$(median ${P[strata,$kind,p90]})/$(median ${P[strata,$kind,p99]})"
    o="$(median ${P[orthanc,$kind,p50]})/$(median ${P[orthanc,$kind,p90]})/$(median ${P[orthanc,$kind,p99]})"
    printf '| %-32s | %-22s | %-22s | %-8s |\n' "$label" "$s" "$o" "${P[strata,$kind,matches]}/${P[orthanc,$kind,matches]}"
done
for kind in uid name; do
    python3 -c "import sys; v=float(sys.argv[1]); print(f'Strata C-FIND {sys.argv[2]} p50 {v:.2f} ms:', 'PASS' if v < 5 else 'FAIL')" \
        "$(median ${P[strata,$kind,p50]})" "$kind"
done
