"""Drives Strata's DICOMweb with the dicomweb-client package, as a PACS integrator would.
Usage: dicomweb.py BASE_URL TOKEN FILE...   (FILE: Part-10 instances of one study)
Stores the files with STOW-RS, then searches (QIDO-RS) and retrieves (WADO-RS) them, checking
each answer; prints one JSON line of findings; exits non-zero on the first wrong answer."""
import json, sys
import pydicom
from dicomweb_client.api import DICOMwebClient

base, token, files = sys.argv[1], sys.argv[2], sys.argv[3:]
client = DICOMwebClient(url=f"{base}/dicomweb", headers={"Authorization": f"Bearer {token}"})
datasets = [pydicom.dcmread(f) for f in files]
study = datasets[0].StudyInstanceUID
by_uid = {d.SOPInstanceUID: d for d in datasets}
out = {}

def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, **out}))
        sys.exit(1)

# STOW-RS
stored = client.store_instances(datasets)
out["stored"] = len(stored.get("ReferencedSOPSequence", []))
check(out["stored"] == len(datasets), "STOW-RS stored every instance")
check("FailedSOPSequence" not in stored, "no failures")

# QIDO-RS at every level, with the parameters integrators use
studies = client.search_for_studies(search_filters={"StudyInstanceUID": study})
check(len(studies) == 1, "study found by UID")
s = studies[0]
check(s["00201208"]["Value"][0] == len(datasets), "NumberOfStudyRelatedInstances")
name = str(datasets[0].PatientName)
fam = name.split("^")[0]
found = client.search_for_studies(search_filters={"PatientName": fam[:3].lower() + "*"})
check(any(x["0020000D"]["Value"][0] == study for x in found), "case-insensitive wildcard on PatientName")
found = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": fam[:3].lower()})
check(any(x["0020000D"]["Value"][0] == study for x in found), "fuzzy matching on a name prefix")
date = datasets[0].StudyDate
found = client.search_for_studies(search_filters={"StudyDate": f"{date}-{date}"})
check(any(x["0020000D"]["Value"][0] == study for x in found), "date range")
found = client.search_for_studies(search_filters={"StudyDate": "19000101-19000102"})
check(all(x["0020000D"]["Value"][0] != study for x in found), "date range excludes")
found = client.search_for_studies(search_filters={"PatientID": datasets[0].PatientID, "IssuerOfPatientID": datasets[0].IssuerOfPatientID})
check(any(x["0020000D"]["Value"][0] == study for x in found), "PatientID with IssuerOfPatientID")
found = client.search_for_studies(search_filters={"ModalitiesInStudy": datasets[0].Modality})
check(any(x["0020000D"]["Value"][0] == study for x in found), "ModalitiesInStudy")
all_fields = client.search_for_studies(search_filters={"StudyInstanceUID": study}, fields=["all"])
check("00080062" in all_fields[0], "includefield=all adds SOPClassesInStudy")
extra = client.search_for_studies(search_filters={"StudyInstanceUID": study}, fields=["SliceThickness"])
check("00180050" in extra[0], "includefield of an attribute outside the index columns")
page = client.search_for_studies(limit=1, offset=0)
check(len(page) == 1, "limit")
series = client.search_for_series(study_instance_uid=study)
series_uids = {d.SeriesInstanceUID for d in datasets}
check({x["0020000E"]["Value"][0] for x in series} == series_uids, "series of the study")
check(len(client.search_for_series(search_filters={"SeriesInstanceUID": "\\".join(sorted(series_uids))})) == len(series_uids), "UID list")
instances = client.search_for_instances(study_instance_uid=study)
check({x["00080018"]["Value"][0] for x in instances} == set(by_uid), "instances of the study")
one_series = sorted(series_uids)[0]
inst = client.search_for_instances(study_instance_uid=study, series_instance_uid=one_series)
check(all(x["0020000E"]["Value"][0] == one_series for x in inst), "instances of a series")
out["qido"] = "ok"

# WADO-RS: study, series, instance
got = client.retrieve_study(study)
check({d.SOPInstanceUID for d in got} == set(by_uid), "retrieve study")
for d in got:
    check(d.PixelData == by_uid[d.SOPInstanceUID].PixelData, "retrieved pixels equal the stored ones")
got = client.retrieve_series(study, one_series)
check({d.SeriesInstanceUID for d in got} == {one_series}, "retrieve series")
sop = sorted(by_uid)[0]
sop_series = by_uid[sop].SeriesInstanceUID
d = client.retrieve_instance(study, sop_series, sop)
check(d.SOPInstanceUID == sop and d.PixelData == by_uid[sop].PixelData, "retrieve instance")

# metadata, with the BulkDataURI followed to the right bytes
meta = client.retrieve_study_metadata(study)
check(len(meta) == len(datasets), "study metadata")
m = client.retrieve_instance_metadata(study, sop_series, sop)
uri = m["7FE00010"]["BulkDataURI"]
bulk = client.retrieve_bulkdata(uri)
check(bulk[0] == by_uid[sop].PixelData, "BulkDataURI leads to the pixel data")
check("00100010" in m and "7FE00010" in m and "InlineBinary" not in m["7FE00010"], "metadata shape")

# frames
frames = client.retrieve_instance_frames(study, sop_series, sop, frame_numbers=[1])
check(frames[0] == by_uid[sop].PixelData, "frame 1 of a single-frame instance is its pixel data")
out["wado"] = "ok"
print(json.dumps(out))
