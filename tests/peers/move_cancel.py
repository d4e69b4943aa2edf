"""C-MOVE of a study to a pynetdicom Storage SCP started here (AE MOVEDEST on DEST_PORT), with
an optional C-CANCEL after the first pending response.
Usage: move_cancel.py PORT DEST_PORT STUDY_UID [cancel]
Prints one JSON line: final status, counts, instances received."""
import json, sys, time
from pydicom.dataset import Dataset
from pynetdicom import AE, evt, AllStoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

port, dest_port, study = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cancel = len(sys.argv) > 4 and sys.argv[4] == "cancel"
received = []

def on_store(event):
    received.append(event.request.AffectedSOPInstanceUID)
    if cancel:
        time.sleep(0.2)  # slow receiver, so the cancel lands mid-way
    return 0x0000

dest = AE(ae_title="MOVEDEST")
dest.supported_contexts = AllStoragePresentationContexts
server = dest.start_server(("127.0.0.1", dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
try:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="STRATA")
    assert assoc.is_established, "association failed"
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study
    final, pending = None, 0
    for status, ident in assoc.send_c_move(q, "MOVEDEST", StudyRootQueryRetrieveInformationModelMove, msg_id=9):
        if status is None:
            break
        if status.Status == 0xFF00:
            pending += 1
            if cancel and pending == 1:
                cx = [c for c in assoc.accepted_contexts if c.abstract_syntax == StudyRootQueryRetrieveInformationModelMove][0]
                assoc.send_c_cancel(9, cx.context_id)
        else:
            final = status
    assoc.release()
finally:
    server.shutdown()
print(json.dumps({
    "status": final.Status if final is not None else None,
    "completed": int(final.get("NumberOfCompletedSuboperations", 0)) if final is not None else None,
    "received": len(received),
    "pending": pending,
}))
