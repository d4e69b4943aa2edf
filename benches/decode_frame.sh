#!/usr/bin/env bash
# Benchmark: decoding one frame to stored values (`strata::render::decode_frame`), the first
# stage of every render. Target: a native 512x512 16-bit frame in well under 1 ms (the stream
# renders at 60 fps, 16.7 ms a frame for everything).
#
#   bash benches/decode_frame.sh
#
# Generates one 512x512 CT instance with the project's generator and times it; also times any
# extra files given in FILES (space-separated paths, e.g. compressed ones for comparison).
# Knobs: RUNS=500, FILES, BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-500}"
DECODE="$TARGET_DIR/release/examples/decode_frame"

# Only the two examples: the server binary plays no part here.
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --example gen --example decode_frame)
fi
[[ -x "$GEN" && -x "$DECODE" ]] || { echo "missing $GEN or $DECODE" >&2; exit 1; }
machine
make_workdir

"$GEN" --out "$WORK/in" --patients 1 --studies 1 --series 1 --slices 1 --rows 512 --cols 512 \
    --modality ct | sed 's/^/# gen: /'
CT="$(find "$WORK/in" -type f -name '*.dcm' | head -1)"
# shellcheck disable=SC2086 # FILES is a list on purpose
"$DECODE" --runs "$RUNS" "$CT" ${FILES:-}
