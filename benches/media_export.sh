#!/usr/bin/env bash
# Benchmark: media export (a ZIP of PS3.10 media: the instances as stored, DICOMDIR, INDEX.HTM
# with a picture per series) of one 512x512 16-bit CT series, three local replicas, encryption
# on. Targets: >= 150 MB/s for 300 instances (~158 MB); resident memory under 100 MB above idle
# for a 2 GiB study.
#
#   bash benches/media_export.sh
#
# Knobs (environment): SLICES=300, REPS=3 (runs per way; the median is reported), BIG_SLICES=0
# (also a study of that many slices, ~0.5 MB each: 4100 makes ~2 GiB; needs ~4x its size on
# disk), BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR, USE_BIN and USE_GEN (other
# binaries than the release build's: a test build, whose dependencies are optimised, gives a
# lower bound).
#
# Three ways are timed: `strata export --study UID --out FILE` (the CLI: opens the archive,
# writes the ZIP to a file; peak RSS from GNU time), `strata serve` answering a WADO-RS
# retrieve with `Accept: application/zip` to curl (into /dev/null; the server's resident memory
# is read before the request, its peak after: VmHWM is reset through /proc/PID/clear_refs), and
# the same ZIP encrypted under an access letter's passcode (OpenPGP), downloaded with the
# letter's code (`POST /api/letter/download`) to curl; the last run's file is decrypted by gpg
# and checked to be a ZIP.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLICES="${SLICES:-300}"
REPS="${REPS:-3}"
BIG_SLICES="${BIG_SLICES:-0}"
STRATA="${USE_BIN:-$STRATA}"
GEN="${USE_GEN:-$GEN}"

build
need_gnu_time
machine
make_workdir

# study SLICES DIR: generates and imports one CT series into data dir DIR; prints the study UID
study() {
    local n=$1 d=$2
    "$GEN" --out "$WORK/in-$n" --patients 1 --studies 1 --series 1 --slices "$n" \
        --rows 512 --cols 512 --modality ct >/dev/null
    "$STRATA" --data "$d" import "$WORK/in-$n" -j 2 >/dev/null
    rm -rf "$WORK/in-$n"
    "$STRATA" --data "$d" studies | awk 'NR==2 {print $NF}'
}

# cli DIR UID: the CLI export, REPS times
cli() {
    local d=$1 uid=$2 rates=() line=""
    for r in $(seq "$REPS"); do
        sync
        local t0 t1
        t0=$(date +%s.%N)
        /usr/bin/time -f "%e %M" -o "$WORK/time" \
            "$STRATA" --data "$d" export --study "$uid" --out "$WORK/out.zip" >/dev/null
        t1=$(date +%s.%N)
        local bytes wall
        bytes=$(stat -c %s "$WORK/out.zip")
        wall=$(secs "$t0" "$t1")
        rates+=("$(rate "$bytes/1e6" "$wall")")
        line="$bytes B in $wall s, peak RSS $(awk '{print int($2/1024)}' "$WORK/time") MiB"
        rm -f "$WORK/out.zip"
    done
    echo "  cli: runs ${rates[*]} MB/s, median $(median "${rates[@]}") MB/s (last: $line)"
}

# http DIR UID: the server's answer to a WADO-RS retrieve as a ZIP, REPS times
http() {
    local d=$1 uid=$2 rates=()
    local port
    port=$(free_port)
    echo "bench password 123" | "$STRATA" --data "$d" user add bench --role integrator >/dev/null
    local token
    token=$("$STRATA" --data "$d" token create --user bench | tail -1)
    "$STRATA" --data "$d" serve --http "127.0.0.1:$port" --dimse "127.0.0.1:$(free_port)" \
        >"$WORK/serve.log" 2>&1 &
    SPID=$!
    wait_for 30 curl -sf "http://127.0.0.1:$port/healthz"
    sleep 1
    for r in $(seq "$REPS"); do
        echo 5 >"/proc/$SPID/clear_refs" 2>/dev/null || true # resets VmHWM
        local idle
        idle=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$SPID/status")
        local out
        out=$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
            -H "Authorization: Bearer $token" -H "Accept: application/zip" \
            "http://127.0.0.1:$port/dicomweb/studies/$uid")
        local peak
        peak=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$SPID/status")
        read -r code bytes wall <<<"$out"
        [[ $code == 200 ]] || { echo "HTTP $code"; cat "$WORK/serve.log"; exit 1; }
        rates+=("$(rate "$bytes/1e6" "$wall")")
        echo "    run $r: $bytes B in $wall s; server RSS idle $idle MiB, peak $peak MiB (+$((peak - idle)) MiB)"
    done
    echo "  http: runs ${rates[*]} MB/s, median $(median "${rates[@]}") MB/s"
    letter "$d" "$port" "$token" "$uid"
    stop_all "$SPID"
    SPID=""
}

# letter DIR PORT TOKEN UID: the study's person gets a patient account (which confirms its
# patient IDs) and an access letter; its download, encrypted, REPS times
letter() {
    local d=$1 port=$2 token=$3 uid=$4 rates=()
    local api="http://127.0.0.1:$port/api"
    local person
    person=$(curl -sf -H "Authorization: Bearer $token" "$api/persons?study=$uid" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    echo "bench password 123" | "$STRATA" --data "$d" user add benchp --role patient \
        --person "$person" >/dev/null
    local issued code passcode
    issued=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"person\": \"$person\"}" "$api/letters")
    code=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$issued")
    passcode=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["passcode"])' "$issued")
    for r in $(seq "$REPS"); do
        local out
        out=$(curl -s -o "$WORK/copy.zip.gpg" -w '%{http_code} %{size_download} %{time_total}' \
            --data-urlencode "code=$code" --data-urlencode "passcode=$passcode" \
            "$api/letter/download")
        read -r code_ bytes wall <<<"$out"
        [[ $code_ == 200 ]] || { echo "HTTP $code_"; cat "$WORK/copy.zip.gpg"; exit 1; }
        rates+=("$(rate "$bytes/1e6" "$wall")")
        echo "    run $r: $bytes B in $wall s"
    done
    mkdir -p -m 700 "$WORK/gnupg"
    GNUPGHOME="$WORK/gnupg" gpg --batch --pinentry-mode loopback --passphrase "$passcode" \
        --output "$WORK/copy.zip" --decrypt "$WORK/copy.zip.gpg" 2>/dev/null
    unzip -tq "$WORK/copy.zip" >/dev/null || { echo "the decrypted copy is not a ZIP"; exit 1; }
    rm -f "$WORK/copy.zip" "$WORK/copy.zip.gpg"
    echo "  letter (OpenPGP): runs ${rates[*]} MB/s, median $(median "${rates[@]}") MB/s"
}

for n in "$SLICES" $([[ $BIG_SLICES -gt 0 ]] && echo "$BIG_SLICES"); do
    d="$WORK/data-$n"
    uid=$(study "$n" "$d")
    echo
    echo "== media export of one CT series of $n slices (512x512x16 bit), study $uid =="
    cli "$d" "$uid"
    http "$d" "$uid"
    rm -rf "$d"
done
