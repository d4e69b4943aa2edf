#!/usr/bin/env bash
# Benchmark: `strata deidentify` of one 300-slice 512x512 16-bit CT study (~158 MB) stored in the
# archive (three local replicas, encrypted): each instance read from the store, verified and
# decrypted, de-identified (Basic Profile with the four options, keyed UIDs, pseudonym, date
# shift, the report) and written as a PS3.10 file. Target: >= 300 instances/s on 2 cores.
#
#   bash benches/deidentify.sh
#
# Knobs (environment): REPS=5 (runs; the median is reported), SLICES=300, JOBS="" (values of
# -j tried; default: the command's own, the number of cores), BENCH_DIR=/tmp, KEEP=1,
# SKIP_BUILD=1, CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPS="${REPS:-5}"
SLICES="${SLICES:-300}"
JOBS="${JOBS:-default}"

build
machine
make_workdir
load

"$GEN" --out "$WORK/in" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen: /'
DATA="$WORK/data"
"$STRATA" --data "$DATA" import "$WORK/in" | sed 's/^/# import: /'
STUDY=$("$STRATA" --data "$DATA" studies | awk 'NR==2{print $NF}')
echo "# study $STUDY, $(du -sb "$WORK/in" | cut -f1) bytes"

for j in $JOBS; do
    rates=()
    for r in $(seq "$REPS"); do
        out="$WORK/out-$j-$r"
        args=(--data "$DATA" deidentify --project bench --study "$STUDY" --out "$out")
        [[ "$j" == default ]] || args+=(-j "$j")
        t0=$(date +%s.%N)
        STRATA_LOG=warn "$STRATA" "${args[@]}" >/dev/null
        t1=$(date +%s.%N)
        n=$(find "$out" -name '*.dcm' | wc -l)
        [[ "$n" == "$SLICES" ]] || { echo "expected $SLICES files, got $n" >&2; exit 1; }
        rates+=("$(rate "$n" "$(secs "$t0" "$t1")")")
        rm -rf "$out"
    done
    echo "deidentify -j $j: $SLICES instances, instances/s per run: ${rates[*]}; median $(median "${rates[@]}")"
done
load
