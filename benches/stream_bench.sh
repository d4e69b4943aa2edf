#!/usr/bin/env bash
# Benchmark: the render stream (/api/stream) on a 500-slice 512×512 CT in a 1024×1024 viewport.
# Targets: server time per frame (input received to last byte handed to the socket) p50 ≤ 8 ms,
# p99 ≤ 16 ms; scrolling at 60 inputs/s: ≥ 58 frames/s, no gap over 50 ms, the last slice on
# screen within one frame time of the last input, ≤ 15 Mbit/s; nothing sent while idle after
# the lossless still. Then where one frame's time goes, in process (read, decode, pipeline,
# encode), and PSNR and frame size against QP. The client is examples/stream_bench.rs; the server's
# own time per frame comes from its debug log (`stream frame sent`, total_us).
#
#   bash benches/stream_bench.sh
#
# Knobs: SLICES=500, BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLICES="${SLICES:-500}"

build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --example stream_bench)
fi
BENCH_BIN="$TARGET_DIR/release/examples/stream_bench"
machine
make_workdir

"$GEN" --out "$WORK/in" --seed 6 --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct --no-noise | sed 's/^/# gen: /'
D="$WORK/data"
"$STRATA" --data "$D" import "$WORK/in" >/dev/null
FIRST="$(find "$WORK/in" -name '*.dcm' -print -quit)"
read -r STUDY SERIES < <(study_series_uids "$FIRST")

PORT="$(free_port)"
# (the stream module's log target moved with the workspace; both are named so that older builds
# can be measured too)
STRATA_LOG="strata_http::stream=debug,strata::render::stream=debug,warn" "$STRATA" --data "$D" serve \
    --http "127.0.0.1:$PORT" --dimse 127.0.0.1:0 2>"$WORK/server.log" &
SPID=$!
wait_for 30 curl -sf "http://127.0.0.1:$PORT/healthz"
TOKEN="$("$STRATA" --data "$D" token create --user admin | tail -1)"
load
"$BENCH_BIN" client "127.0.0.1:$PORT" "$TOKEN" "$STUDY" "$SERIES" | tee "$WORK/client.txt"
stop_strata

# the server's own time per frame, input received to the last byte handed to the socket
python3 - "$WORK/server.log" <<'EOF'
import re, statistics, sys
frames = [dict(re.findall(r'(\w+)=(\d+)', l)) for l in open(sys.argv[1]) if 'stream frame sent' in l]
def pct(v, p):
    v = sorted(v); return v[round((len(v) - 1) * p)]
# the first 300 frames are the one-at-a-time latency phase (the first 10 warm up)
lat = [int(f['total_us']) / 1e3 for f in frames[10:300]]
print(f"server_frame_ms (latency phase, {len(lat)} frames) p50 {pct(lat, .5):.2f} p99 {pct(lat, .99):.2f} max {max(lat):.2f}")
for k in ('render_us', 'encode_us', 'wait_us'):
    v = [int(f[k]) / 1e3 for f in frames[10:300]]
    print(f"server_{k[:-3]}_ms p50 {pct(v, .5):.2f} p99 {pct(v, .99):.2f}")
scroll = [int(f['total_us']) / 1e3 for f in frames[300:]]
if scroll:
    print(f"server_frame_ms (scroll phase, {len(scroll)} frames) p50 {pct(scroll, .5):.2f} p99 {pct(scroll, .99):.2f}")
EOF

"$BENCH_BIN" breakdown "$D" "$STUDY" "$SERIES"
