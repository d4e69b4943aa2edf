"""Holds one association open, as a pynetdicom SCU.

Usage: hold.py HOST PORT

Associates (Verification), prints "associated" (or "rejected") and flushes, then keeps the
association until its standard input is closed, sends one C-ECHO to prove it still works, and
releases. Exit status 0 only if everything succeeded.
"""

import sys

from pynetdicom import AE
from pynetdicom.sop_class import Verification

host, port = sys.argv[1], int(sys.argv[2])

ae = AE(ae_title="HOLDSCU")
ae.acse_timeout = 10
ae.dimse_timeout = 10
ae.network_timeout = 60
ae.add_requested_context(Verification)
assoc = ae.associate(host, port, ae_title="STRATA")
if not assoc.is_established:
    print("rejected", flush=True)
    sys.exit(2)
print("associated", flush=True)
sys.stdin.read()
status = assoc.send_c_echo()
ok = "Status" in status and status.Status == 0
assoc.release()
print("echo ok" if ok else "echo failed", flush=True)
sys.exit(0 if ok else 1)
