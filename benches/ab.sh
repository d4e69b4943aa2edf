#!/usr/bin/env bash
# A/B of two Strata builds on one of the benchmarks of this folder, the builds alternating round
# by round, so that the host's drift falls on both alike.
#
#   bash benches/ab.sh OLD_TARGET_DIR NEW_TARGET_DIR SCRIPT [ROUNDS]
#
# Each TARGET_DIR is a cargo target directory holding a release build of `strata` and of the
# examples SCRIPT uses (gen; http_latency for dicomweb_vs_orthanc.sh; stream_bench for
# stream_bench.sh), as `cargo build --release --bin strata --examples` leaves it. SCRIPT runs
# ROUNDS (default 2) times per build, order alternating (old new, new old, ...), each run with
# SKIP_BUILD=1 and that build's CARGO_TARGET_DIR; every run's output goes to
# $AB_DIR/<script>-<round>-<old|new>.txt (AB_DIR: a new temporary folder unless set), and the
# lines of each run's summary are printed with the build's name in front. The script's own knobs
# pass through the environment (REPS=3, SLICES=…).
set -euo pipefail
[[ $# -ge 3 && -x "$1/release/strata" && -x "$2/release/strata" ]] || {
    echo "usage: $0 OLD_TARGET_DIR NEW_TARGET_DIR SCRIPT [ROUNDS] (each dir with release/strata)" >&2
    exit 2
}
OLD="$(realpath "$1")" NEW="$(realpath "$2")" SCRIPT="$3" ROUNDS="${4:-2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f "$HERE/$SCRIPT" ]] || { echo "no benchmark $HERE/$SCRIPT" >&2; exit 2; }
AB_DIR="${AB_DIR:-$(mktemp -d /tmp/strata-ab.XXXXXX)}"
mkdir -p "$AB_DIR"
echo "# A/B of $SCRIPT, $ROUNDS rounds; old: $OLD ($(cat "$OLD/release/strata.built-from" 2>/dev/null || echo '?'))"
echo "#                               new: $NEW ($(cat "$NEW/release/strata.built-from" 2>/dev/null || echo '?'))"
echo "# outputs in $AB_DIR"
for r in $(seq "$ROUNDS"); do
    order=(old new); (( r % 2 == 0 )) && order=(new old)
    for who in "${order[@]}"; do
        dir=$OLD; [[ $who == new ]] && dir=$NEW
        out="$AB_DIR/${SCRIPT%.sh}-$r-$who.txt"
        echo "== round $r: $who ($(date -u +%T))"
        SKIP_BUILD=1 CARGO_TARGET_DIR="$dir" bash "$HERE/$SCRIPT" >"$out" 2>&1 \
            || { echo "$SCRIPT failed for $who; its output:"; tail -30 "$out"; exit 1; }
        # the summary: everything from the last "== summary" line on, else the last 25 lines
        if grep -q '^== summary' "$out"; then
            sed -n '/^== summary/,$p' "$out" | sed "s/^/  $who | /"
        else
            tail -25 "$out" | sed "s/^/  $who | /"
        fi
    done
done
