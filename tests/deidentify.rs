//! De-identification (PS3.15 Annex E) end to end: generated CT studies, enriched with the
//! identifying attributes of Table E.1-1, imported, exported by `strata deidentify`, and the
//! output read back with dicom-rs and dcmtk.

mod common;

use common::{audit_events, text, tool, TestArchive};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::{open_file, InMemDicomObject};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use strata_synth::{Modality, SynthOptions};

/// Identifying attributes of PS3.15 Table E.1-1 (DICOM 2025a), written here from the standard
/// apart from the archive's own table: tag, the Basic Profile's action, and the action of the
/// first option that names the attribute among Retain Longitudinal Temporal Information with
/// Modified Dates (`dates`), Clean Descriptors (`desc`), Retain Patient Characteristics (`pat`)
/// and Retain Device Identity (`dev`).
const E11: &str = "
0008,0012 X/D    dates:C
0008,0014 U      -
0008,0015 X      dates:C
0008,0018 U      -
0008,0020 Z      dates:C
0008,0021 X/D    dates:C
0008,002A X/Z/D  dates:C
0008,0023 Z/D    dates:C
0008,0030 Z      dates:C
0008,0033 Z/D    dates:C
0008,0050 Z      -
0008,0080 X/Z/D  -
0008,0081 X      -
0008,0082 X/Z/D  -
0008,0090 Z      -
0008,0092 X      -
0008,0094 X      -
0008,1010 X/Z/D  dev:K
0008,1030 X      desc:C
0008,103E X      desc:C
0008,1040 X      -
0008,1048 X      -
0008,1049 X      -
0008,1050 X      -
0008,1052 X      -
0008,1060 X      -
0008,1062 X      -
0008,1070 X/Z/D  -
0008,1072 X/D    -
0008,1140 X/Z/U* -
0008,4000 X      desc:C
0010,0010 Z      -
0010,0020 Z/D    -
0010,0021 X      -
0010,0030 Z      -
0010,0032 X      -
0010,0040 Z      pat:K
0010,0050 X      -
0010,0101 X      -
0010,1000 X      -
0010,1001 X      -
0010,1005 X      -
0010,1010 X      pat:K
0010,1020 X      pat:K
0010,1030 X      pat:K
0010,1040 X      -
0010,1050 X      -
0010,1060 X      -
0010,1080 X      -
0010,1090 X      -
0010,2000 X      desc:C
0010,2110 X      desc:C
0010,2150 X      -
0010,2154 X      -
0010,2160 X      pat:K
0010,2180 X      desc:C
0010,21A0 X      pat:K
0010,21C0 X      pat:K
0010,21F0 X      -
0010,2203 X/Z    pat:K
0010,4000 X      desc:C
0018,1000 X/Z/D  dev:K
0018,1002 U      dev:K
0018,1004 X      dev:K
0018,1005 X      dev:K
0018,1007 X      dev:K
0018,1008 X      dev:K
0018,1030 X/D    desc:C
0018,4000 X      desc:C
0018,700A X/D    dev:K
0018,9424 X      desc:C
0020,000D U      -
0020,000E U      -
0020,0010 Z      -
0020,0052 U      -
0020,0200 U      -
0020,4000 X      desc:C
0020,9161 U      -
0032,1032 X      -
0032,1060 X/Z    desc:C
0032,4000 X      desc:C
0038,0010 X      -
0038,0060 X      -
0038,0300 X      -
0038,0400 X      -
0040,0009 X      -
0040,0244 X      dates:C
0040,0253 X      -
0040,0254 X      desc:C
0040,1001 X      -
0040,2016 Z      -
0040,2017 Z      -
0040,A073 D      -
0040,A075 D      -
0040,A123 D      -
4008,0114 X      -
";

const FAMILY: &str = "ROEBUCK";
const GIVEN: &str = "JANELLE";

struct Entry {
    tag: Tag,
    basic: String,
    option: Option<(String, char)>,
}

fn e11() -> Vec<Entry> {
    E11.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (g, e) = f[0].split_once(',').unwrap();
            let option = f[2]
                .split_once(':')
                .map(|(o, a)| (o.to_string(), a.chars().next().unwrap()));
            Entry {
                tag: Tag(
                    u16::from_str_radix(g, 16).unwrap(),
                    u16::from_str_radix(e, 16).unwrap(),
                ),
                basic: f[1].to_string(),
                option,
            }
        })
        .collect()
}

fn vr_of(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or_else(|| panic!("{tag} is in the dictionary"))
}

/// A value for `tag` that identifies the patient wherever its VR allows text.
fn identifying_element(tag: Tag, n: usize) -> DataElement<InMemDicomObject> {
    let vr = vr_of(tag);
    let s = |v: &str| PrimitiveValue::from(v.to_string());
    let value = match vr {
        VR::PN => s(&format!("{FAMILY}^{GIVEN}")),
        VR::LO | VR::LT | VR::ST | VR::UT | VR::UC => s(&format!("{GIVEN} {FAMILY} {n}")),
        VR::SH => s(&format!("{FAMILY} {n}")),
        VR::CS | VR::AE => s(FAMILY),
        VR::DA => s("20230615"),
        VR::TM => s("101500"),
        VR::DT => s("20230615101500"),
        VR::AS => s("045Y"),
        VR::DS => s("71.5"),
        VR::IS => s("7"),
        VR::US => PrimitiveValue::from(4u16),
        VR::UI => s(&format!("1.2.826.0.1.3680043.2.1125.77.{n}")),
        VR::SQ => {
            let item = InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, s(&format!("{FAMILY}{n}"))),
                DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, s("99TEST")),
                DataElement::new(tags::CODE_MEANING, VR::LO, s(&format!("{GIVEN} {FAMILY}"))),
                DataElement::new(tags::PERSON_NAME, VR::PN, s(&format!("{FAMILY}^{GIVEN}"))),
            ]);
            return DataElement::new(tag, vr, DataSetSequence::new(vec![item], Length::UNDEFINED));
        }
        other => panic!("no test value for {tag} of VR {other:?}"),
    };
    DataElement::new(tag, vr, value)
}

/// Writes `src` to `dst` with the patient named ROEBUCK^JANELLE and, when `enrich`, every
/// attribute of [`E11`] given an identifying value (UIDs and references kept as generated), a
/// private block (one element safe-listed in the tests' configuration) and a reference to
/// `referenced` (SOP class, SOP instance) in ReferencedImageSequence. InstanceNumber becomes
/// `number`.
fn rewrite(src: &Path, dst: &Path, number: usize, enrich: bool, referenced: Option<(&str, &str)>) {
    let mut obj = open_file(src).unwrap();
    // one local patient key for every study (pseudonyms are per local key)
    let lo = |t: Tag, v: &str| DataElement::new(t, VR::LO, PrimitiveValue::from(v));
    obj.put(lo(tags::PATIENT_ID, "4711"));
    obj.put(lo(tags::ISSUER_OF_PATIENT_ID, "HOSPITAL A"));
    // a number of its own, which de-identification keeps, to pair each copy with its original
    obj.put(DataElement::new(
        tags::INSTANCE_NUMBER,
        VR::IS,
        PrimitiveValue::from(number.to_string()),
    ));
    obj.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from(format!("{FAMILY}^{GIVEN}")),
    ));
    if enrich {
        let keep_generated = [
            tags::SOP_INSTANCE_UID,
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::FRAME_OF_REFERENCE_UID,
            tags::PATIENT_ID,
            tags::ISSUER_OF_PATIENT_ID,
            tags::PATIENT_NAME,
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::SERIES_DATE,
            tags::CONTENT_DATE,
            tags::CONTENT_TIME,
            tags::ACCESSION_NUMBER,
            tags::REFERENCED_IMAGE_SEQUENCE,
        ];
        for (n, e) in e11().iter().enumerate() {
            if !keep_generated.contains(&e.tag) {
                obj.put(identifying_element(e.tag, n));
            }
        }
        obj.put(lo(Tag(0x0009, 0x0010), "STRATA TEST"));
        obj.put(lo(Tag(0x0009, 0x1001), "ROEBUCK secret"));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1002),
            VR::DS,
            PrimitiveValue::from("2.5"),
        ));
    }
    if let Some((class, sop)) = referenced {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(class),
            ),
            DataElement::new(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(sop),
            ),
        ]);
        obj.put(DataElement::new(
            tags::REFERENCED_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(vec![item], Length::UNDEFINED),
        ));
    }
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    obj.write_to_file(dst).unwrap();
}

fn txt(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).and_then(|e| {
        e.to_str()
            .ok()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    })
}

fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = common::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    out.sort();
    out
}

/// The imported CT studies: two of one patient (one series each of three slices), the first
/// instance of each series enriched, each later slice referring to the one before it.
struct Corpus {
    t: TestArchive,
    /// Original files by SOP Instance UID.
    originals: BTreeMap<String, PathBuf>,
    studies: Vec<String>,
}

fn corpus(config: &str) -> Corpus {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(t.data().join("strata.toml"), config).unwrap();
    let opts = SynthOptions {
        seed: 20,
        patients: 1,
        studies: 2,
        series_per_study: 1,
        slices: 3,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let generated = t.generate("gen", &opts);
    let mut by_series: BTreeMap<String, Vec<(i64, PathBuf)>> = BTreeMap::new();
    for p in &generated {
        let obj = open_file(p).unwrap();
        let n: i64 = txt(&obj, tags::INSTANCE_NUMBER).unwrap().parse().unwrap();
        by_series
            .entry(txt(&obj, tags::SERIES_INSTANCE_UID).unwrap())
            .or_default()
            .push((n, p.clone()));
    }
    let mut originals = BTreeMap::new();
    let mut studies = Vec::new();
    for slices in by_series.values_mut() {
        slices.sort();
        let mut previous: Option<String> = None;
        for (i, (_, p)) in slices.iter().enumerate() {
            let sop = common::sop_uid(p);
            let dst = t.path("in").join(format!("{sop}.dcm"));
            let reference = previous
                .as_deref()
                .map(|s| ("1.2.840.10008.5.1.4.1.1.2", s));
            rewrite(p, &dst, originals.len() + 1, i == 0, reference);
            let study = txt(&open_file(&dst).unwrap(), tags::STUDY_INSTANCE_UID).unwrap();
            if !studies.contains(&study) {
                studies.push(study);
            }
            previous = Some(sop.clone());
            originals.insert(sop, dst);
        }
    }
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    Corpus {
        t,
        originals,
        studies,
    }
}

/// `strata deidentify` of `studies` for `project` into `out`.
fn export(t: &TestArchive, project: &str, studies: &[String], out: &Path) -> std::process::Output {
    let mut args = vec![
        "deidentify",
        "--project",
        project,
        "--out",
        out.to_str().unwrap(),
    ];
    for s in studies {
        args.push("--study");
        args.push(s);
    }
    t.run(&args)
}

fn export_ok(t: &TestArchive, project: &str, studies: &[String], out: &Path) {
    let o = export(t, project, studies, out);
    assert!(o.status.success(), "deidentify failed: {}", text(&o));
}

/// The de-identified objects written under `dir`.
fn outputs(dir: &Path) -> Vec<InMemDicomObject> {
    dcm_files(dir)
        .iter()
        .map(|p| open_file(p).unwrap().into_inner())
        .collect()
}

/// Pairs each original with its de-identified copy: the copy with its InstanceNumber (each
/// input file has its own).
fn pairs(c: &Corpus, out: &[InMemDicomObject]) -> Vec<(InMemDicomObject, InMemDicomObject)> {
    let key = |o: &InMemDicomObject| txt(o, tags::INSTANCE_NUMBER).unwrap();
    let by_key: HashMap<String, &InMemDicomObject> = out.iter().map(|o| (key(o), o)).collect();
    c.originals
        .values()
        .map(|p| {
            let orig = open_file(p).unwrap().into_inner();
            let copy = by_key
                .get(&key(&orig))
                .unwrap_or_else(|| panic!("no de-identified copy of {}", p.display()));
            (orig, (*copy).clone())
        })
        .collect()
}

fn days_between(a: &str, b: &str) -> i64 {
    let d = |s: &str| chrono::NaiveDate::parse_from_str(&s[..8], "%Y%m%d").unwrap();
    (d(b) - d(a)).num_days()
}

/// True when `obj` (and its sequences) holds the patient's name anywhere.
fn mentions_patient(e: &DataElement<InMemDicomObject>) -> bool {
    if let Some(items) = e.items() {
        return items.iter().any(|i| i.iter().any(mentions_patient));
    }
    e.to_str()
        .map(|s| {
            let s = s.to_uppercase();
            s.contains(FAMILY) || s.contains(GIVEN)
        })
        .unwrap_or(false)
}

const SAFE_LIST: &str = r#"
[[deidentify.private_safe]]
creator = "STRATA TEST"
group = 0x0009
element = 0x02
"#;

#[test]
fn no_attribute_the_profile_removes_or_replaces_keeps_its_value() {
    let c = corpus(SAFE_LIST);
    let out = c.t.path("out");
    export_ok(&c.t, "trial-a", &c.studies, &out);
    let copies = outputs(&out);
    assert_eq!(copies.len(), c.originals.len());
    let mut shifts = Vec::new();
    let mut checked = 0;
    for (orig, copy) in pairs(&c, &copies) {
        let shift = days_between(
            &txt(&orig, tags::STUDY_DATE).unwrap(),
            &txt(&copy, tags::STUDY_DATE).unwrap(),
        );
        assert!(shift != 0 && (-365..=365).contains(&shift), "{shift}");
        shifts.push(shift);
        for e in e11() {
            let Some(before) = orig.get(e.tag) else {
                continue;
            };
            checked += 1;
            let after = copy.get(e.tag);
            let name = format!("{} {}", e.tag, e.basic);
            match e.option.as_ref().map(|(o, a)| (o.as_str(), *a)) {
                Some((_, 'K')) => {
                    assert_eq!(
                        after.map(|a| a.to_str().unwrap().into_owned()),
                        Some(before.to_str().unwrap().into_owned()),
                        "{name}: retained by an option"
                    );
                }
                Some(("dates", _)) => match before.vr() {
                    VR::DA | VR::DT => {
                        let (b, a) = (txt(&orig, e.tag).unwrap(), txt(&copy, e.tag).unwrap());
                        assert_eq!(days_between(&b, &a), shift, "{name}: shifted like the rest");
                    }
                    // times stay: dates move by whole days
                    _ => assert_eq!(txt(&copy, e.tag), txt(&orig, e.tag), "{name}"),
                },
                Some(("desc", _)) => {
                    if let Some(a) = after {
                        assert!(!mentions_patient(a), "{name} still names the patient");
                    }
                }
                _ => match e.basic.as_str() {
                    "X" => assert!(after.is_none(), "{name} must be removed"),
                    "U" | "X/Z/U*" if before.vr() == VR::UI => {
                        let a = txt(&copy, e.tag).expect("a replaced UID");
                        assert!(a.starts_with("2.25."), "{name}: {a}");
                        assert_ne!(Some(a), txt(&orig, e.tag), "{name}");
                    }
                    "X/Z/U*" => {
                        let items = after.and_then(|a| a.items()).unwrap_or_default();
                        let before = before.items().unwrap();
                        for (i, b) in items.iter().zip(before) {
                            assert_ne!(
                                txt(i, tags::REFERENCED_SOP_INSTANCE_UID),
                                txt(b, tags::REFERENCED_SOP_INSTANCE_UID),
                                "{name}"
                            );
                        }
                    }
                    _ => {
                        if let Some(a) = after {
                            assert!(!mentions_patient(a), "{name} still names the patient");
                            if a.vr() != VR::SQ {
                                assert_ne!(
                                    a.to_str().ok(),
                                    before.to_str().ok(),
                                    "{name} kept its value"
                                );
                            }
                        }
                    }
                },
            }
        }
        // nothing names the patient any more, but what an option keeps as it was
        let kept: Vec<Tag> = e11()
            .into_iter()
            .filter(|e| e.option.as_ref().is_some_and(|(_, a)| *a == 'K'))
            .map(|e| e.tag)
            .collect();
        for e in copy.iter().filter(|e| !kept.contains(&e.tag())) {
            assert!(
                !mentions_patient(e),
                "{} still names the patient: {:?}",
                e.tag(),
                e.to_str()
            );
        }
        // private: the safe-listed element and its creator kept, the rest removed
        if orig.get(Tag(0x0009, 0x1001)).is_some() {
            assert!(copy.get(Tag(0x0009, 0x1001)).is_none());
            assert_eq!(txt(&copy, Tag(0x0009, 0x1002)).as_deref(), Some("2.5"));
            assert_eq!(
                txt(&copy, Tag(0x0009, 0x0010)).as_deref(),
                Some("STRATA TEST")
            );
        }
        // the de-identification is declared
        assert_eq!(
            txt(&copy, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
            Some("YES")
        );
        let codes: Vec<String> = copy
            .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap()
            .iter()
            .map(|i| txt(i, tags::CODE_VALUE).unwrap())
            .collect();
        for code in ["113100", "113105", "113107", "113108", "113109"] {
            assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
        }
        // pixels unchanged
        assert_eq!(
            copy.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
            orig.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap()
        );
    }
    assert!(
        checked > 80,
        "only {checked} listed attributes were in the input"
    );
    // one patient: one shift for all their studies, so intervals between them stay
    assert!(shifts.windows(2).all(|w| w[0] == w[1]), "{shifts:?}");

    // the report names every attribute's action; the originals are unchanged in the archive
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let instances = report["instances"].as_array().unwrap();
    assert_eq!(instances.len(), c.originals.len());
    let some = instances
        .iter()
        .flat_map(|i| i["attributes"].as_array().unwrap())
        .find(|a| a["tag"] == "(0010,1040)")
        .expect("the patient's address in the report");
    assert_eq!(some["action"], "X");
    assert_eq!(some["name"], "Patient's Address");
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(csv.lines().count() > instances.len() * 20);
    let (sop, path) = c.originals.iter().next().unwrap();
    let back = c.t.path("back.dcm");
    c.t.ok(&["get", sop, "-o", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back).unwrap(), std::fs::read(path).unwrap());

    // the read is audited, per study, with the patient and the project
    let events = audit_events(&c.t, "cli.deidentify");
    assert_eq!(events.len(), c.studies.len(), "{events:?}");
    for s in &c.studies {
        assert!(
            events
                .iter()
                .any(|e| e.to_string().contains(s.as_str()) && e.to_string().contains("trial-a")),
            "{s} audited: {events:?}"
        );
    }

    // dcmtk reads every output file as PS3.10
    let files = dcm_files(&out);
    let o = tool(60, "dcmftest", &files);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("yes:").count(),
        files.len(),
        "{}",
        text(&o)
    );
    let o = tool(60, "dcmdump", &[&files[0]]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("[YES]"),
        "PatientIdentityRemoved in {}",
        text(&o)
    );
}

#[test]
fn the_basic_profile_alone_removes_or_replaces_every_listed_attribute() {
    let c = corpus(
        "[deidentify]\nmodified_dates = false\npatient_characteristics = false\n\
         device_identity = false\nclean_descriptors = false\n",
    );
    let out = c.t.path("out");
    export_ok(&c.t, "basic", &c.studies, &out);
    let copies = outputs(&out);
    for copy in &copies {
        for e in copy.iter() {
            assert!(!mentions_patient(e), "{} names the patient", e.tag());
        }
        assert!(copy.get(Tag(0x0009, 0x1002)).is_none(), "private removed");
    }
    let originals: Vec<InMemDicomObject> = c
        .originals
        .values()
        .map(|p| open_file(p).unwrap().into_inner())
        .collect();
    let mut checked = 0;
    for orig in originals
        .iter()
        .filter(|o| o.get(tags::PATIENT_ADDRESS).is_some())
    {
        let number = txt(orig, tags::INSTANCE_NUMBER);
        let copy = copies
            .iter()
            .find(|c| txt(c, tags::INSTANCE_NUMBER) == number)
            .expect("the copy");
        for e in e11() {
            let Some(before) = orig.get(e.tag) else {
                continue;
            };
            checked += 1;
            let name = format!("{} {}", e.tag, e.basic);
            match (e.basic.as_str(), copy.get(e.tag)) {
                (_, None) => assert!(e.basic.contains('X'), "{name} must stay present"),
                ("X", Some(_)) => panic!("{name} must be removed"),
                (_, Some(a)) if before.vr() == VR::UI => {
                    assert!(a.to_str().unwrap().starts_with("2.25."), "{name}");
                }
                (_, Some(a)) if a.vr() == VR::SQ && e.basic != "X/Z/U*" => {
                    assert!(a.items().unwrap().is_empty(), "{name} emptied");
                }
                ("X/Z/U*", Some(_)) => {}
                (_, Some(a)) => {
                    assert_ne!(
                        a.to_str().ok(),
                        before.to_str().ok(),
                        "{name} kept its value"
                    )
                }
            }
        }
    }
    assert!(checked > 80, "{checked}");
    // without the dates option dates are gone, and the file says so
    for copy in &copies {
        assert_eq!(txt(copy, tags::STUDY_DATE).filter(|d| !d.is_empty()), None);
        assert_eq!(
            txt(copy, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
            Some("REMOVED")
        );
    }
}

#[test]
fn uids_agree_within_a_project_and_differ_between_projects() {
    let c = corpus("");
    let (a1, a2, b) = (c.t.path("a1"), c.t.path("a2"), c.t.path("b"));
    export_ok(&c.t, "trial-a", &c.studies, &a1);
    // the same project later, one study at a time
    export_ok(&c.t, "trial-a", &c.studies[..1], &a2);
    export_ok(&c.t, "trial-a", &c.studies[1..], &a2);
    export_ok(&c.t, "trial-b", &c.studies, &b);
    let rel = |dir: &Path| -> Vec<PathBuf> {
        dcm_files(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
            .collect()
    };
    // same study/series/instance UIDs (the file paths), byte-identical files
    assert_eq!(rel(&a1), rel(&a2));
    for p in rel(&a1) {
        assert_eq!(
            std::fs::read(a1.join(&p)).unwrap(),
            std::fs::read(a2.join(&p)).unwrap()
        );
    }
    let (ua, ub) = (rel(&a1), rel(&b));
    assert_eq!(ua.len(), ub.len());
    assert!(ua.iter().all(|p| !ub.contains(p)), "projects share no UID");

    let copies = outputs(&a1);
    let sops: Vec<String> = copies
        .iter()
        .map(|o| txt(o, tags::SOP_INSTANCE_UID).unwrap())
        .collect();
    for o in &copies {
        // the file meta agrees with the data set
        let sop = txt(o, tags::SOP_INSTANCE_UID).unwrap();
        assert!(!c.originals.contains_key(&sop));
        // each reference points at another de-identified instance of the export
        if let Some(items) = o
            .get(tags::REFERENCED_IMAGE_SEQUENCE)
            .and_then(|e| e.items())
        {
            let r = txt(&items[0], tags::REFERENCED_SOP_INSTANCE_UID).unwrap();
            assert!(sops.contains(&r), "reference {r} not among {sops:?}");
        }
    }
    // one patient: one pseudonym; two studies, each its own series UID across its instances
    let pseudonyms: std::collections::BTreeSet<_> = copies
        .iter()
        .map(|o| txt(o, tags::PATIENT_ID).unwrap())
        .collect();
    assert_eq!(pseudonyms.len(), 1);
    let other: std::collections::BTreeSet<_> = outputs(&b)
        .iter()
        .map(|o| txt(o, tags::PATIENT_ID).unwrap())
        .collect();
    assert!(pseudonyms.is_disjoint(&other));
    for p in dcm_files(&a1) {
        let f = open_file(&p).unwrap();
        assert_eq!(
            f.meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0'),
            txt(&f, tags::SOP_INSTANCE_UID).unwrap()
        );
        assert_eq!(
            p.parent().unwrap().file_name().unwrap().to_str().unwrap(),
            txt(&f, tags::SERIES_INSTANCE_UID).unwrap()
        );
    }
    // a project name that is none is refused before anything is read
    let o = export(&c.t, "no way", &c.studies, &c.t.path("x"));
    assert!(!o.status.success());
    assert!(text(&o).contains("not a project name"), "{}", text(&o));
}

/// An ultrasound image made from a generated CT slice: US Image Storage, a scanner's name, its
/// own series and study.
fn ultrasound(t: &TestArchive) -> PathBuf {
    let opts = SynthOptions {
        seed: 21,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: 1,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let src = t.generate("us-src", &opts).remove(0);
    let mut obj = open_file(&src).unwrap();
    let put = |o: &mut dicom_object::DefaultDicomObject, tag, vr, v: &str| {
        o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)))
    };
    let us = "1.2.840.10008.5.1.4.1.1.6.1";
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, us);
    put(&mut obj, tags::MODALITY, VR::CS, "US");
    put(&mut obj, tags::MANUFACTURER, VR::LO, "Acme Sound");
    put(&mut obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "Sono 7");
    obj.meta_mut().media_storage_sop_class_uid = us.to_string();
    let dst = t.path("us/us.dcm");
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    obj.write_to_file(&dst).unwrap();
    dst
}

#[test]
fn burned_in_ultrasound_is_refused_unless_its_device_has_a_rule() {
    let t = TestArchive::new();
    let us = ultrasound(&t);
    t.ok(&["import", us.to_str().unwrap()]);
    let study = txt(&open_file(&us).unwrap(), tags::STUDY_INSTANCE_UID).unwrap();
    let out = t.path("refused");
    let o = export(&t, "trial-a", std::slice::from_ref(&study), &out);
    assert!(!o.status.success(), "a burned-in image must be refused");
    assert!(text(&o).contains("burned-in annotation"), "{}", text(&o));
    assert!(text(&o).contains("Sono 7"), "{}", text(&o));
    assert!(dcm_files(&out).is_empty());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["refused"].as_array().unwrap().len(), 1);

    // with a rule for the scanner, the rectangle is blanked and the rest left as it was
    std::fs::write(
        t.data().join("strata.toml"),
        "[[deidentify.pixel_rules]]\nmanufacturer = \"ACME SOUND\"\nmodel = \"sono 7\"\n\
         rectangles = [[0, 0, 64, 8]]\n",
    )
    .unwrap();
    let out = t.path("cleaned");
    export_ok(&t, "trial-a", &[study], &out);
    let files = dcm_files(&out);
    assert_eq!(files.len(), 1);
    let copy = open_file(&files[0]).unwrap();
    let orig = open_file(&us).unwrap();
    let (a, b) = (
        copy.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
        orig.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
    );
    let header_band = 64 * 8 * 2;
    assert!(
        a[..header_band].iter().all(|&x| x == 0),
        "the band is blanked"
    );
    assert!(
        b[..header_band].iter().any(|&x| x != 0),
        "the band had pixels"
    );
    assert_eq!(a[header_band..], b[header_band..], "the rest is unchanged");
    assert_eq!(
        txt(&copy, tags::BURNED_IN_ANNOTATION).as_deref(),
        Some("NO")
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["instances"][0]["blanked"][0],
        serde_json::json!([0, 0, 64, 8])
    );
}

/// De-identified copies pushed to a research archive (a second Strata, by STOW-RS with its
/// token): they arrive under the project's UIDs and pseudonym, with none of the original's
/// identity; nothing but the report is written locally; the push is audited.
#[test]
fn deidentified_copies_are_pushed_to_a_research_archive_by_stow() {
    let research = TestArchive::new();
    common::add_user(&research, "inbound", "modality");
    common::add_user(&research, "reader", "integrator");
    let inbound = common::token(&research, "inbound");
    let receiver = research.serve();
    let reader = common::Api::new(&receiver, &common::token(&research, "reader"));

    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[[dicomweb_peers]]\nname = \"research\"\nurl = \"http://{}/dicomweb\"\ntoken = \"{inbound}\"\n",
            receiver.http
        ),
    )
    .unwrap();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 41,
            patients: 1,
            studies: 1,
            series_per_study: 2,
            slices: 3,
            rows: 32,
            cols: 32,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let original = open_file(&files[0]).unwrap();
    let study = txt(&original, tags::STUDY_INSTANCE_UID).unwrap();
    let name = txt(&original, tags::PATIENT_NAME).unwrap();

    let out = t.path("report");
    let res = t.run(&[
        "deidentify",
        "--project",
        "trial7",
        "--study",
        &study,
        "--out",
        out.to_str().unwrap(),
        "--to-dicomweb",
        "research",
    ]);
    assert!(res.status.success(), "{}", text(&res));
    assert!(
        text(&res).contains("6 instances pushed to research"),
        "{}",
        text(&res)
    );
    assert!(
        dcm_files(&out).is_empty(),
        "pushed copies are not written locally"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["instances"].as_array().unwrap().len(), 6);

    // the research archive holds one study, under the project's UID, with the pseudonym
    let found = reader.ok(reader.get("/dicomweb/studies?includefield=00100010"));
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let new_uid = found[0]["0020000D"]["Value"][0].as_str().unwrap();
    assert_ne!(new_uid, study);
    assert_eq!(
        new_uid,
        report["instances"][0]["study_instance_uid"]
            .as_str()
            .unwrap()
    );
    let shown = found[0]["00100010"].to_string();
    assert!(!shown.contains(&name), "{shown}");
    let instances = reader.ok(reader.get(&format!("/dicomweb/studies/{new_uid}/instances")));
    assert_eq!(instances.as_array().unwrap().len(), 6);
    drop(receiver);
    assert_eq!(audit_events(&t, "cli.deidentify.push").len(), 1);
}

/// De-identified copies as a media ZIP: dcmtk finds every copy through its DICOMDIR, each file is
/// PS3.10 (dcmftest), and the copies are the same as the same project's folder export, byte
/// for byte.
#[test]
fn deidentified_copies_as_a_media_zip_are_indexed_by_their_dicomdir() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 43,
            patients: 1,
            studies: 1,
            series_per_study: 2,
            slices: 3,
            rows: 32,
            cols: 32,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let study = txt(&open_file(&files[0]).unwrap(), tags::STUDY_INSTANCE_UID).unwrap();
    let folder = t.path("folder");
    export_ok(&t, "trial9", std::slice::from_ref(&study), &folder);
    let zip = t.path("copies.zip");
    let res = t.run(&[
        "deidentify",
        "--project",
        "trial9",
        "--study",
        &study,
        "--out",
        t.path("zip-report").to_str().unwrap(),
        "--zip",
        zip.to_str().unwrap(),
    ]);
    assert!(res.status.success(), "{}", text(&res));
    let dir = t.path("unzipped");
    let out = tool(
        60,
        "unzip",
        &["-q", zip.to_str().unwrap(), "-d", dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "unzip: {}", text(&out));
    assert!(dir.join("README.TXT").is_file());
    let dump = tool(60, "dcmdump", &[dir.join("DICOMDIR").to_str().unwrap()]);
    assert!(dump.status.success(), "dcmdump: {}", text(&dump));
    let dump = text(&dump);
    let value = |line: &str| {
        let (a, b) = (line.find('[').unwrap() + 1, line.rfind(']').unwrap());
        line[a..b].trim_end_matches('\0').to_string()
    };
    let ids: Vec<String> = dump
        .lines()
        .filter(|l| l.contains("ReferencedFileID"))
        .map(value)
        .collect();
    assert_eq!(ids.len(), files.len(), "{dump}");
    // the same copies as the folder export of the same project, byte for byte
    let mut by_folder: HashMap<String, Vec<u8>> = HashMap::new();
    for f in dcm_files(&folder) {
        let sop = txt(&open_file(&f).unwrap(), tags::SOP_INSTANCE_UID).unwrap();
        by_folder.insert(sop, std::fs::read(&f).unwrap());
    }
    let mut paths = Vec::new();
    for id in &ids {
        let path = id.split('\\').fold(dir.clone(), |p, c| p.join(c));
        let sop = txt(&open_file(&path).unwrap(), tags::SOP_INSTANCE_UID).unwrap();
        assert!(dump.contains(&sop), "{sop} not in the DICOMDIR");
        assert!(
            by_folder.get(&sop) == Some(&std::fs::read(&path).unwrap()),
            "{id} differs from the folder export's {sop}"
        );
        paths.push(path.to_str().unwrap().to_string());
    }
    let ft = tool(60, "dcmftest", &paths);
    assert_eq!(
        text(&ft).matches("yes: ").count(),
        files.len(),
        "{}",
        text(&ft)
    );
    // nothing of the original patient's name
    let name = txt(&open_file(&files[0]).unwrap(), tags::PATIENT_NAME).unwrap();
    assert!(!dump.contains(&name), "{dump}");
}
