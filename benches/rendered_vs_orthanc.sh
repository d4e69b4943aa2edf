#!/usr/bin/env bash
# Benchmark: a rendered CT slice, Strata vs Orthanc (with its DICOMweb plugin), side by side in
# one run, same machine, same data.
#
#   bash benches/rendered_vs_orthanc.sh
#
# Data: one CT series of SLICES 512x512 slices (the project's generator), loaded into both:
# Strata by `strata import`, Orthanc by dcmtk storescu. Then, from python requests (one
# keep-alive session, requests one after the other), REPS rounds, the order of the two servers
# alternating, each round:
#   cold: GET .../instances/{sop}/rendered with Accept: image/png for every slice once (each
#         slice rendered for the first time in that server's life in round 1; Strata's
#         decoded-frame cache holds them afterwards, so later rounds measure it warm);
#   warm: the middle slice N times.
# p50/p90 per kind. Target: Strata's p50 at most a quarter of Orthanc's.
# Both answers are checked to be PNGs of 512x512 before timing.
#
# Knobs (environment): SLICES=50, N=200, REPS=3, BENCH_DIR, KEEP=1, SKIP_BUILD=1,
# CARGO_TARGET_DIR, PY (a python with requests + pydicom).
# Needs root or the packages already there: it apt-get installs orthanc, orthanc-dicomweb and
# dcmtk if missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLICES="${SLICES:-50}"
N="${N:-200}"
REPS="${REPS:-3}"

need_orthanc_dicomweb
bench_python

build
machine
echo "# $(Orthanc --version 2>&1 | head -1); orthanc-dicomweb $(dpkg-query -W -f '${Version}' orthanc-dicomweb)"
make_workdir


# ---- data ----------------------------------------------------------------------------------
"$GEN" --out "$WORK/ct" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen ct: /'
# study, series and SOP Instance UIDs of the slices, in slice order
"$PY" - "$WORK" <<'EOF'
import os, sys
import pydicom
work = sys.argv[1]
rows = []
for d, _, fs in os.walk(f"{work}/ct"):
    for f in fs:
        ds = pydicom.dcmread(os.path.join(d, f), stop_before_pixels=True)
        rows.append((int(ds.InstanceNumber), ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
rows.sort()
open(f"{work}/slices.txt", "w").write("".join(" ".join(r[1:]) + "\n" for r in rows))
EOF

SD="$WORK/strata"
"$STRATA" --data "$SD" import "$WORK/ct" >"$WORK/import.out" 2>&1 || { cat "$WORK/import.out"; exit 1; }
SHTTP=$(free_port)
"$STRATA" --data "$SD" serve --http "127.0.0.1:$SHTTP" --dimse "127.0.0.1:$(free_port)" >"$SD.log" 2>&1 &
SPID=$!
wait_for 60 curl -sf "http://127.0.0.1:$SHTTP/readyz" || { echo "strata did not start:"; cat "$SD.log"; exit 1; }
TOKEN=$("$STRATA" --data "$SD" token create --user admin 2>/dev/null | grep -m1 '^stk_')

OD="$WORK/orthanc"
OPORT=$(free_port); OHTTP=$(free_port)
mkdir -p "$OD"
cat >"$OD/orthanc.json" <<EOF
{
  "Name": "bench",
  "StorageDirectory": "$OD/storage",
  "IndexDirectory": "$OD/index",
  "DicomAet": "ORTHANC",
  "DicomPort": $OPORT,
  "HttpPort": $OHTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAlwaysAllowStore": true,
  "KeepAlive": true,
  "TcpNoDelay": true,
  "Plugins": ["$DICOMWEB_SO"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "Host": "127.0.0.1:$OHTTP" }
}
EOF
Orthanc "$OD/orthanc.json" >"$OD.log" 2>&1 &
OPID=$!
wait_for 60 curl -sf "http://127.0.0.1:$OHTTP/dicom-web/studies?limit=1" \
    || { echo "Orthanc did not start:"; tail -20 "$OD.log"; exit 1; }
storescu +sd +r -aet BENCH -aec ORTHANC 127.0.0.1 "$OPORT" "$WORK/ct" >"$WORK/scu.log" 2>&1 \
    || { echo "storescu failed"; head "$WORK/scu.log"; exit 1; }
[[ $(orthanc_count) == "$SLICES" ]] || { echo "orthanc holds $(orthanc_count) of $SLICES"; exit 1; }
echo "# both hold the $SLICES slices"

# ---- timing --------------------------------------------------------------------------------
cat >"$WORK/client.py" <<'EOF'
import statistics, sys, time
import requests
base, token, slices_file, kind, n, label = sys.argv[1:7]
slices = [l.split() for l in open(slices_file)]
s = requests.Session()
if token != "-":
    s.headers["Authorization"] = f"Bearer {token}"
s.headers["Accept"] = "image/png"
def url(st, se, sop):
    return f"{base}/studies/{st}/series/{se}/instances/{sop}/rendered"
def get(u):
    r = s.get(u)
    if r.status_code != 200 or r.headers.get("Content-Type", "").split(";")[0] != "image/png":
        sys.exit(f"{label}: {u}: {r.status_code} {r.headers.get('Content-Type')} {r.text[:200]}")
    if r.content[16:24] != (512).to_bytes(4, "big") * 2:
        sys.exit(f"{label}: not a 512x512 PNG")
    return r
targets = slices if kind == "cold" else [slices[len(slices) // 2]] * int(n)
if kind == "warm":
    get(url(*targets[0]))
times = []
for t in targets:
    t0 = time.perf_counter()
    get(url(*t))
    times.append((time.perf_counter() - t0) * 1000)
times.sort()
q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
print(f"{label} {kind} n={len(times)} p50={statistics.median(times):.2f} p90={q(0.9):.2f} ms")
EOF

echo
echo "== rendered PNG of a 512x512 CT slice; cold: each of $SLICES slices once; warm: one slice $N times; $REPS rounds =="
load
declare -A V
for r in $(seq "$REPS"); do
    order=(strata orthanc); (( r % 2 == 0 )) && order=(orthanc strata)
    for who in "${order[@]}"; do
        for kind in cold warm; do
            if [[ $who == strata ]]; then
                out=$("$PY" "$WORK/client.py" "http://127.0.0.1:$SHTTP/dicomweb" "$TOKEN" "$WORK/slices.txt" "$kind" "$N" strata)
            else
                out=$("$PY" "$WORK/client.py" "http://127.0.0.1:$OHTTP/dicom-web" - "$WORK/slices.txt" "$kind" "$N" orthanc)
            fi
            echo "  round $r $out"
            p50=$(sed -E 's/.* p50=([0-9.]+).*/\1/' <<<"$out")
            V[$who,$kind]+="$p50 "
            # only round 1's cold pass decodes every slice for the first time
            (( r == 1 )) && [[ $kind == cold ]] && V[$who,first]=$p50
        done
    done
done
load

echo
echo "== summary: first = round 1's cold pass (each slice decoded for the first time); cold, warm = median of the rounds' p50 (Strata's cold rounds after the first find the slices cached) =="
for kind in first cold warm; do
    # shellcheck disable=SC2086
    s=$(median ${V[strata,$kind]}); o=$(median ${V[orthanc,$kind]})
    verdict=$(python3 -c "print('PASS' if $s <= $o/4 else 'FAIL')")
    echo "  $kind: strata p50 ${s} ms, orthanc p50 ${o} ms, ratio $(python3 -c "print(f'{$o/$s:.1f}')")x  [target: strata <= 1/4 of orthanc: $verdict]"
done
