"""Reads a Measurement Report with pydicom, as a viewer that knows nothing of Strata would, and
checks it is a TID 1500 document holding the expected measurements.

usage: sr_tid1500.py REPORT.dcm EXPECTED.json
EXPECTED.json: [{"concept": "Length", "value": 12.3, "unit": "mm", "graphic": "POLYLINE",
                 "instance": "<referenced SOP Instance UID>"}, ...] in document order; each
value must match to 1e-3 (the DS the writer chose). A measurement made in the patient names
"frame_of_reference" instead of "instance": it is inferred from SCOORD3D in that frame of
reference, and a length is the distance between its two points (to 0.01 mm). Prints one line
per measurement group and exits 1 with a reason on the first mismatch.
"""

import json
import sys

import pydicom


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def concept(item):
    seq = getattr(item, "ConceptNameCodeSequence", None)
    if not seq:
        return None
    return (seq[0].CodeValue, seq[0].CodingSchemeDesignator, seq[0].CodeMeaning)


def in_patient(num, want, value, evidence):
    """A value inferred from SCOORD3D in the expected frame of reference."""
    scoord = [c for c in num.ContentSequence if c.ValueType == "SCOORD3D"]
    if not scoord or scoord[0].RelationshipType != "INFERRED FROM":
        fail(f"{want['concept']}: not inferred from an SCOORD3D")
    s = scoord[0]
    if s.GraphicType != want["graphic"]:
        fail(f"{want['concept']}: graphic {s.GraphicType}")
    if s.ReferencedFrameOfReferenceUID != want["frame_of_reference"]:
        fail(f"{want['concept']}: frame of reference {s.ReferencedFrameOfReferenceUID}")
    data = [float(v) for v in s.GraphicData]
    if not data or len(data) % 3:
        fail(f"{want['concept']}: {len(data)} coordinates are not points in 3D")
    if want["concept"] == "Length":
        a, b = data[0:3], data[3:6]
        apart = sum((a[i] - b[i]) ** 2 for i in range(3)) ** 0.5
        if abs(apart - value) > 0.01:
            fail(f"length {value} but its points are {apart} mm apart")
    if not evidence:
        fail("no evidence: the slices measured on are not referenced")


def main():
    ds = pydicom.dcmread(sys.argv[1])
    expected = json.load(open(sys.argv[2]))
    if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.33":
        fail(f"SOP class {ds.SOPClassUID} is not Comprehensive SR")
    if ds.Modality != "SR":
        fail(f"modality {ds.Modality}")
    template = ds.ContentTemplateSequence[0]
    if (template.MappingResource, template.TemplateIdentifier) != ("DCMR", "1500"):
        fail(f"template {template.MappingResource} {template.TemplateIdentifier}")
    if concept(ds)[0:2] != ("126000", "DCM"):
        fail(f"document title {concept(ds)}")
    evidence = {
        sop.ReferencedSOPInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }
    containers = {concept(i)[0]: i for i in ds.ContentSequence if i.ValueType == "CONTAINER"}
    if "111028" not in containers:
        fail("no Image Library")
    measurements = containers.get("126010")
    if measurements is None:
        fail("no Imaging Measurements container")
    groups = [g for g in measurements.ContentSequence if concept(g)[0] == "125007"]
    if len(groups) != len(expected):
        fail(f"{len(groups)} measurement groups, expected {len(expected)}")
    for group, want in zip(groups, expected):
        by_type = {}
        for item in group.ContentSequence:
            by_type.setdefault(item.ValueType, []).append(item)
        tracking = [t for t in by_type.get("TEXT", []) if concept(t)[0] == "112039"]
        uids = [u for u in by_type.get("UIDREF", []) if concept(u)[0] == "112040"]
        if not tracking or not uids:
            fail("a group without its Tracking Identifier and Tracking Unique Identifier")
        nums = {concept(n)[2]: n for n in by_type.get("NUM", [])}
        num = nums.get(want["concept"])
        if num is None:
            fail(f"no NUM {want['concept']} in {sorted(nums)}")
        measured = num.MeasuredValueSequence[0]
        value = float(measured.NumericValue)
        unit = measured.MeasurementUnitsCodeSequence[0]
        if unit.CodingSchemeDesignator != "UCUM" or unit.CodeValue != want["unit"]:
            fail(f"{want['concept']}: unit {unit.CodeValue} ({unit.CodingSchemeDesignator})")
        if abs(value - want["value"]) > 1e-3:
            fail(f"{want['concept']}: {value} != {want['value']}")
        if "frame_of_reference" in want:
            in_patient(num, want, value, evidence)
            print(f"ok: {tracking[0].TextValue} {want['concept']} {value} {unit.CodeValue} SCOORD3D")
            continue
        scoord = [c for c in num.ContentSequence if c.ValueType == "SCOORD"]
        if not scoord or scoord[0].RelationshipType != "INFERRED FROM":
            fail(f"{want['concept']}: not inferred from an SCOORD")
        if scoord[0].GraphicType != want["graphic"]:
            fail(f"{want['concept']}: graphic {scoord[0].GraphicType}")
        image = scoord[0].ContentSequence[0]
        ref = image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        if image.ValueType != "IMAGE" or ref != want["instance"] or ref not in evidence:
            fail(f"{want['concept']}: selected from {ref}, not {want['instance']}")
        print(f"ok: {tracking[0].TextValue} {want['concept']} {value} {unit.CodeValue}")


main()
