//! DIMSE interop against `strata serve`, with real peers: dcmtk (echoscu, storescu, findscu,
//! dcmconv, dcmcjpeg, dcmcjpls, dcmcrle), gdcmconv for JPEG 2000, and pynetdicom
//! (`tests/peers/*.py`, run with the venv python that `scripts/test.sh` makes). A missing tool
//! fails the test; every external run is bounded by `timeout`.

mod common;

use common::{peer_script, python, text, tool, Server, TestArchive};
use dicom_core::dictionary::DataDictionary;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTable;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use strata_synth::{self as synth, InstanceSpec, Modality, SynthOptions};

const LOCALHOST: &str = "127.0.0.1";

/// The association options every dcmtk tool gets: calling and called AE, and its own timeouts.
fn dcmtk_args(aet: &str) -> Vec<String> {
    [
        "-aet", aet, "-aec", "STRATA", "-to", "10", "-ta", "10", "-td", "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn echo(server: &Server, aet: &str) -> Output {
    let mut args = dcmtk_args(aet);
    args.extend([LOCALHOST.to_string(), server.port()]);
    tool(30, "echoscu", &args)
}

fn assert_echo_ok(server: &Server, aet: &str) {
    let out = echo(server, aet);
    assert!(
        out.status.success(),
        "echoscu -aet {aet} failed: {}\nserver log:\n{}",
        text(&out),
        server.log_text()
    );
}

/// Writes `<data>/strata.toml` before the server starts.
fn configure(t: &TestArchive, toml: &str) {
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(t.data().join("strata.toml"), toml).unwrap();
}

#[test]
fn echoscu_succeeds() {
    let t = TestArchive::new();
    let server = t.serve();
    let out = echo(&server, "ECHOSCU");
    assert!(out.status.success(), "{}", text(&out));
    // a verbose run shows the response status too
    let mut args = dcmtk_args("ECHOSCU");
    args.extend(["-v".into(), LOCALHOST.into(), server.port()]);
    let out = tool(30, "echoscu", &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Received Echo Response (Success)"),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// C-STORE in every transfer syntax

/// The file meta group and the data set of a Part-10 file.
fn split_part10(bytes: &[u8]) -> (FileMetaTable, &[u8]) {
    assert!(
        bytes.len() > 144 && &bytes[128..132] == b"DICM",
        "not Part 10"
    );
    // (0002,0000) UL, explicit VR little endian: tag, "UL", length 4, value
    assert_eq!(&bytes[132..138], &[2, 0, 0, 0, b'U', b'L']);
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let meta = FileMetaTable::from_reader(&bytes[128..]).expect("file meta group");
    (meta, &bytes[144 + group_len..])
}

struct Variant {
    name: &'static str,
    ts: &'static str,
    /// The converter and its options (input and output paths are appended).
    convert: &'static [&'static str],
    /// What storescu proposes.
    propose: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "implicit-vr-le",
        ts: "1.2.840.10008.1.2",
        convert: &["dcmconv", "+ti"],
        propose: &["-xi"],
    },
    Variant {
        name: "explicit-vr-le",
        ts: "1.2.840.10008.1.2.1",
        convert: &["dcmconv", "+te"],
        propose: &["-xe"],
    },
    Variant {
        name: "explicit-vr-be",
        ts: "1.2.840.10008.1.2.2",
        convert: &["dcmconv", "+tb"],
        propose: &["-xb"],
    },
    Variant {
        name: "deflated",
        ts: "1.2.840.10008.1.2.1.99",
        convert: &["dcmconv", "+td"],
        propose: &["-xd"],
    },
    Variant {
        name: "jpeg-lossless-sv1",
        ts: "1.2.840.10008.1.2.4.70",
        convert: &["dcmcjpeg", "+e1"],
        propose: &["-xs"],
    },
    Variant {
        name: "jpeg-lossless-p14",
        ts: "1.2.840.10008.1.2.4.57",
        convert: &["dcmcjpeg", "+el"],
        // no storescu switch proposes it: a presentation context from a config file
        propose: &["-xf", "{cfg}", "P14"],
    },
    Variant {
        name: "jpeg-baseline",
        ts: "1.2.840.10008.1.2.4.50",
        // lossy: dcmcjpeg rescales the 16-bit CT to 8 bits (and gives new UIDs)
        convert: &["dcmcjpeg", "+eb"],
        propose: &["-xy"],
    },
    Variant {
        name: "jpeg-extended",
        ts: "1.2.840.10008.1.2.4.51",
        convert: &["dcmcjpeg", "+ee"],
        propose: &["-xx"],
    },
    Variant {
        name: "jpeg-ls-lossless",
        ts: "1.2.840.10008.1.2.4.80",
        convert: &["dcmcjpls", "+el"],
        propose: &["-xt"],
    },
    Variant {
        name: "rle",
        ts: "1.2.840.10008.1.2.5",
        convert: &["dcmcrle"],
        propose: &["-xr"],
    },
    Variant {
        name: "jpeg2000-lossless",
        ts: "1.2.840.10008.1.2.4.90",
        convert: &["gdcmconv", "--j2k"],
        propose: &["-xv"],
    },
];

fn store_study(seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices: 3,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

/// Generates a study with its own UIDs and converts it to `v`'s transfer syntax.
fn make_variant(t: &TestArchive, seed: u64, v: &Variant) -> Vec<PathBuf> {
    let src = t.generate(&format!("src-{}", v.name), &store_study(seed));
    assert_eq!(src.len(), 6);
    let dir = t.path(&format!("sent-{}", v.name));
    std::fs::create_dir_all(&dir).unwrap();
    src.iter()
        .enumerate()
        .map(|(i, f)| {
            let dst = dir.join(format!("{i}.dcm"));
            let mut args: Vec<String> = v.convert[1..].iter().map(|s| s.to_string()).collect();
            args.push(f.display().to_string());
            args.push(dst.display().to_string());
            let out = tool(60, v.convert[0], &args);
            assert!(
                out.status.success(),
                "{} {args:?} failed: {}",
                v.convert[0],
                text(&out)
            );
            let (meta, _) = split_part10(&std::fs::read(&dst).unwrap());
            assert_eq!(
                meta.transfer_syntax(),
                v.ts,
                "{} did not produce {}",
                v.convert[0],
                v.name
            );
            dst
        })
        .collect()
}

/// A storescu profile proposing CT Image Storage in JPEG Lossless Process 14 (not SV1).
const STORESCU_P14_CFG: &str = r"
[[TransferSyntaxes]]
[P14]
TransferSyntax1 = 1.2.840.10008.1.2.4.57

[[PresentationContexts]]
[P14]
PresentationContext1 = 1.2.840.10008.5.1.4.1.1.2\P14

[[Profiles]]
[P14]
PresentationContexts = P14
";

/// The data set sent equals the one stored. storescu pads an odd-length deflate stream with
/// one NUL on the wire (PS3.5 A.5), which `dcmconv +td` does not do in the file.
fn same_data_set(ts: &str, sent: &[u8], stored: &[u8]) -> bool {
    stored == sent
        || (ts == "1.2.840.10008.1.2.1.99"
            && sent.len() % 2 == 1
            && stored.len() == sent.len() + 1
            && stored.starts_with(sent)
            && stored.last() == Some(&0))
}

#[test]
fn storescu_in_every_transfer_syntax_is_stored_as_received() {
    let t = TestArchive::new();
    let cfg = t.path("storescu-p14.cfg");
    std::fs::write(&cfg, STORESCU_P14_CFG).unwrap();
    let server = t.serve();
    let mut failures = Vec::new();
    for (i, v) in VARIANTS.iter().enumerate() {
        let files = make_variant(&t, 100 + i as u64, v);
        let aet = format!("SCU{i}");
        let mut args = dcmtk_args(&aet);
        args.extend(
            v.propose
                .iter()
                .map(|s| s.replace("{cfg}", cfg.to_str().unwrap())),
        );
        args.push("-v".into());
        args.extend([LOCALHOST.to_string(), server.port()]);
        args.extend(files.iter().map(|f| f.display().to_string()));
        let out = tool(120, "storescu", &args);
        let log = text(&out);
        let successes = log.matches("Received Store Response (Success)").count();
        if !out.status.success() || successes != files.len() {
            failures.push(format!(
                "{}: storescu exit {}, {successes}/{} successes:\n{log}",
                v.name,
                out.status,
                files.len()
            ));
            continue;
        }
        for f in &files {
            let sent = std::fs::read(f).unwrap();
            let (sent_meta, sent_data) = split_part10(&sent);
            let uid = sent_meta.media_storage_sop_instance_uid().to_string();
            let got_path = t.path("got.dcm");
            let got_out = t.run(&["get", &uid, "-o", got_path.to_str().unwrap()]);
            if !got_out.status.success() {
                failures.push(format!("{}: get {uid}: {}", v.name, text(&got_out)));
                continue;
            }
            let got = std::fs::read(&got_path).unwrap();
            let (got_meta, got_data) = split_part10(&got);
            if got_meta.transfer_syntax() != v.ts {
                failures.push(format!(
                    "{}: {uid} stored as {}, sent as {}",
                    v.name,
                    got_meta.transfer_syntax(),
                    v.ts
                ));
            }
            if !same_data_set(v.ts, sent_data, got_data) {
                failures.push(format!(
                    "{}: {uid} data set differs ({} bytes stored, {} sent)",
                    v.name,
                    got_data.len(),
                    sent_data.len()
                ));
            }
            if got_meta.source_application_entity_title() != Some(aet.as_str()) {
                failures.push(format!(
                    "{}: {uid} Source AE {:?}, expected {aet}",
                    v.name,
                    got_meta.source_application_entity_title()
                ));
            }
            if got_meta.media_storage_sop_instance_uid() != uid {
                failures.push(format!("{}: {uid} meta names another instance", v.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nserver log:\n{}",
        failures.join("\n"),
        server.log_text()
    );
    let studies = t.ok(&["studies"]);
    assert!(
        studies.contains(&format!("{} studies", VARIANTS.len())),
        "{studies}"
    );
}

#[test]
fn storescu_duplicate_is_success_and_conflict_is_refused() {
    let t = TestArchive::new();
    let server = t.serve();
    let files = t.generate("in", &store_study(300));
    let send = |f: &Path| {
        let mut args = dcmtk_args("DUPSCU");
        args.extend(["-v".into(), LOCALHOST.into(), server.port()]);
        args.push(f.display().to_string());
        text(&tool(60, "storescu", &args))
    };
    let first = send(&files[0]);
    assert!(
        first.contains("Received Store Response (Success)"),
        "{first}"
    );
    let again = send(&files[0]);
    assert!(
        again.contains("Received Store Response (Success)"),
        "{again}"
    );
    // Same SOP Instance UID, other bytes: refused with 0x0111, the stored one kept.
    let other = t.path("other.dcm");
    std::fs::copy(&files[0], &other).unwrap();
    let out = tool(
        30,
        "dcmodify",
        &[
            "-nb",
            "-m",
            "StudyDescription=CHANGED",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let conflict = send(&other);
    assert!(
        !conflict.contains("Received Store Response (Success)")
            && conflict.contains("Received Store Response (Unknown Status: 0x111)"),
        "{conflict}"
    );
}

/// A Secondary Capture instance whose identifying and descriptive attributes are all written
/// with VR UN (as a router that did not know them re-encodes them), in Explicit VR Little Endian.
fn un_encoded_instance(path: &Path, patient: &str, study: &str, sop: &str) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
    let un = |tag: Tag, value: &[u8]| {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if value.contains(&b'.') && value[0].is_ascii_digit() {
                0
            } else {
                b' '
            });
        }
        DataElement::new(tag, VR::UN, PrimitiveValue::from(v))
    };
    let mut obj = InMemDicomObject::new_empty();
    obj.put(un(tags::SOP_CLASS_UID, SC.as_bytes()));
    obj.put(un(tags::SOP_INSTANCE_UID, sop.as_bytes()));
    obj.put(un(tags::STUDY_DATE, b"20240229"));
    obj.put(un(tags::MODALITY, b"OT"));
    obj.put(un(tags::PATIENT_NAME, patient.as_bytes()));
    obj.put(un(tags::PATIENT_ID, format!("UN-{sop}").as_bytes()));
    obj.put(un(tags::STUDY_INSTANCE_UID, study.as_bytes()));
    obj.put(un(
        tags::SERIES_INSTANCE_UID,
        format!("{study}.1").as_bytes(),
    ));
    obj.put(un(tags::SAMPLES_PER_PIXEL, &1u16.to_le_bytes()));
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("MONOCHROME2"),
    ));
    for tag in [tags::ROWS, tags::COLUMNS] {
        obj.put(un(tag, &2u16.to_le_bytes()));
    }
    for (tag, v) in [
        (tags::BITS_ALLOCATED, 8u16),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(vec![0u8, 64, 128, 255]),
    ));
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(SC)
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax("1.2.840.10008.1.2.1")
        .build()
        .unwrap();
    obj.with_exact_meta(meta).write_to_file(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes
            .windows(6)
            .any(|w| w == [0x08, 0x00, 0x16, 0x00, b'U', b'N']),
        "the SOP Class UID is written as UN"
    );
}

#[test]
fn known_attributes_sent_as_un_are_read_with_their_dictionary_vr() {
    let t = TestArchive::new();
    let imported = t.path("imported.dcm");
    let sent = t.path("sent.dcm");
    un_encoded_instance(
        &imported,
        "Unknown^Imported",
        "1.2.826.0.1.3680043.99.1",
        "1.2.826.0.1.3680043.99.1.1.1",
    );
    un_encoded_instance(
        &sent,
        "Unknown^Sent",
        "1.2.826.0.1.3680043.99.2",
        "1.2.826.0.1.3680043.99.2.1.1",
    );

    let out = t.ok(&["import", imported.to_str().unwrap()]);
    assert!(out.contains("1 stored"), "{out}");
    let server = t.serve();
    // storescu looks for the SOP Class UID in the data set and does not read UN: pynetdicom
    // sends the file's bytes undecoded.
    let out = run_python(
        60,
        "store_raw.py",
        &[LOCALHOST.into(), server.port(), sent.display().to_string()],
    );
    assert_eq!(text(&out).trim(), "status 0x0000", "{}", server.log_text());

    // Both are found by their attributes, read as the dictionary says.
    let found = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            "StudyInstanceUID",
            "SOPInstanceUID",
            "SOPClassUID",
            "PatientName=Unknown^*",
            "StudyDate=20240229",
            "Modality",
        ],
    );
    assert_eq!(found.rsp.len(), 2, "{}", text(&found.out));
    assert_eq!(
        found.set(tags::SOP_CLASS_UID),
        BTreeSet::from(["1.2.840.10008.5.1.4.1.1.7".to_string()])
    );
    assert_eq!(
        found.set(tags::PATIENT_NAME),
        BTreeSet::from(["Unknown^Imported".to_string(), "Unknown^Sent".to_string()])
    );
    assert_eq!(
        found.set(tags::MODALITY),
        BTreeSet::from(["OT".to_string()])
    );
    // A query key sent as UN is read as its dictionary VR too.
    let out = run_python(
        60,
        "find_un.py",
        &[LOCALHOST.into(), server.port(), "Unknown^Sent".into()],
    );
    let answer: serde_json::Value =
        serde_json::from_str(text(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(answer["status"], 0, "{answer}");
    assert_eq!(
        answer["studies"],
        serde_json::json!(["1.2.826.0.1.3680043.99.2"])
    );
}

// ---------------------------------------------------------------------------------------------
// C-FIND

fn find_set() -> SynthOptions {
    SynthOptions {
        seed: 11,
        patients: 3,
        studies: 6,
        series_per_study: 2,
        slices: 2,
        rows: 16,
        cols: 16,
        modality: None,
        noise: false,
    }
}

/// An archive holding `find_set()`, served.
fn find_archive() -> (TestArchive, Server, Vec<InstanceSpec>) {
    let t = TestArchive::new();
    let opts = find_set();
    t.generate("in", &opts);
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    (t, server, synth::plan(&opts).unwrap())
}

/// One findscu run: the C-FIND responses it extracted, and what it printed.
struct Found {
    out: Output,
    rsp: Vec<dicom_object::DefaultDicomObject>,
}

impl Found {
    /// findscu saw a final Success status.
    fn succeeded(&self) -> bool {
        self.out.status.success()
            && text(&self.out).contains("Received Final Find Response (Success)")
    }

    fn values(&self, tag: Tag) -> Vec<String> {
        self.rsp.iter().map(|o| str_of(o, tag)).collect()
    }

    fn set(&self, tag: Tag) -> BTreeSet<String> {
        self.values(tag).into_iter().collect()
    }
}

fn str_of(o: &dicom_object::DefaultDicomObject, tag: Tag) -> String {
    o.element_opt(tag)
        .ok()
        .flatten()
        .map(|e| {
            e.to_str()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default()
        })
        .unwrap_or_else(|| panic!("{tag} missing from a response"))
}

/// `findscu -P` (patient root) or `-S` (study root) with `-k` keys, which must end in Success;
/// extracts the responses.
fn findscu(t: &TestArchive, server: &Server, model: &str, keys: &[&str]) -> Found {
    let f = findscu_as("FINDSCU", t, server, model, keys);
    assert!(f.succeeded(), "findscu {model} {keys:?}: {}", text(&f.out));
    f
}

/// The same, as `aet`, whatever the outcome.
fn findscu_as(aet: &str, t: &TestArchive, server: &Server, model: &str, keys: &[&str]) -> Found {
    let dir = tempfile::tempdir_in(t.dir.path()).unwrap();
    let mut args = dcmtk_args(aet);
    args.extend([model.to_string(), "-v".to_string()]);
    for k in keys {
        args.push("-k".into());
        args.push(k.to_string());
    }
    args.extend(["-X".into(), "-od".into(), dir.path().display().to_string()]);
    args.extend([LOCALHOST.to_string(), server.port()]);
    let out = tool(60, "findscu", &args);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let rsp = files
        .iter()
        .map(|f| dicom_object::open_file(f).expect("a response file"))
        .collect();
    Found { out, rsp }
}

/// Asserts each response holds exactly the requested keys, plus Specific Character Set and
/// Query/Retrieve Level.
fn assert_only_requested(found: &Found, keys: &[&str]) {
    let mut want: BTreeSet<Tag> = keys
        .iter()
        .map(|k| {
            let name = k.split('=').next().unwrap();
            dicom_dictionary_std::StandardDataDictionary
                .by_name(name)
                .unwrap_or_else(|| panic!("unknown key {name}"))
                .tag
                .inner()
        })
        .collect();
    want.insert(tags::SPECIFIC_CHARACTER_SET);
    want.insert(tags::QUERY_RETRIEVE_LEVEL);
    for o in &found.rsp {
        let got: BTreeSet<Tag> = o.iter().map(|e| e.header().tag).collect();
        assert_eq!(got, want, "returned keys differ from requested ones");
        assert_eq!(str_of(o, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    }
}

fn studies_where(specs: &[InstanceSpec], f: impl Fn(&InstanceSpec) -> bool) -> BTreeSet<String> {
    specs
        .iter()
        .filter(|s| f(s))
        .map(|s| s.study_instance_uid.clone())
        .collect()
}

#[test]
fn findscu_at_every_level_and_both_roots() {
    let (t, server, specs) = find_archive();
    let s0 = &specs[0];
    let family = s0.patient_name.split('^').next().unwrap().to_string();

    // PATIENT level, patient root: a lower-case prefix wildcard on the name.
    let keys = [
        "QueryRetrieveLevel=PATIENT",
        &format!("PatientName={}*", family.to_lowercase()),
        "PatientID",
        "NumberOfPatientRelatedStudies",
    ];
    let f = findscu(&t, &server, "-P", &keys);
    assert!(f.succeeded(), "{}", text(&f.out));
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in specs.iter().filter(|s| {
        s.patient_name
            .to_uppercase()
            .starts_with(&family.to_uppercase())
    }) {
        want.entry(s.patient_id.clone())
            .or_default()
            .insert(s.study_instance_uid.clone());
    }
    assert!(!want.is_empty());
    let got: BTreeMap<String, String> = f
        .rsp
        .iter()
        .map(|o| {
            (
                str_of(o, tags::PATIENT_ID),
                str_of(o, tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
            )
        })
        .collect();
    assert_eq!(f.rsp.len(), want.len(), "{}", text(&f.out));
    assert_eq!(
        got,
        want.iter()
            .map(|(id, st)| (id.clone(), st.len().to_string()))
            .collect::<BTreeMap<_, _>>()
    );
    assert_only_requested(&f, &keys);
    for o in &f.rsp {
        assert_eq!(str_of(o, tags::QUERY_RETRIEVE_LEVEL), "PATIENT");
        assert!(str_of(o, tags::PATIENT_NAME)
            .to_uppercase()
            .starts_with(&family.to_uppercase()));
    }

    // STUDY level, patient root, by Patient ID; ModalitiesInStudy computed.
    let keys = [
        "QueryRetrieveLevel=STUDY",
        &format!("PatientID={}", s0.patient_id),
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ];
    let f = findscu(&t, &server, "-P", &keys);
    assert!(f.succeeded(), "{}", text(&f.out));
    assert_eq!(
        f.set(tags::STUDY_INSTANCE_UID),
        studies_where(&specs, |s| s.patient_id == s0.patient_id)
    );
    assert_only_requested(&f, &keys);
    for o in &f.rsp {
        let uid = str_of(o, tags::STUDY_INSTANCE_UID);
        let spec = specs.iter().find(|s| s.study_instance_uid == uid).unwrap();
        assert_eq!(str_of(o, tags::MODALITIES_IN_STUDY), spec.modality.code());
        assert_eq!(str_of(o, tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "4");
    }

    // STUDY level, study root, a date range.
    let mut dates: Vec<String> = specs.iter().map(|s| s.study_date.clone()).collect();
    dates.sort();
    dates.dedup();
    assert!(dates.len() >= 4, "{dates:?}");
    let (lo, hi) = (&dates[1], &dates[dates.len() - 2]);
    let keys = [
        "QueryRetrieveLevel=STUDY",
        &format!("StudyDate={lo}-{hi}"),
        "StudyInstanceUID",
        "NumberOfStudyRelatedSeries",
    ];
    let f = findscu(&t, &server, "-S", &keys);
    assert!(f.succeeded(), "{}", text(&f.out));
    let want = studies_where(&specs, |s| {
        s.study_date.as_str() >= lo.as_str() && s.study_date.as_str() <= hi.as_str()
    });
    assert!(want.len() >= 2 && want.len() < 6, "{want:?}");
    assert_eq!(f.set(tags::STUDY_INSTANCE_UID), want);
    assert_eq!(f.rsp.len(), want.len());
    assert_only_requested(&f, &keys);
    for o in &f.rsp {
        let d = str_of(o, tags::STUDY_DATE);
        assert!(
            d.as_str() >= lo.as_str() && d.as_str() <= hi.as_str(),
            "{d}"
        );
        assert_eq!(str_of(o, tags::NUMBER_OF_STUDY_RELATED_SERIES), "2");
    }
    // open-ended ranges
    let f = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyDate={hi}-"),
            "StudyInstanceUID",
        ],
    );
    assert_eq!(
        f.set(tags::STUDY_INSTANCE_UID),
        studies_where(&specs, |s| s.study_date.as_str() >= hi.as_str())
    );
    let f = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyDate=-{lo}"),
            "StudyInstanceUID",
        ],
    );
    assert_eq!(
        f.set(tags::STUDY_INSTANCE_UID),
        studies_where(&specs, |s| s.study_date.as_str() <= lo.as_str())
    );

    // STUDY level, study root: a UID list.
    let all: Vec<String> = studies_where(&specs, |_| true).into_iter().collect();
    assert_eq!(all.len(), 6);
    let pick = format!("{}\\{}", all[1], all[4]);
    let keys = [
        "QueryRetrieveLevel=STUDY",
        &format!("StudyInstanceUID={pick}"),
        "PatientID",
    ];
    let f = findscu(&t, &server, "-S", &keys);
    assert_eq!(
        f.set(tags::STUDY_INSTANCE_UID),
        [all[1].clone(), all[4].clone()].into_iter().collect()
    );
    assert_eq!(f.rsp.len(), 2);
    assert_only_requested(&f, &keys);

    // Case-insensitive exact name, and `?`: same studies.
    let name_studies = studies_where(&specs, |s| s.patient_name == s0.patient_name);
    let lower = s0.patient_name.to_lowercase();
    let f = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("PatientName={lower}"),
            "StudyInstanceUID",
        ],
    );
    assert_eq!(
        f.set(tags::STUDY_INSTANCE_UID),
        name_studies,
        "{}",
        text(&f.out)
    );
    let mut q: Vec<char> = s0.patient_name.chars().collect();
    q[1] = '?';
    let q: String = q.into_iter().collect();
    let f = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("PatientName={q}"),
            "StudyInstanceUID",
        ],
    );
    assert_eq!(f.set(tags::STUDY_INSTANCE_UID), name_studies, "{q}");
    // no match at all
    let f = findscu(
        &t,
        &server,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientName=NOBODY^AT*ALL",
            "StudyInstanceUID",
        ],
    );
    assert!(f.succeeded(), "{}", text(&f.out));
    assert!(f.rsp.is_empty());

    // SERIES level, study root and patient root.
    let study = &s0.study_instance_uid;
    let want_series: BTreeSet<String> = specs
        .iter()
        .filter(|s| &s.study_instance_uid == study)
        .map(|s| s.series_instance_uid.clone())
        .collect();
    assert_eq!(want_series.len(), 2);
    let keys = [
        "QueryRetrieveLevel=SERIES",
        &format!("StudyInstanceUID={study}"),
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    ];
    let f = findscu(&t, &server, "-S", &keys);
    assert_eq!(f.set(tags::SERIES_INSTANCE_UID), want_series);
    assert_eq!(f.rsp.len(), 2);
    assert_only_requested(&f, &keys);
    for o in &f.rsp {
        assert_eq!(str_of(o, tags::MODALITY), s0.modality.code());
        assert_eq!(str_of(o, tags::NUMBER_OF_SERIES_RELATED_INSTANCES), "2");
    }
    let f = findscu(
        &t,
        &server,
        "-P",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("PatientID={}", s0.patient_id),
            &format!("StudyInstanceUID={study}"),
            "SeriesNumber=2",
            "SeriesInstanceUID",
        ],
    );
    let second: BTreeSet<String> = specs
        .iter()
        .filter(|s| &s.study_instance_uid == study && s.series_number == 2)
        .map(|s| s.series_instance_uid.clone())
        .collect();
    assert_eq!(f.set(tags::SERIES_INSTANCE_UID), second);

    // IMAGE level: a SOP Instance UID list within a series, and a whole series.
    let series = &s0.series_instance_uid;
    let in_series: Vec<&InstanceSpec> = specs
        .iter()
        .filter(|s| &s.series_instance_uid == series)
        .collect();
    assert_eq!(in_series.len(), 2);
    let keys = [
        "QueryRetrieveLevel=IMAGE",
        &format!("StudyInstanceUID={study}"),
        &format!("SeriesInstanceUID={series}"),
        &format!(
            "SOPInstanceUID={}\\{}",
            in_series[1].sop_instance_uid, specs[10].sop_instance_uid
        ),
        "InstanceNumber",
    ];
    let f = findscu(&t, &server, "-S", &keys);
    assert_eq!(
        f.values(tags::SOP_INSTANCE_UID),
        vec![in_series[1].sop_instance_uid.clone()],
        "the other UID is in another series"
    );
    assert_eq!(f.values(tags::INSTANCE_NUMBER), vec!["2".to_string()]);
    assert_only_requested(&f, &keys);
    let f = findscu(
        &t,
        &server,
        "-P",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("PatientID={}", s0.patient_id),
            &format!("StudyInstanceUID={study}"),
            &format!("SeriesInstanceUID={series}"),
            "SOPInstanceUID",
        ],
    );
    assert_eq!(
        f.set(tags::SOP_INSTANCE_UID),
        in_series
            .iter()
            .map(|s| s.sop_instance_uid.clone())
            .collect()
    );

    // The Study Root model has no PATIENT level: a failure status, no matches.
    let f = findscu_as(
        "FINDSCU",
        &t,
        &server,
        "-S",
        &["QueryRetrieveLevel=PATIENT", "PatientName=*", "PatientID"],
    );
    assert!(f.rsp.is_empty(), "{}", text(&f.out));
    let said = text(&f.out);
    assert!(
        said.contains("Received Final Find Response (Error: DataSetDoesNotMatchSOPClass)"),
        "expected failure status 0xA900: {said}"
    );
}

// ---------------------------------------------------------------------------------------------
// C-CANCEL, with pynetdicom

fn run_python(secs: u64, script: &str, args: &[String]) -> Output {
    let mut all = vec![peer_script(script).display().to_string()];
    all.extend(args.iter().cloned());
    tool(secs, python().to_str().unwrap(), &all)
}

#[test]
fn pynetdicom_c_cancel_stops_a_c_find() {
    let t = TestArchive::new();
    // An instance-level query over 3,000 instances: the server is still sending when a cancel,
    // sent right behind the request or after the first response, arrives.
    let studies = 100;
    let instances = studies * 30;
    t.generate(
        "in",
        &SynthOptions {
            seed: 21,
            patients: 5,
            studies,
            series_per_study: 1,
            slices: 30,
            rows: 8,
            cols: 8,
            modality: None,
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let run = |cancel_after: usize| -> serde_json::Value {
        let out = run_python(
            60,
            "find_cancel.py",
            &[
                LOCALHOST.into(),
                server.port(),
                cancel_after.to_string(),
                "IMAGE".into(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap()
                .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    // Without a cancel: every study, then success.
    let all = run(usize::MAX);
    assert_eq!(all["pending"], instances);
    assert_eq!(all["final"], 0x0000);
    // C-CANCEL right behind the C-FIND-RQ: Cancel (0xFE00) before or after a few matches.
    let cancelled = run(0);
    assert_eq!(
        cancelled["final"],
        0xFE00,
        "{cancelled}\nserver log:\n{}",
        server.log_text()
    );
    assert!(
        cancelled["pending"].as_u64().unwrap() < instances as u64,
        "{cancelled}"
    );
    // C-CANCEL after the first pending response: the stream ends with Cancel (0xFE00).
    let cancelled = run(1);
    assert_eq!(
        cancelled["final"],
        0xFE00,
        "{cancelled}\nserver log:\n{}",
        server.log_text()
    );
    assert!(
        cancelled["pending"].as_u64().unwrap() < instances as u64,
        "{cancelled}"
    );
    // The association is usable afterwards.
    assert_echo_ok(&server, "AFTERCANCEL");
}

// ---------------------------------------------------------------------------------------------
// Junk on the port

/// Sends `bytes` on a fresh connection (keeping it open), then waits for the server to close or
/// abort it; returns what came back and how long that took. Panics after 15 s.
fn send_junk(server: &Server, bytes: &[u8]) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(server.dimse).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let start = Instant::now();
    // the server may close before everything is written; that is fine
    let _ = s.write_all(bytes);
    let mut back = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the server kept a junk connection open for {:?} (got {back:?})",
                    start.elapsed()
                )
            }
            Err(_) => break, // reset: closed
        }
    }
    (back, start.elapsed())
}

/// Whatever came back is nothing, an A-ABORT or an A-ASSOCIATE-RJ.
fn assert_closed_or_aborted(what: &str, back: &[u8], took: Duration, limit: Duration) {
    assert!(took < limit, "{what}: closed only after {took:?}");
    assert!(
        back.is_empty() || back[0] == 0x07 || back[0] == 0x03,
        "{what}: unexpected answer {back:?}"
    );
}

#[test]
fn junk_on_the_port_is_dropped_without_disturbing_the_server() {
    let t = TestArchive::new();
    configure(&t, "[dimse]\nartim_timeout_seconds = 3\n");
    let mut server = t.serve();
    // an association held open through all of it must survive
    let mut holder = std::process::Command::new(python())
        .arg(peer_script("hold.py"))
        .args([LOCALHOST.to_string(), server.port()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hold.py");
    let mut holder_out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut holder_out, &mut line).unwrap();
    assert_eq!(line.trim(), "associated");

    let limit = Duration::from_secs(10);
    // random bytes
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (back, took) = send_junk(&server, &random);
    assert_closed_or_aborted("random bytes", &back, took, limit);
    // an A-ASSOCIATE-RQ cut short: header says 200 bytes, 20 come
    let mut truncated = vec![0x01, 0, 0, 0, 0, 200, 0, 1, 0, 0];
    truncated.extend_from_slice(b"STRATA    ");
    let (back, took) = send_junk(&server, &truncated);
    assert_closed_or_aborted("truncated A-ASSOCIATE-RQ", &back, took, limit);
    // a P-DATA-TF before any association
    let pdata = [
        0x04, 0, 0, 0, 0, 10, 0, 0, 0, 6, 1, 0x03, 0xAA, 0xBB, 0xCC, 0xDD,
    ];
    let (back, took) = send_junk(&server, &pdata);
    assert_closed_or_aborted("P-DATA-TF first", &back, took, limit);
    // an A-ASSOCIATE-RQ claiming 4 GB
    let huge = [0x01, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1, 0, 0, 0x41, 0x42];
    let (back, took) = send_junk(&server, &huge);
    assert_closed_or_aborted("4 GB A-ASSOCIATE-RQ", &back, took, limit);
    // the connection closed right away, mid-PDU
    {
        let mut s = TcpStream::connect(server.dimse).unwrap();
        s.write_all(&[0x01, 0, 0, 0, 1]).unwrap();
    }

    assert!(server.alive(), "the server died:\n{}", server.log_text());
    assert_echo_ok(&server, "AFTERJUNK");
    // the held association still works
    drop(holder.stdin.take());
    let status = wait_with_timeout(&mut holder, Duration::from_secs(20));
    let mut rest = String::new();
    holder_out.read_to_string(&mut rest).unwrap();
    assert!(
        status.success() && rest.contains("echo ok"),
        "held association broke: {rest}\nserver log:\n{}",
        server.log_text()
    );
    assert!(server.alive());
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Access control and limits

#[test]
fn allowlist_rejects_unknown_aes_and_enforces_permissions() {
    let t = TestArchive::new();
    configure(
        &t,
        r#"
[[dimse.clients]]
aet = "GOODSCU"

[[dimse.clients]]
aet = "QUERYSCU"
permissions = ["query"]
"#,
    );
    let server = t.serve();
    let bad = echo(&server, "BADSCU");
    assert!(!bad.status.success(), "BADSCU got in: {}", text(&bad));
    assert!(
        text(&bad).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&bad)
    );
    assert_echo_ok(&server, "GOODSCU");
    assert_echo_ok(&server, "QUERYSCU");

    // QUERYSCU may query but not store: a failure status, nothing stored.
    let files = t.generate("in", &store_study(400));
    let store = |aet: &str, f: &Path| {
        let mut args = dcmtk_args(aet);
        args.extend(["-v".into(), LOCALHOST.into(), server.port()]);
        args.push(f.display().to_string());
        text(&tool(60, "storescu", &args))
    };
    let refused = store("QUERYSCU", &files[0]);
    assert!(
        refused.contains("Received Store Response (Unknown Status: 0x124)"),
        "expected 0x0124 (refused: not authorized): {refused}"
    );
    let uid = common::sop_uid(&files[0]);
    let got = t.run(&["get", &uid, "-o", t.path("got.dcm").to_str().unwrap()]);
    assert!(!got.status.success(), "a refused instance was stored");
    let f = findscu_as(
        "QUERYSCU",
        &t,
        &server,
        "-S",
        &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
    );
    assert!(f.succeeded(), "{}", text(&f.out));
    assert!(f.rsp.is_empty(), "nothing was stored");
    // GOODSCU may store
    let stored = store("GOODSCU", &files[0]);
    assert!(
        stored.contains("Received Store Response (Success)"),
        "{stored}"
    );
    t.ok(&["get", &uid, "-o", t.path("got.dcm").to_str().unwrap()]);
}

#[test]
fn one_association_over_the_limit_is_rejected_transiently() {
    let t = TestArchive::new();
    configure(&t, "[dimse]\nmax_associations = 1\n");
    let server = t.serve();
    let mut holder = std::process::Command::new(python())
        .arg(peer_script("hold.py"))
        .args([LOCALHOST.to_string(), server.port()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hold.py");
    let mut holder_out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut holder_out, &mut line).unwrap();
    assert_eq!(line.trim(), "associated");

    let second = echo(&server, "SECONDSCU");
    assert!(!second.status.success(), "{}", text(&second));
    let said = text(&second);
    assert!(
        said.contains("Local Limit Exceeded") && said.contains("Rejected Transient"),
        "{said}"
    );

    drop(holder.stdin.take());
    let status = wait_with_timeout(&mut holder, Duration::from_secs(20));
    assert!(status.success());
    // the slot is freed once the server has seen the release; allow it a moment
    let start = Instant::now();
    loop {
        let out = echo(&server, "SECONDSCU");
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the slot was not freed: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
