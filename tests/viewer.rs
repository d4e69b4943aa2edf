//! The browser viewer end to end: Debian's chromium, headless, driven by playwright-core
//! (tests/viewer/e2e.mjs) against the running binary, as a radiologist and an administrator use
//! it. Screenshots of every step are left under target/viewer-screenshots.

mod common;

use common::viewer::{node, screenshots, EndToEnd};
use common::{add_patient, add_user, base, token, Api, TestArchive};
use strata_synth::{self as synth, Modality, SynthOptions};

#[test]
fn a_radiologist_reads_a_study_and_an_admin_sees_the_person() {
    let t = TestArchive::new();
    let e2e = EndToEnd::prepare(&t);
    let mut server = t.serve();
    let shots = screenshots("reading");
    let mut restarts = 0;
    let (ok, log) = e2e.run(&base(&server), &shots, || {
        let http = server.http.to_string();
        server.stop();
        server = t.serve_http_on(&http);
        restarts += 1;
    });
    assert!(
        ok,
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
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 13, "{pngs} screenshots");
}

#[test]
fn the_study_list_and_the_viewers_tools_work() {
    let t = TestArchive::new();
    // 30 small studies of 8 patients in several modalities, and a CT study of two series.
    let mixed = SynthOptions {
        seed: 5,
        patients: 8,
        studies: 30,
        series_per_study: 1,
        slices: 2,
        rows: 32,
        cols: 32,
        modality: None,
        noise: false,
    };
    let ct = SynthOptions {
        seed: 6,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices: 12,
        rows: 128,
        cols: 128,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let mut specs = synth::plan(&mixed).unwrap();
    let ct_specs = synth::plan(&ct).unwrap();
    let dir = t.path("tools-in");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, spec) in specs.iter().chain(&ct_specs).enumerate() {
        std::fs::write(dir.join(format!("{n}.dcm")), synth::instance_bytes(spec)).unwrap();
    }
    t.ok(&["import", dir.to_str().unwrap()]);
    specs.extend(ct_specs.iter().cloned());

    // What each search must find, from what was imported.
    let mut studies: Vec<&synth::InstanceSpec> = Vec::new();
    for s in &specs {
        if !studies
            .iter()
            .any(|k| k.study_instance_uid == s.study_instance_uid)
        {
            studies.push(s);
        }
    }
    let uids = |keep: &dyn Fn(&synth::InstanceSpec) -> bool| -> Vec<String> {
        studies
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.study_instance_uid.clone())
            .collect()
    };
    let first = studies[0];
    let by_pid = uids(&|s| s.patient_id == first.patient_id);
    let code = first.modality.code();
    let by_modality = uids(&|s| s.modality.code() == code);
    let mut dates: Vec<&str> = studies.iter().map(|s| s.study_date.as_str()).collect();
    dates.sort();
    let (from, to) = (dates[dates.len() / 4], dates[dates.len() / 2]);
    let by_range = uids(&|s| (from..=to).contains(&s.study_date.as_str()));
    let by_accession = uids(&|s| s.accession_number == first.accession_number);
    assert!((26..=50).contains(&studies.len()), "two pages of studies");
    assert!(by_modality.len() <= 25 && by_range.len() <= 25 && by_range.len() >= 2);
    assert_eq!(by_accession.len(), 1, "accession numbers are unique");
    let iso = |d: &str| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]);
    let mut ct_series: Vec<(usize, String)> = ct_specs
        .iter()
        .map(|s| (s.series_number, s.series_instance_uid.clone()))
        .collect();
    ct_series.sort();
    ct_series.dedup();
    let expect = serde_json::json!({
        "total": studies.len(),
        "pid": { "id": first.patient_id, "studies": by_pid },
        "modality": { "code": code, "studies": by_modality },
        "range": { "from": iso(from), "to": iso(to), "studies": by_range },
        "accession": { "number": first.accession_number, "study": by_accession[0] },
        "ct": {
            "study": ct_specs[0].study_instance_uid,
            "series": ct_series.iter().map(|(_, uid)| uid).collect::<Vec<_>>(),
            "slices": ct.slices,
        },
    });

    add_user(&t, "rad", "radiologist");
    add_user(&t, "boss", "admin");
    let server = t.serve();
    // This reader reads with one viewport, whatever the hanging protocols say: the tools below
    // start from it (tests/priors.rs tests the protocols).
    let rad = Api::new(&server, &token(&t, "rad"));
    for kind in ["CT", "MR"] {
        let body = serde_json::json!({"kind": kind, "layout": "1x1"}).to_string();
        let a = rad.call(
            "PUT",
            "/api/viewer/layouts",
            &[],
            Some(("application/json", body.as_bytes())),
        );
        assert_eq!(a.status, 204, "{}", a.text());
    }
    // A patient account, bound to the CT study's person.
    let c = &ct_specs[0];
    let person =
        Api::new(&server, &token(&t, "boss")).person_of(&c.issuer_of_patient_id, &c.patient_id);
    add_patient(&t, "pat", &person);
    let theirs = uids(&|s| s.patient_id == c.patient_id);
    let mut expect = expect;
    expect["patient"] = serde_json::json!({ "studies": theirs, "person": person });
    let shots = screenshots("tools");
    let (ok, log) = node(
        "tools.mjs",
        &[
            ("BASE", &base(&server)),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("ADMIN_USER", "boss"),
            ("ADMIN_PASSWORD", common::PASSWORD),
            ("PATIENT_USER", "pat"),
            ("PATIENT_PASSWORD", common::PASSWORD),
            ("EXPECT", &expect.to_string()),
            ("OUT", &shots),
        ],
        || panic!("this script does not restart the server"),
    );
    assert!(ok, "viewer tools:\n{log}\nserver:\n{}", server.log_text());
    println!("{log}");
    for step in [
        "ok: the second page lists the other",
        "ok: a second click sorts descending",
        "ok: 2×2 shows four viewports, each painted",
        "ok: after logging out the session is gone (401)",
        "ok: an admin opens the review queue",
        "ok: a patient lists their own studies only",
        "ok: a patient may download their own study",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    assert!(std::fs::read_dir(&shots).unwrap().count() >= 10);
}
