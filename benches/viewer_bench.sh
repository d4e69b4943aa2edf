#!/usr/bin/env bash
# The viewer's speed in Debian's chromium (headless, playwright-core): time to first image,
# input-to-paint latency, and frames per second scrolling a 500-slice 512×512 CT in a
# 1024×1024 viewport, against the release binary on loopback.
# Usage: bash benches/viewer_bench.sh   (needs `bash scripts/test.sh` once, for chromium and
# playwright-core)
source "$(dirname "$0")/lib.sh"
build
make_workdir
machine
SLICES="${SLICES:-500}"
"$GEN" --out "$WORK/in" --seed 5 --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct --no-noise >/dev/null
DATA="$WORK/data"
"$STRATA" --data "$DATA" import "$WORK/in" >/dev/null
printf 'bench password 1234\n' | "$STRATA" --data "$DATA" user add bench --role radiologist >/dev/null
STUDY="$("$STRATA" --data "$DATA" studies | awk 'NR==2{print $NF}')"
PATIENT="$("$REPO_ROOT/.venv/bin/python" -c 'import pathlib, sys, pydicom
f = next(pathlib.Path(sys.argv[1]).rglob("*.dcm"))
print(str(pydicom.dcmread(f).PatientName).split("^")[0])' "$WORK/in")"
PORT="$(free_port)"
"$STRATA" --data "$DATA" serve --http "127.0.0.1:$PORT" --dimse "127.0.0.1:$(free_port)" >"$WORK/serve.log" 2>&1 &
SPID=$!
wait_for 30 curl -sf "http://127.0.0.1:$PORT/healthz"
load
BASE="http://127.0.0.1:$PORT" USER=bench PASSWORD="bench password 1234" STUDY="$STUDY" \
    PATIENT="$PATIENT" node "$REPO_ROOT/benches/viewer_bench.mjs"
load
