//! The browser viewer end to end: Debian's chromium, headless, driven by playwright-core
//! (tests/viewer/e2e.mjs) against the running binary, as a radiologist and an administrator use
//! it. Screenshots of every step are left under target/viewer-screenshots.

mod common;

use common::{add_user, base, broken_jpeg, TestArchive};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
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
    // A study whose pixel data cannot be decoded: the viewer must say so.
    let broken = "1.2.826.0.1.3680043.8.498.77001";
    std::fs::create_dir_all(t.path("broken")).unwrap();
    broken_jpeg(&t.path("broken/broken.dcm"), broken);
    t.ok(&["import", t.path("broken").to_str().unwrap()]);
    add_user(&t, "rad", "radiologist");
    add_user(&t, "boss", "admin");
    let mut server = t.serve();
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/viewer-screenshots");
    let _ = std::fs::remove_dir_all(out);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer");
    let mut node = std::process::Command::new("node")
        .arg("e2e.mjs")
        .current_dir(dir)
        .env("BASE", base(&server))
        .env("RAD_USER", "rad")
        .env("RAD_PASSWORD", common::PASSWORD)
        .env("ADMIN_USER", "boss")
        .env("ADMIN_PASSWORD", common::PASSWORD)
        .env("PATIENT", &family)
        .env("STUDY", &study)
        .env("BROKEN_STUDY", broken)
        .env("OUT", out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node (the test command installs it)");
    let stderr = node.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // The script asks on stdout for the server to be restarted (the connection is lost and comes
    // back where it was); the answer goes to its stdin.
    let mut to_node = node.stdin.take().unwrap();
    let mut stdout = String::new();
    let mut restarts = 0;
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if line == "restart-server" {
            let http = server.http.to_string();
            drop(server);
            server = t.serve_http_on(&http);
            restarts += 1;
            writeln!(to_node, "restarted").unwrap();
        } else {
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    let status = node.wait().unwrap();
    let log = format!("{}\n{stdout}", errors.join().unwrap());
    assert!(
        status.success(),
        "viewer end to end:\n{log}\nserver:\n{}",
        server.log_text()
    );
    println!("{log}");
    assert_eq!(restarts, 1, "{log}");
    for step in [
        "ok: after idle the badge says LOSSLESS",
        "ok: a swipe scrolls",
        "ok: a pinch zooms",
        "ok: a study that cannot be rendered is said so",
        "ok: after the server came back the view is where it was",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    let pngs = std::fs::read_dir(out).unwrap().count();
    assert!(pngs >= 13, "{pngs} screenshots under {out}");
}
