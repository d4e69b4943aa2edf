#!/usr/bin/env bash
# MPR's speed in Debian's chromium (headless, playwright-core), against the release binary on
# loopback: a 512×512×400 CT (0.748 mm pixels, 1.25 mm slices) opened in MPR (three planes,
# each about 1000×1000 device pixels): the first reformatted frame after clicking MPR with the volume not yet built (the archive
# restarted before each run, so nothing is cached) and with it built; then input to painted
# frame scrolling the coronal plane, one voxel thick and as a 20 mm MIP; and the archive's
# resident memory before and after.
# Usage: bash benches/mpr_bench.sh   (needs `bash scripts/test.sh` once, for chromium and
# playwright-core). RUNS=3 cold openings by default.
source "$(dirname "$0")/lib.sh"
build
make_workdir
machine
SLICES="${SLICES:-400}"
RUNS="${RUNS:-3}"
"$GEN" --out "$WORK/in" --seed 6 --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct --no-noise >/dev/null
DATA="$WORK/data"
"$STRATA" --data "$DATA" import "$WORK/in" >/dev/null
printf 'bench password 1234\n' | "$STRATA" --data "$DATA" user add bench --role radiologist >/dev/null
STUDY="$("$STRATA" --data "$DATA" studies | awk 'NR==2{print $NF}')"
rss() { awk '/VmRSS/{print int($2/1024) " MiB"}' "/proc/$1/status"; }
for run in $(seq 1 "$RUNS"); do
    PORT="$(free_port)"
    STRATA_LOG="${STRATA_LOG:-warn,strata_services::pictures=debug}" \
        "$STRATA" --data "$DATA" serve --http "127.0.0.1:$PORT" --dimse "127.0.0.1:$(free_port)" >"$WORK/serve.log" 2>&1 &
    SPID=$!
    wait_for 30 curl -sf "http://127.0.0.1:$PORT/healthz"
    echo "run $run: archive resident before: $(rss "$SPID")"
    load
    BASE="http://127.0.0.1:$PORT" USER=bench PASSWORD="bench password 1234" STUDY="$STUDY" \
        SCROLL="$([ "$run" = 1 ] && echo 1 || echo 0)" node "$REPO_ROOT/benches/mpr_bench.mjs"
    echo "run $run: archive resident after: $(rss "$SPID")"
    grep -o 'volume built.*' "$WORK/serve.log" | sed "s/^/run $run: /" || true
    kill "$SPID"; wait "$SPID" 2>/dev/null || true
done
load
