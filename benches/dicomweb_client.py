#!/usr/bin/env python3
"""DICOMweb client timings for one server, used by benches/dicomweb_vs_orthanc.sh against
Strata and Orthanc. One `requests.Session` (one keep-alive connection), requests one after the
other. Prints one line per measurement, `<label> <kind>: key=value ...`.

Kinds (--kinds, comma separated):
  floor      GET --floor-url (a trivial answer: Strata /healthz, Orthanc /system): what the
             client, HTTP and the server's HTTP stack cost without any DICOM work.
  qido-uid   GET {base}/studies?StudyInstanceUID=<uid>, cycling through --uids.
  qido-name  GET {base}/studies?PatientName=<--name>.
  wado       GET {base}/studies/<--study> with Accept --accept (multipart/related): bytes
             received (the whole body, read in 1 MiB chunks) / wall time, --runs runs.
  metadata   GET {base}/studies/<--study>/metadata (with --series: .../series/<--series>/metadata),
             --runs timed runs; with --expect-instances, the answer must hold that many.
  stow       POST {base}/studies, the .dcm files under --stow-dir as multipart/related bodies
             of --batch instances each (built in memory before timing): instances/s.

Latencies are wall times from sending the request to the last byte of the answer, after
--warmup untimed requests. Every answer's status is checked (and, for QIDO, the number of
results), so an error page is never timed as a fast answer.
"""
import argparse
import os
import statistics
import sys
import time

import urllib.parse

import requests

p = argparse.ArgumentParser()
p.add_argument("--base", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
p.add_argument("--token", default="", help="bearer token (Strata)")
p.add_argument("--label", default="")
p.add_argument("--kinds", default="qido-uid,qido-name,wado,metadata")
p.add_argument("--n", type=int, default=300, help="timed requests per QIDO kind")
p.add_argument("--runs", type=int, default=5, help="timed runs of wado / metadata")
p.add_argument("--warmup", type=int, default=10)
p.add_argument("--uids", help="file with one StudyInstanceUID per line")
p.add_argument("--name", default="")
p.add_argument("--study", default="")
p.add_argument("--series", default="", help="metadata of this series of --study, not the study's")
p.add_argument("--expect-instances", type=int, default=0)
p.add_argument("--accept", default='multipart/related; type="application/dicom"; transfer-syntax=*')
p.add_argument("--floor-url", default="")
p.add_argument("--stow-dir")
p.add_argument("--batch", type=int, default=0, help="instances per STOW request (0: all in one)")
a = p.parse_args()

s = requests.Session()
if a.token:
    s.headers["Authorization"] = f"Bearer {a.token}"
label = a.label + " " if a.label else ""


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def lat_line(kind, ms, extra=""):
    print(
        f"{label}{kind}: n={len(ms)} p50={pct(ms, 50):.2f} p90={pct(ms, 90):.2f} "
        f"p99={pct(ms, 99):.2f} mean={statistics.mean(ms):.2f} min={min(ms):.2f} "
        f"max={max(ms):.2f}{extra}",
        flush=True,
    )


def check(r, what):
    if r.status_code != 200:
        sys.exit(f"{label}{what}: HTTP {r.status_code}: {r.text[:300]}")


def qido(kind, params_of):
    ms, counts = [], set()
    for i in range(a.warmup + a.n):
        params = params_of(i)
        t0 = time.perf_counter()
        # The query string is written by hand, '*' and '^' left as they are: Orthanc 1.10 with
        # DICOMweb 1.7 does not percent-decode QIDO parameters ('Brown%2A' matches nothing).
        query = "&".join(f"{k}={urllib.parse.quote(v, safe='*^')}" for k, v in params.items())
        r = s.get(f"{a.base}/studies?{query}", headers={"Accept": "application/dicom+json"})
        body = r.content
        t1 = time.perf_counter()
        check(r, kind)
        n = len(r.json()) if body else 0
        counts.add(n)
        if i >= a.warmup:
            ms.append((t1 - t0) * 1000)
    lat_line(kind, ms, f" matches={'/'.join(map(str, sorted(counts)))}")


for kind in a.kinds.split(","):
    if kind == "floor":
        ms = []
        for i in range(a.warmup + a.n):
            t0 = time.perf_counter()
            r = s.get(a.floor_url)
            body = r.content
            t1 = time.perf_counter()
            check(r, kind)
            if i >= a.warmup:
                ms.append((t1 - t0) * 1000)
        lat_line(kind, ms, f" bytes={len(body)}")
    elif kind == "qido-uid":
        uids = [u.strip() for u in open(a.uids) if u.strip()]
        qido(kind, lambda i: {"StudyInstanceUID": uids[i % len(uids)]})
    elif kind == "qido-name":
        qido(kind, lambda i: {"PatientName": a.name})
    elif kind == "wado":
        rates, secs, ctype, size, parts = [], [], "", 0, 0
        for i in range(1 + a.runs):  # the first run is a warm-up
            t0 = time.perf_counter()
            r = s.get(f"{a.base}/studies/{a.study}", headers={"Accept": a.accept}, stream=True)
            check(r, kind)
            n, head = 0, b""
            for chunk in r.iter_content(1 << 20):
                if not head:
                    head = chunk[:4096]
                n += len(chunk)
            t1 = time.perf_counter()
            ctype = r.headers.get("Content-Type", "")
            size = n
            if i > 0:
                rates.append(n / (t1 - t0) / 1e6)
                secs.append(t1 - t0)
        # the transfer syntax of the first part, as the server labels it
        part_head = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").replace("\r\n", " | ")
        print(
            f"{label}wado: runs={a.runs} MBps_median={statistics.median(rates):.1f} "
            f"MBps={','.join(f'{x:.1f}' for x in rates)} secs={','.join(f'{x:.3f}' for x in secs)} "
            f"bytes={size}",
            flush=True,
        )
        print(f"{label}wado-info: content-type=[{ctype}] first-part=[{part_head[:300]}]", flush=True)
    elif kind == "metadata":
        ms, sizes, counts = [], set(), set()
        url = f"{a.base}/studies/{a.study}" + (f"/series/{a.series}" if a.series else "") + "/metadata"
        for i in range(min(a.warmup, 3) + a.runs):
            t0 = time.perf_counter()
            r = s.get(url, headers={"Accept": "application/dicom+json"})
            body = r.content
            t1 = time.perf_counter()
            check(r, kind)
            sizes.add(len(body))
            if i == 0:
                counts.add(len(r.json()))
                if a.expect_instances and len(r.json()) != a.expect_instances:
                    sys.exit(f"{label}metadata: {len(r.json())} instances, expected {a.expect_instances}")
            if i >= min(a.warmup, 3):
                ms.append((t1 - t0) * 1000)
        lat_line("metadata", ms, f" instances={'/'.join(map(str, counts))} bytes={'/'.join(map(str, sorted(sizes)))}")
    elif kind == "stow":
        files = sorted(
            os.path.join(d, f) for d, _, fs in os.walk(a.stow_dir) for f in fs if f.endswith(".dcm")
        )
        batch = a.batch or len(files)
        boundary = "strata-bench-boundary-0123456789"
        bodies = []
        for i in range(0, len(files), batch):
            chunks = []
            for f in files[i : i + batch]:
                with open(f, "rb") as fh:
                    data = fh.read()
                chunks.append(
                    f"--{boundary}\r\nContent-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                )
                chunks.append(data)
                chunks.append(b"\r\n")
            chunks.append(f"--{boundary}--\r\n".encode())
            bodies.append(b"".join(chunks))
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        total = sum(map(len, bodies))
        t0 = time.perf_counter()
        for body in bodies:
            r = s.post(
                f"{a.base}/studies",
                data=body,
                headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
            )
            check(r, "stow")
            ans = r.json()
            stored = len(ans.get("00081199", {}).get("Value", []))
            failed = len(ans.get("00081198", {}).get("Value", []))
            if failed or stored != body.count(b"Content-Type: application/dicom\r\n"):
                sys.exit(f"{label}stow: stored {stored}, failed {failed}")
        t1 = time.perf_counter()
        print(
            f"{label}stow: instances={len(files)} requests={len(bodies)} secs={t1 - t0:.3f} "
            f"rate={len(files) / (t1 - t0):.1f} MB={total / 1e6:.1f}",
            flush=True,
        )
    else:
        sys.exit(f"unknown kind {kind}")
