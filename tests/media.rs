//! Media export (PS3.10 media in a ZIP) end to end, with real tools: unzip opens the ZIP, dcmtk
//! reads its DICOMDIR and every file it names (dcmdump, dcmftest), pydicom loads the DICOMDIR
//! as a file-set following its record offsets and refusing any record they miss, every instance
//! is byte for byte the file that was imported, and chromium shows INDEX.HTM with a picture of
//! every series. The same ZIP comes from the CLI, `/api/export` and WADO-RS with
//! `Accept: application/zip`; bad requests get problem details.

mod common;

use common::{add_user, audit_events, base, http, python, text, token, tool, Api, TestArchive};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_synth::{Modality, SynthOptions};

/// Instances' bytes as imported, by SOP Instance UID.
type Originals = HashMap<String, Vec<u8>>;

/// Two CT studies of one patient, two series each, imported; returns the original bytes by
/// SOP Instance UID, the two study UIDs and the (study, series) of every instance.
fn two_studies(t: &TestArchive) -> (Originals, Vec<String>, HashMap<String, (String, String)>) {
    let opts = SynthOptions {
        seed: 2026,
        patients: 1,
        studies: 2,
        series_per_study: 2,
        slices: 3,
        rows: 64,
        cols: 96,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let files = t.generate("media-in", &opts);
    t.ok(&["import", t.path("media-in").to_str().unwrap()]);
    let mut originals = HashMap::new();
    let mut studies = Vec::new();
    let mut series_of = HashMap::new();
    for f in &files {
        let [study, series, sop] = common::uids(f);
        series_of.insert(sop.clone(), (study.clone(), series));
        if !studies.contains(&study) {
            studies.push(study);
        }
        originals.insert(sop, std::fs::read(f).unwrap());
    }
    assert_eq!(studies.len(), 2);
    assert_eq!(originals.len(), 12);
    (originals, studies, series_of)
}

/// (Referenced File ID, Referenced SOP Instance UID in File) of every record of a DICOMDIR,
/// as dcmdump reads them.
fn dicomdir_references(dicomdir: &Path) -> Vec<(String, String)> {
    let out = tool(60, "dcmdump", &[dicomdir.to_str().unwrap()]);
    assert!(out.status.success(), "dcmdump DICOMDIR: {}", text(&out));
    let dump = String::from_utf8_lossy(&out.stdout).to_string();
    let value = |line: &str| {
        let start = line.find('[').unwrap() + 1;
        let end = line.rfind(']').unwrap();
        line[start..end].to_string()
    };
    let mut refs = Vec::new();
    let mut file = None;
    for line in dump.lines() {
        if line.contains("ReferencedFileID") {
            file = Some(value(line));
        } else if line.contains("ReferencedSOPInstanceUIDInFile") {
            refs.push((file.take().expect("a file ID before the UID"), value(line)));
        }
    }
    assert!(
        dump.contains("MediaStorageDirectoryStorage"),
        "not a DICOMDIR:\n{dump}"
    );
    refs
}

/// Unzips `zip` and checks it is the media of `expected` (original bytes by SOP Instance UID)
/// holding `series` series: returns the unzipped folder.
fn check_media(zip: &Path, expected: &HashMap<String, Vec<u8>>, series: usize) -> PathBuf {
    let dir = zip.with_extension("d");
    let out = tool(
        60,
        "unzip",
        &["-q", zip.to_str().unwrap(), "-d", dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "unzip: {}", text(&out));
    for name in ["README.TXT", "INDEX.HTM", "DICOMDIR"] {
        assert!(dir.join(name).is_file(), "{name} in {}", zip.display());
    }
    // dcmtk finds every instance through the DICOMDIR, and each is the file imported
    let refs = dicomdir_references(&dir.join("DICOMDIR"));
    assert_eq!(refs.len(), expected.len(), "{refs:?}");
    let mut files = Vec::new();
    for (file_id, sop) in &refs {
        let parts: Vec<&str> = file_id.split('\\').collect();
        assert!(
            parts
                .iter()
                .all(|p| (1..=8).contains(&p.len()) && !p.chars().any(|c| c.is_ascii_lowercase())),
            "{file_id} is not a PS3.10 file ID"
        );
        let path = parts.iter().fold(dir.clone(), |p, c| p.join(c));
        let original = expected
            .get(sop)
            .unwrap_or_else(|| panic!("{sop} was not exported"));
        assert!(
            std::fs::read(&path).unwrap() == *original,
            "{file_id} is not byte for byte the instance {sop} as imported"
        );
        files.push(path.to_str().unwrap().to_string());
    }
    let out = tool(60, "dcmftest", &files);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("yes: ")
            .count(),
        files.len(),
        "dcmftest: {}",
        text(&out)
    );
    // the records are linked by offsets: dcmtk follows them when it appends to a DICOMDIR (it
    // finds the record of a file already there, and rewrites every record it reached), and
    // pydicom follows them from the root, refusing any record they do not reach
    let records = |dump: &str| dump.matches("DirectoryRecordType").count();
    let before = records(&text(&tool(60, "dcmdump", &[dir.join("DICOMDIR")])));
    let copy = dir.with_extension("dcmtk");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("DICOMDIR"), copy.join("DICOMDIR")).unwrap();
    let (first, _) = &refs[0];
    let first_path: PathBuf = first.split('\\').collect();
    std::fs::create_dir_all(copy.join(first_path.parent().unwrap())).unwrap();
    std::fs::copy(dir.join(&first_path), copy.join(&first_path)).unwrap();
    let out = Command::new("dcmgpdir")
        .args(["-v", "+A"])
        .arg(&first_path)
        .current_dir(&copy)
        .output()
        .expect("dcmgpdir (dcmtk)");
    let said = text(&out);
    assert!(
        out.status.success() && said.contains("already exists") && !said.contains("E: "),
        "dcmgpdir +A: {said}"
    );
    let after = records(&text(&tool(60, "dcmdump", &[copy.join("DICOMDIR")])));
    assert_eq!(before, after, "dcmtk lost records: {said}");
    assert!(before > expected.len(), "{before} records");
    let script = r#"
import sys
from pydicom import dcmread
from pydicom.fileset import FileSet
fs = FileSet()
fs.load(dcmread(sys.argv[1]), raise_orphans=True)
print(len(fs), len(fs.find_values("PatientID")), len(fs.find_values("StudyInstanceUID")),
      len(fs.find_values("SeriesInstanceUID")))
"#;
    let out = tool(
        60,
        python().to_str().unwrap(),
        &["-c", script, dir.join("DICOMDIR").to_str().unwrap()],
    );
    assert!(out.status.success(), "pydicom: {}", text(&out));
    let counts: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts[0], expected.len(), "{counts:?}");
    assert_eq!(counts[3], series, "{counts:?}");
    let pictures = std::fs::read_dir(dir.join("IHE_PDI")).unwrap().count();
    assert_eq!(pictures, series, "one picture per series");
    dir
}

/// INDEX.HTM in chromium (tests/viewer/media.mjs): a loaded picture per series.
fn check_page(dir: &Path, series: usize) {
    let out = Command::new("node")
        .arg("media.mjs")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer"))
        .env("DIR", dir)
        .env("SERIES", series.to_string())
        .env("OUT", dir)
        .output()
        .expect("running node (the test command installs it)");
    let log = text(&out);
    assert!(out.status.success(), "INDEX.HTM in chromium:\n{log}");
    assert_eq!(log.matches("ok: picture").count(), series, "{log}");
}

#[test]
fn studies_export_as_media_that_dcmtk_and_a_browser_open() {
    let t = TestArchive::new();
    let (originals, studies, series_of) = two_studies(&t);
    // the CLI: both studies
    let cli_zip = t.path("cli.zip");
    let said = t.ok(&[
        "export",
        "--study",
        &studies[0],
        "--study",
        &studies[1],
        "--out",
        cli_zip.to_str().unwrap(),
    ]);
    assert!(said.contains("2 study(ies), 12 instance(s)"), "{said}");
    let dir = check_media(&cli_zip, &originals, 4);
    check_page(&dir, 4);
    assert_eq!(audit_events(&t, "cli.export").len(), 2);

    add_user(&t, "integ", "integrator");
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "integ"));
    // DICOMweb: one study as a ZIP
    let answer = api.call(
        "GET",
        &format!("/dicomweb/studies/{}", studies[0]),
        &[("Accept", "application/zip")],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type, "application/zip");
    let zip = t.path("wado.zip");
    std::fs::write(&zip, &answer.body).unwrap();
    let first: HashMap<String, Vec<u8>> = originals
        .iter()
        .filter(|(_, bytes)| {
            let needle = studies[0].as_bytes();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(first.len(), 6);
    let dir = check_media(&zip, &first, 2);
    check_page(&dir, 2);
    // one series as a ZIP
    let (sop, (study, series)) = series_of.iter().next().unwrap();
    let answer = api.call(
        "GET",
        &format!("/dicomweb/studies/{study}/series/{series}"),
        &[("Accept", "application/zip")],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let zip = t.path("series.zip");
    std::fs::write(&zip, &answer.body).unwrap();
    let one: HashMap<String, Vec<u8>> = series_of
        .iter()
        .filter(|(_, (_, se))| se == series)
        .map(|(s, _)| (s.clone(), originals[s].clone()))
        .collect();
    assert_eq!(one.len(), 3, "{sop}");
    check_media(&zip, &one, 1);
    // multipart is still the default
    let answer = api.get(&format!("/dicomweb/studies/{}", studies[0]));
    assert!(answer.content_type.starts_with("multipart/related"));
    // the person's whole record from the web app's route
    let persons = api.ok(api.get(&format!("/api/persons?study={}", studies[0])));
    let person = persons[0]["id"].as_str().unwrap().to_string();
    let answer = api.get(&format!("/api/export?person={person}"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let zip = t.path("person.zip");
    std::fs::write(&zip, &answer.body).unwrap();
    check_media(&zip, &originals, 4);
    let events = audit_events(&t, "http.export");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e["study_uid"].is_string()),
        "{events:?}"
    );

    // bad input: problem details
    let unknown = "1.2.826.0.1.3680043.8.498.404";
    for path in [
        format!("/api/export?study={unknown}"),
        format!("/api/export?study={}&study={unknown}", studies[0]),
        format!("/dicomweb/studies/{unknown}"),
    ] {
        let answer = api.call("GET", &path, &[("Accept", "application/zip")], None);
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
        assert_eq!(answer.content_type, "application/problem+json", "{path}");
    }
    let answer = api.get("/api/export?study=not-a-uid");
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.content_type, "application/problem+json");
    let answer = http(
        "GET",
        &format!("{}/api/export?study={}", base(&server), studies[0]),
        &[],
        None,
    );
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(answer.content_type, "application/problem+json");
    // a radiologist never takes original objects away
    let rad = Api::new(&server, &token(&t, "rad"));
    let answer = rad.get(&format!("/api/export?study={}", studies[0]));
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.content_type, "application/problem+json");
}
