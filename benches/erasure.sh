#!/usr/bin/env bash
# Benchmark: the cold tier. Erasure coding 4+2 alone, one thread (target: encode and decode
# >= 1 GB/s per core), then a 150 MB CT study's worth of blobs (300 x 513 KiB) moved from three
# local replicas to six local cold stores and restored from four of them (target: each
# >= 150 MB/s; where the disk's own bound for that work is lower, >= 90 % of it). Each round
# measures the move and the restore back to back with their bounds, the same disk work with
# no coding or sealing (which goes first alternates); the medians close the output. Builds
# only the store crate's example.
#
#   bash benches/erasure.sh
#
# Knobs: CODE_MIB=256, BLOBS=300, BLOB_KIB=513, ROUNDS=7, PAUSE_S=5 (rest before each timed part), BOUNDS=1, DIR (where the stores go; default
# the temp folder), SKIP_BUILD=1, CARGO_TARGET_DIR. Built without the cloud replicas (local
# stores only).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet -p strata-store --no-default-features --example erasure)
fi
echo "# $(date -u +%FT%TZ) $(git -C "$REPO_ROOT" rev-parse --short HEAD) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET_DIR/release/examples/erasure"
