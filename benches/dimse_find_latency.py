#!/usr/bin/env python3
"""C-FIND (and C-ECHO) latency over ONE association, so process start-up and association
set-up are not in the figures. Used by benches/dimse_vs_orthanc.sh against Strata and Orthanc.

Per kind of request it sends --warmup untimed requests, then --n timed ones, one after the
other (each waits for the final response), and prints one line:

  <label> <kind>: n=<n> p50=<ms> p90=<ms> p99=<ms> mean=<ms> min=<ms> max=<ms> matches=<per query>

Kinds:
  echo  C-ECHO: the floor (client library + DIMSE round trip, no index work).
  uid   study-level C-FIND, Study Root, StudyInstanceUID = one study (cycling through --uids).
  name  study-level C-FIND, Study Root, PatientName = --name (a wildcard).

The client is pynetdicom. Its reactor thread sleeps `_run_loop_delay` (1 ms by default) when
idle, which adds up to ~1 ms to every round trip; --loop-delay sets it (default 0.0001 s). The
echo line shows what the client and protocol cost on their own.
"""
import argparse
import socket
import statistics
import sys
import threading
import time

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--aec", required=True, help="called AE title")
p.add_argument("--aet", default="BENCH", help="calling AE title")
p.add_argument("--label", default="")
p.add_argument("--n", type=int, default=500)
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--uids", help="file with one StudyInstanceUID per line")
p.add_argument("--name", default="Smith^Ja*")
p.add_argument("--kinds", default="echo,uid,name")
p.add_argument("--loop-delay", type=float, default=0.0001)
a = p.parse_args()

RETURN_KEYS = [
    ("PatientName", ""),
    ("PatientID", ""),
    ("PatientBirthDate", ""),
    ("PatientSex", ""),
    ("StudyDate", ""),
    ("StudyTime", ""),
    ("AccessionNumber", ""),
    ("StudyID", ""),
    ("StudyDescription", ""),
    ("ReferringPhysicianName", ""),
]


def study_query(**match):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    for k, v in RETURN_KEYS:
        setattr(ds, k, v)
    for k, v in match.items():
        setattr(ds, k, v)
    return ds


import os
if os.environ.get("PYNETDICOM_DEBUG"):
    from pynetdicom import debug_logger
    debug_logger()
ae = AE(ae_title=a.aet)
ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
ae.add_requested_context(Verification)
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
assoc = ae.associate(a.host, a.port, ae_title=a.aec)
if not assoc.is_established:
    sys.exit(f"{a.label}: association with {a.aec} at {a.host}:{a.port} failed")
assoc.dul._run_loop_delay = a.loop_delay
# pynetdicom leaves Nagle on: a request sent as two PDUs (command, then identifier) would wait
# for the peer's delayed ACK (40 ms on Linux). Both archives get the same client.
assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# pynetdicom's requestor runs a reactor thread that each send_c_*() pauses and resumes through
# an Event and an `_is_paused` flag; back-to-back requests race with it (the flag is stale
# for a moment after resume) and the reactor then steals a response ("Received unexpected
# C-ECHO service message", association aborted). As a client that only sends requests we
# park the reactor for good: it waits on an Event nobody sets until the end.
class _Inert(threading.Event):
    def set(self):
        pass

    def clear(self):
        pass


_parked = assoc._reactor_checkpoint
_parked.clear()
while not assoc._is_paused:
    time.sleep(0.0001)
time.sleep(0.01)  # the flag may be stale: let the reactor reach its wait()
assoc._reactor_checkpoint = _Inert()


msg_ids = iter(range(1, 1 << 30))


def next_id():
    return next(msg_ids) % 65535 + 1


def echo(_i):
    st = assoc.send_c_echo(msg_id=next_id())
    if not st or st.Status != 0:
        raise SystemExit(f"{a.label}: C-ECHO failed: {st}")
    return 0


def find(ds):
    matches = 0
    for st, ident in assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind, msg_id=next_id()):
        if not st:
            raise SystemExit(f"{a.label}: C-FIND: no response (timeout or abort)")
        if st.Status in (0xFF00, 0xFF01):
            matches += 1
        elif st.Status != 0:
            raise SystemExit(f"{a.label}: C-FIND failed with status 0x{st.Status:04X}")
    return matches


uids = []
if a.uids:
    with open(a.uids) as f:
        uids = [line.strip() for line in f if line.strip()]

kinds = {
    "echo": echo,
    "uid": lambda i: find(study_query(StudyInstanceUID=uids[i % len(uids)])),
    "name": lambda i: find(study_query(PatientName=a.name)),
}

try:
    for kind in a.kinds.split(","):
        fn = kinds[kind]
        for i in range(a.warmup):
            fn(i)
        lat, counts = [], []
        for i in range(a.n):
            t0 = time.perf_counter()
            counts.append(fn(i + a.warmup))
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
        print(
            f"{a.label} {kind}: n={len(lat)} p50={statistics.median(lat):.2f} "
            f"p90={q(0.90):.2f} p99={q(0.99):.2f} mean={statistics.mean(lat):.2f} "
            f"min={lat[0]:.2f} max={lat[-1]:.2f} "
            f"matches={min(counts)}..{max(counts)}",
            flush=True,
        )
finally:
    assoc.release()
    _parked.set()
