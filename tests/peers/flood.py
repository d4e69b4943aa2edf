"""A peer that floods an association: after negotiating Verification it sends P-DATA-TF PDUs whose
command fragments never end (`command`), until TOTAL bytes are sent or the server drops the
connection. Usage: flood.py HOST PORT command TOTAL. Prints `sent N` when everything went out,
`dropped after N` when the server closed or aborted the association first."""
import socket, struct, sys, time
from pynetdicom import AE

host, port, mode, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
assert mode == "command", mode
ae = AE(ae_title="FLOOD")
ae.add_requested_context("1.2.840.10008.1.1")
assoc = ae.associate(host, port, ae_title="STRATA")
assert assoc.is_established, "association failed"
sock = assoc.dul.socket.socket
ctx = assoc.accepted_contexts[0].context_id
chunk = b"\0" * 16384
# a PDV item: length, context id, control header (bit 0: command; bit 1 clear: not the last)
pdv = struct.pack(">IBB", len(chunk) + 2, ctx, 0x01) + chunk
pdu = struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv
sent = 0
try:
    while sent < total:
        sock.sendall(pdu)
        sent += len(chunk)
    print("sent", sent, flush=True)
except OSError:
    print("dropped after", sent, flush=True)
time.sleep(0.5)
assoc.abort()
