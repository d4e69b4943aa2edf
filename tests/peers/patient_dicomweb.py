"""A patient app's view of Strata's DICOMweb, driven with the dicomweb-client package.
Usage: patient_dicomweb.py BASE_URL TOKEN OTHER_PATIENT_ID OTHER_STUDY OWN_FILE... -- OTHER_FILE...
OWN_FILE: every instance of the patient's own studies; OTHER_FILE: instances of someone else's.
Searches at every level must return exactly the own studies, series and instances; a search for
the other patient's ID or study must return nothing; the own studies retrieve with the stored
pixels; the other study's retrievals must fail with 404. Prints one JSON line of findings;
exits non-zero on the first wrong answer."""
import json, sys
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

base, token, other_pid, other_study = sys.argv[1:5]
rest = sys.argv[5:]
split = rest.index("--")
own = [pydicom.dcmread(f) for f in rest[:split]]
other = [pydicom.dcmread(f) for f in rest[split + 1:]]
client = DICOMwebClient(url=f"{base}/dicomweb", headers={"Authorization": f"Bearer {token}"})
out = {}

def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, **out}))
        sys.exit(1)

def values(results, tag):
    return {r[tag]["Value"][0] for r in results}

own_studies = {d.StudyInstanceUID for d in own}
own_series = {d.SeriesInstanceUID for d in own}
own_sops = {d.SOPInstanceUID for d in own}

# QIDO-RS: every level returns exactly the patient's own
studies = client.search_for_studies()
out["studies"] = sorted(values(studies, "0020000D"))
check(values(studies, "0020000D") == own_studies, "studies are exactly the own studies")
check(values(client.search_for_series(), "0020000E") == own_series, "series are exactly the own series")
check(values(client.search_for_instances(), "00080018") == own_sops, "instances are exactly the own instances")
for st in own_studies:
    check(values(client.search_for_series(study_instance_uid=st), "0020000E")
          == {d.SeriesInstanceUID for d in own if d.StudyInstanceUID == st}, "series of an own study")
# another patient's keys find nothing, whatever they ask for
check(client.search_for_studies(search_filters={"PatientID": other_pid}) == [], "another patient's ID finds nothing")
check(client.search_for_studies(search_filters={"StudyInstanceUID": other_study}) == [], "another study's UID finds nothing")
check(client.search_for_series(study_instance_uid=other_study) == [], "another study's series find nothing")
check(client.search_for_instances(study_instance_uid=other_study) == [], "another study's instances find nothing")
check(values(client.search_for_studies(search_filters={"PatientName": "*"}), "0020000D") == own_studies, "a wildcard name finds the own studies only")
out["qido"] = "ok"

# WADO-RS on the own studies: the stored pixels come back
by_uid = {d.SOPInstanceUID: d for d in own}
for st in own_studies:
    got = client.retrieve_study(st)
    check({d.SOPInstanceUID for d in got} == {d.SOPInstanceUID for d in own if d.StudyInstanceUID == st}, "retrieve an own study")
    for d in got:
        check(d.PixelData == by_uid[d.SOPInstanceUID].PixelData, "retrieved pixels equal the stored ones")
    meta = client.retrieve_study_metadata(st)
    check(len(meta) == len([d for d in own if d.StudyInstanceUID == st]), "metadata of an own study")
d = own[0]
frames = client.retrieve_instance_frames(d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID, frame_numbers=[1])
check(frames[0] == d.PixelData, "frame 1 of an own instance")

# WADO-RS on the other patient's study: 404, as if it were not there
def status_of(call):
    try:
        call()
    except requests.exceptions.HTTPError as e:
        return e.response.status_code
    return 200

o = other[0]
for what, call in [
    ("study", lambda: client.retrieve_study(o.StudyInstanceUID)),
    ("series", lambda: client.retrieve_series(o.StudyInstanceUID, o.SeriesInstanceUID)),
    ("instance", lambda: client.retrieve_instance(o.StudyInstanceUID, o.SeriesInstanceUID, o.SOPInstanceUID)),
    ("study metadata", lambda: client.retrieve_study_metadata(o.StudyInstanceUID)),
    ("instance metadata", lambda: client.retrieve_instance_metadata(o.StudyInstanceUID, o.SeriesInstanceUID, o.SOPInstanceUID)),
    ("frames", lambda: client.retrieve_instance_frames(o.StudyInstanceUID, o.SeriesInstanceUID, o.SOPInstanceUID, frame_numbers=[1])),
]:
    status = status_of(call)
    check(status == 404, f"another patient's {what} answers 404, not {status}")
out["wado"] = "ok"
print(json.dumps(out))
