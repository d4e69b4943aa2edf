#!/usr/bin/env bash
# Benchmark: what a cluster costs per unit of work. One node alone against three nodes behind
# HAProxy (examples/cluster/haproxy.cfg), both on one PostgreSQL index and three Garage replicas
# (write quorum 2), the same work sent to each: instances stored by storescu (three associations
# at once), QIDO-RS searches (one keep-alive client, examples/http_latency.rs), and frames of the
# viewer's stream (examples/stream_bench.rs, three viewing sessions one after the other). The
# figure is the CPU (user + system, /proc/PID/stat) of every strata process over the work, per
# instance, per query and per frame: a machine of 2 cores cannot show scaling by wall time, but
# what a node spends per unit of work says how many units each core carries. Target: three
# nodes spend at most 10 % more per unit than one. Then the latency the proxy adds to a QIDO
# (p50 and p99, the same node directly and through HAProxy, alternating).
#
#   bash benches/cluster_cpu.sh
#
# The nodes' CPU while idle (IDLE seconds before the work) is measured too, and each figure
# given again without it: what the work itself costs, apart from the cluster's upkeep.
#
# Knobs: INSTANCES=600 (stored, 128×128 CT in studies of 20), QUERIES=2000, SLICES=120 (the
# streamed series, 512×512), ROUNDS=3 (latency rounds), IDLE=10, REPS=1 (1-node/3-node pairs,
# the order alternating), BENCH_DIR, KEEP=1, SKIP_BUILD=1, CARGO_TARGET_DIR, GARAGE_BIN.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/garage_lib.sh"

INSTANCES="${INSTANCES:-600}"
QUERIES="${QUERIES:-2000}"
SLICES="${SLICES:-120}"
ROUNDS="${ROUNDS:-3}"
IDLE="${IDLE:-10}"
REPS="${REPS:-1}"

build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --quiet --example http_latency --example stream_bench)
fi
LATENCY="$TARGET_DIR/release/examples/http_latency"
STREAM="$TARGET_DIR/release/examples/stream_bench"
need_garage
command -v haproxy >/dev/null || { echo "missing haproxy (apt-get install haproxy)" >&2; exit 1; }
command -v storescu >/dev/null || { echo "missing storescu (apt-get install dcmtk)" >&2; exit 1; }
machine
make_workdir
load

NODE_PIDS=() PROXY_PID=""
stop_cluster() {
    stop_all "${NODE_PIDS[@]}" $PROXY_PID
    NODE_PIDS=() PROXY_PID=""
}
trap 'stop_cluster; stop_garages; stop_pg; cleanup' EXIT

start_pg "$WORK/pg"
urls=()
for p in A B C; do
    start_garage "$WORK/garage-$p" "GARAGE_${p}_"
    urls+=("\"$GARAGE_URL\"")
done
STRATA_MASTER_KEY="$(openssl rand -hex 32)"
export STRATA_MASTER_KEY

# the stored set: studies of 20 slices of 128×128, split into three folders (one association
# each); the streamed series: one CT of SLICES slices of 512×512, imported before measuring
studies=$(( (INSTANCES + 19) / 20 ))
"$GEN" --out "$WORK/store" --seed 11 --patients "$studies" --studies "$studies" --series 1 \
    --slices 20 --rows 128 --cols 128 --modality ct --no-noise | sed 's/^/# gen: /'
mapfile -t stored < <(find "$WORK/store" -name '*.dcm' | sort | head -n "$INSTANCES")
INSTANCES=${#stored[@]}
for k in 0 1 2; do mkdir -p "$WORK/part$k"; done
for i in "${!stored[@]}"; do ln "${stored[$i]}" "$WORK/part$((i % 3))/$i.dcm"; done
"$GEN" --out "$WORK/series" --seed 6 --patients 1 --studies 1 --series 1 --slices "$SLICES" \
    --rows 512 --cols 512 --modality ct --no-noise | sed 's/^/# gen: /'
FIRST="$(find "$WORK/series" -name '*.dcm' -print -quit)"
read -r STUDY SERIES < <(study_series_uids "$FIRST")
echo "# $INSTANCES instances to store ($(du -sb "$WORK/store" | cut -f1) bytes); a series of $SLICES × 512×512 to stream"

# start_cluster N RUN: N nodes (fresh data folders, a new database), and HAProxy in front when
# N is 3. Sets HTTP (where clients send HTTP), DIMSE, NODE1_HTTP, TOKEN.
start_cluster() {
    local n=$1 run=$2 index i data proxy_http
    index=$(pg_createdb "strata_$run")
    proxy_http=$(free_port)
    local -a http dimse
    for i in $(seq "$n"); do
        http[i]=$(free_port); dimse[i]=$(free_port)
        data="$WORK/$run/node$i"
        mkdir -p "$data"
        cat >"$data/strata.toml" <<EOF
[http]
public_url = "http://127.0.0.1:$proxy_http"
trusted_proxies = ["127.0.0.1"]
[index]
url = "$index"
[store]
replicas = [$(IFS=,; echo "${urls[*]}")]
write_quorum = 2
[scrub]
blobs_per_second = 0
[node]
id = "node$i"
EOF
        "$STRATA" --data "$data" serve --http "127.0.0.1:${http[i]}" --dimse "127.0.0.1:${dimse[i]}" \
            >"$data.log" 2>&1 &
        NODE_PIDS+=($!)
        # the first start makes the schema and the admin; the others find them
        wait_for 60 curl -sf "http://127.0.0.1:${http[i]}/readyz" \
            || { echo "node$i did not get ready:"; cat "$data.log"; exit 1; }
    done
    NODE1_HTTP=${http[1]}
    if ((n == 1)); then
        HTTP=${http[1]} DIMSE=${dimse[1]}
    else
        export CLUSTER_PROXY_HTTP_PORT=$proxy_http CLUSTER_PROXY_DIMSE_PORT=$(free_port) \
            CLUSTER_PROXY_STATS_PORT=$(free_port)
        for i in 1 2 3; do
            export "CLUSTER_NODE${i}_HTTP_PORT=${http[i]}" "CLUSTER_NODE${i}_DIMSE_PORT=${dimse[i]}"
        done
        haproxy -db -f "$REPO_ROOT/examples/cluster/haproxy.cfg" >"$WORK/$run/haproxy.log" 2>&1 &
        PROXY_PID=$!
        HTTP=$proxy_http DIMSE=$CLUSTER_PROXY_DIMSE_PORT
        # every node up at the proxy, on both backends
        wait_for 30 sh -c "test \$(curl -sf 'http://127.0.0.1:$CLUSTER_PROXY_STATS_PORT/stats;csv' | grep -c '^nodes_[a-z]*,node[123],.*,UP') = 6" \
            || { echo "the proxy does not see three nodes up:"; cat "$WORK/$run/haproxy.log"; exit 1; }
    fi
    TOKEN=$("$STRATA" --data "$WORK/$run/node1" token create --user admin 2>/dev/null | grep -m1 '^stk_')
    "$STRATA" --data "$WORK/$run/node1" import "$WORK/series" >/dev/null
}

# commits PostgreSQL counted so far in the database of RUN (its statistics lag up to 1 s)
commits() {
    as_pg_owner "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U strata -d "strata_$1" -tAc \
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
}

# CPU seconds (user + system) of every node so far, summed.
nodes_cpu() {
    local p t=0
    for p in "${NODE_PIDS[@]}"; do t=$(python3 -c "print($t + $(cpu_of "$p"))"); done
    echo "$t"
}

# per WHAT UNITS C0 C1: milliseconds of node CPU per unit.
per() { python3 -c "print(f'{($4 - $3) * 1000 / $2:.3f}')" "$@"; }

# measure N RUN: the three kinds of work on a cluster of N; prints its lines "N kind ms/unit".
measure() {
    local n=$1 run=$2 c0 c1 g0 g1 k pids=() frames=0 out
    start_cluster "$n" "$run"
    sleep 2
    # what the nodes spend doing nothing (heartbeats, leases, the proxy's health checks), per
    # second: the part of each figure below that is not the work itself
    c0=$(nodes_cpu); sleep "$IDLE"; c1=$(nodes_cpu)
    echo "$n idle $(python3 -c "print(f'{($c1 - $c0) * 1000 / $IDLE:.2f}')") (ms of CPU a second, all nodes)"
    local x0 x1 t0 t1
    x0=$(commits "$run")
    t0=$(date +%s.%N)
    c0=$(nodes_cpu); g0=$(garage_cpu)
    for k in 0 1 2; do
        storescu +sd +r -aet BENCH -aec STRATA 127.0.0.1 "$DIMSE" "$WORK/part$k" >"$WORK/$run/scu$k.log" 2>&1 &
        pids+=($!)
    done
    for k in 0 1 2; do
        wait "${pids[$k]}" || { echo "storescu failed:"; tail "$WORK/$run/scu$k.log"; exit 1; }
    done
    c1=$(nodes_cpu); g1=$(garage_cpu); t1=$(date +%s.%N)
    echo "$n store-seconds $(secs "$t0" "$t1")"
    sleep 1.5
    x1=$(commits "$run")
    local found
    found=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP/dicomweb/studies?limit=100000" \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [[ $found == $((studies + 1)) ]] || { echo "stored $found studies, not $((studies + 1))"; exit 1; }
    echo "$n store $(per x "$INSTANCES" "$c0" "$c1") (garage $(per x "$INSTANCES" "$g0" "$g1") ms;" \
        "PostgreSQL commits $(python3 -c "print(f'{($x1 - $x0) / $INSTANCES:.2f}')") an instance)"

    c0=$(nodes_cpu); t0=$(date +%s.%N)
    out=$("$LATENCY" --addr "127.0.0.1:$HTTP" --label "$n" --kind qido --json --warmup 0 --n "$QUERIES" \
        --header "Authorization: Bearer $TOKEN" "/dicomweb/studies?limit=20" \
        "/dicomweb/studies?StudyInstanceUID=$STUDY" "/dicomweb/studies/$STUDY/series")
    c1=$(nodes_cpu); t1=$(date +%s.%N)
    echo "# $out"
    echo "$n qido $(per x "$QUERIES" "$c0" "$c1")"
    echo "$n qido-seconds $(secs "$t0" "$t1")"

    c0=$(nodes_cpu); t0=$(date +%s.%N)
    for k in 1 2 3; do
        out=$("$STREAM" client "127.0.0.1:$HTTP" "$TOKEN" "$STUDY" "$SERIES")
        frames=$((frames + 300 + $(awk '/^scroll_frames/{print $2}' <<<"$out")))
    done
    c1=$(nodes_cpu); t1=$(date +%s.%N)
    echo "$n frame $(per x "$frames" "$c0" "$c1") ($frames frames)"
    echo "$n frame-seconds $(secs "$t0" "$t1")"
    echo "$n frame-units $frames"

    if ((n == 3)); then
        # the proxy's added latency: node1 directly, then through the proxy, ROUNDS times
        local r
        for r in $(seq "$ROUNDS"); do
            for via in direct proxy; do
                local port=$HTTP
                [[ $via == direct ]] && port=$NODE1_HTTP
                out=$("$LATENCY" --addr "127.0.0.1:$port" --label "$via" --kind qido --json \
                    --warmup 100 --n 1000 --header "Authorization: Bearer $TOKEN" \
                    "/dicomweb/studies?StudyInstanceUID=$STUDY")
                echo "latency $out"
            done
        done
    fi
    stop_cluster
}

results="$WORK/results.txt"
for r in $(seq "$REPS"); do
    order="1 3"; ((r % 2 == 0)) && order="3 1"
    for n in $order; do
        echo "== run $r: $n node(s) =="
        measure "$n" "r${r}n$n" | tee -a "$results"
        load
    done
done

echo
echo "== node CPU per unit of work (ms), median of $REPS =="
python3 - "$results" "$INSTANCES" "$QUERIES" <<'EOF'
import re, statistics, sys
per = {}
lat = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 3 and f[0] in ("1", "3") and f[1] in ("store", "qido", "frame"):
        per.setdefault((f[1], f[0]), []).append(float(f[2]))
    elif len(f) >= 3 and f[0] in ("1", "3") and f[1] in ("idle", "store-seconds", "qido-seconds", "frame-seconds", "frame-units"):
        per.setdefault((f[1], f[0]), []).append(float(f[2]))
    elif line.startswith("latency "):
        via = f[1]
        for k in ("p50", "p99"):
            lat.setdefault((via, k), []).append(float(re.search(k + r"=([0-9.]+)", line).group(1)))
units = {"store": float(sys.argv[2]), "qido": float(sys.argv[3])}
m = lambda k, n: statistics.median(per[(k, n)])
for kind in ("store", "qido", "frame"):
    one, three = m(kind, "1"), m(kind, "3")
    # the same without the idle upkeep over the phase's wall time
    net = {}
    for n in ("1", "3"):
        count = units.get(kind) or m("frame-units", n)
        net[n] = m(kind, n) - m("idle", n) * m(kind + "-seconds", n) / count
    print(f"{kind:6} 1 node {one:8.3f}  3 nodes {three:8.3f}  growth {100 * (three / one - 1):+6.1f} %"
          f"   | less the idle upkeep: {net['1']:8.3f}  {net['3']:8.3f}  growth {100 * (net['3'] / net['1'] - 1):+6.1f} %")
print(f"idle upkeep (ms of CPU a second, all nodes): 1 node {m('idle', '1'):.2f}, 3 nodes {m('idle', '3'):.2f}")
for k in ("p50", "p99"):
    d = statistics.median(lat[("direct", k)])
    p = statistics.median(lat[("proxy", k)])
    print(f"QIDO {k}: direct {d:.3f} ms, through HAProxy {p:.3f} ms, added {p - d:+.3f} ms")
EOF
