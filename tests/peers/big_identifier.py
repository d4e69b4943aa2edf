"""A C-FIND whose identifier is larger than any real one (SIZE bytes of a private OB value).
Usage: big_identifier.py HOST PORT SIZE. Prints one JSON line: the final status and its Error
Comment."""
import json, sys
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ae = AE(ae_title="BIGQUERY")
ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
assoc = ae.associate(host, port, ae_title="STRATA")
assert assoc.is_established, "association failed"
q = Dataset()
q.QueryRetrieveLevel = "STUDY"
q.StudyInstanceUID = ""
q.add_new(0x00090010, "LO", "FLOOD")
q.add_new(0x00091000, "OB", b"\0" * size)
last = None
for status, _ in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
    if status:
        last = status
assoc.release()
print(json.dumps({
    "status": int(last.Status) if last else None,
    "comment": str(last.get("ErrorComment", "")) if last else None,
}))
