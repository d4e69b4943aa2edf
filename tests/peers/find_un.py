"""A C-FIND whose matching key arrives with VR UN, as a router that did not know the attribute
re-encodes it: only Explicit VR Little Endian is proposed, so the VR goes on the wire.
Usage: find_un.py HOST PORT PATIENT_NAME. Prints one JSON line: the final status and the Study
Instance UIDs matched."""
import json, sys
from pydicom import config

# pydicom re-encodes a UN element of a known tag with its dictionary VR unless told not to
config.replace_un_with_known_vr = False
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
ae = AE(ae_title="UNQUERY")
ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind, ExplicitVRLittleEndian)
assoc = ae.associate(host, port, ae_title="STRATA")
assert assoc.is_established, "association failed"
q = Dataset()
q.QueryRetrieveLevel = "STUDY"
q.StudyInstanceUID = ""
q.add_new(0x00100010, "UN", name + b" " * (len(name) % 2))
last, studies = None, []
for status, found in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
    if status:
        last = status
    if found is not None and "StudyInstanceUID" in found:
        studies.append(str(found.StudyInstanceUID))
assoc.release()
print(json.dumps({"status": int(last.Status) if last else None, "studies": sorted(studies)}))
