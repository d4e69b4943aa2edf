//! Measurements computed on the server from stored values, checked against phantoms whose
//! geometry and values are known exactly, then saved as a TID 1500 Measurement Report and a
//! Key Object Selection through the ingest path, retrieved by WADO-RS and read by pydicom
//! (tests/peers/sr_tid1500.py), and read back for the viewer; then the same in chromium, drawn
//! with the mouse (tests/viewer/measure.mjs).

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, token, Api, TestArchive};
use serde_json::{json, Value};
use strata_synth::{self as synth, InstanceSpec, Modality, SynthOptions, Target};

/// The disk: 40 mm of 60 HU in air.
const DISK_HU: i32 = 60;
const DISK_RADIUS_MM: f64 = 40.0;
const AIR_HU: i32 = -1000;
/// The markers' centres, in pixels.
const MARKER_A: (u32, u32) = (100, 200);
const MARKER_B: (u32, u32) = (400, 260);

/// A 512² CT series of two slices: the disk centred in the first, the markers in the second.
fn phantoms(t: &TestArchive) -> Vec<InstanceSpec> {
    let opts = SynthOptions {
        seed: 19,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: 2,
        rows: 512,
        cols: 512,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let specs = synth::plan(&opts).unwrap();
    let dir = t.path("phantoms");
    std::fs::create_dir_all(&dir).unwrap();
    let targets = [
        Target::Disk {
            centre: (256.0, 256.0),
            radius_mm: DISK_RADIUS_MM,
            value: DISK_HU,
            background: AIR_HU,
        },
        Target::Markers {
            a: MARKER_A,
            b: MARKER_B,
            value: 1000,
            background: AIR_HU,
        },
    ];
    for (spec, target) in specs.iter().zip(&targets) {
        let bytes = synth::target_instance_bytes(spec, target).unwrap();
        std::fs::write(dir.join(format!("{}.dcm", spec.instance_number)), bytes).unwrap();
    }
    t.ok(&["import", dir.to_str().unwrap()]);
    specs
}

fn request(spec: &InstanceSpec, kind: &str, points: Value) -> Value {
    json!({
        "study": spec.study_instance_uid,
        "series": spec.series_instance_uid,
        "instance": spec.sop_instance_uid,
        "kind": kind,
        "points": points,
    })
}

fn centre(p: (u32, u32)) -> [f64; 2] {
    [f64::from(p.0) + 0.5, f64::from(p.1) + 0.5]
}

#[test]
fn measurements_match_the_phantoms_and_are_saved_as_tid_1500() {
    let t = TestArchive::new();
    let specs = phantoms(&t);
    let (disk, markers) = (&specs[0], &specs[1]);
    let spacing = disk.pixel_spacing;
    add_user(&t, "rad", "radiologist");
    add_user(&t, "boss", "admin");
    add_user(&t, "scanner", "modality");
    let server = t.serve();
    let rad = Api::new(&server, &token(&t, "rad"));

    // a length between the markers' centres: the truth to the micrometre
    let length = rad.ok(rad.post(
        "/api/measure",
        request(
            markers,
            "length",
            json!([centre(MARKER_A), centre(MARKER_B)]),
        ),
    ));
    let truth = 300.0f64.hypot(60.0) * spacing;
    assert!(
        (length["value"].as_f64().unwrap() - truth).abs() < 1e-6,
        "{length}"
    );
    assert_eq!(length["unit"], "mm");
    assert_eq!(length["calibration"], "pixel spacing");

    // an ellipse on the disk's outline: the disk's mean, its area within 2%
    let r_px = DISK_RADIUS_MM / spacing;
    let ellipse_points = json!([[256.0 - r_px, 256.0 - r_px], [256.0 + r_px, 256.0 + r_px]]);
    let ellipse = rad.ok(rad.post(
        "/api/measure",
        request(disk, "ellipse", ellipse_points.clone()),
    ));
    let region = &ellipse["region"];
    assert!(
        (region["mean"].as_f64().unwrap() - f64::from(DISK_HU)).abs() < 1.0,
        "{ellipse}"
    );
    let area = std::f64::consts::PI * DISK_RADIUS_MM * DISK_RADIUS_MM;
    assert!(
        (region["area"].as_f64().unwrap() / area - 1.0).abs() < 0.02,
        "{ellipse}"
    );
    assert_eq!(
        (region["sd"].as_f64(), region["area_unit"].as_str()),
        (Some(0.0), Some("mm2"))
    );
    assert_eq!(ellipse["value_unit"], "HU");
    let pixels = region["pixels"].as_f64().unwrap();
    assert!(
        (pixels * spacing * spacing / area - 1.0).abs() < 0.02,
        "{ellipse}"
    );

    // a rectangle half inside the disk: its min and max are air and the disk
    let rect = rad.ok(rad.post(
        "/api/measure",
        request(
            disk,
            "rectangle",
            json!([[256.0, 250.0], [256.0 + r_px + 5.0, 260.0]]),
        ),
    ));
    assert_eq!(
        (
            rect["region"]["min"].as_f64(),
            rect["region"]["max"].as_f64()
        ),
        (Some(f64::from(AIR_HU)), Some(f64::from(DISK_HU)))
    );

    // a probe reads the stored value after the rescale (stored 1084, intercept -1024)
    let probe = rad.ok(rad.post(
        "/api/measure",
        request(disk, "probe", json!([[256.5, 256.5]])),
    ));
    assert_eq!(
        (probe["value"].as_f64(), probe["unit"].as_str()),
        (Some(60.0), Some("HU"))
    );
    let air = rad.ok(rad.post("/api/measure", request(disk, "probe", json!([[3.5, 3.5]]))));
    assert_eq!(air["value"].as_f64(), Some(-1000.0));

    // an angle and a Cobb angle of the markers
    let angle = rad.ok(rad.post(
        "/api/measure",
        request(
            markers,
            "angle",
            json!([centre(MARKER_B), centre(MARKER_A), [400.5, 200.5]]),
        ),
    ));
    let truth_deg = (60.0f64).atan2(300.0).to_degrees();
    assert!(
        (angle["value"].as_f64().unwrap() - truth_deg).abs() < 1e-9,
        "{angle}"
    );

    // refusals: a clear reason, never a panic
    let bad = rad.post("/api/measure", request(disk, "volume", json!([[1, 1]])));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("is not one of"), "{}", bad.text());
    let bad = rad.post("/api/measure", request(disk, "length", json!([[1, 1]])));
    assert_eq!(bad.status, 400, "{}", bad.text());
    let outside = rad.post(
        "/api/measure",
        request(disk, "probe", json!([[600.0, 1.0]])),
    );
    assert_eq!(outside.status, 422, "{}", outside.text());
    let mut no_frame = request(disk, "probe", json!([[1.0, 1.0]]));
    no_frame["frame"] = json!(2);
    assert_eq!(rad.post("/api/measure", no_frame).status, 404);
    let scanner = Api::new(&server, &token(&t, "scanner"));
    let refused = scanner.post("/api/measure", request(disk, "probe", json!([[1.0, 1.0]])));
    assert_eq!(refused.status, 403);

    // ROI statistics on a 512² slice, decoded frame cached: the server's time per answer
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = std::time::Instant::now();
        rad.ok(rad.post(
            "/api/measure",
            request(disk, "ellipse", ellipse_points.clone()),
        ));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "ellipse ROI on 512x512, p50 {:.1} ms (this build)",
        times[10]
    );

    // saved: a Measurement Report and a Key Object Selection, through the ingest path
    let save = json!({
        "study": disk.study_instance_uid,
        "measurements": [
            {"series": markers.series_instance_uid, "instance": markers.sop_instance_uid,
             "kind": "length", "points": [centre(MARKER_A), centre(MARKER_B)]},
            {"series": disk.series_instance_uid, "instance": disk.sop_instance_uid,
             "kind": "ellipse", "points": ellipse_points},
            {"series": disk.series_instance_uid, "instance": disk.sop_instance_uid,
             "kind": "probe", "points": [[256.5, 256.5]]},
        ],
        "key_images": [{"series": disk.series_instance_uid, "instance": disk.sop_instance_uid}],
    });
    assert_eq!(scanner.post("/api/reports", save.clone()).status, 403);
    let saved = rad.post("/api/reports", save);
    assert_eq!(saved.status, 201, "{}", saved.text());
    let saved: Value = serde_json::from_slice(&saved.body).unwrap();
    let report = &saved["report"];
    assert_eq!(report["study"], disk.study_instance_uid.as_str());
    assert_eq!(
        saved["key_images"]["sop_class"],
        "1.2.840.10008.5.1.4.1.1.88.59"
    );

    // retrieved by DICOMweb and read by pydicom as TID 1500 with the same values
    let boss = Api::new(&server, &token(&t, "boss"));
    let expected = json!([
        {"concept": "Length", "value": length["value"], "unit": "mm",
         "graphic": "POLYLINE", "instance": markers.sop_instance_uid},
        {"concept": "Mean", "value": region["mean"], "unit": "[hnsf'U]",
         "graphic": "ELLIPSE", "instance": disk.sop_instance_uid},
        {"concept": "Mean", "value": 60.0, "unit": "[hnsf'U]",
         "graphic": "POINT", "instance": disk.sop_instance_uid},
    ]);
    let uid = |k: &str| report[k].as_str().unwrap();
    let out = boss.report_read_by_pydicom(
        &t.path("."),
        [uid("study"), uid("series"), uid("instance")],
        &expected,
    );
    assert_eq!(out.matches("ok: strata:").count(), 3, "{out}");

    // the study's reports, read back as the viewer draws them
    let read = rad.ok(rad.get(&format!("/api/reports?study={}", disk.study_instance_uid)));
    let reports = read["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{read}");
    let m = reports[0]["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{read}");
    assert_eq!(m[0]["kind"], "length");
    assert_eq!(m[0]["image"]["instance"], markers.sop_instance_uid.as_str());
    assert_eq!(
        m[0]["image"]["series"],
        markers.series_instance_uid.as_str()
    );
    assert!((m[0]["values"][0]["value"].as_f64().unwrap() - truth).abs() < 1e-3);
    assert_eq!(m[1]["kind"], "ellipse");
    let drawn = m[1]["points"].as_array().unwrap();
    assert!(
        (drawn[0][0].as_f64().unwrap() - (256.0 - r_px)).abs() < 1e-3,
        "{read}"
    );
    assert_eq!(m[2]["values"][0]["value"].as_f64(), Some(60.0));

    // the report belongs to the study's patient, and every step was audited
    let studies = rad.studies(&format!("?StudyInstanceUID={}", disk.study_instance_uid));
    assert_eq!(studies.len(), 1);
    let series = rad.ok(rad.get(&format!(
        "/dicomweb/studies/{}/series",
        disk.study_instance_uid
    )));
    assert_eq!(series.as_array().unwrap().len(), 3, "{series}");
    for action in ["http.measure", "http.report", "http.reports.read"] {
        assert!(
            !common::audit_events(&t, action).is_empty(),
            "no {action} event"
        );
    }
}

#[test]
fn the_viewer_measures_the_phantoms_with_the_mouse() {
    let t = TestArchive::new();
    let specs = phantoms(&t);
    let (disk, markers) = (&specs[0], &specs[1]);
    let spacing = disk.pixel_spacing;
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let r_px = DISK_RADIUS_MM / spacing;
    // slices follow the position along the normal: the disk's instance comes first
    let geometry = json!({
        "disk_slice": 0,
        "marker_slice": 1,
        "marker_a": centre(MARKER_A),
        "marker_b": centre(MARKER_B),
        "disk_centre": [256.0, 256.0],
        // a quarter pixel inside the outline
        "disk_radius_px": r_px - 0.25,
    });
    assert!(disk.z_position < markers.z_position);
    let shots = screenshots("measure");
    let (ok, log) = node(
        "measure.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", disk.study_instance_uid.as_str()),
            ("GEOMETRY", geometry.to_string().as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(
        ok,
        "viewer measuring:\n{log}\nserver:\n{}",
        server.log_text()
    );
    println!("{log}");
    let got = common::viewer::result(&log);
    let truth = 300.0f64.hypot(60.0) * spacing;
    let length = got["length"].as_f64().unwrap();
    assert!(
        (length - truth).abs() <= 0.5,
        "length {length} mm, truth {truth} mm"
    );
    let mean = got["ellipse_mean"].as_f64().unwrap();
    assert!((mean - f64::from(DISK_HU)).abs() <= 1.0, "mean {mean} HU");
    let disk_area = std::f64::consts::PI * DISK_RADIUS_MM * DISK_RADIUS_MM;
    let area = got["ellipse_area"].as_f64().unwrap();
    assert!(
        (area / disk_area - 1.0).abs() <= 0.02,
        "area {area} of {disk_area} mm2"
    );
    assert_eq!(got["probe"].as_f64(), Some(f64::from(DISK_HU)));
    // reopened: the three saved measurements, marked saved, with the values saved
    let disk_again = got["reopened_disk"].as_array().unwrap();
    assert_eq!(disk_again.len(), 2, "{got}");
    assert!(disk_again.iter().all(|m| m[2] == true), "{got}");
    let markers_again = &got["reopened_markers"][0];
    assert_eq!(markers_again[0], "length");
    assert!(
        (markers_again[1].as_f64().unwrap() - length).abs() < 1e-3,
        "{got}"
    );
    // the report and the key images are instances of the study
    let rad = Api::new(&server, &token(&t, "rad"));
    let series = rad.ok(rad.get(&format!(
        "/dicomweb/studies/{}/series",
        disk.study_instance_uid
    )));
    let mut modalities: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["00080060"]["Value"][0].as_str().unwrap())
        .collect();
    modalities.sort();
    assert_eq!(modalities, ["CT", "KO", "SR"], "{series}");
    // ROI statistics of a 512² slice, from release of the mouse to the answer
    let p50 = got["roi_p50_ms"].as_f64().unwrap();
    println!(
        "ellipse ROI on 512x512 in the browser: p50 {p50:.1} ms, all {}",
        got["roi_ms"]
    );
    assert_eq!(got["roi_ms"].as_array().unwrap().len(), 11, "{got}");
}
