//! MPR: a CT phantom volume whose geometry is known exactly (a 61 mm sphere and a bright point in
//! air, 1 mm voxels), cut by the server into axial, coronal and sagittal planes and slabs, and
//! read in chromium (tests/viewer/mpr.mjs): the sphere's diameter measured with the length tool
//! in the coronal and sagittal views, a MIP slab showing the point a thin slice misses, the
//! crosshair moving the other views, an oblique turn; then the volume memory budget over HTTP.

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, token, Api, TestArchive};
use serde_json::{json, Value};
use strata_synth::{self as synth, Ball, InstanceSpec, Modality, SynthOptions, Target};

const SIDE: u16 = 128;
const SLICES: usize = 96;
/// The sphere: centred on a voxel at the origin, its surface half-way between voxel centres, so
/// the edge found between the last voxel in and the first out is the true one.
const SPHERE_RADIUS_MM: f64 = 30.5;
const SPHERE_HU: i32 = 100;
/// The bright point: a 1.5 mm ball of 3000 HU away from the sphere.
const POINT: [f64; 3] = [35.0, -40.0, 20.0];
const POINT_HU: i32 = 3000;
const AIR_HU: i32 = -1000;

/// A probe at the middle of a slice of a plane of the phantom (`mpr`: plane, slice, ...).
fn plane_probe(api: &Api, phantom: &InstanceSpec, mpr: Value) -> common::Answer {
    api.post(
        "/api/measure",
        json!({
            "study": phantom.study_instance_uid,
            "series": phantom.series_instance_uid,
            "mpr": mpr,
            "kind": "probe",
            "points": [[64.5, 64.5]],
        }),
    )
}

/// The sphere and the bright point in air.
fn target() -> Target {
    Target::Balls {
        balls: [
            Ball {
                centre: [0.0, 0.0, 0.0],
                radius_mm: SPHERE_RADIUS_MM,
                value: SPHERE_HU,
            },
            Ball {
                centre: POINT,
                radius_mm: 1.5,
                value: POINT_HU,
            },
        ],
        background: AIR_HU,
    }
}

/// The phantom series: 96 axial slices of 128² pixels, 1 mm apart, imported into `t`.
fn phantom(t: &TestArchive) -> Vec<InstanceSpec> {
    let opts = SynthOptions {
        seed: 19,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: SLICES,
        rows: SIDE,
        cols: SIDE,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let mut specs = synth::plan(&opts).unwrap();
    let dir = t.path("mpr-phantom");
    std::fs::create_dir_all(&dir).unwrap();
    let target = target();
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.pixel_spacing = 1.0;
        spec.slice_thickness = 1.0;
        spec.z_position = i as f64 - 48.0;
        // x and y of the pixel centres run over −64 … 63: the origin is a voxel centre
        assert_eq!(spec.patient_point(64, 64), [0.0, 0.0, spec.z_position]);
        let bytes = synth::target_instance_bytes(spec, &target).unwrap();
        std::fs::write(dir.join(format!("{}.dcm", spec.instance_number)), bytes).unwrap();
    }
    t.ok(&["import", dir.to_str().unwrap()]);
    specs
}

#[test]
fn the_viewer_reformats_a_phantom_volume_and_measures_it() {
    let t = TestArchive::new();
    let specs = phantom(&t);
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let geometry = json!({
        "series": specs[0].series_instance_uid,
        "sphere_centre": [0.0, 0.0, 0.0],
        "sphere_hu": SPHERE_HU,
        "air_hu": AIR_HU,
        "point": POINT,
        "point_hu": POINT_HU,
    });
    let shots = screenshots("mpr");
    let (ok, log) = node(
        "mpr.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", specs[0].study_instance_uid.as_str()),
            ("GEOMETRY", geometry.to_string().as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(ok, "viewer MPR:\n{log}\nserver:\n{}", server.log_text());
    println!("{log}");
    let got = common::viewer::result(&log);
    let diameter = 2.0 * SPHERE_RADIUS_MM;
    // the sphere's diameter, drawn with the length tool across the circle each view shows
    for key in [
        "coronal_across",
        "coronal_down",
        "sagittal_across",
        "sagittal_down",
    ] {
        let mm = got[key].as_f64().unwrap_or_else(|| panic!("{key}: {got}"));
        assert!(
            (mm - diameter).abs() <= 0.5,
            "{key}: {mm} mm across a {diameter} mm sphere"
        );
    }
    // an oblique plane through the centre still cuts a circle of the diameter (its pixels no
    // longer fall on voxel centres: the edge is found to within one voxel)
    let oblique = got["oblique_across"].as_f64().unwrap();
    assert!(
        (oblique - diameter).abs() <= 1.0,
        "oblique: {oblique} mm across a {diameter} mm sphere"
    );
    assert_eq!(got["oblique_degrees"].as_f64(), Some(5.0), "{got}");
    // a thin slice 6 mm from the point misses it; a 16 mm MIP around it shows it
    assert_eq!(got["thin_probe"].as_f64(), Some(f64::from(AIR_HU)), "{got}");
    assert_eq!(
        got["mip_probe"].as_f64(),
        Some(f64::from(POINT_HU)),
        "{got}"
    );
    assert_eq!(
        got["minip_probe"].as_f64(),
        Some(f64::from(AIR_HU)),
        "{got}"
    );
    // the crosshair moved the other two views to the slices through the clicked point
    assert_eq!(got["crosshair"], json!([true, true]), "{got}");
    // a series this long opens from a coarse volume first; each plane settles on the whole one
    const { assert!(SLICES >= strata_services::pictures::COARSE_FROM) };
    assert!(got["previews"].as_u64().unwrap() >= 1, "{got}");
    assert_eq!(got["complete"], json!([true, true, true]), "{got}");
    assert_eq!(got["first_slices"], json!([true, true, true]), "{got}");
    // the four lengths saved, and drawn again where they lie when MPR is opened again: each
    // view's two, and the other view's line down its middle (the sphere's axis, in both
    // planes); the axial view, at the centre too, shows the two lines across
    assert_eq!(
        got["save_status"], "Saved 4 measurement(s), 0 key image(s)",
        "{got}"
    );
    let measured: Vec<f64> = [
        "coronal_across",
        "coronal_down",
        "sagittal_across",
        "sagittal_down",
    ]
    .iter()
    .map(|k| got[k].as_f64().unwrap())
    .collect();
    for view in got["reopened"].as_array().unwrap() {
        let items = view.as_array().unwrap();
        assert_eq!(items.len(), 3, "{got}");
        for i in items {
            assert_eq!(i[0], "length", "{got}");
            let v = i[1].as_f64().unwrap();
            assert!(measured.iter().any(|m| (m - v).abs() < 1e-3), "{got}");
        }
    }
    assert_eq!(got["reopened_labels"].as_u64(), Some(8), "{got}");
    // the report, retrieved by DICOMweb and read by pydicom: TID 1500, its lengths inferred
    // from SCOORD3D in the series' frame of reference, as long as their points are apart
    let rad = Api::new(&server, &token(&t, "rad"));
    let read = rad.ok(rad.get(&format!(
        "/api/reports?study={}",
        specs[0].study_instance_uid
    )));
    let report = &read["reports"][0];
    let m = report["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 4, "{read}");
    assert_eq!(
        m[0]["space"]["frame_of_reference"],
        specs[0].frame_of_reference_uid.as_str()
    );
    assert!(m[0]["image"].is_null(), "{read}");
    // as an integrator's program retrieves it (a radiologist reads pixels through the stream)
    add_user(&t, "pacs", "integrator");
    let pacs = Api::new(&server, &token(&t, "pacs"));
    let expected: Vec<Value> = m
        .iter()
        .map(|f| {
            json!({"concept": "Length", "value": f["values"][0]["value"], "unit": "mm",
                   "graphic": "POLYLINE", "frame_of_reference": specs[0].frame_of_reference_uid})
        })
        .collect();
    let out = pacs.report_read_by_pydicom(
        &t.path("."),
        [
            specs[0].study_instance_uid.as_str(),
            report["series"].as_str().unwrap(),
            report["instance"].as_str().unwrap(),
        ],
        &Value::from(expected),
    );
    assert_eq!(out.matches("ok: strata:length Length").count(), 4, "{out}");
    println!(
        "MPR of a {SIDE}x{SIDE}x{SLICES} volume, first reformatted frame after opening: {} ms",
        got["first_frame_ms"]
    );
    // every plane opened is recorded, as a view of the series
    let opens = common::audit_events(&t, "http.stream.open");
    let planes: Vec<&str> = ["axial", "coronal", "sagittal"]
        .into_iter()
        .filter(|p| {
            opens
                .iter()
                .any(|e| e.to_string().contains(&format!("MPR {p}")))
        })
        .collect();
    assert_eq!(planes, ["axial", "coronal", "sagittal"], "{opens:?}");
    assert!(
        common::audit_events(&t, "http.stream.view")
            .iter()
            .any(|e| e.to_string().contains("(MPR)")),
        "no view of the MPR recorded"
    );
}

#[test]
fn volumes_stay_within_their_memory_budget() {
    // 1 MiB of volumes: the 3 MiB phantom volume cannot be held
    let t = TestArchive::new().with_env([(
        "STRATA_RENDER_VOLUME_BYTES".to_string(),
        (1u64 << 20).to_string(),
    )]);
    let specs = phantom(&t);
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let rad = Api::new(&server, &token(&t, "rad"));
    let probe = |mpr: Value| plane_probe(&rad, &specs[0], mpr);
    let refused = probe(json!({"plane": "coronal", "slice": 64}));
    assert!(
        refused.status == 422 || refused.status == 415,
        "{} {}",
        refused.status,
        refused.text()
    );
    assert!(
        refused.text().contains("render.volume_bytes"),
        "{}",
        refused.text()
    );
    // a plane that is not one, a slice past the end, both a plane and an instance
    let bad = probe(json!({"plane": "diagonal", "slice": 1}));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.text().contains("axial, coronal, sagittal"),
        "{}",
        bad.text()
    );
    let both = rad.post(
        "/api/measure",
        json!({
            "study": specs[0].study_instance_uid,
            "series": specs[0].series_instance_uid,
            "instance": specs[0].sop_instance_uid,
            "mpr": {"plane": "axial", "slice": 1},
            "kind": "probe",
            "points": [[1.0, 1.0]],
        }),
    );
    assert_eq!(both.status, 400, "{}", both.text());
    // the server is still serving: an acquired slice is measured as before
    let fine = rad.ok(rad.post(
        "/api/measure",
        json!({
            "study": specs[0].study_instance_uid,
            "series": specs[0].series_instance_uid,
            "instance": specs[48].sop_instance_uid,
            "kind": "probe",
            "points": [[64.5, 64.5]],
        }),
    ));
    assert_eq!(fine["value"].as_f64(), Some(f64::from(SPHERE_HU)), "{fine}");
}

#[test]
fn a_series_that_grows_is_reformatted_again() {
    let t = TestArchive::new();
    let specs = phantom(&t);
    add_user(&t, "rad", "radiologist");
    add_user(&t, "ct", "modality");
    let server = t.serve();
    let rad = Api::new(&server, &token(&t, "rad"));
    let probe =
        |slice: usize| plane_probe(&rad, &specs[0], json!({"plane": "axial", "slice": slice}));
    // the volume of the 96 slices is built and held: its axial plane has 96 slices
    let past = probe(SLICES);
    assert_eq!(past.status, 404, "{}", past.text());
    assert!(
        past.text().contains(&format!("it has {SLICES}")),
        "{}",
        past.text()
    );
    assert_eq!(
        rad.ok(probe(SLICES / 2))["value"].as_f64(),
        Some(f64::from(SPHERE_HU))
    );
    // one more slice of the series arrives, 1 mm above the last
    let mut more = specs[SLICES - 1].clone();
    more.instance_number = SLICES + 1;
    more.z_position += 1.0;
    more.sop_instance_uid = format!("{}.1", more.sop_instance_uid);
    let file = t.path("slice-97.dcm");
    std::fs::write(
        &file,
        synth::target_instance_bytes(&more, &target()).unwrap(),
    )
    .unwrap();
    let ct = Api::new(&server, &token(&t, "ct"));
    let stored = ct.stow(&file);
    assert_eq!(stored.status, 200, "{}", stored.text());
    // the plane is cut from a volume of all 97, not the one held
    let top = rad.ok(probe(SLICES));
    assert_eq!(top["value"].as_f64(), Some(f64::from(AIR_HU)), "{top}");
    let past = probe(SLICES + 1);
    assert!(
        past.text().contains(&format!("it has {}", SLICES + 1)),
        "{}",
        past.text()
    );
}
