//! Crafted headers and pixel data, each refused with a clear error before anything is allocated
//! for what it claims; and the honest twin of each decoded, so the checks do not refuse good data.

use super::*;
use crate::Presentation;
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue};
use dicom_core::{DataElement, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Elements a case adds to (or changes in) the image.
type Elements = Vec<(Tag, VR, PrimitiveValue)>;

/// A grey image of `rows`×`columns`, 8 bits, with `pixel_data` and the extra `elements`.
fn image(
    ts: &str,
    rows: u16,
    columns: u16,
    pixel_data: Value<InMemDicomObject, dicom_object::mem::InMemFragment>,
    elements: &[(Tag, VR, PrimitiveValue)],
) -> DefaultDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v));
    };
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.7".into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.7".into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(rows));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(columns));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    for (tag, vr, v) in elements {
        put(*tag, *vr, v.clone());
    }
    obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, pixel_data));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("2.25.7")
            .transfer_syntax(ts),
    )
    .expect("a file meta group")
}

fn native(
    rows: u16,
    columns: u16,
    bytes: Vec<u8>,
    elements: &[(Tag, VR, PrimitiveValue)],
) -> DefaultDicomObject {
    image(
        EXPLICIT_LE,
        rows,
        columns,
        Value::Primitive(PrimitiveValue::U8(bytes.into())),
        elements,
    )
}

fn rle(
    rows: u16,
    columns: u16,
    offsets: Vec<u32>,
    fragments: Vec<Vec<u8>>,
    elements: &[(Tag, VR, PrimitiveValue)],
) -> DefaultDicomObject {
    image(
        RLE_LOSSLESS,
        rows,
        columns,
        Value::PixelSequence(PixelFragmentSequence::new(offsets, fragments)),
        elements,
    )
}

/// An RLE fragment: the 64-byte header with `segments` and `offsets`, then `body`.
fn rle_fragment(segments: u32, offsets: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = segments.to_le_bytes().to_vec();
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.resize(64, 0);
    out.extend_from_slice(body);
    out
}

fn refusal(obj: &DefaultDicomObject, frame: u32) -> String {
    match decode_frame(obj, frame) {
        Ok(_) => panic!("frame {frame} decoded, it should have been refused"),
        Err(e @ (RenderError::Decode(_) | RenderError::Unsupported(_))) => e.to_string(),
        Err(e) => panic!("frame {frame}: {e}"),
    }
}

fn grey(obj: &DefaultDicomObject, frame: u32) -> Vec<i32> {
    match decode_frame(obj, frame).expect("decodes").pixels {
        Pixels::Grey { values, .. } => values,
        Pixels::Rgb(_) => panic!("expected grey"),
    }
}

fn us(v: u16) -> PrimitiveValue {
    PrimitiveValue::from(v)
}

#[test]
fn the_frame_size_limit_comes_from_the_configuration_and_names_its_key() {
    let obj = native(64, 64, vec![1; 64 * 64], &[]);
    let limits = DecodeLimits {
        max_frame_samples: 4095,
        ..DecodeLimits::default()
    };
    let e = decode_frame_within(&obj, 0, &limits).unwrap_err();
    assert!(matches!(e, RenderError::Unsupported(_)), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("64×64×1") && e.contains("4095 render.max_frame_samples"),
        "{e}"
    );
    let limits = DecodeLimits {
        max_frame_samples: 4096,
        ..DecodeLimits::default()
    };
    assert!(decode_frame_within(&obj, 0, &limits).is_ok());
    assert_eq!(
        DecodeLimits::default().max_frame_samples,
        strata_core::config::DEFAULT_MAX_FRAME_SAMPLES
    );
}

#[test]
fn a_crafted_rle_header_is_refused_and_an_honest_one_decodes() {
    // 4×4, 8 bits: one segment, a literal run of 16 bytes
    let mut body = vec![15u8];
    body.extend(0..16u8);
    let good = rle(4, 4, vec![], vec![rle_fragment(1, &[64], &body)], &[]);
    assert_eq!(grey(&good, 0), (0..16).collect::<Vec<i32>>());

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (rle_fragment(0, &[], &body), "0 segments (1 to 15 allowed)"),
        (
            rle_fragment(16, &[64; 15], &body),
            "16 segments (1 to 15 allowed)",
        ),
        (
            rle_fragment(u32::MAX, &[64], &body),
            "4294967295 segments (1 to 15 allowed)",
        ),
        (
            rle_fragment(2, &[64, 70], &body),
            "lists 2 segments, the image needs 1",
        ),
        (
            rle_fragment(1, &[32], &body),
            "starts at byte 32, not right after the 64-byte header",
        ),
        (
            rle_fragment(1, &[64], &[]),
            "starts at byte 64, past the fragment's 64 bytes",
        ),
        (body.clone(), "shorter than the 64-byte RLE header"),
    ];
    for (fragment, expected) in cases {
        let obj = rle(4, 4, vec![], vec![fragment], &[]);
        let e = refusal(&obj, 0);
        assert!(e.contains(expected), "{e} (expected: {expected})");
    }

    // 16 bits: two segments, which must increase
    let sixteen = [
        (tags::BITS_ALLOCATED, VR::US, us(16)),
        (tags::BITS_STORED, VR::US, us(16)),
        (tags::HIGH_BIT, VR::US, us(15)),
    ];
    let plane = [15u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut two = plane.to_vec();
    two.extend_from_slice(&plane);
    let obj = rle(
        4,
        4,
        vec![],
        vec![rle_fragment(2, &[64, 64], &two)],
        &sixteen,
    );
    let e = refusal(&obj, 0);
    assert!(e.contains("not after segment 0"), "{e}");
    let obj = rle(
        4,
        4,
        vec![],
        vec![rle_fragment(2, &[64, u32::MAX], &two)],
        &sixteen,
    );
    let e = refusal(&obj, 0);
    assert!(
        e.contains("starts at byte 4294967295, past the fragment's 98 bytes"),
        "{e}"
    );
    let obj = rle(
        4,
        4,
        vec![],
        vec![rle_fragment(2, &[64, 81], &two)],
        &sixteen,
    );
    assert_eq!(grey(&obj, 0), vec![0; 16]);
}

#[test]
fn an_rle_segment_that_expands_past_the_frame_is_cut_at_the_frame() {
    // 60 KiB of replicate runs, each 128 bytes: 7.5 MiB if expanded whole, for a 4×4 frame
    let mut body = Vec::new();
    for _ in 0..30_000 {
        body.extend_from_slice(&[0x81, 9]);
    }
    let obj = rle(4, 4, vec![], vec![rle_fragment(1, &[64], &body)], &[]);
    assert_eq!(grey(&obj, 0), vec![9; 16]);
}

#[test]
fn impossible_image_pixel_combinations_are_refused() {
    let cases: Vec<(Elements, &str)> = vec![
        (
            vec![(tags::PIXEL_REPRESENTATION, VR::US, us(2))],
            "Pixel Representation 2",
        ),
        (
            vec![
                (tags::SAMPLES_PER_PIXEL, VR::US, us(3)),
                (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB".into()),
                (tags::PLANAR_CONFIGURATION, VR::US, us(7)),
            ],
            "Planar Configuration 7",
        ),
        (
            vec![(tags::SAMPLES_PER_PIXEL, VR::US, us(3))],
            "MONOCHROME2 with 3 samples per pixel (1 required)",
        ),
        (
            vec![(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB".into())],
            "RGB with 1 samples per pixel (3 required)",
        ),
        (
            vec![
                (tags::SAMPLES_PER_PIXEL, VR::US, us(3)),
                (
                    tags::PHOTOMETRIC_INTERPRETATION,
                    VR::CS,
                    "PALETTE COLOR".into(),
                ),
            ],
            "PALETTE COLOR with 3 samples per pixel",
        ),
        (
            vec![
                (tags::SAMPLES_PER_PIXEL, VR::US, us(3)),
                (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB".into()),
                (tags::BITS_ALLOCATED, VR::US, us(1)),
                (tags::BITS_STORED, VR::US, us(1)),
                (tags::HIGH_BIT, VR::US, us(0)),
            ],
            "Bits Allocated 1 with 3 samples per pixel",
        ),
        (
            vec![(tags::BITS_STORED, VR::US, us(9))],
            "Bits Stored 9 and High Bit 7 do not fit Bits Allocated 8",
        ),
        (
            vec![(tags::HIGH_BIT, VR::US, us(8))],
            "Bits Stored 8 and High Bit 8",
        ),
        (
            vec![(tags::BITS_ALLOCATED, VR::US, us(12))],
            "Bits Allocated 12",
        ),
        (
            vec![(tags::SAMPLES_PER_PIXEL, VR::US, us(4))],
            "4 samples per pixel",
        ),
    ];
    for (elements, expected) in cases {
        let obj = native(4, 4, vec![0; 4 * 4 * 3], &elements);
        let e = refusal(&obj, 0);
        assert!(e.contains(expected), "{e} (expected: {expected})");
    }
}

#[test]
fn number_of_frames_is_bounded_by_the_native_bytes_present() {
    // two whole 4×4 frames and half a third; Number of Frames claims 2^31 - 1
    let mut bytes = vec![1u8; 16];
    bytes.extend([2u8; 16]);
    bytes.extend([3u8; 8]);
    let obj = native(
        4,
        4,
        bytes,
        &[(tags::NUMBER_OF_FRAMES, VR::IS, "2147483647".into())],
    );
    assert_eq!(grey(&obj, 0), vec![1; 16]);
    assert_eq!(grey(&obj, 1), vec![2; 16]);
    for frame in [2, 3, 2_000_000_000] {
        let e = refusal(&obj, frame);
        assert!(
            e.contains("holds 40 bytes, 2 whole frames of 16 bytes")
                && e.contains("Number of Frames says 2147483647")
                && e.contains(&format!("frame {frame} is not there")),
            "{e}"
        );
    }
    // 1-bit frames: 16 pixels are 2 bytes
    let bits = [
        (tags::BITS_ALLOCATED, VR::US, us(1)),
        (tags::BITS_STORED, VR::US, us(1)),
        (tags::HIGH_BIT, VR::US, us(0)),
        (tags::NUMBER_OF_FRAMES, VR::IS, "5".into()),
    ];
    let obj = native(4, 4, vec![0xFF; 6], &bits);
    assert_eq!(grey(&obj, 2), vec![1; 16]);
    assert!(refusal(&obj, 3).contains("3 whole frames of 2 bytes"));
}

#[test]
fn number_of_frames_is_bounded_by_the_fragments_present() {
    let mut body = vec![15u8];
    body.extend(0..16u8);
    let fragment = rle_fragment(1, &[64], &body);
    let frames = |n: &str| [(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from(n))];
    let obj = rle(4, 4, vec![], vec![fragment.clone(); 2], &frames("1000000"));
    for frame in [0, 1, 999_999] {
        let e = refusal(&obj, frame);
        assert!(
            e.contains(
                "Number of Frames is 1000000, but the encapsulated pixel data has only 2 fragments"
            ),
            "{e}"
        );
    }
    // three frames in four fragments, the offset table not increasing
    let len = fragment.len() as u32 + 8;
    let four = vec![fragment.clone(); 4];
    let obj = rle(4, 4, vec![0, len, len], four.clone(), &frames("3"));
    assert!(refusal(&obj, 0).contains("offsets do not start at 0 and increase"));
    let obj = rle(
        4,
        4,
        vec![len, 2 * len, 3 * len],
        four.clone(),
        &frames("3"),
    );
    assert!(refusal(&obj, 0).contains("offsets do not start at 0 and increase"));
    // an honest table: frame 2 is the last two fragments, of which RLE takes the first
    let obj = rle(4, 4, vec![0, len, 2 * len], four, &frames("3"));
    assert_eq!(grey(&obj, 2), (0..16).collect::<Vec<i32>>());
}

/// A palette image of 4×4 8-bit indices with the same descriptor and data on all three channels.
fn palette(descriptor: [u16; 3], data: Vec<u16>) -> DefaultDicomObject {
    let mut elements = vec![(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("PALETTE COLOR"),
    )];
    for (d, t) in [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
    ] {
        elements.push((d, VR::US, PrimitiveValue::U16(descriptor.to_vec().into())));
        elements.push((t, VR::OW, PrimitiveValue::U16(data.clone().into())));
    }
    native(4, 4, (0..16).collect(), &elements)
}

#[test]
fn palette_descriptors_must_describe_their_data() {
    let ramp: Vec<u16> = (0..16).map(|v| v * 0x1100).collect();
    let Pixels::Rgb(rgb) = decode_frame(&palette([16, 0, 16], ramp.clone()), 0)
        .unwrap()
        .pixels
    else {
        panic!("expected RGB")
    };
    assert_eq!(&rgb[..6], &[0, 0, 0, 0x11, 0x11, 0x11]);
    let cases = [
        (
            palette([256, 0, 16], ramp.clone()),
            "has 16 entries, the descriptor says 256",
        ),
        (
            palette([0, 0, 16], ramp.clone()),
            "has 16 entries, the descriptor says 65536",
        ),
        (
            palette([8, 0, 16], ramp.clone()),
            "has 16 entries, the descriptor says 8",
        ),
        (
            palette([16, 0, 12], ramp.clone()),
            "12 bits per entry (8 or 16 allowed)",
        ),
        (
            palette([16, 0, 16], vec![]),
            "has 0 entries, the descriptor says 16",
        ),
    ];
    for (obj, expected) in cases {
        let e = refusal(&obj, 0);
        assert!(e.contains(expected), "{e} (expected: {expected})");
    }
}

/// A dataset with one Modality LUT Sequence item and one VOI LUT Sequence item.
fn with_luts(modality: ([u16; 3], Vec<u16>), voi: ([u16; 3], Vec<u16>)) -> InMemDicomObject {
    use dicom_core::value::DataSetSequence;
    let item = |(descriptor, data): ([u16; 3], Vec<u16>)| {
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(descriptor.to_vec().into()),
        ));
        item.put(DataElement::new(
            tags::LUT_DATA,
            VR::OW,
            PrimitiveValue::U16(data.into()),
        ));
        item
    };
    let mut obj = InMemDicomObject::new_empty();
    for (tag, lut) in [
        (tags::MODALITY_LUT_SEQUENCE, modality),
        (tags::VOILUT_SEQUENCE, voi),
    ] {
        obj.put(DataElement::new(
            tag,
            VR::SQ,
            DataSetSequence::from(vec![item(lut)]),
        ));
    }
    obj
}

#[test]
fn modality_and_voi_lut_descriptors_must_describe_their_data() {
    let table: Vec<u16> = (0..256).collect();
    let ok = with_luts(([256, 0, 16], table.clone()), ([256, 0, 8], table.clone()));
    let p = Presentation::from_object(&ok, 0).expect("honest tables");
    assert!(
        matches!(p.modality_lut, crate::pipeline::ModalityLut::Table(ref l) if l.data.len() == 256)
    );
    assert_eq!(p.voi_luts.len(), 1);
    // 8-bit VOI entries packed two to a word
    let packed: Vec<u16> = (0..128).map(|i| ((2 * i + 1) << 8) | (2 * i)).collect();
    let p = Presentation::from_object(
        &with_luts(([256, 0, 16], table.clone()), ([256, 0, 8], packed)),
        0,
    )
    .expect("packed 8-bit entries");
    assert_eq!(p.voi_luts[0].data, table);

    let cases = [
        (
            with_luts(([4096, 0, 16], table.clone()), ([256, 0, 8], table.clone())),
            "the Modality LUT: the LUT Data hold 256 entries, the LUT Descriptor says 4096",
        ),
        (
            with_luts(([0, 0, 16], table.clone()), ([256, 0, 8], table.clone())),
            "the LUT Descriptor says 65536",
        ),
        (
            with_luts(([256, 0, 16], table.clone()), ([256, 0, 20], table.clone())),
            "the VOI LUT: the LUT Descriptor gives 20 bits an entry (8 to 16 allowed)",
        ),
        (
            with_luts(([256, 0, 16], table.clone()), ([100, 0, 16], table.clone())),
            "the VOI LUT: the LUT Data hold 256 entries, the LUT Descriptor says 100",
        ),
        (
            with_luts(([256, 0, 16], vec![]), ([256, 0, 16], table.clone())),
            "hold 0 entries",
        ),
    ];
    for (obj, expected) in cases {
        let e = Presentation::from_object(&obj, 0).unwrap_err().to_string();
        assert!(e.contains(expected), "{e} (expected: {expected})");
    }
}

/// A worker program that is a shell script: `body` runs in place of the decoder.
fn script(name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("strata-render-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_decoder_process_that_crashes_or_hangs_fails_the_frame_with_a_reason() {
    let obj = native(4, 4, vec![0; 16], &[]);
    let image = ImagePixel::from_object(&obj, &DecodeLimits::default()).unwrap();
    let cases = [
        (
            "crash",
            "kill -SEGV $$",
            10,
            "process ended (signal: 11 (SIGSEGV))",
        ),
        (
            "hang",
            "exec sleep 30",
            1,
            "process took more than 1 s (render.codec_worker_seconds) and was stopped",
        ),
        ("gone", "exit 3", 10, "process ended (exit status: 3)"),
    ];
    for (name, body, seconds, expected) in cases {
        let program = script(name, body);
        let workers = worker::CodecWorkers::new(
            program.clone(),
            1 << 20,
            std::time::Duration::from_secs(seconds),
        );
        let started = std::time::Instant::now();
        for _ in 0..2 {
            // each frame a fresh process, each failure named
            let e = workers
                .decode(JPEG_LS_LOSSLESS, "JPEG-LS", &image, &[0xFF, 0xD8])
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{name}: {e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::fs::remove_dir_all(program.parent().unwrap()).unwrap();
    }
}
