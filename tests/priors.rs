//! Priors: a CT study and an earlier CT of the same person from another hospital (another
//! issuer, another frame of reference, other slice positions), linked by the person index. In
//! chromium (tests/viewer/priors.mjs) the study opens with its prior beside it; scrolling one
//! scrolls the other to the same position (by the offset between them when linked), both ways;
//! window and zoom follow when linked.

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, token, Api, TestArchive};
use serde_json::{json, Value};
use strata_synth::{self as synth, Modality, SynthOptions};

#[test]
fn a_study_opens_with_its_prior_from_another_hospital_and_they_scroll_together() {
    let t = TestArchive::new();
    let opts = SynthOptions {
        seed: 23,
        patients: 1,
        studies: 2,
        series_per_study: 1,
        slices: 30,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let mut specs = synth::plan(&opts).unwrap();
    let current_uid = specs[0].study_instance_uid.clone();
    let (name, birth, sex) = (
        specs[0].patient_name.clone(),
        specs[0].patient_birth_date.clone(),
        specs[0].patient_sex.clone(),
    );
    let dir = t.path("studies");
    std::fs::create_dir_all(&dir).unwrap();
    for spec in specs.iter_mut() {
        // one person, as two hospitals know them: the current study at A, the prior at B
        let current = spec.study_instance_uid == current_uid;
        spec.patient_name = name.clone();
        spec.patient_birth_date = birth.clone();
        spec.patient_sex = sex.clone();
        (spec.issuer_of_patient_id, spec.patient_id, spec.study_date) = if current {
            ("HOSP_A".into(), "A-1".into(), "20261001".into())
        } else {
            ("HOSP_B".into(), "B-7".into(), "20250301".into())
        };
        if !current {
            // the other scanner placed the patient elsewhere, with thicker slices
            spec.slice_thickness = 5.0;
            spec.z_position = 300.0 + 5.0 * (spec.instance_number as f64 - 1.0);
        }
        let path = dir.join(synth::relative_path(spec));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, synth::instance_bytes(spec)).unwrap();
    }
    let prior_uid = specs
        .iter()
        .find(|s| s.study_instance_uid != current_uid)
        .unwrap()
        .study_instance_uid
        .clone();
    assert_ne!(
        specs[0].frame_of_reference_uid,
        specs.last().unwrap().frame_of_reference_uid
    );
    t.ok(&["import", dir.to_str().unwrap()]);
    add_user(&t, "rad", "radiologist");
    add_user(&t, "admin", "admin");
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    assert_eq!(
        admin.person_of("HOSP_A", "A-1"),
        admin.person_of("HOSP_B", "B-7"),
        "the person index links the two hospitals' IDs"
    );
    let shots = screenshots("priors");
    let (ok, log) = node(
        "priors.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", current_uid.as_str()),
            ("PRIOR", prior_uid.as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(ok, "viewer priors:\n{log}\nserver:\n{}", server.log_text());
    println!("{log}");
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .expect("the script's result");
    let got: Value = serde_json::from_str(line).unwrap();
    let positions = |k: &str| -> Vec<f64> {
        got[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (cur, prior) = (positions("current_positions"), positions("prior_positions"));
    assert_eq!((cur.len(), prior.len()), (30, 30), "{got}");
    // linked with both at their first slices: the offset between those
    let offset = prior[0] - cur[0];
    let nearest = |ps: &[f64], p: f64| {
        (0..ps.len())
            .min_by(|&a, &b| (ps[a] - p).abs().total_cmp(&(ps[b] - p).abs()))
            .unwrap()
    };
    let pair = |k: &str| {
        let v = got[k].as_array().unwrap();
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    // the current scrolled: the prior at the same position
    let (c, p) = pair("after_current_scroll");
    assert!(c > 0, "{got}");
    assert_eq!(p, nearest(&prior, cur[c] + offset), "{got}");
    assert!((prior[p] - (cur[c] + offset)).abs() <= 2.5, "{got}");
    // the prior scrolled: the current at the same position
    let (c2, p2) = pair("after_prior_scroll");
    assert_ne!(p2, p, "{got}");
    assert_eq!(c2, nearest(&cur, prior[p2] - offset), "{got}");
    assert_eq!(got["linked_preset"], "lung", "{got}");
    assert!(
        got["prior_note"].as_str().unwrap().contains("offset"),
        "{got}"
    );
    assert_eq!(got["priors_offered"], json!([prior_uid]), "{got}");
    // reading the prior is audited like any view of patient data
    let opens = common::audit_events(&t, "http.stream.open");
    assert!(
        opens.iter().any(|e| e.to_string().contains(&prior_uid)),
        "{opens:?}"
    );
}
