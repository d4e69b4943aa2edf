#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs every test.
# Usage: bash scripts/test.sh        (CI calls it through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use. Installed only when missing.
# cmake, g++ and nasm build the codecs (CharLS, OpenJPEG, openh264); dcmtk (echoscu, storescu,
# findscu, dcmconv, dcmcjpeg, ...) and gdcmconv (JPEG 2000) are the DICOM peers of the tests;
# openssl makes the TLS tests' certificates and curl is their HTTPS client; python3-venv holds
# pynetdicom and dicomweb-client, the Python peers; chromium is the browser of the viewer's end-to-end test;
# postgresql is the index's second engine (each test process starts a throwaway cluster of its own);
# haproxy is the load balancer in front of the cluster tests' nodes (tests/cluster.rs); unzip
# opens the media exports (tests/media.rs); gnupg decrypts a patient's copy taken with an access
# letter (tests/letters.rs).
packages=(pkg-config cmake g++ nasm dcmtk libgdcm-tools openssl curl python3 python3-venv chromium postgresql haproxy unzip gnupg)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node runs playwright-core, which drives chromium in the viewer's end-to-end test (any Node
# 18 or later will do: Debian's nodejs and npm when there is none).
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# The Python peers (tests/peers/*.py): a venv with pinned pynetdicom, pydicom and
# dicomweb-client, the API's checkers (openapi-spec-validator, schemathesis), and pydicom's
# larger public sample files (pydicom-data: the rendering tests' corpus), made once.
venv_python="$PWD/.venv/bin/python"
pip_pins=(pynetdicom==3.0.4 pydicom==3.0.2 dicomweb-client==0.61.2
  openapi-spec-validator==0.9.0 schemathesis==4.32.5 pydicom-data==1.0.0)
venv_check='import importlib.metadata as m; assert [m.version(p) for p in ("pynetdicom", "pydicom", "dicomweb-client", "openapi-spec-validator", "schemathesis", "pydicom-data")] == ["3.0.4", "3.0.2", "0.61.2", "0.9.0", "4.32.5", "1.0.0"]'
if ! "$venv_python" -c "$venv_check" >/dev/null 2>&1; then
  echo "making .venv with ${pip_pins[*]}"
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  "$venv_python" -m pip install -q --disable-pip-version-check "${pip_pins[@]}"
fi
# playwright-core, pinned in tests/viewer/package-lock.json.
if [[ ! -d tests/viewer/node_modules/playwright-core ]]; then
  echo "installing playwright-core"
  npm ci --prefix tests/viewer --no-audit --no-fund
fi
# (not STRATA_…: strata reads every STRATA_* variable as a configuration key)
export PYNETDICOM_PYTHON="$venv_python"

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# Garage, a distributed S3 server (tests/s3.rs runs its replicas on it): built once from crates.io
# (15 to 30 minutes on two cores, at low priority) and cached outside the checkout, so CI can keep
# it between runs. Its build folder is temporary: only the binary is kept.
garage_version=2.5.0
garage_root="${XDG_CACHE_HOME:-$HOME/.cache}/strata/garage"
if ! "$garage_root/bin/garage" --version 2>/dev/null | grep -qF "cargo:$garage_version "; then
  echo "building garage $garage_version into $garage_root (once; 15 to 30 minutes)"
  garage_build=$(mktemp -d)
  CARGO_TARGET_DIR="$garage_build" nice -n 19 cargo install garage --version "$garage_version" \
    --locked --force --root "$garage_root"
  rm -rf "$garage_build"
fi
# (not STRATA_…, for the same reason as PYNETDICOM_PYTHON)
export GARAGE_BIN="$garage_root/bin/garage"

# One build from a clean checkout: incremental state would only take disk (4 GB of it).
export CARGO_INCREMENTAL=0
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The totals as the closing line (cargo's own last block may be a target without tests).
log=$(mktemp)
set +e
cargo test --workspace --locked --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The index's second engine: the DIMSE, DICOMweb, person-index, patient and lifecycle suites
# again, every test archive's index on PostgreSQL (the catalog's own tests already run on both
# engines).
TEST_INDEX_ENGINE=postgres cargo test --locked -p strata --no-fail-fast \
  --test dimse --test dicomweb --test mpi --test patient --test lifecycle 2>&1 | tee -a "$log"
pg_status=${PIPESTATUS[0]}
(( status == 0 )) && status=$pg_status
set -e
echo "disk: $(du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | cut -f1) in the build folder, $(df -h --output=avail . | tail -1 | tr -d ' ') free"
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
