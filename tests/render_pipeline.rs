//! The grey pipeline against an independent implementation of the PS3.3 C.11 formulas written
//! here, on files made by pydicom (every combination the pipeline must get right: LINEAR,
//! LINEAR_EXACT and SIGMOID windows; signed and unsigned data; rescaled or not; MONOCHROME1 and
//! 2; Modality LUT Sequence; VOI LUT Sequence; Presentation LUT Shape INVERSE; rescale stored as
//! UN; enhanced multi-frame functional groups) and on pydicom's own test files (a 1-bit
//! segmentation, a windowed MR).

mod common;

use common::{python, text, tool};
use std::path::{Path, PathBuf};
use strata_render::pipeline::Presentation;
use strata_render::{decode_frame, render, Rendered, View, VoiFunction, Window};

const ROWS: usize = 32;
const COLS: usize = 48;

/// The stored values every generated file holds: a scrambled ramp over the whole range of
/// `bits` (signed: centred on zero), so every part of every curve is exercised.
fn stored_values(bits: u32, signed: bool) -> Vec<i64> {
    let span = 1i64 << bits;
    (0..(ROWS * COLS) as i64)
        .map(|i| {
            let v = (i * 7919) % span;
            if signed {
                v - span / 2
            } else {
                v
            }
        })
        .collect()
}

/// One file to make: the attributes the pipeline reads.
#[derive(Clone)]
struct Case {
    name: &'static str,
    bits: u32,
    signed: bool,
    monochrome1: bool,
    /// slope, intercept
    rescale: Option<(f64, f64)>,
    rescale_as_un: bool,
    window: Option<(f64, f64, &'static str)>,
    /// first mapped, bits, data
    modality_lut: Option<(i64, u32, Vec<u16>)>,
    voi_lut: Option<(i64, u32, Vec<u16>)>,
    inverse: bool,
}

impl Case {
    fn new(name: &'static str, bits: u32, signed: bool) -> Case {
        Case {
            name,
            bits,
            signed,
            monochrome1: false,
            rescale: None,
            rescale_as_un: false,
            window: None,
            modality_lut: None,
            voi_lut: None,
            inverse: false,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "bits": self.bits,
            "signed": self.signed,
            "monochrome1": self.monochrome1,
            "rescale": self.rescale.map(|(s, i)| vec![s, i]),
            "rescale_as_un": self.rescale_as_un,
            "window": self.window.map(|(c, w, f)| serde_json::json!([c, w, f])),
            "modality_lut": self.modality_lut.as_ref().map(|(f, b, d)| serde_json::json!([f, b, d])),
            "voi_lut": self.voi_lut.as_ref().map(|(f, b, d)| serde_json::json!([f, b, d])),
            "inverse": self.inverse,
            "values": stored_values(self.bits, self.signed),
        })
    }
}

/// Writes each case as `<dir>/<name>.dcm` with pydicom (Explicit VR Little Endian, 16 bits
/// allocated), exactly as the case says.
const MAKE_FILES: &str = r#"
import json, sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out, cases = sys.argv[1], json.load(open(sys.argv[2]))
for c in cases:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientID = "PIPE"
    ds.Rows, ds.Columns = 32, 48
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if c["monochrome1"] else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, c["bits"], c["bits"] - 1
    ds.PixelRepresentation = 1 if c["signed"] else 0
    if c["rescale"]:
        slope, intercept = c["rescale"]
        if c["rescale_as_un"]:
            ds.add_new(0x00281052, "UN", f"{intercept:g} ".encode())
            ds.add_new(0x00281053, "UN", f"{slope:g} ".encode())
        else:
            ds.RescaleIntercept, ds.RescaleSlope = f"{intercept:g}", f"{slope:g}"
            ds.RescaleType = "US"
    if c["window"]:
        center, width, function = c["window"]
        ds.WindowCenter, ds.WindowWidth = f"{center:g}", f"{width:g}"
        ds.VOILUTFunction = function
    for key, tag in (("modality_lut", "ModalityLUTSequence"), ("voi_lut", "VOILUTSequence")):
        if c[key]:
            first, bits, data = c[key]
            item = Dataset()
            item.LUTDescriptor = [len(data) % 65536, first % 65536, bits]
            item["LUTDescriptor"].VR = "US"
            item.LUTData = data
            item["LUTData"].VR = "US"
            if key == "modality_lut":
                item.ModalityLUTType = "HU"
            setattr(ds, tag, [item])
    if c["inverse"]:
        ds.PresentationLUTShape = "INVERSE"
    dtype = np.int16 if c["signed"] else np.uint16
    ds.PixelData = np.array(c["values"], dtype=np.int64).astype(dtype).tobytes()
    ds.save_as(f"{out}/{c['name']}.dcm", enforce_file_format=True)
"#;

fn make_files(dir: &Path, cases: &[Case]) {
    let spec = dir.join("cases.json");
    std::fs::write(
        &spec,
        serde_json::Value::Array(cases.iter().map(Case::json).collect()).to_string(),
    )
    .unwrap();
    let out = tool(
        120,
        python().to_str().unwrap(),
        &[
            "-c",
            MAKE_FILES,
            dir.to_str().unwrap(),
            spec.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

// ---- the reference: PS3.3 C.11, written from the text, one pixel at a time ----

/// C.11.1: a LUT indexed by its input, clamped to its first and last entries.
fn ref_lut(first: i64, data: &[u16], x: f64) -> f64 {
    let x = x.floor() as i64;
    if x < first {
        data[0] as f64
    } else if x >= first + data.len() as i64 {
        data[data.len() - 1] as f64
    } else {
        data[(x - first) as usize] as f64
    }
}

/// C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID), output range
/// 0..255.
fn ref_window(x: f64, c: f64, w: f64, function: &str) -> f64 {
    let (ymin, ymax) = (0.0, 255.0);
    match function {
        "LINEAR" => {
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                ymin
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                ymax
            } else {
                ((x - (c - 0.5)) / (w - 1.0) + 0.5) * (ymax - ymin) + ymin
            }
        }
        "LINEAR_EXACT" => {
            if x <= c - w / 2.0 {
                ymin
            } else if x > c + w / 2.0 {
                ymax
            } else {
                ((x - c) / w + 0.5) * (ymax - ymin) + ymin
            }
        }
        "SIGMOID" => (ymax - ymin) / (1.0 + (-4.0 * (x - c) / w).exp()) + ymin,
        other => panic!("no such function {other}"),
    }
}

fn reference(case: &Case) -> Vec<u8> {
    stored_values(case.bits, case.signed)
        .into_iter()
        .map(|sv| {
            let sv = sv as f64;
            let m = match (&case.modality_lut, case.rescale) {
                (Some((first, _, data)), _) => ref_lut(*first, data, sv),
                (None, Some((slope, intercept))) => sv * slope + intercept,
                (None, None) => sv,
            };
            let y = match (&case.window, &case.voi_lut) {
                (Some((c, w, f)), _) => ref_window(m, *c, *w, f),
                (None, Some((first, bits, data))) => {
                    ref_lut(*first, data, m) / ((1u32 << bits) - 1) as f64 * 255.0
                }
                (None, None) => panic!("{}: the reference needs a VOI", case.name),
            };
            let p = (y + 0.5).floor().clamp(0.0, 255.0) as u8;
            if case.monochrome1 || case.inverse {
                255 - p
            } else {
                p
            }
        })
        .collect()
}

fn render_file(path: &Path, frame: u32, view: &View) -> Rendered {
    let obj = dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoded = decode_frame(&obj, frame).expect("decodes");
    let p = Presentation::from_object(&obj, frame).unwrap();
    render(&decoded, &p, view).expect("renders")
}

fn assert_same(case: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{case}: pixel count");
    let bad: Vec<(usize, u8, u8)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .map(|(i, (g, w))| (i, *g, *w))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "{case}: (pixel, got, want) {bad:?}");
}

#[test]
fn the_grey_pipeline_matches_the_standard_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (function, c, w) in [
        ("LINEAR", 40.0, 400.0),
        ("LINEAR_EXACT", 40.5, 301.0),
        ("SIGMOID", 10.0, 700.0),
    ] {
        for signed in [false, true] {
            for rescaled in [false, true] {
                for mono1 in [false, true] {
                    let name: &'static str = Box::leak(
                        format!(
                            "{function}-{}-{}-{}",
                            if signed { "signed" } else { "unsigned" },
                            if rescaled { "rescaled" } else { "raw" },
                            if mono1 { "mono1" } else { "mono2" }
                        )
                        .into_boxed_str(),
                    );
                    let mut case = Case::new(name, 12, signed);
                    case.monochrome1 = mono1;
                    // CT-like: unsigned data with intercept -1024; slope 0.5 on signed data
                    case.rescale =
                        rescaled.then_some(if signed { (0.5, -20.0) } else { (1.0, -1024.0) });
                    let center = if rescaled || signed { c } else { c + 2048.0 };
                    case.window = Some((center, w, function));
                    cases.push(case);
                }
            }
        }
    }
    // Modality LUT Sequence: a curve no rescale can express, then a window on its output
    let mut case = Case::new("modality-lut", 12, false);
    case.modality_lut = Some((
        100,
        16,
        (0..3000u32).map(|k| ((k * k) / 300) as u16).collect(),
    ));
    case.window = Some((15000.0, 20000.0, "LINEAR"));
    cases.push(case);
    // VOI LUT Sequence (12-bit output), after a rescale
    let mut case = Case::new("voi-lut", 12, false);
    case.rescale = Some((1.0, -1000.0));
    case.voi_lut = Some((
        -500,
        12,
        (0..2048u32).map(|k| (4095 - k * 2) as u16).collect(),
    ));
    cases.push(case);
    // Presentation LUT Shape INVERSE on MONOCHROME2
    let mut case = Case::new("inverse", 12, true);
    case.window = Some((0.0, 1000.0, "LINEAR"));
    case.inverse = true;
    cases.push(case);
    // rescale written with VR UN: its DS text must be read as text
    let mut case = Case::new("rescale-un", 12, false);
    case.rescale = Some((2.5, -100.0));
    case.rescale_as_un = true;
    case.window = Some((4000.0, 6000.0, "LINEAR_EXACT"));
    cases.push(case);
    // 16-bit signed, the full range
    let mut case = Case::new("full-16-signed", 16, true);
    case.window = Some((0.0, 65536.0, "LINEAR"));
    cases.push(case);

    make_files(dir.path(), &cases);
    for case in &cases {
        let path = dir.path().join(format!("{}.dcm", case.name));
        let r = render_file(&path, 0, &View::default());
        assert_eq!(
            (r.width, r.height, r.channels),
            (COLS as u32, ROWS as u32, 1)
        );
        assert_same(case.name, &r.pixels, &reference(case));
    }
}

#[test]
fn a_rescale_held_as_un_is_read_as_its_ds_text() {
    // What a dataset holds when its rescale came through an implicit-VR private dictionary or a
    // converter that did not know the tags: the DS text as UN bytes. Read as a binary number it
    // would be nonsense (b"2.5 " as a little-endian float).
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::InMemDicomObject::new_empty();
    for (tag, text) in [
        (tags::RESCALE_SLOPE, "2.5 "),
        (tags::RESCALE_INTERCEPT, "-100"),
    ] {
        obj.put(DataElement::new(
            tag,
            VR::UN,
            PrimitiveValue::U8(text.as_bytes().into()),
        ));
    }
    obj.put(DataElement::new(
        tags::WINDOW_CENTER,
        VR::UN,
        PrimitiveValue::U8(b"40\\400".as_slice().into()),
    ));
    obj.put(DataElement::new(
        tags::WINDOW_WIDTH,
        VR::UN,
        PrimitiveValue::U8(b"350 \\1500".as_slice().into()),
    ));
    let p = Presentation::from_object(&obj, 0).unwrap();
    assert_eq!(
        p.modality_lut,
        strata_render::pipeline::ModalityLut::Rescale {
            slope: 2.5,
            intercept: -100.0
        }
    );
    assert_eq!(
        p.windows
            .iter()
            .map(|w| (w.center, w.width))
            .collect::<Vec<_>>(),
        vec![(40.0, 350.0), (400.0, 1500.0)]
    );
}

#[test]
fn a_window_from_the_viewer_replaces_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut case = Case::new("viewer", 12, true);
    case.rescale = Some((1.0, -24.0));
    case.window = Some((40.0, 400.0, "LINEAR"));
    make_files(dir.path(), std::slice::from_ref(&case));
    let view = View {
        window: Some(Window {
            center: -600.0,
            width: 1500.0,
            function: VoiFunction::Sigmoid,
        }),
        ..View::default()
    };
    let r = render_file(&dir.path().join("viewer.dcm"), 0, &view);
    case.window = Some((-600.0, 1500.0, "SIGMOID"));
    assert_same("viewer window", &r.pixels, &reference(&case));
}

/// pydicom's bundled test files, found through the venv's pydicom (never skipped).
fn pydicom_file(name: &str) -> PathBuf {
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            "-c",
            "import sys; from pydicom.data import get_testdata_file; print(get_testdata_file(sys.argv[1]))",
            name,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(p.is_file(), "pydicom has no {name}: {}", text(&out));
    p
}

#[test]
fn a_one_bit_image_goes_through_the_voi_stage() {
    // A binary segmentation: stored values 0 and 1 must become black and white, not 0 and 1.
    // The bits are unpacked here (PS3.5 8.1.1: first pixel in the least significant bit), so
    // the pipeline is checked on the real file whatever the decoder does.
    let path = pydicom_file("liver_1frame.dcm");
    let obj = dicom_object::open_file(&path).unwrap();
    let (rows, cols) = (512usize, 512usize);
    let packed = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned();
    let values: Vec<i32> = (0..rows * cols)
        .map(|i| i32::from((packed[i / 8] >> (i % 8)) & 1))
        .collect();
    let ones = values.iter().filter(|&&v| v == 1).count();
    assert!(ones > 0 && ones < rows * cols, "the mask has both values");
    let frame = strata_render::DecodedFrame {
        rows: rows as u32,
        columns: cols as u32,
        pixels: strata_render::Pixels::Grey {
            values: values.clone(),
            bits_stored: 1,
            bits_allocated: 1,
            signed: false,
            monochrome1: false,
        },
    };
    let r = render(
        &frame,
        &Presentation::from_object(&obj, 0).unwrap(),
        &View::default(),
    )
    .unwrap();
    let want: Vec<u8> = values
        .iter()
        .map(|&v| if v == 1 { 255 } else { 0 })
        .collect();
    assert_same("liver_1frame", &r.pixels, &want);
}

#[test]
fn a_real_mr_with_its_own_window() {
    let path = pydicom_file("MR_small.dcm");
    let obj = dicom_object::open_file(&path).unwrap();
    let decoded = decode_frame(&obj, 0).unwrap();
    let strata_render::Pixels::Grey { values, .. } = &decoded.pixels else {
        panic!("MR_small is grey")
    };
    let want: Vec<u8> = values
        .iter()
        .map(|&v| (ref_window(v as f64, 600.0, 1600.0, "LINEAR") + 0.5).floor() as u8)
        .collect();
    let r = render_file(&path, 0, &View::default());
    assert_same("MR_small", &r.pixels, &want);
}

/// An enhanced multi-frame image whose frames each carry their own rescale and window.
const MAKE_ENHANCED: &str = r#"
import sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
ds.Modality, ds.PatientID = "CT", "ENH"
ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 4, 2
ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
def group(slope, intercept, center, width):
    g = Dataset()
    t = Dataset(); t.RescaleSlope, t.RescaleIntercept, t.RescaleType = slope, intercept, "HU"
    v = Dataset(); v.WindowCenter, v.WindowWidth = center, width
    g.PixelValueTransformationSequence, g.FrameVOILUTSequence = [t], [v]
    return g
shared = group("1", "0", "2000", "4000")
del shared.FrameVOILUTSequence
ds.SharedFunctionalGroupsSequence = [shared]
ds.PerFrameFunctionalGroupsSequence = [group("1", "-1024", "40", "400"), group("2", "-2048", "-600", "1500")]
ds.PixelData = (np.arange(32, dtype=np.uint16) * 128).tobytes()
ds.save_as(sys.argv[1], enforce_file_format=True)
"#;

#[test]
fn enhanced_multi_frame_uses_each_frames_functional_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enhanced.dcm");
    let out = tool(
        60,
        python().to_str().unwrap(),
        &["-c", MAKE_ENHANCED, path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    for (frame, slope, intercept, c, w) in [
        (0u32, 1.0, -1024.0, 40.0, 400.0),
        (1, 2.0, -2048.0, -600.0, 1500.0),
    ] {
        let want: Vec<u8> = (0..16)
            .map(|i| {
                let sv = ((frame as i64 * 16 + i) * 128) as f64;
                (ref_window(sv * slope + intercept, c, w, "LINEAR") + 0.5).floor() as u8
            })
            .collect();
        let r = render_file(&path, frame, &View::default());
        assert_same(&format!("frame {frame}"), &r.pixels, &want);
    }
}

#[test]
fn colour_frames_are_only_resampled() {
    let path = pydicom_file("examples_rgb_color.dcm");
    let obj = dicom_object::open_file(&path).unwrap();
    let decoded = decode_frame(&obj, 0).unwrap();
    let strata_render::Pixels::Rgb(rgb) = &decoded.pixels else {
        panic!("an RGB file decodes to RGB")
    };
    let p = Presentation::from_object(&obj, 0).unwrap();
    let same = render(&decoded, &p, &View::default()).unwrap();
    assert_eq!(same.channels, 3);
    assert_eq!(&same.pixels, rgb, "no LUT touches colour");
    let (w, h) = (decoded.columns / 2, decoded.rows / 2);
    let half = render(
        &decoded,
        &p,
        &View {
            viewport: Some((w, h)),
            ..View::default()
        },
    )
    .unwrap();
    assert_eq!((half.width, half.height, half.channels), (w, h, 3));
    // each output pixel is the mean of the 2×2 block it covers
    let at = |x: u32, y: u32, c: u32| f64::from(rgb[((y * decoded.columns + x) * 3 + c) as usize]);
    for (x, y) in [(0, 0), (w / 2, h / 2), (w - 1, h - 1)] {
        for c in 0..3 {
            let mean = (at(2 * x, 2 * y, c)
                + at(2 * x + 1, 2 * y, c)
                + at(2 * x, 2 * y + 1, c)
                + at(2 * x + 1, 2 * y + 1, c))
                / 4.0;
            let got = f64::from(half.pixels[((y * w + x) * 3 + c) as usize]);
            assert!(
                (got - mean).abs() <= 0.5,
                "({x},{y}) channel {c}: {got} vs {mean}"
            );
        }
    }
}
