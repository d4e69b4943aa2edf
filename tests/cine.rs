//! Cine in the viewer: a 512² CT series and a multi-frame clip with a Frame Time, played in
//! chromium (tests/viewer/cine.mjs) against the running binary; the frames painted are counted
//! against the clock at 10 and 30 frames per second.

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, TestArchive};
use strata_synth::{self as synth, Modality, SynthOptions};

/// Imports a 512² CT series of 40 slices and a clip of 45 frames of 256² whose Frame Time is
/// 33.3 ms; returns their studies' UIDs.
fn studies(t: &TestArchive) -> (String, String) {
    let opts = SynthOptions {
        seed: 31,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: 40,
        rows: 512,
        cols: 512,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let specs = synth::plan(&opts).unwrap();
    let dir = t.path("cine-in");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, spec) in specs.iter().enumerate() {
        std::fs::write(dir.join(format!("{n}.dcm")), synth::instance_bytes(spec)).unwrap();
    }
    let clip = dir.join("clip.dcm");
    synth::write_large_multiframe(&clip, 32, 256, 256, 45).unwrap();
    t.ok(&["import", dir.to_str().unwrap()]);
    let object = dicom_object::open_file(&clip).unwrap();
    let clip_study = object
        .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    (specs[0].study_instance_uid.clone(), clip_study)
}

#[test]
fn cine_plays_at_the_rate_chosen_and_stops_lossless() {
    let t = TestArchive::new();
    let (study, clip) = studies(&t);
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let shots = screenshots("cine");
    let (ok, log) = node(
        "cine.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", study.as_str()),
            ("CLIP_STUDY", clip.as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(ok, "viewer cine:\n{log}\nserver:\n{}", server.log_text());
    println!("{log}");
    for step in [
        "ok: at 10 fps the viewer paints",
        "ok: at 30 fps the viewer paints",
        "ok: stopped on the slice shown",
        "ok: the clip stops lossless",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    let got = common::viewer::result(&log);
    let fps = |k: &str| got[k]["fps"].as_f64().unwrap();
    assert!((fps("at10") - 10.0).abs() <= 2.0, "{got}");
    assert!(fps("at30") >= 24.0, "{got}");
    assert!(fps("clip") >= 24.0, "{got}");
    println!(
        "cine of a 512x512 series at 30 fps: {:.1} frames/s painted, interval p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; at 10 fps: {:.1} frames/s, p95 {:.1} ms; clip of 256x256 at its 33.3 ms: {:.1} frames/s, p95 {:.1} ms",
        fps("at30"),
        got["at30"]["p50_ms"].as_f64().unwrap(),
        got["at30"]["p95_ms"].as_f64().unwrap(),
        got["at30"]["max_ms"].as_f64().unwrap(),
        fps("at10"),
        got["at10"]["p95_ms"].as_f64().unwrap(),
        fps("clip"),
        got["clip"]["p95_ms"].as_f64().unwrap(),
    );
}
