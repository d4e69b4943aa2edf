#!/usr/bin/env bash
# Benchmark: C-GET out of Strata with dcmtk's getscu, one association: a 300-slice 512x512 CT
# study (instances/s) and one large instance (MB/s), with the server's peak resident memory over
# the large ones. What it checks: sending as stored window by window costs no speed against
# holding each instance whole, and memory stays that of a window.
#
#   bash benches/retrieve_get.sh
#
# Knobs (environment): SLICES=300, LARGE_FRAMES=40 (frames of 2048x2048 16-bit: 8 MiB each),
# REPS=3 (runs of each; medians reported), BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/dimse_lib.sh"

SLICES="${SLICES:-300}"
LARGE_FRAMES="${LARGE_FRAMES:-40}"
REPS="${REPS:-3}"

build
machine
echo "# strata binary built from: $(cat "$STRATA.built-from" 2>/dev/null || echo unknown)"
make_workdir
bench_python

"$GEN" --out "$WORK/ct" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen ct: /'
# one multi-frame instance made from a generated slice (pydicom): LARGE_FRAMES frames of 2048²
"$GEN" --out "$WORK/seed" --seed 3 --patients 1 --studies 1 --series 1 --slices 1 \
    --rows 64 --cols 64 --modality ct >/dev/null
"$PY" - "$WORK/seed" "$WORK/large/large.dcm" "$LARGE_FRAMES" <<'PY'
import sys, pathlib, pydicom, array
src = next(pathlib.Path(sys.argv[1]).rglob("*.dcm"))
ds = pydicom.dcmread(src)
frames = int(sys.argv[3])
ds.Rows, ds.Columns, ds.NumberOfFrames = 2048, 2048, frames
ds.SOPInstanceUID = pydicom.uid.generate_uid()
block = array.array("H", range(4093)).tobytes()
size = 2048 * 2048 * frames * 2
ds.PixelData = (block * (size // len(block) + 1))[:size]
pathlib.Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
ds.save_as(sys.argv[2], enforce_file_format=True)
PY
LARGE_BYTES=$(stat -c %s "$WORK/large/large.dcm")
echo "# large instance: $LARGE_BYTES B"

D="$WORK/archive"
"$STRATA" --data "$D" import "$WORK/ct" "$WORK/large" >/dev/null
start_strata "$D"
study_of() { "$PY" -c "import pydicom,sys,pathlib; print(pydicom.dcmread(next(pathlib.Path(sys.argv[1]).rglob('*.dcm')), stop_before_pixels=True).StudyInstanceUID)" "$1"; }
CT_STUDY=$(study_of "$WORK/ct")
LARGE_STUDY=$(study_of "$WORK/large")

# get STUDY: seconds for one getscu of the study into a fresh folder
get() {
    local out="$WORK/got"; rm -rf "$out"; mkdir -p "$out"
    local t0 t1; t0=$(date +%s.%N)
    TCP_NODELAY=1 getscu -aec STRATA -S -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$1" -od "$out" \
        127.0.0.1 "$SPORT" >"$WORK/get.log" 2>&1 || { echo "getscu failed:"; tail "$WORK/get.log"; exit 1; }
    t1=$(date +%s.%N)
    secs "$t0" "$t1"
}

ct=() large=()
for r in $(seq "$REPS"); do
    w=$(get "$CT_STUDY"); ct+=("$(rate "$SLICES" "$w")")
    w=$(get "$LARGE_STUDY"); large+=("$(python3 -c "print(f'{$LARGE_BYTES/1e6/$w:.0f}')")")
done
PEAK=$(awk '/VmHWM/{print $2}' "/proc/$SPID/status")
echo "== summary"
echo "C-GET of a $SLICES-slice CT: runs ${ct[*]} instances/s, median $(median "${ct[@]}")"
echo "C-GET of one $(( LARGE_BYTES >> 20 )) MiB instance: runs ${large[*]} MB/s, median $(median "${large[@]}")"
echo "server peak resident memory: $(( PEAK / 1024 )) MiB"
