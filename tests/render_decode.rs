//! Decoding frames to stored values and RGB (`strata_render::decode_frame`) on real files:
//! pydicom's bundled test files, and lossless twins made with dcmtk.
//!
//! References, each independent of the code under test:
//! - stored values: pydicom's own pixel handlers (numpy for native data, its RLE decoder);
//! - colour: pydicom's `convert_color_space` and `apply_color_lut` (PS3.3 formulas), and
//!   Pillow (libjpeg-turbo, OpenJPEG) for compressed colour frames through pydicom;
//! - lossless transfer syntaxes: the same image uncompressed (a bundled twin, or one dcmtk
//!   decompressed or compressed), which must decode value for value to the same frame.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dicom_object::DefaultDicomObject;
use strata_render::{decode_frame, render, DecodedFrame, Pixels, Presentation, RenderError, View};

/// pydicom's test file directory, found through the venv's Python. Panics (the tests fail,
/// never skip) if pydicom or its data are missing.
fn testdata() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = common::tool(
            60,
            common::python().to_str().expect("utf-8 path"),
            &[
                "-c",
                "import pydicom.data, os; print(os.path.dirname(pydicom.data.get_testdata_file('MR_small.dcm')))",
            ],
        );
        assert!(out.status.success(), "pydicom test files: {}", common::text(&out));
        let dir = PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim());
        assert!(dir.join("MR_small.dcm").is_file(), "{} has no MR_small.dcm", dir.display());
        dir
    })
}

/// A public sample file: pydicom's own test files, else pydicom-data's (its larger corpus),
/// found through pydicom.
fn file(name: &str) -> PathBuf {
    let path = testdata().join(name);
    if path.is_file() {
        return path;
    }
    let out = common::tool(
        60,
        common::python().to_str().expect("utf-8 path"),
        &[
            "-c",
            "import sys; from pydicom.data import get_testdata_file; print(get_testdata_file(sys.argv[1]) or '')",
            name,
        ],
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "pydicom test file {name} is missing: {}",
        common::text(&out)
    );
    path
}

fn open(path: &Path) -> DefaultDicomObject {
    dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(path: &Path, frame: u32) -> DecodedFrame {
    decode_frame(&open(path), frame)
        .unwrap_or_else(|e| panic!("{} frame {frame}: {e}", path.display()))
}

fn rgb(frame: &DecodedFrame) -> &[u8] {
    match &frame.pixels {
        Pixels::Rgb(v) => v,
        Pixels::Grey { .. } => panic!("expected RGB, got grey"),
    }
}

/// What pydicom makes of frame `frame` of `path`, flattened, as i64. `mode`:
/// - `stored`: stored values (`pixel_array`);
/// - `rgb`: RGB (pydicom converts YBR with `convert_color_space`), scaled to 8 bits as
///   round(v × 255 / (2^BitsStored − 1));
/// - `ybr`: the raw samples (4:2:2 upsampled by pydicom) through `convert_color_space`;
/// - `palette`: `apply_color_lut`, 16-bit entries reduced to their high byte.
fn pydicom(path: &Path, frame: u32, mode: &str) -> Vec<i64> {
    const SCRIPT: &str = r#"
import sys, numpy as np, pydicom
from pydicom.pixels import pixel_array, convert_color_space, apply_color_lut
path, frame, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ds = pydicom.dcmread(path)
if mode == "stored":
    a = pixel_array(ds, index=frame)
elif mode == "rgb":
    a = pixel_array(ds, index=frame).astype(np.float64)
    bits = int(ds.BitsStored)
    if bits != 8:
        a = np.round(a * 255.0 / (2.0 ** bits - 1))
elif mode == "ybr":
    a = convert_color_space(pixel_array(ds, index=frame, raw=True), "YBR_FULL", "RGB")
elif mode == "supplemental":
    # a Supplemental Palette Color LUT: its colours (high bytes) for the stored values it maps,
    # -1 for every other pixel (those are grey)
    v = pixel_array(ds, index=frame).astype(np.int64)
    n, first = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536, int(ds.RedPaletteColorLookupTableDescriptor[1])
    luts = [np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, dtype="<u2").astype(np.int64) >> 8
            for c in ("Red", "Green", "Blue")]
    inside = (v >= first) & (v < first + n)
    i = np.clip(v - first, 0, n - 1)
    a = np.stack([np.where(inside, l[i], -1) for l in luts], axis=-1)
elif mode == "palette":
    a = apply_color_lut(pixel_array(ds, index=frame), ds)
    if a.dtype == np.uint16:
        a = a >> 8
np.asarray(a, dtype="<i8").tofile(out)
"#;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("ref.bin");
    let run = common::tool(
        120,
        common::python().to_str().expect("utf-8 path"),
        &[
            "-c",
            SCRIPT,
            path.to_str().expect("utf-8 path"),
            &frame.to_string(),
            mode,
            out.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        run.status.success(),
        "pydicom on {}: {}",
        path.display(),
        common::text(&run)
    );
    std::fs::read(&out)
        .expect("reference output")
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Runs a dcmtk tool and insists it worked.
fn dcmtk(program: &str, args: &[&Path], flags: &[&str]) {
    let mut all: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    all.extend(args.iter().map(|p| p.as_os_str()));
    let out = common::tool(120, program, &all);
    assert!(
        out.status.success(),
        "{program} {all:?}: {}",
        common::text(&out)
    );
}

/// Largest and mean absolute difference between two sample lists of the same length.
fn difference(ours: &[u8], reference: &[i64]) -> (i64, f64) {
    assert_eq!(ours.len(), reference.len(), "sample counts differ");
    let mut max = 0;
    let mut sum = 0i64;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = (a as i64 - b).abs();
        max = max.max(d);
        sum += d;
    }
    (max, sum as f64 / ours.len() as f64)
}

#[test]
fn native_grey_frames_are_pydicoms_stored_values() {
    // (file, frames to check, bits stored, signed)
    let cases: &[(&str, &[u32], u16, bool)] = &[
        ("MR_small.dcm", &[0], 16, true),
        ("MR_small_implicit.dcm", &[0], 16, true),
        ("MR_small_bigendian.dcm", &[0], 16, true),
        ("MR_small_expb.dcm", &[0], 16, true),
        ("CT_small.dcm", &[0], 16, true),
        ("examples_overlay.dcm", &[0], 12, false),
        // Deflated Explicit VR Little Endian, 8-bit.
        ("image_dfl.dcm", &[0], 8, false),
        // RT Dose: 32-bit unsigned samples, 15 frames; big endian twin.
        ("rtdose.dcm", &[0, 7, 14], 32, false),
        ("rtdose_expb.dcm", &[0, 14], 32, false),
        ("rtdose_1frame.dcm", &[0], 32, false),
        // 1-bit segmentation-like images: values 0 and 1.
        ("liver_1frame.dcm", &[0], 1, false),
        ("liver_expb_1frame.dcm", &[0], 1, false),
        // RLE, checked against pydicom's own RLE decoder.
        ("rtdose_rle.dcm", &[0, 14], 32, false),
        ("MR_small_RLE.dcm", &[0], 16, true),
        // JPEG 2000 through pydicom's Pillow (OpenJPEG): signed 14-bit, lossy 16-bit, and a
        // stream whose signedness disagrees with Pixel Representation (the dataset wins).
        ("693_J2KI.dcm", &[0], 14, true),
        ("JPEG2000.dcm", &[0], 16, true),
        ("J2K_pixelrep_mismatch.dcm", &[0], 13, true),
    ];
    for &(name, frames, bits, signed) in cases {
        let path = file(name);
        for &frame in frames {
            let decoded = decode(&path, frame);
            let Pixels::Grey {
                values,
                bits_stored,
                signed: is_signed,
                monochrome1,
                ..
            } = &decoded.pixels
            else {
                panic!("{name}: expected grey");
            };
            assert_eq!(
                (*bits_stored, *is_signed, *monochrome1),
                (bits, signed, false),
                "{name}"
            );
            let ours: Vec<i64> = values
                .iter()
                .map(|&v| {
                    if bits == 32 && !signed {
                        v as u32 as i64
                    } else {
                        v as i64
                    }
                })
                .collect();
            let reference = pydicom(&path, frame, "stored");
            assert_eq!(
                ours.len(),
                reference.len(),
                "{name} frame {frame}: sample count"
            );
            let first_difference = ours.iter().zip(&reference).position(|(a, b)| a != b);
            assert_eq!(
                first_difference, None,
                "{name} frame {frame}: differs from pydicom at sample {first_difference:?}"
            );
            if bits == 1 {
                assert!(
                    values.iter().all(|&v| v == 0 || v == 1),
                    "{name}: 1-bit values"
                );
                assert!(values.contains(&1), "{name}: no set bit at all");
            }
        }
    }
}

/// Frames of a lossless transfer syntax decode to exactly the uncompressed twin's frames, and
/// render to exactly its renders.
fn assert_twins(compressed: &Path, native: &Path) {
    let frames = open(native)
        .get(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1);
    for frame in 0..frames {
        let a = decode(compressed, frame);
        let b = decode(native, frame);
        assert_eq!((a.rows, a.columns), (b.rows, b.columns));
        match (&a.pixels, &b.pixels) {
            (
                Pixels::Grey {
                    values: va,
                    bits_stored: sa,
                    signed: ga,
                    ..
                },
                Pixels::Grey {
                    values: vb,
                    bits_stored: sb,
                    signed: gb,
                    ..
                },
            ) => {
                assert_eq!((sa, ga), (sb, gb), "{}", compressed.display());
                assert!(
                    va == vb,
                    "{} frame {frame} differs from {}",
                    compressed.display(),
                    native.display()
                );
                assert!(
                    va.iter().any(|&v| v != va[0]),
                    "a flat frame proves nothing"
                );
            }
            (Pixels::Rgb(va), Pixels::Rgb(vb)) => assert!(
                va == vb,
                "{} frame {frame} differs from {}",
                compressed.display(),
                native.display()
            ),
            _ => panic!(
                "{} and its twin decode to different kinds",
                compressed.display()
            ),
        }
        // and so the render a viewer is shown is the same, pixel for pixel
        let shown = |path: &Path, decoded: &DecodedFrame| {
            let presentation = Presentation::from_object(&open(path), frame).unwrap();
            render(decoded, &presentation, &View::default()).expect("renders")
        };
        assert!(
            shown(compressed, &a) == shown(native, &b),
            "{} frame {frame} renders differently from {}",
            compressed.display(),
            native.display()
        );
    }
}

#[test]
fn lossless_transfer_syntaxes_equal_their_uncompressed_twins() {
    let mr = file("MR_small.dcm");
    for twin in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ] {
        assert_twins(&file(twin), &mr);
    }
    assert_twins(&file("rtdose_rle.dcm"), &file("rtdose.dcm"));
    assert_twins(&file("rtdose_expb.dcm"), &file("rtdose.dcm"));

    // Twins dcmtk makes: JPEG lossless (process 14, and its selection value 1), deflate,
    // JPEG-LS lossless in colour.
    let dir = tempfile::tempdir().expect("temp dir");
    let made = |name: &str| dir.path().join(name);
    dcmtk("dcmcjpeg", &[&mr, &made("p14.dcm")], &["+el"]);
    dcmtk("dcmcjpeg", &[&mr, &made("sv1.dcm")], &["+e1"]);
    dcmtk("dcmconv", &[&mr, &made("deflate.dcm")], &["+td"]);
    for name in ["p14.dcm", "sv1.dcm", "deflate.dcm"] {
        assert_twins(&made(name), &mr);
    }
    let colour = file("examples_rgb_color.dcm");
    dcmtk("dcmcjpls", &[&colour, &made("rgb_jls.dcm")], &["+el"]);
    dcmtk("dcmcjpeg", &[&colour, &made("rgb_p14.dcm")], &["+e1"]);
    assert_twins(&made("rgb_jls.dcm"), &colour);
    assert_twins(&made("rgb_p14.dcm"), &colour);

    // RGB RLE at 8, 16 and 32 bits, one and two frames, against dcmtk's decompression.
    for name in [
        "SC_rgb_rle.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_rgb_rle_16bit.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "SC_rgb_rle_32bit.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
    ] {
        let native = made(&format!("native_{name}"));
        dcmtk("dcmdrle", &[&file(name), &native], &[]);
        assert_twins(&file(name), &native);
    }
    // JPEG 2000 (YBR_RCT, with a JP2 header Pillow refuses), against GDCM's decompression.
    let native = made("native_gdcm_j2k.dcm");
    let out = common::tool(
        60,
        "gdcmconv",
        &[
            std::ffi::OsStr::new("--raw"),
            file("GDCMJ2K_TextGBR.dcm").as_os_str(),
            native.as_os_str(),
        ],
    );
    assert!(out.status.success(), "gdcmconv: {}", common::text(&out));
    assert_twins(&file("GDCMJ2K_TextGBR.dcm"), &native);
    // RGB lossless JPEG written by GDCM, against dcmtk's decompression.
    let native = made("native_gdcm_jpeg.dcm");
    dcmtk("dcmdjpeg", &[&file("SC_rgb_jpeg_gdcm.dcm"), &native], &[]);
    assert_twins(&file("SC_rgb_jpeg_gdcm.dcm"), &native);
}

#[test]
fn colour_frames_match_pydicom() {
    // (file, frame, mode, largest difference allowed, mean difference allowed)
    // Exact: native RGB, RLE, lossless JPEG 2000. Lossy JPEG: jpeg-decoder's IDCT and chroma
    // upsampling differ from libjpeg-turbo's by a few levels; a wrong colour transform differs
    // by tens to hundreds.
    let cases: &[(&str, u32, &str, i64, f64)] = &[
        ("examples_rgb_color.dcm", 0, "rgb", 0, 0.0),
        // Planar configuration 1, big endian.
        ("ExplVR_BigEnd.dcm", 0, "rgb", 0, 0.0),
        ("SC_rgb_small_odd.dcm", 0, "rgb", 0, 0.0),
        ("SC_rgb_small_odd_big_endian.dcm", 0, "rgb", 0, 0.0),
        ("SC_rgb_rle_16bit.dcm", 0, "rgb", 0, 0.0),
        ("SC_rgb_rle_32bit_2frame.dcm", 1, "rgb", 0, 0.0),
        // Native YBR_FULL_422: 4:2:2 upsampled, then PS3.3's YBR_FULL equations.
        ("SC_ybr_full_422_uncompressed.dcm", 0, "ybr", 1, 0.5),
        ("examples_palette.dcm", 0, "palette", 0, 0.0),
        // 16-bit ultrasound with segmented palettes (pydicom-data), little and big endian.
        ("gdcm-US-ALOKA-16.dcm", 0, "palette", 0, 0.0),
        ("gdcm-US-ALOKA-16_big.dcm", 0, "palette", 0, 0.0),
        ("examples_jpeg2k.dcm", 0, "rgb", 0, 0.0),
        ("SC_rgb_gdcm_KY.dcm", 0, "rgb", 2, 0.5),
        // RGB baseline JPEG without colour transformation, without and with an APP14 marker.
        ("SC_jpeg_no_color_transform.dcm", 0, "rgb", 6, 1.0),
        ("SC_jpeg_no_color_transform_2.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_dcmtk_+eb+cr.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_jpeg_dcmtk.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_dcmtk_+eb+cy+s4.dcm", 0, "rgb", 6, 1.0),
        ("SC_rgb_jpeg_lossy_gdcm.dcm", 0, "rgb", 6, 1.0),
        ("examples_ybr_color.dcm", 0, "rgb", 6, 1.0),
        ("examples_ybr_color.dcm", 29, "rgb", 6, 1.0),
    ];
    let mut failures = Vec::new();
    for &(name, frame, mode, max_allowed, mean_allowed) in cases {
        let path = file(name);
        let decoded = decode(&path, frame);
        let ours = rgb(&decoded);
        assert_eq!(
            ours.len(),
            (decoded.rows * decoded.columns * 3) as usize,
            "{name}"
        );
        let reference = pydicom(&path, frame, mode);
        let (max, mean) = difference(ours, &reference);
        if max > max_allowed || mean > mean_allowed {
            failures.push(format!(
                "{name} frame {frame}: largest difference {max} (allowed {max_allowed}), mean {mean:.3} (allowed {mean_allowed})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn native_ybr_full_uses_the_standards_equations() {
    // No native YBR_FULL file is bundled: gdcmconv decompresses a YBR_FULL JPEG and keeps
    // the photometric interpretation (as pydicom's own SC_ybr_full_uncompressed.dcm was made).
    let dir = tempfile::tempdir().expect("temp dir");
    let native = dir.path().join("ybr_full.dcm");
    let out = common::tool(
        60,
        "gdcmconv",
        &[
            std::ffi::OsStr::new("--raw"),
            file("SC_rgb_dcmtk_+eb+cy+n2.dcm").as_os_str(),
            native.as_os_str(),
        ],
    );
    assert!(out.status.success(), "gdcmconv: {}", common::text(&out));
    let obj = open(&native);
    assert_eq!(
        obj.get(dicom_dictionary_std::tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap()
            .to_str()
            .unwrap()
            .trim(),
        "YBR_FULL"
    );
    let decoded = decode(&native, 0);
    let (max, mean) = difference(rgb(&decoded), &pydicom(&native, 0, "ybr"));
    assert!(
        max <= 1 && mean < 0.5,
        "largest difference {max}, mean {mean}"
    );
}

#[test]
fn monochrome1_and_signedness_are_reported() {
    // MONOCHROME1: dcmtk rewrites MR_small's photometric interpretation.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mono1.dcm");
    std::fs::copy(file("MR_small.dcm"), &path).unwrap();
    dcmtk(
        "dcmodify",
        &[&path],
        &["-nb", "-m", "(0028,0004)=MONOCHROME1"],
    );
    match decode(&path, 0).pixels {
        Pixels::Grey {
            monochrome1,
            signed,
            bits_allocated,
            ..
        } => assert!(monochrome1 && signed && bits_allocated == 16),
        Pixels::Rgb(_) => panic!("expected grey"),
    }
}

#[test]
fn undecodable_input_is_an_error_not_a_panic() {
    use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;

    let reason = |obj: &DefaultDicomObject, frame: u32| -> RenderError {
        match decode_frame(obj, frame) {
            Ok(_) => panic!("decoded what should not decode"),
            Err(e) => e,
        }
    };

    // Pixel data shorter than the image.
    let mut cut = open(&file("MR_small.dcm"));
    cut.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![7u16; 100].into()),
    ));
    let e = reason(&cut, 0);
    assert!(
        matches!(e, RenderError::Decode(_)) && e.to_string().contains("truncated"),
        "{e}"
    );

    // A frame that does not exist.
    let e = reason(&open(&file("rtdose.dcm")), 15);
    assert!(
        matches!(
            e,
            RenderError::NoSuchFrame {
                frame: 15,
                frames: 15
            }
        ),
        "{e}"
    );

    // No pixel data at all.
    let e = reason(&open(&file("rtplan.dcm")), 0);
    assert!(matches!(e, RenderError::NoPixelData), "{e}");

    // A transfer syntax nobody knows.
    let mut bogus = open(&file("MR_small_RLE.dcm"));
    bogus.meta_mut().transfer_syntax = "1.2.3.4.5.6.7".into();
    let e = reason(&bogus, 0);
    assert!(
        matches!(e, RenderError::Unsupported(_)) && e.to_string().contains("1.2.3.4.5.6.7"),
        "{e}"
    );

    // Compressed frames cut short or garbled, for every codec: an error each time.
    let codecs = [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "JPGExtended.dcm",
    ];
    for name in codecs {
        let original = open(&file(name));
        let Value::PixelSequence(seq) = original.get(tags::PIXEL_DATA).unwrap().value() else {
            panic!("{name} is not encapsulated");
        };
        let fragment = seq.fragments()[0].clone();
        for broken in [
            fragment[..fragment.len() / 3].to_vec(),
            fragment[..70.min(fragment.len())].to_vec(),
            vec![0xFF; 16],
            Vec::new(),
        ] {
            let mut obj = original.clone();
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![broken])),
            ));
            match decode_frame(&obj, 0) {
                Err(RenderError::Decode(_)) | Err(RenderError::Unsupported(_)) => {}
                other => panic!("{name}, broken frame: {other:?}"),
            }
        }
    }
}

#[test]
fn lossy_jpeg_ls_matches_dcmtk() {
    // Near-lossless JPEG-LS, grey 8/16-bit and RGB in line and sample interleave. Reference:
    // dcmtk's decompression (dcmdjpls).
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "JPEGLSNearLossless_08.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
    ] {
        let native = dir.path().join(name);
        dcmtk("dcmdjpls", &[&file(name), &native], &[]);
        assert_twins(&file(name), &native);
    }
}

#[test]
fn twelve_bit_lossy_jpeg_matches_dcmtk() {
    // JPEG Extended (process 2 & 4), 12-bit. Reference: dcmtk's decompression (IJG libjpeg
    // built for 12 bits). Its integer IDCT and our floating-point one may round a sample
    // differently by one or two levels out of 4096; a wrong decode is off by hundreds.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = file("JPGExtended.dcm");
    let native = dir.path().join("native.dcm");
    dcmtk("dcmdjpeg", &[&source, &native], &[]);
    let ours = decode(&source, 0);
    let reference = decode(&native, 0);
    let (
        Pixels::Grey {
            values: a,
            bits_stored: 12,
            ..
        },
        Pixels::Grey { values: b, .. },
    ) = (&ours.pixels, &reference.pixels)
    else {
        panic!("expected 12-bit grey frames");
    };
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).max().unwrap();
    let mean = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64;
    eprintln!("12-bit JPEG against dcmtk: largest difference {max}, mean {mean:.4}");
    assert!(
        max <= 2 && mean < 0.1,
        "largest difference {max}, mean {mean:.4}"
    );
    assert!(
        b.iter().any(|&v| v > 255),
        "the reference is not 12-bit data"
    );
}

#[test]
fn frames_decoded_in_a_decoder_process_equal_those_decoded_in_process() {
    use std::sync::Arc;
    use strata_render::{decode_frame_within, CodecWorkers, DecodeLimits};
    // the server's own binary as the decoder process, as `strata serve` runs it
    let isolated = DecodeLimits {
        codec_workers: Some(Arc::new(CodecWorkers::new(
            env!("CARGO_BIN_EXE_strata").into(),
            1 << 30,
            std::time::Duration::from_secs(30),
        ))),
        ..DecodeLimits::default()
    };
    for name in [
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "693_J2KI.dcm",
    ] {
        let obj = open(&file(name));
        let here = decode_frame(&obj, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        // twice: the second frame goes to the worker the first one started
        for _ in 0..2 {
            let there = decode_frame_within(&obj, 0, &isolated)
                .unwrap_or_else(|e| panic!("{name} in a decoder process: {e}"));
            assert_eq!((there.rows, there.columns), (here.rows, here.columns));
            let same = match (&here.pixels, &there.pixels) {
                (Pixels::Grey { values: a, .. }, Pixels::Grey { values: b, .. }) => a == b,
                (Pixels::Rgb(a), Pixels::Rgb(b)) => a == b,
                _ => false,
            };
            assert!(same, "{name} decodes differently in a decoder process");
        }
    }
}

#[test]
fn a_supplemental_palette_colours_its_values_and_leaves_the_rest_grey() {
    // An Enhanced CT (pydicom-data) with Pixel Presentation COLOR and a Supplemental Palette
    // Color LUT over stored values 1024 to 1123 (PS3.3 C.7.6.19): those pixels in the
    // palette's colours, every other one through the grey pipeline.
    let path = file("eCT_Supplemental.dcm");
    let obj = open(&path);
    for frame in [0, 1] {
        let decoded = decode(&path, frame);
        let presentation = Presentation::from_object(&obj, frame).unwrap();
        assert!(presentation.supplemental.is_some());
        let r = render(&decoded, &presentation, &View::default()).unwrap();
        assert_eq!(r.channels, 3, "shown in colour");
        let reference = pydicom(&path, frame, "supplemental");
        assert_eq!(reference.len(), r.pixels.len());
        let (mut coloured, mut grey) = (0, 0);
        for (i, (ours, want)) in r.pixels.chunks(3).zip(reference.chunks(3)).enumerate() {
            if want[0] >= 0 {
                let want: Vec<u8> = want.iter().map(|&v| v as u8).collect();
                assert_eq!(
                    ours,
                    &want[..],
                    "frame {frame} pixel {i}: the palette's colour"
                );
                coloured += 1;
            } else {
                assert!(
                    ours[0] == ours[1] && ours[1] == ours[2],
                    "frame {frame} pixel {i}: grey, got {ours:?}"
                );
                grey += 1;
            }
        }
        assert!(
            coloured > 100 && grey > 100,
            "frame {frame}: {coloured} coloured, {grey} grey"
        );
    }
}

#[test]
fn rt_dose_grids_are_dose_maps_on_one_scale() {
    // The six RT Dose files (32-bit grids, native, big endian and RLE; 15 frames and 1): doses
    // (stored value × Dose Grid Scaling) through the dose map's colours, from no dose (black)
    // to the frame's highest (the scale's top) when no window is given.
    use strata_render::pipeline::{dose_colour, DOSE_COLOURS};
    for name in [
        "rtdose.dcm",
        "rtdose_1frame.dcm",
        "rtdose_expb.dcm",
        "rtdose_expb_1frame.dcm",
        "rtdose_rle.dcm",
        "rtdose_rle_1frame.dcm",
    ] {
        let path = file(name);
        let obj = open(&path);
        let decoded = decode(&path, 0);
        let presentation = Presentation::from_object(&obj, 0).unwrap();
        assert!(presentation.dose_units.is_some(), "{name}");
        let r = render(&decoded, &presentation, &View::default()).unwrap();
        assert_eq!(r.channels, 3, "{name}: a dose map is in colour");
        let stored = pydicom(&path, 0, "stored");
        let scaling = obj
            .get(dicom_dictionary_std::tags::DOSE_GRID_SCALING)
            .unwrap()
            .to_float64()
            .unwrap();
        let doses: Vec<f64> = stored.iter().map(|&v| v as f64 * scaling).collect();
        let top = doses.iter().copied().fold(0.0, f64::max);
        assert!(top > 1.0, "{name}: highest dose {top}");
        for (i, (&d, px)) in doses.iter().zip(r.pixels.chunks(3)).enumerate() {
            let level = ((d / top) * 255.0).round() as u8;
            assert_eq!(px, dose_colour(level), "{name} pixel {i}: dose {d}");
        }
        let hottest = doses.iter().position(|&d| d == top).unwrap();
        assert_eq!(
            &r.pixels[hottest * 3..hottest * 3 + 3],
            &DOSE_COLOURS[6],
            "{name}"
        );
        if let Some(cold) = doses.iter().position(|&d| d == 0.0) {
            assert_eq!(
                &r.pixels[cold * 3..cold * 3 + 3],
                &[0, 0, 0],
                "{name}: no dose"
            );
        }
    }
}
