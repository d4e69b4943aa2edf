#!/usr/bin/env bash
# Benchmark: `strata import` of one 300-slice 512x512 16-bit CT series (~158 MB), three local
# replicas (fsynced), encryption on. Target: >= 250 instances/s on a 2-core machine.
#
#   bash benches/import_ct.sh
#
# Knobs (environment): JOBS="1 2 4 8" (values of -j tried), REPS=5 (runs per setting; the median
# is reported), SLICES=300, BENCH_DIR=/tmp (where the data lives: pick the filesystem to measure),
# PERF=1 (profile the default -j with `perf record` if available), KEEP=1 (keep the work dir),
# SKIP_BUILD=1, CARGO_TARGET_DIR.
#
# What it prints, per -j: the archive as configured by default (3 fsynced folders on BENCH_DIR),
# and to split disk from CPU: the same under eatmydata (fsync a no-op; if installed), with the
# data dir on tmpfs (/dev/shm: every syscall, no device), and with memory:// replicas (no file
# I/O for blobs; the SQLite index stays on disk). Before that, the disk's own ceiling for this
# write pattern (benches/disk_ceiling.py: 3 fsynced copies of each instance, file + dirs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOBS="${JOBS:-1 2 4 8}"
REPS="${REPS:-5}"
SLICES="${SLICES:-300}"

build
machine
make_workdir

"$GEN" --out "$WORK/in" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen: /'
INPUT_BYTES=$(du -sb "$WORK/in" | cut -f1)
INSTANCE_BYTES=$(( INPUT_BYTES / SLICES ))
sync

echo
echo "== disk ceiling: $SLICES instances x 3 fsynced copies of $INSTANCE_BYTES B (file + dirs), no archive =="
for j in $JOBS; do
    rates=()
    for r in $(seq "$REPS"); do
        line=$(python3 "$REPO_ROOT/benches/disk_ceiling.py" --dir "$WORK/ceiling" \
            --instances "$SLICES" --size "$INSTANCE_BYTES" --jobs "$j")
        rm -rf "$WORK/ceiling"; sync
        rates+=("$(sed -E 's/.* = ([0-9]+) instances\/s.*/\1/' <<<"$line")")
        [[ $r == 1 ]] && echo "  $line"
    done
    echo "  jobs=$j: runs ${rates[*]} instances/s, median $(median "${rates[@]}")"
done

# run_import LABEL JOBS DATA_BASE [env/wrapper...]
run_import() {
    local label=$1 j=$2 base=$3; shift 3
    local rates=() walls=() line=""
    for r in $(seq "$REPS"); do
        local d="$base/data-$label-$j-$r"
        "$STRATA" --data "$d" studies >/dev/null 2>&1   # key, index, replica folders: not timed
        sync
        local t0 t1
        t0=$(date +%s.%N)
        "$@" /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
            "$STRATA" --data "$d" import "$WORK/in" -j "$j" >"$WORK/out" 2>"$WORK/err" \
            || { echo "import failed:"; cat "$WORK/out" "$WORK/err"; exit 1; }
        t1=$(date +%s.%N)
        local wall summary user sys rss
        wall=$(secs "$t0" "$t1")
        summary=$(grep '^imported in' "$WORK/out")
        grep -q "$SLICES stored" <<<"$summary" || { echo "unexpected: $summary"; exit 1; }
        read -r _ user sys rss <"$WORK/time"
        rates+=("$(python3 -c "print(f'{$SLICES/$wall:.0f}')")")
        walls+=("$wall")
        line="$(printf '%-9s -j %-2s wall %6ss (%s) user %5ss sys %5ss cpu %4s%% rss %4s MB' \
            "$label" "$j" "$wall" "${summary%%:*}" "$user" "$sys" \
            "$(python3 -c "print(f'{100*($user+$sys)/$wall:.0f}')")" "$((rss / 1024))")"
        rm -rf "$d"
    done
    echo "  $line"
    echo "  $(printf '%-9s -j %-2s' "$label" "$j"): runs ${rates[*]} instances/s, median $(median "${rates[@]}") instances/s"
}

echo
echo "== strata import, $SLICES instances, $(( INPUT_BYTES / 1000000 )) MB (wall = process spawn to exit; 'imported in' = strata's own timer) =="
have_eatmydata=0; command -v eatmydata >/dev/null && have_eatmydata=1
for j in $JOBS; do
    run_import disk "$j" "$WORK" env
    [[ $have_eatmydata == 1 ]] && run_import nofsync "$j" "$WORK" eatmydata
    run_import tmpfs "$j" /dev/shm env
    run_import memory "$j" "$WORK" env STRATA_STORE_REPLICAS=memory://,memory://,memory://
done
[[ $have_eatmydata == 1 ]] || echo "  (eatmydata not installed: no fsync-free run; apt-get install eatmydata)"

if [[ "${PERF:-0}" == 1 ]] && command -v perf >/dev/null; then
    j=${PERF_JOBS:-4}
    echo
    echo "== perf: where the CPU goes, disk config, -j $j =="
    d="$WORK/data-perf"
    "$STRATA" --data "$d" studies >/dev/null 2>&1; sync
    perf record -q -F 1999 -g -o "$WORK/perf.data" -- \
        "$STRATA" --data "$d" import "$WORK/in" -j "$j" >/dev/null 2>&1
    echo "-- by thread (comm) --"
    perf report -i "$WORK/perf.data" --no-children --sort comm --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -8 || true
    echo "-- top symbols (self) --"
    perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -30 || true
    echo "-- off-CPU (sched) summary not collected; compare wall with user+sys above --"
    rm -rf "$d"
fi
