//! An RT Dose grid in the viewer (pydicom's rtdose.dcm: 15 frames of 32-bit doses): shown as a
//! dose map with its legend in the overlay (the grid's units, from no dose to its highest over
//! every frame), on one scale through the frames (tests/viewer/dose.mjs, chromium).

mod common;

use common::viewer::{node, screenshots};
use common::{add_user, base, python, text, tool, TestArchive};

#[test]
fn an_rt_dose_grid_is_a_dose_map_with_its_legend() {
    let t = TestArchive::new();
    let dir = t.path("dose");
    std::fs::create_dir_all(&dir).unwrap();
    // the sample's file meta names another SOP Instance UID than its data set (the archive
    // refuses that): written again with the data set's own
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            "-c",
            "import sys, pydicom; from pydicom.data import get_testdata_file as f
d = pydicom.dcmread(f('rtdose.dcm'))
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
d.save_as(sys.argv[1], enforce_file_format=True)
print(d.StudyInstanceUID); print(float(d.pixel_array.max()) * float(d.DoseGridScaling))",
            dir.join("rtdose.dcm").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    let (study, top) = (lines[0], lines[1].parse::<f64>().unwrap());
    t.ok(&["import", dir.to_str().unwrap()]);
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let shots = screenshots("dose");
    let top_text = top.to_string();
    let (ok, log) = node(
        "dose.mjs",
        &[
            ("BASE", base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("STUDY", study),
            ("TOP", top_text.as_str()),
            ("OUT", shots.as_str()),
        ],
        || {},
    );
    assert!(
        ok,
        "viewer dose map:\n{log}\nserver:\n{}",
        server.log_text()
    );
    println!("{log}");
    let got = common::viewer::result(&log);
    // the legend's top is the grid's highest dose, the same on every frame shown
    let tops: Vec<f64> = got["legend_tops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(tops.len(), 3, "{got}");
    assert!(
        tops.iter().all(|&t| (t - top).abs() < 1e-9),
        "{got}, highest dose {top}"
    );
    assert_eq!(got["units"], "relative", "{got}");
    assert_eq!(got["labels"][2], "0.000 relative", "{got}");
}
