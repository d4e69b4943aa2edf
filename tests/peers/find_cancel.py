"""C-FIND with C-CANCEL, as a pynetdicom SCU.

Usage: find_cancel.py HOST PORT CANCEL_AFTER [LEVEL]

Sends a Study Root C-FIND for every study (or, with LEVEL IMAGE, every instance), then a C-CANCEL
for it: right after the request when
CANCEL_AFTER is 0, otherwise after that many pending responses. Prints one JSON line:
{"pending": <pending responses received>, "final": <final status>}.
"""

import json
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

host, port, cancel_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
level = sys.argv[4] if len(sys.argv) > 4 else "STUDY"

ae = AE(ae_title="CANCELSCU")
ae.acse_timeout = 10
ae.dimse_timeout = 10
ae.network_timeout = 10
ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
assoc = ae.associate(host, port, ae_title="STRATA")
if not assoc.is_established:
    print("association failed", file=sys.stderr)
    sys.exit(2)

query = Dataset()
query.QueryRetrieveLevel = level
query.StudyInstanceUID = ""
query.PatientName = ""
if level == "IMAGE":
    query.SOPInstanceUID = ""

MSG_ID = 7
responses = assoc.send_c_find(
    query, StudyRootQueryRetrieveInformationModelFind, msg_id=MSG_ID
)
if cancel_after == 0:
    assoc.send_c_cancel(MSG_ID, query_model=StudyRootQueryRetrieveInformationModelFind)
pending = 0
final = None
for status, identifier in responses:
    if "Status" not in status:
        print("no valid response (timeout or abort)", file=sys.stderr)
        sys.exit(3)
    if status.Status in (0xFF00, 0xFF01):
        pending += 1
        if pending == cancel_after:
            assoc.send_c_cancel(
                MSG_ID, query_model=StudyRootQueryRetrieveInformationModelFind
            )
    else:
        final = status.Status
assoc.release()
print(json.dumps({"pending": pending, "final": final}))
