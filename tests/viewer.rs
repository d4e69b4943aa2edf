//! The browser viewer end to end: Debian's chromium, headless, driven by playwright-core
//! (tests/viewer/e2e.mjs) against the running binary, as a radiologist and an administrator use
//! it. Screenshots of every step are left under target/viewer-screenshots.

mod common;

use common::{add_user, base, TestArchive};
use strata::synth::{self, Modality, SynthOptions};

/// A CT study of one person at HOSP_A and a second study of the same person at HOSP_B, imported;
/// returns (family name, the CT study's UID).
fn two_hospitals(t: &TestArchive) -> (String, String) {
    let opts = SynthOptions {
        seed: 77,
        patients: 1,
        studies: 2,
        series_per_study: 1,
        slices: 30,
        rows: 256,
        cols: 256,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let dir = t.path("viewer-in");
    std::fs::create_dir_all(&dir).unwrap();
    let specs = synth::plan(&opts).unwrap();
    let first = specs[0].clone();
    for (n, mut spec) in specs.into_iter().enumerate() {
        spec.patient_name = first.patient_name.clone();
        spec.patient_birth_date = first.patient_birth_date.clone();
        spec.patient_sex = first.patient_sex.clone();
        if spec.study_instance_uid == first.study_instance_uid {
            spec.issuer_of_patient_id = "HOSP_A".into();
            spec.patient_id = "VA-1".into();
        } else {
            spec.issuer_of_patient_id = "HOSP_B".into();
            spec.patient_id = "VB-7".into();
        }
        std::fs::write(dir.join(format!("{n}.dcm")), synth::instance_bytes(&spec)).unwrap();
    }
    t.ok(&["import", dir.to_str().unwrap()]);
    let family = first.patient_name.split('^').next().unwrap().to_string();
    (family, first.study_instance_uid)
}

#[test]
fn a_radiologist_reads_a_study_and_an_admin_sees_the_person() {
    let t = TestArchive::new();
    let (family, study) = two_hospitals(&t);
    add_user(&t, "rad", "radiologist");
    add_user(&t, "boss", "admin");
    let server = t.serve();
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/viewer-screenshots");
    let _ = std::fs::remove_dir_all(out);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer");
    let result = std::process::Command::new("node")
        .arg("e2e.mjs")
        .current_dir(dir)
        .env("BASE", base(&server))
        .env("RAD_USER", "rad")
        .env("RAD_PASSWORD", common::PASSWORD)
        .env("ADMIN_USER", "boss")
        .env("ADMIN_PASSWORD", common::PASSWORD)
        .env("PATIENT", &family)
        .env("STUDY", &study)
        .env("OUT", out)
        .output()
        .expect("running node (the test command installs it)");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&result.stderr),
        String::from_utf8_lossy(&result.stdout)
    );
    assert!(
        result.status.success(),
        "viewer end to end:\n{log}\nserver:\n{}",
        server.log_text()
    );
    println!("{log}");
    assert!(
        log.contains("ok: after idle the badge says LOSSLESS"),
        "{log}"
    );
    let pngs = std::fs::read_dir(out).unwrap().count();
    assert!(pngs >= 9, "{pngs} screenshots under {out}");
}
