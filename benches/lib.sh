# Shared helpers for the benchmark scripts (sourced, not run).
# Builds the release binaries once, honouring CARGO_TARGET_DIR.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
STRATA="$TARGET_DIR/release/strata"
GEN="$TARGET_DIR/release/examples/gen"

build() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        (cd "$REPO_ROOT" && cargo build --release --quiet --bin strata --example gen)
    fi
    [[ -x "$STRATA" && -x "$GEN" ]] || { echo "missing $STRATA or $GEN" >&2; exit 1; }
}

# The servers a bench starts (strata, Orthanc, a storescp sink): stopped on exit.
SPID="" OPID="" SINK_PID=""
# stop_all PID...: signals each, then waits for each (empty ones skipped by word splitting).
stop_all() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
    stop_all $SPID $OPID $SINK_PID
    [[ "${KEEP:-0}" == 1 || -z "${WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# Work dir: under BENCH_DIR if set (choose the filesystem to measure), else the system temp dir;
# removed on exit unless KEEP=1.
make_workdir() {
    local base="${BENCH_DIR:-${TMPDIR:-/tmp}}"
    mkdir -p "$base"
    WORK="$(mktemp -d "$base/strata-bench.XXXXXX")"
    echo "# work dir: $WORK ($(df -T "$WORK" | awk 'NR==2{print $2" on "$1}'))"
}

machine() {
    local cpu
    cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "# machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $cpu"
    echo "# commit: $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO_ROOT" && git diff --quiet 2>/dev/null || echo '+dirty')  date: $(date -u +%F)"
}

# Seconds between two `date +%s.%N` stamps.
secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }

median() { python3 -c "import sys,statistics; print(f'{statistics.median(map(float,sys.argv[1:])):.3f}')" "$@"; }

# GNU time, needed for peak RSS.
need_gnu_time() {
    if ! /usr/bin/time -v true >/dev/null 2>&1; then
        echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1
    fi
}

# ---- helpers of the side-by-side scripts (strata and Orthanc as foreground servers) ----

load() {
    echo "# load $(date -u +%T): $(uptime | sed 's/.*load average/load average/'); busiest:" \
        "$(top -bn1 -o %CPU | sed -n '8,11p' | awk '{printf "%s %s%%, ", $12, $9}')"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for SECONDS CMD...: polls CMD every 20 ms.
wait_for() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || return 1
        sleep 0.02
    done
}

# CPU seconds (user+sys, all threads) a process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat"; }

rate() { python3 -c "print(f'{$1/$2:.0f}')"; }

stop_strata() { kill "$SPID"; wait "$SPID" || true; SPID=""; }

strata_count() {
    "$STRATA" --data "$1" studies 2>/dev/null | awk 'NF>3 && $NF ~ /^[0-9.]+$/ {s+=$(NF-1)} END{print s+0}'
}

stop_orthanc() { kill "$OPID"; wait "$OPID" || true; OPID=""; }

orthanc_count() {
    curl -sf "http://127.0.0.1:$OHTTP/statistics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])'
}

# Orthanc with its DICOMweb plugin, dcmtk and curl, installed with apt-get when missing (needs
# root); sets DICOMWEB_SO to the plugin.
need_orthanc_dicomweb() {
    local missing=()
    command -v Orthanc >/dev/null || missing+=(orthanc)
    DICOMWEB_SO=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
    [[ -e $DICOMWEB_SO ]] || missing+=(orthanc-dicomweb)
    command -v storescu >/dev/null || missing+=(dcmtk)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        echo "# installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    [[ -e $DICOMWEB_SO ]] || DICOMWEB_SO=$(dpkg -L orthanc-dicomweb | grep -m1 'libOrthancDicomWeb\.so')
}

# Sets PY to a Python with requests and pydicom: $PY if it has them, else the repository's
# .venv, else a venv made once in /tmp.
bench_python() {
    local c
    for c in "${PY:-}" "$REPO_ROOT/.venv/bin/python" /tmp/strata-bench-venv/bin/python; do
        if [[ -n "$c" && -x "$c" ]] && "$c" -c 'import requests, pydicom' 2>/dev/null; then PY="$c"; return; fi
    done
    python3 -m venv /tmp/strata-bench-venv
    /tmp/strata-bench-venv/bin/pip install -q requests pydicom
    PY=/tmp/strata-bench-venv/bin/python
}

# study_series_uids FILE: prints the Study and Series Instance UIDs of a generated instance (an
# Explicit VR Little Endian file: the UI values of (0020,000D) and (0020,000E), read by tag).
study_series_uids() {
    python3 - "$1" <<'EOF'
import sys
b = open(sys.argv[1], 'rb').read()
def ui(group, elem):
    tag = group.to_bytes(2, 'little') + elem.to_bytes(2, 'little') + b'UI'
    i = b.index(tag)
    n = int.from_bytes(b[i + 6:i + 8], 'little')
    return b[i + 8:i + 8 + n].rstrip(b'\0 ').decode()
print(ui(0x20, 0xD), ui(0x20, 0xE))
EOF
}
