//! Rendering: the server turns stored pixels into what a screen shows, so original pixel data
//! never leaves the archive. [`decode`] turns one frame of a stored instance into stored values
//! (grey) or 8-bit RGB, correcting what dicom-pixeldata gets wrong; [`pipeline`] applies the
//! PS3.3 C.11 grey pipeline (modality LUT, VOI LUT, presentation) and resamples to the
//! viewport; [`pool`] runs both on worker threads by priority and caches decoded frames;
//! [`stream`] serves what a viewer asks for as H.264 frames ([`h264`]) over a WebSocket, then a
//! lossless still.

pub mod decode;
pub mod h264;
pub mod pipeline;
pub mod pool;
pub mod stream;

pub use decode::decode_frame;
pub use pipeline::{render, Presentation};
pub use pool::{CachedFrame, RenderPool};

use std::sync::Arc;

/// What could not be rendered, and why: mapped to 415/422 on HTTP and to an error message on a
/// stream.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the instance has no pixel data")]
    NoPixelData,
    #[error("frame {frame} does not exist (the instance has {frames})")]
    NoSuchFrame { frame: u32, frames: u32 },
    #[error("cannot decode the pixel data: {0}")]
    Decode(String),
    #[error("unsupported image: {0}")]
    Unsupported(String),
}

/// One decoded frame, before any LUT.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    pub rows: u32,
    pub columns: u32,
    pub pixels: Pixels,
}

#[derive(Debug, Clone)]
pub enum Pixels {
    /// Stored values (PS3.3 C.7.6.3.1), sign-extended when `signed`; an unsigned 32-bit value is
    /// kept as its bit pattern (read it back with `as u32`).
    Grey {
        values: Vec<i32>,
        bits_stored: u16,
        bits_allocated: u16,
        signed: bool,
        monochrome1: bool,
    },
    /// 8-bit RGB, interleaved, after colour-space conversion and palette lookup.
    Rgb(Vec<u8>),
}

impl DecodedFrame {
    /// Bytes this frame holds: what the decoded-frame cache charges for it.
    pub fn byte_size(&self) -> usize {
        match &self.pixels {
            Pixels::Grey { values, .. } => values.len() * 4,
            Pixels::Rgb(v) => v.len(),
        }
    }
}

/// An 8-bit image ready for a screen or an encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    /// 1 (grey) or 3 (RGB, interleaved).
    pub channels: u8,
    pub pixels: Vec<u8>,
}

/// PS3.3 C.11.2.1.2/3 VOI LUT Function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// A window in modality units (after rescale), as the user or a preset asks for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

/// How the viewer looks at a frame: the window (None: the file's own, else automatic), the
/// viewport in pixels (None: the frame's own size), zoom (1.0 = fit the viewport) and pan in
/// viewport pixels from centred.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub window: Option<Window>,
    pub viewport: Option<(u32, u32)>,
    pub zoom: f64,
    pub pan: (f64, f64),
}

impl Default for View {
    fn default() -> Self {
        View {
            window: None,
            viewport: None,
            zoom: 1.0,
            pan: (0.0, 0.0),
        }
    }
}

/// Who is waiting for a render: interactive streams go before HTTP renders, which go before
/// thumbnails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Interactive,
    Http,
    Thumbnail,
}

/// Renders frame `frame` (0-based) of the stored instance `sop_uid` as `view` asks. The one entry
/// point for everything that shows pixels (`/rendered`, thumbnails, the stream). The decoded
/// frame comes from the pool's cache when it is there; otherwise the instance is read (verified
/// and decrypted by the archive), parsed and decoded on a render worker, and cached.
pub async fn render_instance(
    archive: &crate::archive::Archive,
    sop_uid: &str,
    frame: u32,
    view: View,
    priority: Priority,
) -> Result<Rendered, RenderInstanceError> {
    let decoded = decoded_frame(archive, sop_uid, frame, priority).await?;
    archive
        .render
        .run(priority, move || {
            render(&decoded.frame, &decoded.presentation, &view)
        })
        .await
        .map_err(|e| RenderError::Decode(e.to_string()))?
        .map_err(RenderInstanceError::Render)
}

/// Frame `frame` of `sop_uid`, decoded, with its presentation: from the cache, else read and
/// decoded on a worker at `priority` and cached.
pub async fn decoded_frame(
    archive: &crate::archive::Archive,
    sop_uid: &str,
    frame: u32,
    priority: Priority,
) -> Result<Arc<CachedFrame>, RenderInstanceError> {
    if let Some(hit) = archive.render.cached(sop_uid, frame) {
        return Ok(hit);
    }
    let turn = archive.render.decode_turn(sop_uid, frame).await;
    let decoded = decode_missing(archive, sop_uid, frame, priority).await;
    archive.render.end_turn(turn);
    decoded
}

/// The frame from the cache (another caller may have decoded it while this one waited for its
/// turn), else read and decoded, and cached.
async fn decode_missing(
    archive: &crate::archive::Archive,
    sop_uid: &str,
    frame: u32,
    priority: Priority,
) -> Result<Arc<CachedFrame>, RenderInstanceError> {
    if let Some(hit) = archive.render.cached(sop_uid, frame) {
        return Ok(hit);
    }
    let mut bytes = Vec::new();
    archive
        .read_instance(sop_uid, |c| {
            bytes.extend_from_slice(c);
            Ok(())
        })
        .await?;
    let decoded = archive
        .render
        .run(priority, move || decode_part10(&bytes, frame))
        .await
        .map_err(|e| RenderError::Decode(e.to_string()))??;
    let decoded = Arc::new(decoded);
    archive.render.remember(sop_uid, frame, decoded.clone());
    Ok(decoded)
}

/// Parses Part-10 bytes and decodes one frame with its presentation.
pub fn decode_part10(bytes: &[u8], frame: u32) -> Result<CachedFrame, RenderError> {
    let preamble = if bytes.get(128..132) == Some(b"DICM") {
        128
    } else {
        0
    };
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[preamble..])
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let decoded = decode_frame(&obj, frame)?;
    let presentation = Presentation::from_object(&obj, frame);
    Ok(CachedFrame {
        frame: decoded,
        presentation,
    })
}

/// Decodes frame 0 of each instance into the cache ahead of need, at the lowest priority: the
/// stream calls this with the slices next to the one shown, so scrolling finds them decoded.
/// Instances already cached cost nothing; failures are only logged (the real request will
/// report them).
pub fn prefetch(archive: &Arc<crate::archive::Archive>, sop_uids: &[String]) {
    for sop in sop_uids {
        if archive.render.cached(sop, 0).is_some() {
            continue;
        }
        let (archive, sop) = (archive.clone(), sop.clone());
        tokio::spawn(async move {
            if let Err(e) = decoded_frame(&archive, &sop, 0, Priority::Thumbnail).await {
                tracing::debug!(sop, "prefetch: {e}");
            }
        });
    }
}

/// Why [`render_instance`] gave no image: the instance could not be read, or not rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderInstanceError {
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Render(#[from] RenderError),
}
