#!/usr/bin/env bash
# Benchmark: what decoding JPEG-LS and JPEG 2000 frames in a worker process (as the server does,
# `render.codec_worker_*`) costs a frame against decoding them in the process itself. Rounds
# alternate in-process and isolated runs of `examples/decode_frame` over the same files.
#
#   bash benches/codec_worker.sh
#
# Files: a 512x512 CT made by the project's generator and compressed with dcmtk's dcmcjpls, and
# pydicom's JPEG-LS and JPEG 2000 test files. Knobs: RUNS=200, ROUNDS=2, PROFILE=release (or
# debug: then the examples are built with the dev profile), BENCH_DIR, KEEP=1, SKIP_BUILD=1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-200}"
ROUNDS="${ROUNDS:-2}"
PROFILE="${PROFILE:-release}"
GEN="$TARGET_DIR/$PROFILE/examples/gen"
DECODE="$TARGET_DIR/$PROFILE/examples/decode_frame"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    flag=--release
    [[ "$PROFILE" == release ]] || flag=
    # shellcheck disable=SC2086 # empty on purpose for the dev profile
    (cd "$REPO_ROOT" && cargo build $flag --quiet --example gen --example decode_frame)
fi
[[ -x "$GEN" && -x "$DECODE" ]] || { echo "missing $GEN or $DECODE" >&2; exit 1; }
command -v dcmcjpls >/dev/null || { echo "dcmcjpls (dcmtk) is needed" >&2; exit 1; }
machine
make_workdir

"$GEN" --out "$WORK/in" --patients 1 --studies 1 --series 1 --slices 1 --rows 512 --cols 512 \
    --modality ct | sed 's/^/# gen: /'
CT="$(find "$WORK/in" -type f -name '*.dcm' | head -1)"
dcmcjpls "$CT" "$WORK/ct512-jls.dcm"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
DATA="$("$PYTHON" -c 'import pydicom.data, os; print(os.path.dirname(pydicom.data.get_testdata_file("MR_small.dcm")))')"
FILES=("$WORK/ct512-jls.dcm" "$DATA/MR_small_jpeg_ls_lossless.dcm" "$DATA/MR_small_jp2klossless.dcm" "$DATA/693_J2KI.dcm")
for round in $(seq "$ROUNDS"); do
    echo "# round $round"
    "$DECODE" --runs "$RUNS" "${FILES[@]}"
    "$DECODE" --runs "$RUNS" --isolated "${FILES[@]}"
done
