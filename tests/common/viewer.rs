//! What the browser tests share: the viewer's end-to-end data (one person at two hospitals),
//! a directory for screenshots, and running a script of tests/viewer with its hooks.

use super::TestArchive;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use strata_synth::{self as synth, Modality, SynthOptions};

/// A CT study of one person at HOSP_A and a second study of the same person at HOSP_B, imported;
/// returns (family name, the CT study's UID).
pub fn two_hospitals(t: &TestArchive) -> (String, String) {
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

/// What tests/viewer/e2e.mjs reads: a person at two hospitals (the reading study), a study
/// whose pixel data cannot be decoded, and the radiologist `rad` and administrator `boss`.
pub struct EndToEnd {
    family: String,
    study: String,
}

/// The Study Instance UID of the study the viewer must say it cannot render.
const BROKEN_STUDY: &str = "1.2.826.0.1.3680043.8.498.77001";

impl EndToEnd {
    /// Imports the studies into `t` and adds the two users.
    pub fn prepare(t: &TestArchive) -> EndToEnd {
        let (family, study) = two_hospitals(t);
        std::fs::create_dir_all(t.path("broken")).unwrap();
        super::broken_jpeg(&t.path("broken/broken.dcm"), BROKEN_STUDY);
        t.ok(&["import", t.path("broken").to_str().unwrap()]);
        super::add_user(t, "rad", "radiologist");
        super::add_user(t, "boss", "admin");
        EndToEnd { family, study }
    }

    /// Runs e2e.mjs against `base`, its screenshots into `shots`, with `restart` as its
    /// restart-server hook (see [`node`]).
    pub fn run(&self, base: &str, shots: &str, restart: impl FnMut()) -> (bool, String) {
        node(
            "e2e.mjs",
            &[
                ("BASE", base),
                ("RAD_USER", "rad"),
                ("RAD_PASSWORD", super::PASSWORD),
                ("ADMIN_USER", "boss"),
                ("ADMIN_PASSWORD", super::PASSWORD),
                ("PATIENT", &self.family),
                ("STUDY", &self.study),
                ("BROKEN_STUDY", BROKEN_STUDY),
                ("OUT", shots),
            ],
            restart,
        )
    }
}

/// What a script printed as `result: {...}` (JSON), for the test to check against the truth.
pub fn result(log: &str) -> serde_json::Value {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("the script printed no result:\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the script's result: {e}: {line}"))
}

/// A fresh directory for one test's screenshots: target/viewer-screenshots/NAME.
pub fn screenshots(name: &str) -> String {
    let dir = format!(
        "{}/target/viewer-screenshots/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a script of tests/viewer with node and `vars` in its environment. When the script
/// prints `restart-server`, `restart` runs and the script is told `restarted`. Returns whether
/// it succeeded, and what it printed (stderr, then stdout).
pub fn node(script: &str, vars: &[(&str, &str)], mut restart: impl FnMut()) -> (bool, String) {
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer"))
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node (the test command installs it)");
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut to_node = child.stdin.take().unwrap();
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if line == "restart-server" {
            restart();
            writeln!(to_node, "restarted").unwrap();
        } else {
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    let status = child.wait().unwrap();
    (
        status.success(),
        format!("{}\n{stdout}", errors.join().unwrap()),
    )
}
