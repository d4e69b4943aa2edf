//! Priors: a CT study and an earlier CT of the same person from another hospital (another
//! issuer, another frame of reference, other slice positions), linked by the person index. In
//! chromium (tests/viewer/priors.mjs) the study opens with its prior beside it; scrolling one
//! scrolls the other to the same position (by the offset between them when linked), both ways;
//! window and zoom follow when linked.

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, python, text, token, tool, Api, TestArchive};
use serde_json::json;
use strata_synth::{self as synth, Modality, SynthOptions};

/// A CT study at hospital A and the same person's earlier CT at hospital B, imported into `t`:
/// (current study, prior study, the current study's first slice file, its slices' lowest and
/// highest z). With `one_frame` the prior lies in the current study's frame of reference
/// (registered to it), at other positions among the current's slices.
fn two_hospitals(
    t: &TestArchive,
    one_frame: bool,
) -> (String, String, std::path::PathBuf, (f64, f64)) {
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
    let frame = specs[0].frame_of_reference_uid.clone();
    let zs: Vec<f64> = specs
        .iter()
        .filter(|s| s.study_instance_uid == current_uid)
        .map(|s| s.z_position)
        .collect();
    let z_range = (
        zs.iter().copied().fold(f64::INFINITY, f64::min),
        zs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let mut first = None;
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
            if one_frame {
                spec.frame_of_reference_uid = frame.clone();
                spec.z_position = z_range.0 + 1.0 + 5.0 * (spec.instance_number as f64 - 1.0);
            }
        }
        let path = dir.join(synth::relative_path(spec));
        if current && spec.instance_number == 1 {
            first = Some(path.clone());
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, synth::instance_bytes(spec)).unwrap();
    }
    let prior_uid = specs
        .iter()
        .find(|s| s.study_instance_uid != current_uid)
        .unwrap()
        .study_instance_uid
        .clone();
    assert_eq!(
        specs[0].frame_of_reference_uid == specs.last().unwrap().frame_of_reference_uid,
        one_frame
    );
    t.ok(&["import", dir.to_str().unwrap()]);
    (current_uid, prior_uid, first.unwrap(), z_range)
}

/// The numbers of a browser script's result `k`.
fn numbers(got: &serde_json::Value, k: &str) -> Vec<f64> {
    got[k]
        .as_array()
        .unwrap_or_else(|| panic!("{k}: {got}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn a_study_opens_with_its_prior_from_another_hospital_and_they_scroll_together() {
    scroll_together(false);
}

#[test]
fn a_prior_in_the_same_frame_of_reference_scrolls_to_the_same_position() {
    scroll_together(true);
}

/// The study opens with its prior; scrolling either scrolls the other to the same position:
/// by location in one frame of reference (`one_frame`), else by the offset between the slices
/// shown when linked.
fn scroll_together(one_frame: bool) {
    let t = TestArchive::new();
    let (current_uid, prior_uid, _, _) = two_hospitals(&t, one_frame);
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
    let got = common::viewer::result(&log);
    let (cur, prior) = (
        numbers(&got, "current_positions"),
        numbers(&got, "prior_positions"),
    );
    assert_eq!((cur.len(), prior.len()), (30, 30), "{got}");
    // in one frame of reference, no offset; else, linked with both at their first slices, the
    // offset between those
    let offset = if one_frame { 0.0 } else { prior[0] - cur[0] };
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
    let note = got["prior_note"].as_str().unwrap();
    match one_frame {
        true => assert!(note.contains("by position"), "{got}"),
        false => assert!(note.contains("offset"), "{got}"),
    }
    assert_eq!(got["priors_offered"], json!([prior_uid]), "{got}");
    // reading the prior is audited like any view of patient data
    let opens = common::audit_events(&t, "http.stream.open");
    assert!(
        opens.iter().any(|e| e.to_string().contains(&prior_uid)),
        "{opens:?}"
    );
}

#[test]
fn hanging_protocols_lay_out_a_study_and_a_readers_own_layout_is_remembered() {
    let t = TestArchive::new();
    let (current_uid, prior_uid, _, _) = two_hospitals(&t, false);
    add_user(&t, "rad", "radiologist");
    add_user(&t, "rad2", "radiologist");
    let server = t.serve();
    let rad = Api::new(&server, &token(&t, "rad"));
    let rad2 = Api::new(&server, &token(&t, "rad2"));
    // the archive's rules, and nothing of the reader's own yet
    let layouts = rad.ok(rad.get("/api/viewer/layouts"));
    assert_eq!(
        layouts["rules"][0]["name"], "Chest CT, lung series, with its prior",
        "{layouts}"
    );
    assert_eq!(layouts["mine"], json!([]), "{layouts}");
    // what a reader may remember is checked
    for bad in [
        json!({"kind": "CT", "layout": "3x3"}),
        json!({"kind": "CT", "layout": "1x1", "prior": true}),
        json!({"kind": "ct; drop", "layout": "1x1"}),
        json!({"kind": "CT", "layout": "1x1", "extra": 1}),
    ] {
        let body = bad.to_string();
        let a = rad.call(
            "PUT",
            "/api/viewer/layouts",
            &[],
            Some(("application/json", body.as_bytes())),
        );
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
    }
    let shots = screenshots("hanging");
    let run = |user: &str, expect: &str| {
        let (ok, log) = node(
            "hanging.mjs",
            &[
                ("BASE", base(&server).as_str()),
                ("RAD_USER", user),
                ("RAD_PASSWORD", common::PASSWORD),
                ("STUDY", current_uid.as_str()),
                ("PRIOR", prior_uid.as_str()),
                ("EXPECT", expect),
                ("OUT", shots.as_str()),
            ],
            || {},
        );
        assert!(
            ok,
            "viewer layouts ({user}, {expect}):\n{log}\nserver:\n{}",
            server.log_text()
        );
        println!("{log}");
    };
    // the chest CT rule: the lung series with the prior beside it; the reader picks one
    // viewport, which is remembered for chest CTs and applied when the study opens again
    run("rad", "rule");
    run("rad", "mine");
    let mine = rad.ok(rad.get("/api/viewer/layouts"))["mine"].clone();
    assert_eq!(
        mine,
        json!([{"kind": "CT/CHEST", "layout": "1x1", "prior": false}]),
        "{mine}"
    );
    // another reader still gets the rule
    run("rad2", "rule");
    assert_eq!(rad2.ok(rad2.get("/api/viewer/layouts"))["mine"], json!([]));
    // forgotten, the rule applies again
    let a = rad.call("DELETE", "/api/viewer/layouts?kind=CT/CHEST", &[], None);
    assert_eq!(a.status, 204, "{}", a.text());
    assert_eq!(rad.ok(rad.get("/api/viewer/layouts"))["mine"], json!([]));
}

#[test]
fn a_localizer_and_a_slice_show_where_each_other_lies() {
    let t = TestArchive::new();
    let (current_uid, _, first, (z_low, z_high)) = two_hospitals(&t, false);
    // a coronal localizer of the current study (its frame of reference) through y = 0, from
    // 10 mm above the slices to 10 mm below them in 64 rows
    let (top, row_mm) = (z_high + 10.0, (z_high - z_low + 20.0) / 64.0);
    let dir = t.path("localizer");
    std::fs::create_dir_all(&dir).unwrap();
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            "-c",
            "import sys, pydicom
from pydicom.uid import generate_uid
d = pydicom.dcmread(sys.argv[1])
d.SeriesInstanceUID = generate_uid()
d.SOPInstanceUID = generate_uid()
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
d.SeriesNumber = 99
d.SeriesDescription = 'LOCALIZER'
d.ImageType = ['ORIGINAL', 'PRIMARY', 'LOCALIZER']
d.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
d.ImagePositionPatient = [float(d.ImagePositionPatient[0]), 0.0, float(sys.argv[3])]
d.PixelSpacing = [float(sys.argv[4]), float(d.PixelSpacing[1])]
d.save_as(sys.argv[2], enforce_file_format=True)",
            first.to_str().unwrap(),
            dir.join("localizer.dcm").to_str().unwrap(),
            &top.to_string(),
            &row_mm.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    t.ok(&["import", dir.to_str().unwrap()]);
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let shots = screenshots("reference");
    let (ok, log) = node(
        "reference.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", current_uid.as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(
        ok,
        "viewer reference lines:\n{log}\nserver:\n{}",
        server.log_text()
    );
    println!("{log}");
    let got = common::viewer::result(&log);
    let line = |k: &str| -> Vec<[f64; 2]> {
        got[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k}: {got}"))
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect()
    };
    // the axial slice shown (z) crosses the localizer in a row: (top − z) / spacing rows down
    // from the first row's centre, half a row below the image's top edge
    let (slices, axial) = (
        numbers(&got, "axial_positions"),
        numbers(&got, "axial_plane"),
    );
    assert!(
        slices.len() == 30 && got["axial_slice"].as_u64().unwrap() >= 5,
        "{got}"
    );
    let on_localizer = line("on_localizer");
    let y = (top - axial[2]) / row_mm + 0.5;
    assert_eq!(on_localizer.len(), 2, "{got}");
    for (p, x) in on_localizer.iter().zip([0.0, 64.0]) {
        assert!(
            (p[0] - x).abs() < 1e-6 && (p[1] - y).abs() < 1e-6,
            "{got}: row {y}"
        );
    }
    // the localizer (y = 0) crosses the axial slice in a row too: (0 − y₀) / spacing + ½
    let on_axial = line("on_axial");
    let y = (0.0 - axial[1]) / axial[9] + 0.5;
    assert_eq!(on_axial.len(), 2, "{got}");
    for p in &on_axial {
        assert!((p[1] - y).abs() < 1e-6, "{got}: row {y}");
    }
    // two views of the axial series are parallel: no line between them
    assert_eq!(got["parallel_lines"], json!(0), "{got}");
}
