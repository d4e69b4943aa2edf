//! An archive written by an older build opens and serves with this one, and rebuilds its index
//! unchanged. `fixtures/archive-v1/data` was made by the single-crate build (commit d967269;
//! `fixtures/archive-v1/MADE.md` says how): 12 instances of 3 studies, users, tokens, an AE, a
//! manual unlink in the person index, an exported audit trail. Nothing of it is regenerated here.

mod common;

use common::{files_under, sop_uid, Api, TestArchive};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/archive-v1")
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the old archive, so the test never changes the fixture.
fn old_archive() -> TestArchive {
    let t = TestArchive::new();
    copy_tree(&fixture().join("data"), &t.data());
    // the key file is the owner's only, as the old build left it
    use std::os::unix::fs::PermissionsExt;
    let key = t.data().join("keys/master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    t
}

fn token(name: &str) -> String {
    std::fs::read_to_string(fixture().join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// What the old archive holds, as this build serves it: studies, instances byte for byte,
/// tokens and roles, the person index's manual decision, the AE table, the audit trail.
fn serves_as_written(t: &TestArchive) {
    let studies = t.ok(&["studies"]);
    assert!(studies.contains("3 studies"), "{studies}");
    assert!(studies.contains("Miller^Susan^Barbara"), "{studies}");
    let originals = files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/studies"));
    assert_eq!(originals.len(), 12);
    for f in &originals {
        let got = t.path("got.dcm");
        t.ok(&["get", &sop_uid(f), "-o", got.to_str().unwrap()]);
        assert!(
            std::fs::read(&got).unwrap() == std::fs::read(f).unwrap(),
            "{} comes back byte for byte",
            f.display()
        );
    }
    let ae = t.ok(&["ae", "list"]);
    assert!(ae.contains("PACS1") && ae.contains("11113"), "{ae}");
    let users = t.ok(&["user", "list"]);
    for u in ["admin", "rad", "miller"] {
        assert!(users.contains(u), "{users}");
    }
    let scrub = t.ok(&["scrub"]);
    assert!(
        scrub.contains("12 blobs") && scrub.contains("0 missing, 0 corrupt"),
        "{scrub}"
    );

    let server = t.serve();
    let admin = Api::new(&server, &token("admin.token"));
    assert_eq!(admin.studies("").len(), 3);
    // the search keys the old build stored are found by this build's folding (migration 9)
    assert_eq!(admin.studies("?PatientName=sorensen*").len(), 2);
    assert_eq!(admin.studies("?PatientName=S%C3%98RENSEN*").len(), 2);
    // the administrator's unlink is still in force: HOSP_B's key is a person of its own
    let a = admin.person_of("HOSP_A", "53926181");
    let b = admin.person_of("HOSP_B", "MRN873179");
    assert_ne!(a, b);
    assert_eq!(admin.keys(&a), ["HOSP_A/53926181"]);
    // the patient's token still sees their study, and only it
    let patient = Api::new(&server, &token("patient.token"));
    let theirs = patient.studies("");
    assert_eq!(theirs, ["2.25.34426115533229743591315038644498071765"]);
    // the radiologist signs in with the password set by the old build
    let login = common::http(
        "POST",
        &format!("{}/api/login", admin.base),
        &[],
        Some((
            "application/json",
            br#"{"user":"rad","password":"radiologist pass 1"}"#,
        )),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    drop(server);
    let verify = t.ok(&["audit", "verify"]);
    assert!(verify.contains("audit trail intact"), "{verify}");
}

#[test]
fn an_archive_written_by_the_single_crate_build_opens_serves_and_reindexes() {
    let t = old_archive();
    serves_as_written(&t);
    // The index rebuilt from one replica alone holds the same archive: the replicas, the
    // journal and the exported audit trail of the old build are enough.
    let out = t.ok(&["reindex", "--from-replica", "3"]);
    assert!(
        out.contains("12 blobs, 12 instances indexed") && out.contains("audit events restored"),
        "{out}"
    );
    serves_as_written(&t);
}
