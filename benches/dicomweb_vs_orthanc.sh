#!/usr/bin/env bash
# Benchmark: Strata vs Orthanc (with its DICOMweb plugin) over DICOMweb, side by side in one run,
# same machine, same data.
#
#   bash benches/dicomweb_vs_orthanc.sh
#
# Data: one CT study (SLICES x 512x512) plus SMALL_STUDIES small studies (SMALL_SLICES x 64x64
# each), loaded into both before measuring: Strata by `strata import`, Orthanc by dcmtk storescu
# (two associations). Then, with benches/dicomweb_client.py (python requests, one keep-alive
# session, requests one after the other), REPS rounds, the order of the two servers alternating:
#
# 1. QIDO-RS study search: GET /studies?StudyInstanceUID=<uid> (cycling through the small
#    studies' UIDs; 1 match) and GET /studies?PatientName=<NAME_QUERY> (a prefix matching a few
#    studies; chosen from the data unless set), QUERIES timed requests each.
#    Target: Strata p50 <= 1/5 of Orthanc's.
# 2. WADO-RS retrieval of the whole CT study, Accept: multipart/related; type="application/dicom";
#    transfer-syntax=* (ORTHANC_ACCEPT for Orthanc, same by default): MB/s = bytes received /
#    wall time, median of WADO_RUNS runs (after one warm-up). Target: Strata >= 2x Orthanc.
# 3. WADO-RS metadata of the CT study (300 instances): GET /studies/{uid}/metadata, META_RUNS
#    timed runs; p50. Target: Strata <= 1/10 of Orthanc's and < 10 ms.
# 4. STOW-RS of the CT study into fresh, empty archives: all SLICES instances in one multipart
#    POST (STOW_BATCH instances per POST if set; the same bodies for both), STOW_REPS runs:
#    instances/s. Target: Strata >= 2x Orthanc.
# Each round also times a trivial GET (Strata /healthz, Orthanc /system) as the client + HTTP
# floor, and notes the server's CPU time (user+sys, all threads) per request.
# The floor and both QIDO kinds are timed a second time with examples/http_latency.rs (kinds
# rs-floor, rs-qido-uid, rs-qido-name): a Rust client on one keep-alive connection with
# TCP_NODELAY, RS_QUERIES timed requests after RS_WARMUP, whose own cost per request is a few
# microseconds where the Python client's is about 0.4 ms; the Python figures stay for continuity.
#
# Servers are foreground processes started here on free ports, data in the work dir:
# `strata serve` with its defaults (3 encrypted local replicas, durable before acking; SQLite
# index with synchronous=FULL; an audit event committed for every request), a bearer token from
# `strata token create --user admin`; Orthanc with a generated config: the DICOMweb plugin
# (Root /dicom-web/, StudiesMetadata ORTHANC_STUDIES_METADATA=Full, the plugin's default),
# no authentication, localhost only, Debian's defaults otherwise (SyncStorageArea true, no
# compression, SQLite synchronous=NORMAL), TCP_NODELAY=1 for its DICOM side.
#
# Knobs (environment): SLICES=300, SMALL_STUDIES=200, SMALL_SLICES=3, QUERIES=300, WADO_RUNS=5,
# META_RUNS=50, REPS=3, STOW_REPS=3, STOW_BATCH=0 (all in one POST), NAME_QUERY (default: chosen),
# RS_QUERIES=1000, RS_WARMUP=100, QIDO_ONLY=1 (the floor and QIDO only: no WADO, metadata, STOW),
# ORTHANC_ACCEPT, ORTHANC_STUDIES_METADATA=Full, REV=<git rev> (build strata from that commit),
# BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR, PY (a python with requests + pydicom).
# Needs root or the packages already there: it apt-get installs orthanc, orthanc-dicomweb and
# dcmtk if missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLICES="${SLICES:-300}"
SMALL_STUDIES="${SMALL_STUDIES:-200}"
SMALL_SLICES="${SMALL_SLICES:-3}"
QUERIES="${QUERIES:-300}"
WADO_RUNS="${WADO_RUNS:-5}"
META_RUNS="${META_RUNS:-50}"
REPS="${REPS:-3}"
STOW_REPS="${STOW_REPS:-3}"
STOW_BATCH="${STOW_BATCH:-0}"
RS_QUERIES="${RS_QUERIES:-1000}"
RS_WARMUP="${RS_WARMUP:-100}"
QIDO_ONLY="${QIDO_ONLY:-0}"
ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*'
ORTHANC_ACCEPT="${ORTHANC_ACCEPT:-$ACCEPT}"
ORTHANC_STUDIES_METADATA="${ORTHANC_STUDIES_METADATA:-Full}"
export TCP_NODELAY=1

# ---- tools -------------------------------------------------------------------------------------
need_orthanc_dicomweb
bench_python
CLIENT="$REPO_ROOT/benches/dicomweb_client.py"

# What the binary was built from is noted next to it (others commit while we measure).
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    if [[ -n "${REV:-}" ]]; then
        src="$(mktemp -d /tmp/strata-src.XXXXXX)"
        git -C "$REPO_ROOT" archive "$REV" | tar -x -m -C "$src"
        (cd "$src" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --bin strata --example gen --example http_latency)
        rm -rf "$src"
        echo "commit $(git -C "$REPO_ROOT" rev-parse --short "$REV")" >"$STRATA.built-from"
    else
        build
        (cd "$REPO_ROOT" && cargo build --release --quiet --example http_latency)
        echo "work tree at $(git -C "$REPO_ROOT" rev-parse --short HEAD)$(git -C "$REPO_ROOT" diff --quiet || echo '+dirty')" >"$STRATA.built-from"
    fi
fi
SKIP_BUILD=1 build
RSCLIENT="$TARGET_DIR/release/examples/http_latency"
[[ -x "$RSCLIENT" ]] || { echo "missing $RSCLIENT" >&2; exit 1; }
machine
echo "# strata binary built from: $(cat "$STRATA.built-from" 2>/dev/null || echo 'unknown (built outside this script)')"
echo "# $(Orthanc --version 2>&1 | head -1); orthanc-dicomweb $(dpkg-query -W -f '${Version}' orthanc-dicomweb); $("$PY" -c 'import requests; print("requests", requests.__version__)')"
make_workdir



# strata_token DATA_DIR: a bearer token for admin (STOKEN); the server creates admin on its first
# start, so this runs while it serves.
strata_token() {
    STOKEN=$("$STRATA" --data "$1" token create --user admin 2>"$1.token.err" | grep -m1 '^stk_') \
        || { echo "strata token create failed:"; cat "$1.token.err"; exit 1; }
}
# start_strata DATA_DIR: sets SPID, SHTTP, SBASE.
start_strata() {
    SHTTP=$(free_port)
    "$STRATA" --data "$1" serve --http "127.0.0.1:$SHTTP" --dimse "127.0.0.1:$(free_port)" >"$1.log" 2>&1 &
    SPID=$!
    wait_for 60 curl -sf "http://127.0.0.1:$SHTTP/readyz" \
        || { echo "strata did not start:"; cat "$1.log"; exit 1; }
    SBASE="http://127.0.0.1:$SHTTP/dicomweb"
}

# start_orthanc DIR: sets OPID, OPORT, OHTTP, OBASE.
start_orthanc() {
    local d=$1
    OPORT=$(free_port); OHTTP=$(free_port)
    mkdir -p "$d"
    cat >"$d/orthanc.json" <<EOF
{
  "Name": "bench",
  "StorageDirectory": "$d/storage",
  "IndexDirectory": "$d/index",
  "DicomAet": "ORTHANC",
  "DicomPort": $OPORT,
  "HttpPort": $OHTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "StorageCompression": false,
  "OverwriteInstances": false,
  "SyncStorageArea": true,
  "DicomAlwaysAllowStore": true,
  "KeepAlive": true,
  "TcpNoDelay": true,
  "Plugins": ["$DICOMWEB_SO"],
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": false,
    "Host": "127.0.0.1:$OHTTP",
    "StudiesMetadata": "$ORTHANC_STUDIES_METADATA"
  }
}
EOF
    Orthanc "$d/orthanc.json" >"$d.log" 2>&1 &
    OPID=$!
    wait_for 60 curl -sf "http://127.0.0.1:$OHTTP/dicom-web/studies?limit=1" \
        || { echo "Orthanc (with DICOMweb) did not start:"; tail -20 "$d.log"; exit 1; }
    OBASE="http://127.0.0.1:$OHTTP/dicom-web"
}

# ---- data --------------------------------------------------------------------------------------
"$GEN" --out "$WORK/ct" --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct | sed 's/^/# gen ct: /'
"$GEN" --out "$WORK/small" --seed 2 --patients $(( (SMALL_STUDIES + 1) / 2 )) --studies "$SMALL_STUDIES" \
    --series 1 --slices "$SMALL_SLICES" --rows 64 --cols 64 | sed 's/^/# gen small: /'
TOTAL=$(( SLICES + SMALL_STUDIES * SMALL_SLICES ))
# The CT study's UID, the small studies' UIDs, and a PatientName prefix matching a few studies.
"$PY" - "$WORK" "${NAME_QUERY:-}" <<'EOF'
import collections, os, sys
import pydicom
work, name_query = sys.argv[1], sys.argv[2]
def first_of_each_study(root):
    seen = {}
    for d, _, fs in sorted(os.walk(root)):
        for f in sorted(fs):
            if f.endswith(".dcm"):
                ds = pydicom.dcmread(os.path.join(d, f), stop_before_pixels=True)
                seen.setdefault(ds.StudyInstanceUID, str(ds.PatientName))
    return seen
ct = first_of_each_study(f"{work}/ct")
small = first_of_each_study(f"{work}/small")
open(f"{work}/ct-uid.txt", "w").write(next(iter(ct)) + "\n")
open(f"{work}/uids.txt", "w").write("".join(u + "\n" for u in small))
if not name_query:
    # the 4-letter family-name prefix whose match count (case-insensitive) is closest to 5
    names = list(small.values()) + list(ct.values())
    counts = collections.Counter(n[:4].lower() for n in names if len(n) >= 4 and n[:4].isalpha())
    prefix = min(sorted(counts), key=lambda p: abs(counts[p] - 5))
    name_query = prefix[:1].upper() + prefix[1:] + "*"
open(f"{work}/name.txt", "w").write(name_query + "\n")
EOF
CT_UID=$(cat "$WORK/ct-uid.txt")
NAME_QUERY=$(cat "$WORK/name.txt")
CT_BYTES=$(du -sb "$WORK/ct" | cut -f1)
echo "# CT study $CT_UID: $SLICES instances, $CT_BYTES bytes; $SMALL_STUDIES small studies; $TOTAL instances in all"
echo "# PatientName query: $NAME_QUERY"
sync

echo
echo "== setup: loading both archives =="
SD="$WORK/strata-main"
t0=$(date +%s.%N)
"$STRATA" --data "$SD" import "$WORK/ct" "$WORK/small" >"$WORK/import.out" 2>&1 || { cat "$WORK/import.out"; exit 1; }
echo "  strata import of $TOTAL instances in $(secs "$t0" "$(date +%s.%N)")s: $(grep '^imported in' "$WORK/import.out" || tail -1 "$WORK/import.out")"
start_orthanc "$WORK/orthanc-main"
t0=$(date +%s.%N)
storescu +sd +r -aet BENCH -aec ORTHANC 127.0.0.1 "$OPORT" "$WORK/ct" >"$WORK/scu1.log" 2>&1 &
p1=$!
storescu +sd +r -aet BENCH -aec ORTHANC 127.0.0.1 "$OPORT" "$WORK/small" >"$WORK/scu2.log" 2>&1 &
p2=$!
wait $p1 && wait $p2 || { echo "storescu failed"; cat "$WORK"/scu*.log | head; exit 1; }
echo "  orthanc: $TOTAL instances by 2 storescu in $(secs "$t0" "$(date +%s.%N)")s; it holds $(orthanc_count)"
[[ $(orthanc_count) == "$TOTAL" ]] || { echo "orthanc holds $(orthanc_count) of $TOTAL"; exit 1; }
start_strata "$SD"
strata_token "$SD"
TOKEN=$STOKEN
echo "  strata holds $(strata_count "$SD")"
sync

# ---- 1-3: read side ---------------------------------------------------------------------------
echo
kinds=(floor qido-uid qido-name rs-floor rs-qido-uid rs-qido-name)
[[ $QIDO_ONLY == 1 ]] || kinds+=(wado metadata)
echo "== 1-3. QIDO ($QUERIES per kind; Rust client $RS_QUERIES), WADO-RS study ($WADO_RUNS runs), metadata ($META_RUNS runs); $REPS rounds; kinds: ${kinds[*]} =="
# The Rust client's request targets: the same queries as the Python client's, same encoding.
sed 's|^|/studies?StudyInstanceUID=|' "$WORK/uids.txt" >"$WORK/uid-targets.txt"
load
declare -A V  # V[who,key] = space-separated values over rounds
note() { V[$1,$2]+="$3 "; }
field() { sed -E "s/.*[ ]$1=([^ ]+).*/\1/" <<<"$2"; }
for r in $(seq "$REPS"); do
    order=(strata orthanc); (( r % 2 == 0 )) && order=(orthanc strata)
    for who in "${order[@]}"; do
        if [[ $who == strata ]]; then
            args=(--base "$SBASE" --token "$TOKEN" --floor-url "http://127.0.0.1:$SHTTP/healthz")
            pid=$SPID; accept=$ACCEPT
            rs=(--addr "127.0.0.1:$SHTTP" --header "Authorization: Bearer $TOKEN"); root=/dicomweb; floor=/healthz
        else
            args=(--base "$OBASE" --floor-url "http://127.0.0.1:$OHTTP/system"); pid=$OPID; accept=$ORTHANC_ACCEPT
            rs=(--addr "127.0.0.1:$OHTTP"); root=/dicom-web; floor=/system
        fi
        rs+=(--label "$who" --n "$RS_QUERIES" --warmup "$RS_WARMUP")
        for kind in "${kinds[@]}"; do
            c0=$(cpu_of "$pid")
            case $kind in
                rs-floor) out=$("$RSCLIENT" "${rs[@]}" --kind "$kind" "$floor");;
                rs-qido-uid) out=$("$RSCLIENT" "${rs[@]}" --kind "$kind" --json \
                    --header "Accept: application/dicom+json" $(sed "s|^|$root|" "$WORK/uid-targets.txt"));;
                rs-qido-name) out=$("$RSCLIENT" "${rs[@]}" --kind "$kind" --json \
                    --header "Accept: application/dicom+json" "$root/studies?PatientName=$NAME_QUERY");;
                *) out=$("$PY" "$CLIENT" "${args[@]}" --label "$who" --kinds "$kind" --n "$QUERIES" \
                    --uids "$WORK/uids.txt" --name "$NAME_QUERY" --study "$CT_UID" --accept "$accept" \
                    --runs "$([[ $kind == wado ]] && echo "$WADO_RUNS" || echo "$META_RUNS")");;
            esac
            c1=$(cpu_of "$pid")
            case $kind in
                floor|qido-*) nreq=$(( QUERIES + 10 ));; wado) nreq=$(( WADO_RUNS + 1 ));; metadata) nreq=$(( META_RUNS + 3 ));;
                rs-*) nreq=$(( RS_QUERIES + RS_WARMUP ));;
            esac
            cpu_ms=$(python3 -c "print(f'{1000*($c1-$c0)/$nreq:.2f}')")
            sed "s/^/  round $r /; s/\$/ server_cpu_ms_per_req=$cpu_ms/" <<<"$out" | sed '/wado-info/s/ server_cpu.*//'
            line=$(grep -v wado-info <<<"$out")
            note "$who" "$kind.cpu" "$cpu_ms"
            if [[ $kind == wado ]]; then
                note "$who" wado.mbps "$(field MBps_median "$line")"
                V[$who,wado.info]=$(grep wado-info <<<"$out" | sed 's/.*wado-info: //')
                V[$who,wado.bytes]=$(field bytes "$line")
            else
                for q in p50 p90 p99; do note "$who" "$kind.$q" "$(field $q "$line")"; done
                if [[ $kind == metadata ]]; then
                    V[$who,meta.info]="$(field instances "$line") instances, $(field bytes "$line") bytes"
                elif [[ $kind == *qido-* ]]; then
                    V[$who,$kind.matches]=$(field matches "$line")
                fi
            fi
        done
    done
    load
done
stop_strata
stop_orthanc

# ---- 4: STOW-RS -------------------------------------------------------------------------------
if [[ $QIDO_ONLY != 1 ]]; then
echo
echo "== 4. STOW-RS of the CT study ($SLICES instances, batch ${STOW_BATCH/#0/all}), fresh archives, $STOW_REPS runs =="
load
for r in $(seq "$STOW_REPS"); do
    order=(strata orthanc); (( r % 2 == 0 )) && order=(orthanc strata)
    for who in "${order[@]}"; do
        d="$WORK/stow-$who-$r"
        if [[ $who == strata ]]; then
            start_strata "$d"; strata_token "$d"; sync; sleep 0.5
            c0=$(cpu_of "$SPID")
            out=$("$PY" "$CLIENT" --base "$SBASE" --token "$STOKEN" --label "$who" --kinds stow --stow-dir "$WORK/ct" --batch "$STOW_BATCH")
            c1=$(cpu_of "$SPID"); stop_strata; got=$(strata_count "$d")
        else
            start_orthanc "$d"; sync; sleep 0.5
            c0=$(cpu_of "$OPID")
            out=$("$PY" "$CLIENT" --base "$OBASE" --label "$who" --kinds stow --stow-dir "$WORK/ct" --batch "$STOW_BATCH")
            c1=$(cpu_of "$OPID"); got=$(orthanc_count); stop_orthanc
        fi
        [[ $got == "$SLICES" ]] || { echo "$who stored $got of $SLICES"; exit 1; }
        echo "  run $r $out server_cpu_s=$(python3 -c "print(f'{$c1-$c0:.2f}')")"
        note "$who" stow.rate "$(field rate "$out")"
        # kept until the script exits: see the note on deleting in benches/dimse_vs_orthanc.sh
    done
done
load
fi

# ---- summary ---------------------------------------------------------------------------------
med() { median ${V[$1,$2]}; }
echo
echo "== summary (medians over rounds) =="
if [[ $QIDO_ONLY != 1 ]]; then
echo "WADO-RS answers: strata ${V[strata,wado.info]} (${V[strata,wado.bytes]} bytes)"
echo "                 orthanc ${V[orthanc,wado.info]} (${V[orthanc,wado.bytes]} bytes)"
echo "metadata: strata ${V[strata,meta.info]}; orthanc ${V[orthanc,meta.info]}"
fi
printf '| %-44s | %-24s | %-24s | %-26s |\n' figure strata orthanc "target: verdict"
lat() { printf '%s/%s/%s ms' "$(med "$1" "$2.p50")" "$(med "$1" "$2.p90")" "$(med "$1" "$2.p99")"; }
for client in "" rs-; do
    tag="python"; [[ $client == rs- ]] && tag="rust"
    printf '| %-44s | %-24s | %-24s | %-26s |\n' "$tag floor: GET /healthz | /system" "$(lat strata ${client}floor)" "$(lat orthanc ${client}floor)" "(client + HTTP only)"
    for kind in qido-uid qido-name; do
        s=$(med strata "$client$kind.p50"); o=$(med orthanc "$client$kind.p50")
        label="$tag QIDO StudyInstanceUID=<one>"
        [[ $kind == qido-name ]] && label="$tag QIDO PatientName=$NAME_QUERY"
        printf '| %-44s | %-24s | %-24s | %-26s |\n' "$label" "$(lat strata $client$kind)" "$(lat orthanc $client$kind)" \
            "$(python3 -c "s,o=$s,$o; print(f'p50 <= o/5: {s/o:.3f}x', 'PASS' if s <= o/5 else 'FAIL')")"
    done
done
echo "  matches: uid strata ${V[strata,qido-uid.matches]} orthanc ${V[orthanc,qido-uid.matches]}; name strata ${V[strata,qido-name.matches]} orthanc ${V[orthanc,qido-name.matches]}"
echo "  matches (rust client): uid strata ${V[strata,rs-qido-uid.matches]} orthanc ${V[orthanc,rs-qido-uid.matches]}; name strata ${V[strata,rs-qido-name.matches]} orthanc ${V[orthanc,rs-qido-name.matches]}"
if [[ $QIDO_ONLY != 1 ]]; then
s=$(med strata wado.mbps); o=$(med orthanc wado.mbps)
printf '| %-44s | %-24s | %-24s | %-26s |\n' "WADO-RS study, $SLICES×512² CT (MB/s)" "$s" "$o" \
    "$(python3 -c "s,o=$s,$o; print(f'>= 2x: {s/o:.2f}x', 'PASS' if s >= 2*o else 'FAIL')")"
s=$(med strata metadata.p50); o=$(med orthanc metadata.p50)
printf '| %-44s | %-24s | %-24s | %-26s |\n' "WADO-RS study metadata (p50/p90/p99)" "$(lat strata metadata)" "$(lat orthanc metadata)" \
    "$(python3 -c "s,o=$s,$o; print(f'<= o/10, <10ms: {s/o:.3f}x', 'PASS' if s <= o/10 and s < 10 else 'FAIL')")"
s=$(med strata stow.rate); o=$(med orthanc stow.rate)
printf '| %-44s | %-24s | %-24s | %-26s |\n' "STOW-RS $SLICES×512² CT (instances/s)" "$s (${V[strata,stow.rate]% })" "$o (${V[orthanc,stow.rate]% })" \
    "$(python3 -c "s,o=$s,$o; print(f'>= 2x: {s/o:.2f}x', 'PASS' if s >= 2*o else 'FAIL')")"
fi
echo
echo "server CPU ms per request (per round): "
for who in strata orthanc; do
    echo "  $who: floor ${V[$who,floor.cpu]}| qido-uid ${V[$who,qido-uid.cpu]}| qido-name ${V[$who,qido-name.cpu]}| wado ${V[$who,wado.cpu]:-}| metadata ${V[$who,metadata.cpu]:-}"
    echo "  $who (rust client): floor ${V[$who,rs-floor.cpu]}| qido-uid ${V[$who,rs-qido-uid.cpu]}| qido-name ${V[$who,rs-qido-name.cpu]}"
done
