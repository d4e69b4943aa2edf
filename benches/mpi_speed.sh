#!/usr/bin/env bash
# Batch linking speed of `strata mpi link`: a generated file of N records (default 500,000; about
# 40 % are further records of an earlier person, with typos, swapped dates and names, moves and
# missing fields), linked REPS times (default 3). Prints records/s of each run (whole command:
# reading, normalising, blocking, EM, deciding, writing) and the median, then the accuracy on
# the generated truth.
#
#   bash benches/mpi_speed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-500000}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
fi
[[ -x "$STRATA" ]] || { echo "missing $STRATA" >&2; exit 1; }

machine
make_workdir
python3 "$REPO_ROOT/benches/mpi_gen.py" "$N" "$WORK"
rates=()
for _ in $(seq "${REPS:-3}"); do
    load
    t0=$(date +%s.%N)
    "$STRATA" mpi link --input "$WORK/records.csv" --output "$WORK/persons.csv"
    t1=$(date +%s.%N)
    s=$(secs "$t0" "$t1")
    rate=$(python3 -c "print(round($N / $s))")
    echo "run: $N records in $s s = $rate records/s"
    rates+=("$rate")
done
echo "median: $(median "${rates[@]}") records/s"
python3 "$REPO_ROOT/benches/febrl.py" score "$WORK"
