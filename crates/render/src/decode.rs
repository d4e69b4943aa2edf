//! One frame of a stored instance to stored values (grey) or 8-bit RGB.
//!
//! The boundary: this module reads the Image Pixel module (PS3.3 C.7.6.3) and the pixel data of
//! one frame, undoes the transfer syntax's compression and the photometric interpretation, and
//! hands the grey pipeline stored values it has not touched otherwise (no rescale, no window).
//!
//! Who does what:
//! - native pixel data (little or big endian, deflated: the parser has already undone both) is
//!   read here, straight from the element's values, so a frame costs one pass and no copy of
//!   the dataset;
//! - JPEG (baseline, extended, lossless) goes through `jpeg-decoder`, driven by [`jpeg`] so
//!   the colour transform follows the dataset; 12-bit DCT frames, which it refuses, through
//!   our own [`jpeg12`];
//! - RLE is decoded by [`rle`] (PS3.5 Annex G), which also handles 32-bit samples;
//! - JPEG-LS, JPEG 2000 and whatever else the transfer syntax registry can decode go through
//!   its codec, fed one frame's fragments at a time;
//! - [`colour`] turns RGB, YBR_FULL, YBR_FULL_422 and PALETTE COLOR into 8-bit RGB.
//!
//! dicom-pixeldata's own conversion is not used: it returns palette images as grey indices,
//! converts native YBR_FULL with a sign error, does not upsample native YBR_FULL_422, refuses
//! 32-bit samples and copies the whole pixel data for every frame it decodes.

pub(crate) mod colour;
mod jpeg;
mod jpeg12;
mod rle;
pub mod worker;

use std::borrow::Cow;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::adapters::{PixelDataObject, RawPixelData};
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{DecodedFrame, Pixels, RenderError};

/// What one decode may take, from the configuration: the bounds a hostile file meets before
/// anything is allocated for it.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// `render.max_frame_samples`: most samples (Rows × Columns × Samples per Pixel) one frame
    /// may hold.
    pub max_frame_samples: u64,
    /// Where the C decoders (JPEG-LS, JPEG 2000) run: worker processes, or (None) this process.
    pub codec_workers: Option<std::sync::Arc<worker::CodecWorkers>>,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_frame_samples: strata_core::config::DEFAULT_MAX_FRAME_SAMPLES,
            codec_workers: None,
        }
    }
}

/// Decode frame `frame` (0-based) of `obj` within the default limits.
pub fn decode_frame(obj: &DefaultDicomObject, frame: u32) -> Result<DecodedFrame, RenderError> {
    decode_frame_within(obj, frame, &DecodeLimits::default())
}

/// Decode frame `frame` (0-based) of `obj`, refusing what exceeds `limits`.
pub fn decode_frame_within(
    obj: &DefaultDicomObject,
    frame: u32,
    limits: &DecodeLimits,
) -> Result<DecodedFrame, RenderError> {
    let Some(pixel_data) = obj.get(tags::PIXEL_DATA) else {
        if obj.get(tags::FLOAT_PIXEL_DATA).is_some()
            || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            return Err(RenderError::Unsupported(
                "floating-point pixel data (parametric maps)".into(),
            ));
        }
        return Err(RenderError::NoPixelData);
    };
    let image = ImagePixel::from_object(obj, limits)?;
    if frame >= image.frames {
        return Err(RenderError::NoSuchFrame {
            frame,
            frames: image.frames,
        });
    }
    let pixels = image.rows as usize * image.columns as usize;
    // The palette's descriptors and data are checked before the frame is decoded.
    let palette = match image.interpretation {
        Interpretation::Palette => Some(colour::Palette::read(obj)?),
        _ => None,
    };

    let (values, interpretation, planar) = match pixel_data.value() {
        Value::Primitive(value) => {
            let samples = image.native_samples_per_frame();
            let source = Samples::from_primitive(value, is_big_endian(obj));
            image.check_native_frame(frame, source.byte_len())?;
            let values = source.stored_values(
                image.bits_allocated,
                frame as usize * samples,
                samples,
                &image,
            )?;
            (values, image.interpretation.clone(), image.planar)
        }
        Value::PixelSequence(sequence) => {
            let ts = obj.meta().transfer_syntax();
            let (buffer, interpretation) =
                decode_encapsulated(&image, sequence, ts, frame, limits)?;
            let samples = pixels * image.samples_per_pixel as usize;
            // The codec decides how wide its output samples are (a JPEG-LS stream of precision
            // 8 comes back in bytes even when Bits Allocated is 16).
            // (Rows and Columns are at least 1, so `samples` is never 0.)
            let width = match buffer.len() / samples {
                bytes @ (1 | 2 | 4) if buffer.len().is_multiple_of(samples) => 8 * bytes as u16,
                _ => 0,
            };
            if width == 0 {
                return Err(RenderError::Decode(format!(
                    "the codec returned {} bytes for {samples} samples",
                    buffer.len()
                )));
            }
            let values = Samples::Bytes(&buffer).stored_values(width, 0, samples, &image)?;
            (values, interpretation, false)
        }
        Value::Sequence(_) => {
            return Err(RenderError::Decode(
                "Pixel Data holds a sequence of items, not pixels".into(),
            ))
        }
    };

    let pixels = match interpretation {
        Interpretation::Monochrome1 | Interpretation::Monochrome2 => {
            if image.samples_per_pixel != 1 {
                return Err(RenderError::Unsupported(format!(
                    "a monochrome image with {} samples per pixel",
                    image.samples_per_pixel
                )));
            }
            Pixels::Grey {
                values,
                bits_stored: image.bits_stored,
                bits_allocated: image.bits_allocated,
                signed: image.signed,
                monochrome1: interpretation == Interpretation::Monochrome1,
            }
        }
        Interpretation::Palette => match &palette {
            Some(palette) => Pixels::Rgb(palette.apply(&values)),
            None => Pixels::Rgb(colour::Palette::read(obj)?.apply(&values)),
        },
        Interpretation::Rgb | Interpretation::YbrFull | Interpretation::YbrFull422 => {
            Pixels::Rgb(colour::to_rgb8(
                &values,
                pixels,
                planar,
                interpretation,
                image.bits_stored,
                image.signed,
            )?)
        }
        Interpretation::Other(ref name) => {
            return Err(RenderError::Unsupported(format!(
                "photometric interpretation {name}"
            )))
        }
    };
    Ok(DecodedFrame {
        rows: image.rows,
        columns: image.columns,
        pixels,
    })
}

/// Refuses a photometric interpretation whose sample count is not the one the dataset gives,
/// before anything is decoded: grey and palette images have one sample per pixel, colour ones
/// three (PS3.3 C.7.6.3.1.2).
fn check_interpretation(
    interpretation: &Interpretation,
    text: &str,
    samples_per_pixel: i64,
) -> Result<(), RenderError> {
    let needed = match interpretation {
        Interpretation::Monochrome1 | Interpretation::Monochrome2 | Interpretation::Palette => 1,
        Interpretation::Rgb | Interpretation::YbrFull | Interpretation::YbrFull422 => 3,
        Interpretation::Other(_) => return Ok(()),
    };
    if samples_per_pixel != needed {
        return Err(RenderError::Decode(format!(
            "Photometric Interpretation {text} with {samples_per_pixel} samples per pixel \
             ({needed} required)"
        )));
    }
    Ok(())
}

fn is_big_endian(obj: &DefaultDicomObject) -> bool {
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big)
}

/// PS3.3 C.7.6.3.1.2 Photometric Interpretation, as far as decoding cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interpretation {
    Monochrome1,
    Monochrome2,
    Palette,
    Rgb,
    YbrFull,
    /// Native: two pixels share one Cb and one Cr, stored Y Y Cb Cr.
    YbrFull422,
    Other(String),
}

impl Interpretation {
    fn parse(text: &str) -> Interpretation {
        match text {
            "MONOCHROME1" => Interpretation::Monochrome1,
            "MONOCHROME2" => Interpretation::Monochrome2,
            "PALETTE COLOR" => Interpretation::Palette,
            "RGB" => Interpretation::Rgb,
            "YBR_FULL" => Interpretation::YbrFull,
            "YBR_FULL_422" => Interpretation::YbrFull422,
            other => Interpretation::Other(other.to_string()),
        }
    }
}

/// The Image Pixel module's description of the pixel data.
#[derive(Debug, Clone)]
struct ImagePixel {
    rows: u32,
    columns: u32,
    samples_per_pixel: u16,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    planar: bool,
    interpretation: Interpretation,
    /// The text as stored, for codecs that want it.
    interpretation_text: String,
    frames: u32,
}

impl ImagePixel {
    fn from_object(
        obj: &DefaultDicomObject,
        limits: &DecodeLimits,
    ) -> Result<ImagePixel, RenderError> {
        let int = |tag: Tag| -> Option<i64> { obj.get(tag).and_then(|e| e.to_int::<i64>().ok()) };
        let required = |tag: Tag, name: &str| -> Result<i64, RenderError> {
            int(tag)
                .ok_or_else(|| RenderError::Decode(format!("{name} is missing or not a number")))
        };
        let rows = required(tags::ROWS, "Rows")?;
        let columns = required(tags::COLUMNS, "Columns")?;
        let bits_allocated = required(tags::BITS_ALLOCATED, "Bits Allocated")?;
        let samples_per_pixel = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        let bits_stored = int(tags::BITS_STORED).unwrap_or(bits_allocated);
        let high_bit = int(tags::HIGH_BIT).unwrap_or(bits_stored - 1);
        let representation = int(tags::PIXEL_REPRESENTATION).unwrap_or(0);
        let planar_configuration = int(tags::PLANAR_CONFIGURATION).unwrap_or(0);
        let signed = representation == 1;
        let planar = samples_per_pixel > 1 && planar_configuration == 1;
        // Number of Frames is IS; a value that does not parse (seen in the wild) means one.
        let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
        let interpretation_text = obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| {
                s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .unwrap_or_else(|| {
                // Older files omit it; one sample is then grey, three RGB.
                if samples_per_pixel == 3 {
                    "RGB"
                } else {
                    "MONOCHROME2"
                }
                .to_string()
            });

        if !(1..=65535).contains(&rows) || !(1..=65535).contains(&columns) {
            return Err(RenderError::Decode(format!(
                "the image is {columns}×{rows} pixels"
            )));
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(RenderError::Unsupported(format!(
                "Bits Allocated {bits_allocated}"
            )));
        }
        if !(1..=bits_allocated).contains(&bits_stored)
            || high_bit >= bits_allocated
            || high_bit + 1 < bits_stored
        {
            return Err(RenderError::Decode(format!(
                "Bits Stored {bits_stored} and High Bit {high_bit} do not fit Bits Allocated {bits_allocated}"
            )));
        }
        if !matches!(samples_per_pixel, 1 | 3) {
            return Err(RenderError::Unsupported(format!(
                "{samples_per_pixel} samples per pixel"
            )));
        }
        if !matches!(representation, 0 | 1) {
            return Err(RenderError::Decode(format!(
                "Pixel Representation {representation} (0 unsigned or 1 signed allowed)"
            )));
        }
        if samples_per_pixel > 1 && !matches!(planar_configuration, 0 | 1) {
            return Err(RenderError::Decode(format!(
                "Planar Configuration {planar_configuration} (0 interleaved or 1 planar allowed)"
            )));
        }
        if bits_allocated == 1 && samples_per_pixel != 1 {
            return Err(RenderError::Decode(format!(
                "Bits Allocated 1 with {samples_per_pixel} samples per pixel (1-bit images are grey)"
            )));
        }
        let samples = rows as u64 * columns as u64 * samples_per_pixel as u64;
        if samples > limits.max_frame_samples {
            return Err(RenderError::Unsupported(format!(
                "a frame of {columns}×{rows}×{samples_per_pixel} samples, more than the {} \
                 render.max_frame_samples allows",
                limits.max_frame_samples
            )));
        }
        let interpretation = Interpretation::parse(&interpretation_text);
        check_interpretation(&interpretation, &interpretation_text, samples_per_pixel)?;
        Ok(ImagePixel {
            rows: rows as u32,
            columns: columns as u32,
            samples_per_pixel: samples_per_pixel as u16,
            bits_allocated: bits_allocated as u16,
            bits_stored: bits_stored as u16,
            high_bit: high_bit as u16,
            signed,
            planar,
            interpretation,
            interpretation_text,
            frames: u32::try_from(frames).unwrap_or(u32::MAX),
        })
    }

    /// Frames the native pixel data's `byte_len` bytes hold whole: Number of Frames is clamped
    /// to it, so a count larger than the bytes present allows reads nothing past them (a frame
    /// past the bytes is refused by [`ImagePixel::check_native_frame`]).
    fn native_frames_present(&self, byte_len: usize) -> u64 {
        let bits = self.native_samples_per_frame() as u64 * self.bits_allocated as u64;
        (byte_len as u64 * 8 / bits).min(self.frames as u64)
    }

    /// Refuses `frame` of native pixel data of `byte_len` bytes when the bytes end before it
    /// does, naming what Number of Frames claims against what is there.
    fn check_native_frame(&self, frame: u32, byte_len: usize) -> Result<(), RenderError> {
        let present = self.native_frames_present(byte_len);
        if frame as u64 >= present {
            let frame_bytes =
                (self.native_samples_per_frame() as u64 * self.bits_allocated as u64).div_ceil(8);
            return Err(RenderError::Decode(format!(
                "the pixel data is truncated: it holds {byte_len} bytes, {present} whole \
                 frames of {frame_bytes} bytes, and Number of Frames says {}; frame {frame} \
                 is not there",
                self.frames
            )));
        }
        Ok(())
    }

    /// Samples one native frame holds. YBR_FULL_422 stores two samples per pixel (PS3.3
    /// C.7.6.3.1.2: Y Y Cb Cr for each pair of pixels).
    fn native_samples_per_frame(&self) -> usize {
        let pixels = self.rows as usize * self.columns as usize;
        if self.interpretation == Interpretation::YbrFull422 {
            pixels * 2
        } else {
            pixels * self.samples_per_pixel as usize
        }
    }
}

/// Pixel data as it sits in memory: the parser keeps OB as bytes, OW as 16-bit words (already
/// in machine order, whatever the transfer syntax's endianness) and OL as 32-bit words.
enum Samples<'a> {
    Bytes(&'a [u8]),
    /// `high_first`: in a big-endian transfer syntax a 32-bit sample in OW is written
    /// most significant word first; in a little-endian one, least significant first.
    Words(&'a [u16], bool),
    Dwords(&'a [u32]),
    Copied(Cow<'a, [u8]>),
}

impl<'a> Samples<'a> {
    fn from_primitive(value: &'a PrimitiveValue, big_endian: bool) -> Samples<'a> {
        match value {
            PrimitiveValue::U8(v) => Samples::Bytes(v),
            PrimitiveValue::U16(v) => Samples::Words(v, big_endian),
            PrimitiveValue::U32(v) => Samples::Dwords(v),
            // Any other VR (UN read as bytes is U8 already): its little-endian bytes.
            other => Samples::Copied(other.to_bytes()),
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Samples::Bytes(b) => b.len(),
            Samples::Words(w, _) => w.len() * 2,
            Samples::Dwords(d) => d.len() * 4,
            Samples::Copied(b) => b.len(),
        }
    }

    /// Stored values of `count` samples from sample `start`, each `width` bits wide, with the
    /// image's Bits Stored, High Bit and Pixel Representation applied.
    fn stored_values(
        &self,
        width: u16,
        start: usize,
        count: usize,
        image: &ImagePixel,
    ) -> Result<Vec<i32>, RenderError> {
        if let Samples::Copied(bytes) = self {
            return Samples::Bytes(bytes).stored_values(width, start, count, image);
        }
        let needed_bits = (start + count) as u64 * width as u64;
        let have_bits = self.byte_len() as u64 * 8;
        if needed_bits > have_bits {
            return Err(RenderError::Decode(format!(
                "the pixel data is truncated: it holds {} bytes, the frame needs up to byte {}",
                have_bits / 8,
                needed_bits.div_ceil(8)
            )));
        }
        let bits_stored = image.bits_stored.min(width) as u32;
        let shift = if width == 1 {
            0
        } else {
            (image.high_bit as u32 + 1).saturating_sub(bits_stored)
        };
        let mask = if bits_stored >= 32 {
            u32::MAX
        } else {
            (1u32 << bits_stored) - 1
        };
        let spare = 32 - bits_stored;
        let signed = image.signed;
        let fix = move |raw: u32| -> i32 {
            let v = (raw >> shift) & mask;
            if signed {
                ((v << spare) as i32) >> spare
            } else {
                v as i32
            }
        };
        let range = start..start + count;
        let values = match (self, width) {
            (Samples::Bytes(b), 1) => range
                .map(|i| fix(((b[i / 8] >> (i % 8)) & 1) as u32))
                .collect(),
            (Samples::Words(w, _), 1) => range
                .map(|i| fix(((w[i / 16] >> (i % 16)) & 1) as u32))
                .collect(),
            (Samples::Bytes(b), 8) => b[range].iter().map(|&v| fix(v as u32)).collect(),
            (Samples::Words(w, _), 8) => range
                .map(|i| fix(((w[i / 2] >> (8 * (i % 2))) & 0xff) as u32))
                .collect(),
            (Samples::Bytes(b), 16) => b[start * 2..(start + count) * 2]
                .chunks_exact(2)
                .map(|c| fix(u16::from_le_bytes([c[0], c[1]]) as u32))
                .collect(),
            (Samples::Words(w, _), 16) => w[range].iter().map(|&v| fix(v as u32)).collect(),
            (Samples::Bytes(b), 32) => b[start * 4..(start + count) * 4]
                .chunks_exact(4)
                .map(|c| fix(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            (Samples::Words(w, high_first), 32) => {
                let (high, low) = if *high_first { (0, 1) } else { (1, 0) };
                w[start * 2..(start + count) * 2]
                    .chunks_exact(2)
                    .map(|c| fix(c[low] as u32 | (c[high] as u32) << 16))
                    .collect()
            }
            (Samples::Dwords(d), 32) => d[range].iter().map(|&v| fix(v)).collect(),
            (Samples::Dwords(d), 16) => range
                .map(|i| fix((d[i / 2] >> (16 * (i % 2))) & 0xffff))
                .collect(),
            (Samples::Dwords(d), 8) => range
                .map(|i| fix((d[i / 4] >> (8 * (i % 4))) & 0xff))
                .collect(),
            (Samples::Dwords(d), 1) => range.map(|i| fix((d[i / 32] >> (i % 32)) & 1)).collect(),
            (_, width) => return Err(RenderError::Unsupported(format!("{width}-bit samples"))),
        };
        Ok(values)
    }
}

/// Decompresses one frame of encapsulated pixel data into little-endian, interleaved samples;
/// also says what photometric interpretation the samples are in now.
fn decode_encapsulated(
    image: &ImagePixel,
    sequence: &PixelFragmentSequence<dicom_object::mem::InMemFragment>,
    ts_uid: &str,
    frame: u32,
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, Interpretation), RenderError> {
    let ts_uid = ts_uid.trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| RenderError::Unsupported(format!("unknown transfer syntax {ts_uid}")))?;
    match ts_uid {
        JPEG_BASELINE | JPEG_EXTENDED | JPEG_LOSSLESS | JPEG_LOSSLESS_SV1 => {
            let stream = frame_codestream(sequence, image.frames, frame, true)?;
            guard("JPEG", || jpeg::decode(&stream, image))
        }
        RLE_LOSSLESS => {
            if image.bits_allocated == 1 {
                return Err(RenderError::Unsupported(
                    "RLE Lossless with Bits Allocated 1".into(),
                ));
            }
            let stream = frame_codestream(sequence, image.frames, frame, false)?;
            let bytes = guard("RLE", || {
                rle::decode(
                    &stream,
                    image.rows as usize * image.columns as usize,
                    image.samples_per_pixel as usize,
                    image.bits_allocated as usize / 8,
                )
            })?;
            Ok((bytes, image.interpretation.clone()))
        }
        _ => {
            let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
                return Err(RenderError::Unsupported(format!(
                    "pixel data in transfer syntax {} ({ts_uid})",
                    ts.name()
                )));
            };
            let stream = frame_codestream(sequence, image.frames, frame, false)?;
            // the size the codestream declares, checked before the codec allocates for it
            match ts_uid {
                JPEG_LS_LOSSLESS | JPEG_LS_NEAR_LOSSLESS => jpeg::check_jpeg_ls(&stream, image)?,
                JPEG_2000_LOSSLESS | JPEG_2000 => check_j2k(&stream, image)?,
                _ => {}
            }
            match (&limits.codec_workers, ts_uid) {
                // CharLS and OpenJPEG are C and C++: their failures are contained in a process
                (
                    Some(workers),
                    JPEG_LS_LOSSLESS | JPEG_LS_NEAR_LOSSLESS | JPEG_2000_LOSSLESS | JPEG_2000,
                ) => {
                    let samples = workers.decode(ts_uid, ts.name(), image, &stream)?;
                    Ok((samples, codec_interpretation(image)))
                }
                _ => decode_with_codec(reader.as_ref(), ts, ts_uid, image, &stream),
            }
        }
    }
}

/// A frame decoded by the transfer syntax registry's codec (JPEG-LS, JPEG 2000, ...).
fn decode_with_codec(
    reader: &dyn dicom_encoding::adapters::PixelDataReader,
    ts: &dicom_encoding::TransferSyntax,
    ts_uid: &str,
    image: &ImagePixel,
    stream: &[u8],
) -> Result<(Vec<u8>, Interpretation), RenderError> {
    let one = OneFrame {
        ts: ts_uid,
        image,
        stream,
    };
    let bytes = guard(ts.name(), || {
        let mut out = Vec::new();
        reader
            .decode_frame(&one, 0, &mut out)
            .map_err(|e| RenderError::Decode(format!("{}: {e}", ts.name())))?;
        Ok(out)
    })?;
    Ok((bytes, codec_interpretation(image)))
}

/// What a registry codec's samples are in: JPEG 2000's multi-component transforms are undone by
/// the codec.
fn codec_interpretation(image: &ImagePixel) -> Interpretation {
    match image.interpretation_text.as_str() {
        "YBR_ICT" | "YBR_RCT" => Interpretation::Rgb,
        _ => image.interpretation.clone(),
    }
}

/// Refuses a codestream whose own header declares another size than the dataset's Rows and
/// Columns: a decoder allocates for what the stream claims, and a 16×16 image whose stream claims
/// 65535×65535 would otherwise cost gigabytes.
fn check_codestream_size(
    codec: &str,
    width: u32,
    height: u32,
    image: &ImagePixel,
) -> Result<(), RenderError> {
    if width != image.columns || height != image.rows {
        return Err(RenderError::Decode(format!(
            "the {codec} frame is {width}×{height}, the dataset says {}×{}",
            image.columns, image.rows
        )));
    }
    Ok(())
}

/// The image size a JPEG 2000 codestream declares in its SIZ segment (ISO 15444-1 A.5.1),
/// checked against the dataset; a JP2 file wrapper is looked into for its codestream.
fn check_j2k(stream: &[u8], image: &ImagePixel) -> Result<(), RenderError> {
    let bad = |why: &str| RenderError::Decode(format!("JPEG 2000: {why}"));
    // SOC then SIZ, at the start of a raw codestream or after the boxes of a JP2 file
    let start = stream
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .ok_or_else(|| bad("no SIZ marker segment"))?;
    let siz = stream
        .get(start + 4..start + 4 + 2 + 2 + 16)
        .ok_or_else(|| bad("the SIZ marker segment is cut short"))?;
    let be = |i: usize| u32::from_be_bytes([siz[i], siz[i + 1], siz[i + 2], siz[i + 3]]);
    // Lsiz (2), Rsiz (2), Xsiz, Ysiz, XOsiz, YOsiz
    let (xsiz, ysiz, xo, yo) = (be(4), be(8), be(12), be(16));
    if xo > xsiz || yo > ysiz {
        return Err(bad("the SIZ offsets exceed the image size"));
    }
    check_codestream_size("JPEG 2000", xsiz - xo, ysiz - yo, image)
}

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const JPEG_LS_NEAR_LOSSLESS: &str = "1.2.840.10008.1.2.4.81";
const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Runs a codec, turning a panic inside it (third-party decoders are not all hardened against
/// malformed streams) into an error, so one bad file cannot take a render worker down.
fn guard<T>(codec: &str, run: impl FnOnce() -> Result<T, RenderError>) -> Result<T, RenderError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(RenderError::Decode(format!(
            "the {codec} decoder failed on this frame's data"
        )))
    })
}

/// The compressed bytes of one frame (PS3.5 A.4): one fragment per frame when the counts
/// agree, all fragments for a single frame, else the Basic Offset Table, else (JPEG only) a
/// new frame at each fragment that opens with an SOI marker.
fn frame_codestream<'s>(
    sequence: &'s PixelFragmentSequence<dicom_object::mem::InMemFragment>,
    frames: u32,
    frame: u32,
    jpeg: bool,
) -> Result<Cow<'s, [u8]>, RenderError> {
    let fragments = sequence.fragments();
    if fragments.is_empty() {
        return Err(RenderError::Decode(
            "the encapsulated pixel data has no fragments".into(),
        ));
    }
    // Every frame takes at least one fragment (PS3.5 A.4): a larger count cannot be mapped to
    // the fragments, so which bytes a frame is cannot be told.
    if frames as usize > fragments.len() {
        return Err(RenderError::Decode(format!(
            "Number of Frames is {frames}, but the encapsulated pixel data has only {} \
             fragments",
            fragments.len()
        )));
    }
    if fragments.len() == frames as usize {
        return Ok(Cow::Borrowed(&fragments[frame as usize]));
    }
    if frames == 1 {
        return Ok(Cow::Owned(fragments.concat()));
    }
    let table = sequence.offset_table();
    if table.len() == frames as usize {
        if table.first() != Some(&0) || table.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RenderError::Decode(
                "the Basic Offset Table's offsets do not start at 0 and increase".into(),
            ));
        }
        let begin = table[frame as usize] as usize;
        let end = table.get(frame as usize + 1).map(|&o| o as usize);
        let mut position = 0usize;
        let mut out = Vec::new();
        for fragment in fragments {
            if position >= begin && end.is_none_or(|end| position < end) {
                out.extend_from_slice(fragment);
            }
            // Each fragment item costs an 8-byte item header in the offsets.
            position += fragment.len() + 8;
        }
        if out.is_empty() {
            return Err(RenderError::Decode(format!(
                "the Basic Offset Table points frame {frame} past the fragments"
            )));
        }
        return Ok(Cow::Owned(out));
    }
    if jpeg {
        let mut current: Option<usize> = None;
        let mut out = Vec::new();
        for fragment in fragments {
            if fragment.starts_with(&[0xFF, 0xD8]) {
                current = Some(current.map_or(0, |c| c + 1));
            }
            if current == Some(frame as usize) {
                out.extend_from_slice(fragment);
            }
        }
        if !out.is_empty() {
            return Ok(Cow::Owned(out));
        }
    }
    Err(RenderError::Decode(format!(
        "cannot tell which of the {} fragments hold frame {frame} of {frames}",
        fragments.len()
    )))
}

/// One frame's codestream, presented to a registry codec as a single-frame, single-fragment
/// object: the codec then sees (and copies) that frame only, never the whole pixel data.
struct OneFrame<'a> {
    ts: &'a str,
    image: &'a ImagePixel,
    stream: &'a [u8],
}

impl PixelDataObject for OneFrame<'_> {
    fn transfer_syntax_uid(&self) -> &str {
        self.ts
    }
    fn rows(&self) -> Option<u16> {
        u16::try_from(self.image.rows).ok()
    }
    fn cols(&self) -> Option<u16> {
        u16::try_from(self.image.columns).ok()
    }
    fn samples_per_pixel(&self) -> Option<u16> {
        Some(self.image.samples_per_pixel)
    }
    fn bits_allocated(&self) -> Option<u16> {
        Some(self.image.bits_allocated)
    }
    fn bits_stored(&self) -> Option<u16> {
        Some(self.image.bits_stored)
    }
    fn photometric_interpretation(&self) -> Option<&str> {
        Some(&self.image.interpretation_text)
    }
    fn number_of_frames(&self) -> Option<u32> {
        Some(1)
    }
    fn number_of_fragments(&self) -> Option<u32> {
        Some(1)
    }
    fn fragment(&self, fragment: usize) -> Option<Cow<'_, [u8]>> {
        (fragment == 0).then_some(Cow::Borrowed(self.stream))
    }
    fn offset_table(&self) -> Option<Cow<'_, [u32]>> {
        Some(Cow::Borrowed(&[]))
    }
    fn raw_pixel_data(&self) -> Option<RawPixelData> {
        let mut fragments = dicom_core::value::C::new();
        fragments.push(self.stream.to_vec());
        Some(RawPixelData {
            fragments,
            offset_table: dicom_core::value::C::new(),
        })
    }
}

#[cfg(test)]
mod tests;
