//! A render as a picture file: PNG for the stream's lossless still and for `/rendered`, JPEG for
//! `/rendered` and thumbnails. One encoder of each, so every door's pictures are made alike.

use crate::Rendered;
use image::{ExtendedColorType, ImageEncoder};

/// A picture file format, with what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    Png,
    /// JPEG at a quality from 1 to 100.
    Jpeg(u8),
}

/// The render as a picture file in `format`.
pub fn encode(r: &Rendered, format: PictureFormat) -> Result<Vec<u8>, String> {
    match format {
        PictureFormat::Png => png(r),
        PictureFormat::Jpeg(quality) => jpeg(r, quality),
    }
}

fn colour(r: &Rendered) -> ExtendedColorType {
    if r.channels == 3 {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    }
}

/// PNG of a render, with fast deflate: these pictures are made per request or per pause, and
/// their size matters less than the time they take.
pub fn png(r: &Rendered) -> Result<Vec<u8>, String> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(&r.pixels, r.width, r.height, colour(r))
        .map_err(|e| format!("PNG: {e}"))?;
    Ok(out)
}

/// JPEG of a render at `quality` (1 to 100).
pub fn jpeg(r: &Rendered, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(&r.pixels, r.width, r.height, colour(r))
        .map_err(|e| format!("JPEG: {e}"))?;
    Ok(out)
}
