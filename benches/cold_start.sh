#!/usr/bin/env bash
# Benchmark: cold start of `strata serve`, from process spawn to the first 200 on /readyz, on an
# archive of 10,000 instances. Target: < 1 s.
#
#   bash benches/cold_start.sh
#
# Builds, generates 10,000 small instances (64x64, 1,000 studies of 10 slices), imports them once
# (not timed for the target), then starts the server RUNS times and reports each time and the
# median. Warm runs (page cache as the import left it) always; cold runs (page cache dropped
# before each start) too when /proc/sys/vm/drop_caches is writable (root). Knobs: RUNS=7,
# STUDIES=1000, SLICES=10, BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-7}"
STUDIES="${STUDIES:-1000}"
SLICES="${SLICES:-10}"
N=$(( STUDIES * SLICES ))

build
machine
make_workdir

"$GEN" --out "$WORK/in" --patients $(( STUDIES / 4 )) --studies "$STUDIES" --series 1 \
    --slices "$SLICES" --rows 64 --cols 64 | sed 's/^/# gen: /'
D="$WORK/data"
"$STRATA" --data "$D" import "$WORK/in" >"$WORK/out" 2>"$WORK/err" \
    || { echo "import failed:"; cat "$WORK/out" "$WORK/err"; exit 1; }
echo "# setup import (not the figure): $(grep '^imported in' "$WORK/out")"
grep -q "$N stored" "$WORK/out" || { echo "expected $N stored"; exit 1; }
echo "# archive: $(du -sh "$D" | cut -f1), index $(du -sh "$D"/index.sqlite* 2>/dev/null | awk '{print $1}' | paste -sd+ -)"

# One start: spawn, poll /readyz every 10 ms, print seconds to the first 200, stop the server.
measure() {
    python3 - "$STRATA" "$D" "$@" <<'PY'
import http.client, os, signal, socket, subprocess, sys, time
strata, data = sys.argv[1], sys.argv[2]
drop = "drop" in sys.argv[3:]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
if drop:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
t0 = time.perf_counter()
p = subprocess.Popen([strata, "--data", data, "serve", "--http", f"127.0.0.1:{port}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
status, first_conn = None, None
try:
    while time.perf_counter() - t0 < 30:
        if p.poll() is not None:
            sys.exit(f"server exited with {p.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/readyz")
            status = c.getresponse().status
            c.close()
            if first_conn is None:
                first_conn = time.perf_counter() - t0
            if status == 200:
                break
        except OSError:
            pass
        time.sleep(0.01)
    t = time.perf_counter() - t0
finally:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
if status != 200:
    sys.exit(f"no 200 from /readyz within 30 s (last status {status})")
print(f"{t:.3f} {first_conn:.3f}")
PY
}

report() {
    local label=$1; shift
    local all=() line t c
    for r in $(seq "$RUNS"); do
        line=$(measure "$@")
        read -r t c <<<"$line"
        all+=("$t")
        echo "  $label run $r: ${t}s to first 200 (first HTTP answer at ${c}s)"
    done
    local m; m=$(median "${all[@]}")
    echo "  $label: median ${m}s over $RUNS runs ($(python3 -c "print('PASS' if $m < 1 else 'FAIL')") vs < 1 s)"
}

echo
echo "== serve: spawn -> first 200 on /readyz, $N instances =="
measure >/dev/null   # one start not counted (writes the replica markers the first time)
report warm
if [[ -w /proc/sys/vm/drop_caches ]]; then
    report cold drop
else
    echo "  (cold runs skipped: /proc/sys/vm/drop_caches not writable; figures above are warm)"
fi
