"""Writes an IHE IOCM rejection note with pydicom, as a modality or a PACS would: a Key Object
Selection document titled with a rejection title (CID 7011, scheme DCM) naming the instances to
take out of use, in their own study, for their patient.

usage: rejection_note.py OUT.dcm CODE INSTANCE.dcm [INSTANCE.dcm ...]
CODE: 113001 (quality), 113037 (patient safety), 113038 (worklist entry) or 113039 (retention).
"""

import sys

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TITLES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
KOS = "1.2.840.10008.5.1.4.1.1.88.59"


def main():
    out, code, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    rejected = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    first = rejected[0]
    ds = Dataset()
    ds.SOPClassUID = KOS
    ds.SOPInstanceUID = generate_uid()
    for k in ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
              "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"]:
        if k in first:
            setattr(ds, k, getattr(first, k))
    ds.Modality = "KO"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 999
    ds.InstanceNumber = 1
    ds.ContentDate = first.get("StudyDate", "")
    ds.ContentTime = first.get("StudyTime", "")
    ds.Manufacturer = "test"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    title = Dataset()
    title.CodeValue = code
    title.CodingSchemeDesignator = "DCM"
    title.CodeMeaning = TITLES[code]
    ds.ConceptNameCodeSequence = Sequence([title])
    by_series = {}
    for r in rejected:
        by_series.setdefault(r.SeriesInstanceUID, []).append(r)
    series_items = []
    content = []
    for series, members in by_series.items():
        refs = []
        for r in members:
            ref = Dataset()
            ref.ReferencedSOPClassUID = r.SOPClassUID
            ref.ReferencedSOPInstanceUID = r.SOPInstanceUID
            refs.append(ref)
            item = Dataset()
            item.RelationshipType = "CONTAINS"
            item.ValueType = "IMAGE"
            item.ReferencedSOPSequence = Sequence([ref])
            content.append(item)
        s = Dataset()
        s.SeriesInstanceUID = series
        s.ReferencedSOPSequence = Sequence(refs)
        series_items.append(s)
    evidence = Dataset()
    evidence.StudyInstanceUID = first.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    ds.ContentSequence = Sequence(content)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = KOS
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(out, enforce_file_format=True)
    print(ds.SOPInstanceUID)


if __name__ == "__main__":
    main()
