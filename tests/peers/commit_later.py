"""Storage Commitment from a requester that releases the association as soon as its N-ACTION
is answered, and takes the N-EVENT-REPORT on a new association to its own listener.
Usage: commit_later.py STRATA_PORT LISTEN_PORT SOP_CLASS_UID UID [UID ...]
Prints one JSON line: N-ACTION status, event type, committed UIDs, and the association the
report came on."""
import json, sys, threading
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

port, listen, sop_class, uids = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
report = {}
got = threading.Event()

def on_report(event):
    info = event.event_information
    report["event_type"] = event.request.EventTypeID
    report["transaction"] = str(info.TransactionUID)
    report["committed"] = [str(i.ReferencedSOPInstanceUID) for i in info.get("ReferencedSOPSequence", [])]
    report["calling_ae"] = event.assoc.requestor.ae_title
    report["on_listener"] = event.assoc.is_acceptor
    got.set()
    return 0x0000, None

ae = AE(ae_title="LATESCU")
ae.add_requested_context(StorageCommitmentPushModel)
# The archive proposes the SCP role for the report; this AE takes the SCU role.
ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
server = ae.start_server(("127.0.0.1", listen), block=False,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
assoc = ae.associate("127.0.0.1", port, ae_title="STRATA")
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
assoc.release()
got.wait(20)
server.shutdown()
report["action_status"] = status.Status if status else None
report["sent_transaction"] = str(info.TransactionUID)
print(json.dumps(report))
