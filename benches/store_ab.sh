#!/usr/bin/env bash
# A/B of two Strata binaries on C-STORE, alternating, so the host's drift falls on both alike.
#
#   bash benches/store_ab.sh OLD_BINARY NEW_BINARY
#
# Each round stores, for each binary in turn (order alternating between rounds), into a fresh
# archive: one CT series (SLICES x 512x512) over ONE association (`storescu +sd +r`), and SMALL
# instances of 64x64 over PAR parallel associations. Prints each run's instances/s and the
# medians. Knobs: ROUNDS=5, SLICES=300, SMALL=1000, PAR=4, BENCH_DIR, KEEP=1, SKIP_BUILD=1 (gen
# is built unless given), CARGO_TARGET_DIR. Needs dcmtk (storescu).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/dimse_lib.sh"

[[ $# == 2 && -x "$1" && -x "$2" ]] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
BINS=("$(realpath "$1")" "$(realpath "$2")")
ROUNDS="${ROUNDS:-5}" SLICES="${SLICES:-300}" SMALL="${SMALL:-1000}" PAR="${PAR:-4}"
export TCP_NODELAY=1
command -v storescu >/dev/null || { echo "needs dcmtk's storescu" >&2; exit 1; }
[[ "${SKIP_BUILD:-0}" == 1 ]] || (cd "$REPO_ROOT" && cargo build --release --quiet --example gen)
machine
echo "# old: ${BINS[0]}"; echo "# new: ${BINS[1]}"
make_workdir
"$GEN" --out "$WORK/ct" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct >/dev/null
"$GEN" --out "$WORK/small" --seed 2 --patients $(( (SMALL / 4 + 1) / 2 )) --studies $(( SMALL / 4 )) \
    --series 1 --slices 4 --rows 64 --cols 64 >/dev/null
split_dirs "$WORK/small" "$PAR"
CT_N=$(find "$WORK/ct" -name '*.dcm' | wc -l)
SMALL_N=$(find "$WORK/small-split" -name '*.dcm' | wc -l)
sync

declare -A runs
for r in $(seq "$ROUNDS"); do
    order=(0 1); (( r % 2 == 0 )) && order=(1 0)
    for i in "${order[@]}"; do
        who=$([[ $i == 0 ]] && echo old || echo new)
        for scenario in ct small; do
            d="$WORK/$who-$scenario-$r"
            start_strata "$d" "${BINS[$i]}"; sync; sleep 0.5
            if [[ $scenario == ct ]]; then
                n=$CT_N; w=$(storescu_timed STRATA "$SPORT" "$WORK/ct")
            else
                n=$SMALL_N; w=$(storescu_timed STRATA "$SPORT" "$WORK"/small-split/*)
            fi
            got=$(STRATA="${BINS[$i]}" strata_count "$d"); stop_strata
            [[ $got == "$n" ]] || { echo "$who stored $got of $n instances"; exit 1; }
            runs[$who-$scenario]+="$(rate "$n" "$w") "
            echo "  round $r $who $scenario: $n instances in ${w}s = $(rate "$n" "$w")/s"
        done
    done
done
for scenario in ct small; do
    for who in old new; do
        # shellcheck disable=SC2086
        echo "$scenario $who: runs ${runs[$who-$scenario]}/s, median $(median ${runs[$who-$scenario]})"
    done
done
