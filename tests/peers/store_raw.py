"""A peer that sends Part-10 files by C-STORE exactly as they are encoded: the data set's bytes go
out undecoded (pynetdicom's chunked sending), so elements a toolkit would re-encode (VR UN of a
known tag, for one) reach the archive as written. Usage: store_raw.py HOST PORT FILE...
Prints `status 0xNNNN` per file; exits 1 when the association fails."""
import sys
from pydicom import dcmread
from pynetdicom import AE, _config

_config.STORE_SEND_CHUNKED_DATASET = True
host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ae = AE(ae_title="RAWSCU")
for f in files:
    meta = dcmread(f, stop_before_pixels=True).file_meta
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
assoc = ae.associate(host, port, ae_title="STRATA")
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(1)
for f in files:
    status = assoc.send_c_store(f)
    print("status", f"0x{status.Status:04X}" if status else "none", flush=True)
assoc.release()
