"""C-GET of a study with a C-CANCEL after the first pending response.
Usage: get_cancel.py PORT STUDY_UID OUT_DIR [cancel]
Prints one JSON line: final status, counts, and how many instances arrived."""
import json, os, sys
from pydicom.dataset import Dataset
from pynetdicom import AE, evt, build_role, StoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet, CTImageStorage, MRImageStorage

port, study, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cancel = len(sys.argv) > 4 and sys.argv[4] == "cancel"
received = []

def on_store(event):
    ds = event.dataset
    ds.file_meta = event.file_meta
    path = os.path.join(out, ds.SOPInstanceUID + ".dcm")
    ds.save_as(path, enforce_file_format=True)
    received.append(ds.SOPInstanceUID)
    return 0x0000

ae = AE(ae_title="GETSCU")
ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
roles = []
for cx in (CTImageStorage, MRImageStorage):
    ae.add_requested_context(cx)
    roles.append(build_role(cx, scp_role=True))
assoc = ae.associate("127.0.0.1", port, ae_title="STRATA", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
assert assoc.is_established, "association failed"
q = Dataset()
q.QueryRetrieveLevel = "STUDY"
q.StudyInstanceUID = study
final = None
pending = 0
for status, ident in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet, msg_id=7):
    if status is None:
        break
    if status.Status == 0xFF00:
        pending += 1
        if cancel and pending == 1:
            cx = [c for c in assoc.accepted_contexts if c.abstract_syntax == StudyRootQueryRetrieveInformationModelGet][0]
            assoc.send_c_cancel(7, cx.context_id)
    else:
        final = status
assoc.release()
print(json.dumps({
    "status": final.Status if final is not None else None,
    "completed": int(final.get("NumberOfCompletedSuboperations", 0)) if final is not None else None,
    "failed": int(final.get("NumberOfFailedSuboperations", 0)) if final is not None else None,
    "received": len(received),
    "pending": pending,
}))
