"""Storage Commitment request for the given SOP instances; waits for the N-EVENT-REPORT on the
same association. Usage: commit.py PORT SOP_CLASS_UID UID [UID ...]
Prints one JSON line: N-ACTION status, event type, committed and failed UIDs (with reasons)."""
import json, sys, time
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

port, sop_class, uids = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
report = {}

def on_report(event):
    info = event.event_information
    report["event_type"] = event.request.EventTypeID
    report["transaction"] = str(info.TransactionUID)
    report["committed"] = [str(i.ReferencedSOPInstanceUID) for i in info.get("ReferencedSOPSequence", [])]
    report["failed"] = [[str(i.ReferencedSOPInstanceUID), int(i.FailureReason)] for i in info.get("FailedSOPSequence", [])]
    return 0x0000, None

ae = AE(ae_title="COMMITSCU")
ae.add_requested_context(StorageCommitmentPushModel)
assoc = ae.associate("127.0.0.1", port, ae_title="STRATA", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
assert assoc.is_established, "association failed"
info = Dataset()
info.TransactionUID = generate_uid()
items = []
for u in uids:
    i = Dataset()
    i.ReferencedSOPClassUID = sop_class
    i.ReferencedSOPInstanceUID = u
    items.append(i)
info.ReferencedSOPSequence = items
status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
for _ in range(100):
    if report:
        break
    time.sleep(0.05)
assoc.release()
report["action_status"] = status.Status if status else None
report["sent_transaction"] = str(info.TransactionUID)
print(json.dumps(report))
