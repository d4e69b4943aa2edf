#!/usr/bin/env bash
# Benchmark: import of one 2 GiB instance (4096 frames of 512x512x16 bit), three fsynced local
# replicas, encryption on. Target: peak RSS < 300 MB. Also: `strata get` of it is byte-identical,
# and its peak RSS.
#
#   bash benches/import_large.sh
#
# Needs GNU time (/usr/bin/time; apt-get install time) and ~10 GiB free under BENCH_DIR (input,
# three replicas, the copy read back). Knobs: FRAMES=4096, BENCH_DIR, KEEP=1, SKIP_BUILD=1,
# CARGO_TARGET_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRAMES="${FRAMES:-4096}"
RSS_LIMIT_MB=300

need_gnu_time
build
machine
make_workdir

"$GEN" --out "$WORK/in" --large-frames "$FRAMES" --rows 512 --cols 512 | sed 's/^/# gen: /'
SIZE=$(stat -c %s "$WORK/in/large.dcm")
sync
D="$WORK/data"
"$STRATA" --data "$D" studies >/dev/null 2>&1   # key, index, replica folders: not timed
sync

# timed CMD... : runs under GNU time; sets ELAPSED, RSS_KB
timed() {
    /usr/bin/time -v -o "$WORK/time" "$@"
    ELAPSED=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$WORK/time")
    RSS_KB=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time")
    CPU=$(awk -F': ' '/Percent of CPU/{print $2}' "$WORK/time")
}

wall_secs() { python3 -c "
import sys; p=[float(x) for x in sys.argv[1].split(':')]
s=0
for x in p: s=s*60+x
print(f'{s:.2f}')" "$1"; }

verdict() { [[ $(( $1 / 1024 )) -lt $RSS_LIMIT_MB ]] && echo PASS || echo FAIL; }

echo
echo "== import: $SIZE bytes ($(( SIZE / 1048576 )) MiB), 3 fsynced replicas =="
timed "$STRATA" --data "$D" import -v "$WORK/in/large.dcm" >"$WORK/out" 2>"$WORK/err" \
    || { echo "import failed:"; cat "$WORK/out" "$WORK/err"; exit 1; }
cat "$WORK/out" | sed 's/^/  /'
UID_=$(awk '$1=="stored"{print $2}' "$WORK/out")
[[ -n "$UID_" ]] || { echo "no SOP Instance UID in the import output"; exit 1; }
S=$(wall_secs "$ELAPSED")
echo "  import: elapsed ${S}s ($(python3 -c "print(f'{$SIZE/$S/1e6:.0f}')") MB/s), CPU $CPU, max RSS $(( RSS_KB / 1024 )) MB -> $(verdict "$RSS_KB") (target < $RSS_LIMIT_MB MB)"
du -sb "$D"/replica-* 2>/dev/null | sed 's/^/  on disk: /' || true

echo
echo "== get: back to a file, compared byte for byte =="
sync
timed "$STRATA" --data "$D" get "$UID_" -o "$WORK/back.dcm" 2>"$WORK/err" \
    || { echo "get failed:"; cat "$WORK/err"; exit 1; }
S=$(wall_secs "$ELAPSED")
if cmp "$WORK/in/large.dcm" "$WORK/back.dcm"; then SAME=identical; else SAME=DIFFERENT; fi
echo "  get: elapsed ${S}s ($(python3 -c "print(f'{$SIZE/$S/1e6:.0f}')") MB/s), CPU $CPU, max RSS $(( RSS_KB / 1024 )) MB -> $(verdict "$RSS_KB") (target < $RSS_LIMIT_MB MB); cmp: $SAME"
[[ $SAME == identical ]]
