//! JPEG frames (PS3.5 A.4.1, ISO 10918-1): baseline, extended and lossless, through
//! `jpeg-decoder`; 12-bit extended frames, which it refuses, through [`super::jpeg12`].
//!
//! The colour transform is decided here, not by the decoder's guess. `jpeg-decoder`, like
//! libjpeg, takes a three-component stream without an Adobe marker for YCbCr; DICOM says what
//! the samples are in Photometric Interpretation, and an RGB JPEG written without colour
//! transformation (whole-slide tiles, `dcmcjpeg +cr`) would come out with false colours. An
//! Adobe APP14 marker, which states the transform outright, wins over the dataset.

use jpeg_decoder::{ColorTransform, Decoder};

use super::{ImagePixel, Interpretation};
use crate::RenderError;

/// Decodes one JPEG frame into little-endian interleaved samples (8 bits for precision up to
/// 8, else 16), and says what the samples now are.
pub(super) fn decode(
    stream: &[u8],
    image: &ImagePixel,
) -> Result<(Vec<u8>, Interpretation), RenderError> {
    let header = Header::scan(stream)?;
    // before any decoder allocates for what the stream claims
    check_size(header.width, header.height, image)?;
    if header.components != image.samples_per_pixel as usize {
        return Err(RenderError::Decode(format!(
            "the JPEG stream has {} components, the dataset says {} samples per pixel",
            header.components, image.samples_per_pixel
        )));
    }
    if !header.lossless && header.precision == 12 {
        let (samples, width, height) = super::jpeg12::decode(stream, image)?;
        check_size(width, height, image)?;
        return Ok((samples, image.interpretation.clone()));
    }
    if !header.lossless && header.precision != 8 {
        return Err(RenderError::Decode(format!(
            "a lossy JPEG frame of precision {} (8 or 12 allowed)",
            header.precision
        )));
    }
    let ycbcr = match header.adobe_transform {
        Some(0) => false,
        Some(1) => true,
        Some(t) => {
            return Err(RenderError::Unsupported(format!(
                "JPEG with Adobe colour transform {t}"
            )))
        }
        None => image.interpretation != Interpretation::Rgb,
    };
    let mut decoder = Decoder::new(stream);
    if header.components == 3 && !header.lossless {
        decoder.set_color_transform(if ycbcr {
            ColorTransform::YCbCr
        } else {
            ColorTransform::RGB
        });
    }
    let mut samples = decoder
        .decode()
        .map_err(|e| RenderError::Decode(format!("JPEG: {e}")))?;
    let info = decoder
        .info()
        .ok_or_else(|| RenderError::Decode("JPEG: the stream has no frame header".into()))?;
    check_size(info.width, info.height, image)?;
    // The lossless decoder writes 16-bit samples in machine order.
    if header.lossless && header.precision > 8 && cfg!(target_endian = "big") {
        for pair in samples.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    // The lossy path converted the colour already; the lossless one never converts.
    let interpretation = if header.components == 3 && !header.lossless {
        Interpretation::Rgb
    } else {
        image.interpretation.clone()
    };
    Ok((samples, interpretation))
}

fn check_size(width: u16, height: u16, image: &ImagePixel) -> Result<(), RenderError> {
    super::check_codestream_size("JPEG", width.into(), height.into(), image)
}

/// Checks the size a JPEG-LS frame header declares against the dataset, before CharLS is handed
/// the stream.
pub(super) fn check_jpeg_ls(stream: &[u8], image: &ImagePixel) -> Result<(), RenderError> {
    let h = Header::scan(stream)?;
    super::check_codestream_size("JPEG-LS", h.width.into(), h.height.into(), image)
}

/// What the markers before the first scan say.
#[derive(Debug)]
pub(super) struct Header {
    precision: u8,
    /// X and Y of the frame header: what a decoder would allocate for.
    width: u16,
    height: u16,
    components: usize,
    lossless: bool,
    adobe_transform: Option<u8>,
}

impl Header {
    pub(super) fn scan(stream: &[u8]) -> Result<Header, RenderError> {
        let bad = |why: &str| RenderError::Decode(format!("JPEG: {why}"));
        if !stream.starts_with(&[0xFF, 0xD8]) {
            return Err(bad("the frame does not start with an SOI marker"));
        }
        let mut i = 2;
        let mut frame: Option<(u8, u16, u16, usize, bool)> = None;
        let mut adobe_transform = None;
        loop {
            // Markers may be preceded by any number of 0xFF fill bytes.
            while stream.get(i) == Some(&0xFF) && stream.get(i + 1) == Some(&0xFF) {
                i += 1;
            }
            let (Some(&0xFF), Some(&marker)) = (stream.get(i), stream.get(i + 1)) else {
                return Err(bad("the stream ends before its first scan"));
            };
            i += 2;
            if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                continue;
            }
            let len = match stream.get(i..i + 2) {
                Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
                None => return Err(bad("a marker segment is cut short")),
            };
            let payload = stream
                .get(i + 2..i + len.max(2))
                .ok_or_else(|| bad("a marker segment is cut short"))?;
            match marker {
                // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC); SOF55 (F7) of JPEG-LS
                // (ISO 14495-1 C.2.2) has the same layout.
                0xC0..=0xCF | 0xF7 if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                    if payload.len() < 6 {
                        return Err(bad("the frame header is cut short"));
                    }
                    let lossless = matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF | 0xF7);
                    let height = u16::from_be_bytes([payload[1], payload[2]]);
                    let width = u16::from_be_bytes([payload[3], payload[4]]);
                    frame = Some((payload[0], width, height, payload[5] as usize, lossless));
                }
                0xEE if payload.starts_with(b"Adobe") && payload.len() >= 12 => {
                    adobe_transform = Some(payload[11]);
                }
                0xDA => break,
                _ => {}
            }
            i += len;
        }
        let (precision, width, height, components, lossless) =
            frame.ok_or_else(|| bad("no frame header before the first scan"))?;
        Ok(Header {
            precision,
            width,
            height,
            components,
            lossless,
            adobe_transform,
        })
    }
}
