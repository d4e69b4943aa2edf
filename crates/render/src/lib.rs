//! Rendering: the server turns stored pixels into what a screen shows, so original pixel data
//! never leaves the archive. [`decode`] turns one frame of a stored instance into stored values
//! (grey) or 8-bit RGB, correcting what dicom-pixeldata gets wrong; [`pipeline`] applies the
//! PS3.3 C.11 grey pipeline (modality LUT, VOI LUT, presentation) and resamples to the
//! viewport; [`pool`] runs both on worker threads by priority and caches decoded frames;
//! [`measure`] computes lengths, angles and region statistics from stored values; [`h264`] encodes what a viewer sees as video and [`picture`] as PNG or JPEG; [`stream`] is the
//! render stream's wire format, view state and series geometry; [`volume`] stacks a series into
//! a volume and cuts planes and slabs through it (MPR, MIP). This crate reads no storage and
//! speaks no HTTP: the services hand it stored bytes, the doors carry its output.

pub mod decode;
pub mod h264;
pub mod measure;
pub mod picture;
pub mod pipeline;
pub mod pool;
pub mod stream;
pub mod volume;

pub use decode::worker::CodecWorkers;
pub use decode::{decode_frame, decode_frame_within, DecodeLimits};
pub use pipeline::{render, Presentation};
pub use pool::{CachedFrame, RenderPool};

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

/// Parses Part-10 bytes and decodes one frame with its presentation, within `limits`.
/// Frame `frame` of an instance, from an object holding its header and that frame's pixel data
/// alone (as its only frame): presented as frame `frame`, decoded as the object's first.
pub fn decode_one_frame(
    obj: &dicom_object::DefaultDicomObject,
    frame: u32,
    limits: &DecodeLimits,
) -> Result<CachedFrame, RenderError> {
    let presentation = Presentation::from_object(obj, frame)?;
    let decoded = decode_frame_within(obj, 0, limits)?;
    Ok(CachedFrame {
        frame: decoded,
        presentation,
    })
}

pub fn decode_part10(
    bytes: &[u8],
    frame: u32,
    limits: &DecodeLimits,
) -> Result<CachedFrame, RenderError> {
    let obj = strata_dicom::part10::open(bytes).map_err(RenderError::Decode)?;
    // the LUTs are checked before the frame is decoded
    let presentation = Presentation::from_object(&obj, frame)?;
    let decoded = decode_frame_within(&obj, frame, limits)?;
    Ok(CachedFrame {
        frame: decoded,
        presentation,
    })
}
