//! The grey pipeline of PS3.3 C.11 and the resampling to the viewport.
//!
//! [`Presentation::from_object`] reads what a dataset says about presenting one frame (modality
//! LUT, VOI LUTs, presentation shape), from the top-level attributes or, for enhanced
//! multi-frame objects, from the shared and per-frame functional groups. [`render`] applies it:
//! stored value → modality LUT (rescale or table) → VOI LUT (window with its function, or table)
//! → presentation (MONOCHROME1 / INVERSE) → 8 bits rounded to nearest, then resamples to the
//! viewport (bilinear when magnifying, area averaging when minifying). RGB frames are only
//! resampled. This module does no I/O: it turns a decoded frame into screen pixels.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::{DecodedFrame, Pixels, RenderError, Rendered, View, VoiFunction, Window};

/// A lookup table as PS3.3 C.11.1.1.1 describes it: `data[0]` is the output for stored (or
/// modality) value `first`; inputs below `first` take the first entry, inputs past the end the
/// last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    pub first: i64,
    pub bits: u16,
    pub data: Vec<u16>,
}

impl Lut {
    pub fn lookup(&self, x: f64) -> f64 {
        let last = self.data.len() as i64 - 1;
        let i = (x.floor() as i64 - self.first).clamp(0, last);
        f64::from(self.data[i as usize])
    }

    /// The largest output the table's bit depth allows (the VOI output range).
    fn max_output(&self) -> f64 {
        ((1u64 << self.bits.clamp(1, 16)) - 1) as f64
    }
}

/// The modality LUT stage (PS3.3 C.11.1): a linear rescale or a table.
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityLut {
    Rescale { slope: f64, intercept: f64 },
    Table(Lut),
}

impl Default for ModalityLut {
    fn default() -> Self {
        ModalityLut::Rescale {
            slope: 1.0,
            intercept: 0.0,
        }
    }
}

impl ModalityLut {
    /// The modality value (HU for CT) of a stored value.
    pub fn apply(&self, stored: f64) -> f64 {
        match self {
            ModalityLut::Rescale { slope, intercept } => stored * slope + intercept,
            ModalityLut::Table(lut) => lut.lookup(stored),
        }
    }
}

/// What the dataset says about presenting one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presentation {
    pub modality_lut: ModalityLut,
    /// The windows of the file (Window Center/Width with VOI LUT Function), the first being the
    /// default one; windows a renderer must not use (width below the function's minimum) are
    /// left out.
    pub windows: Vec<Window>,
    /// The VOI LUT Sequence's tables, used when the file has no window.
    pub voi_luts: Vec<Lut>,
    /// Presentation LUT Shape INVERSE: the lowest value is shown white. MONOCHROME1 frames are
    /// inverted whatever this says (their shape, when present, can only be INVERSE).
    pub inverse: bool,
    /// Modality (0008,0060), for the window presets.
    pub modality: String,
    /// A Supplemental Palette Color LUT (PS3.3 C.7.6.19, Pixel Presentation COLOR or MIXED on
    /// a grey image): the stored values it maps are shown in its colours, the rest through the
    /// grey pipeline.
    pub supplemental: Option<std::sync::Arc<crate::decode::colour::Palette>>,
    /// An RT Dose grid (Modality RTDOSE): its Dose Units (GY or RELATIVE). Its values are
    /// doses (stored value × Dose Grid Scaling), shown as a dose map: the window's range through
    /// [`DOSE_COLOURS`], no dose black.
    pub dose_units: Option<String>,
}

/// The dose map's colour scale, from the lowest dose of the window to the highest, evenly
/// spaced stops (a viewer's legend draws the same).
pub const DOSE_COLOURS: [[u8; 3]; 7] = [
    [0, 0, 160],
    [0, 96, 255],
    [0, 220, 220],
    [0, 200, 0],
    [240, 240, 0],
    [255, 128, 0],
    [230, 0, 0],
];

/// The dose map's colour for a windowed level: black for none, else along [`DOSE_COLOURS`].
pub fn dose_colour(level: u8) -> [u8; 3] {
    if level == 0 {
        return [0, 0, 0];
    }
    let t = f64::from(level - 1) / 254.0 * (DOSE_COLOURS.len() - 1) as f64;
    let i = (t as usize).min(DOSE_COLOURS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (DOSE_COLOURS[i], DOSE_COLOURS[i + 1]);
    [0, 1, 2].map(|c| (f64::from(a[c]) + (f64::from(b[c]) - f64::from(a[c])) * f).round() as u8)
}

/// The smallest width a window with this function may have (PS3.3 C.11.2.1.2).
fn width_allowed(w: &Window) -> bool {
    w.center.is_finite()
        && w.width.is_finite()
        && match w.function {
            VoiFunction::Linear => w.width >= 1.0,
            VoiFunction::LinearExact | VoiFunction::Sigmoid => w.width > 0.0,
        }
}

impl Window {
    /// Checks a window asked for by a user: a clear reason when it cannot be applied.
    pub fn validate(&self) -> Result<(), RenderError> {
        if width_allowed(self) {
            Ok(())
        } else {
            Err(RenderError::Unsupported(format!(
                "window width {} is not allowed for {:?} (at least 1 for LINEAR, above 0 otherwise)",
                self.width, self.function
            )))
        }
    }
}

impl VoiFunction {
    /// VOI LUT Function (0028,1056) or the `function` of a DICOMweb `window` parameter.
    pub fn parse(s: &str) -> Option<VoiFunction> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "LINEAR" => Some(VoiFunction::Linear),
            "LINEAR_EXACT" => Some(VoiFunction::LinearExact),
            "SIGMOID" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

/// Named windows a reader picks from, per modality (values as radiology teaching uses them).
pub fn presets(modality: &str) -> &'static [(&'static str, f64, f64)] {
    match modality {
        "CT" => &[
            ("brain", 40.0, 80.0),
            ("subdural", 75.0, 215.0),
            ("lung", -600.0, 1500.0),
            ("mediastinum", 50.0, 350.0),
            ("bone", 400.0, 1800.0),
            ("abdomen", 50.0, 400.0),
            ("liver", 30.0, 150.0),
        ],
        _ => &[],
    }
}

/// The preset `name` of `modality` as a LINEAR window.
pub fn preset(modality: &str, name: &str) -> Option<Window> {
    presets(modality)
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, center, width)| Window {
            center,
            width,
            function: VoiFunction::Linear,
        })
}

/// The first value of a numeric attribute. A value stored with VR UN (an implicit-VR file read
/// with a private dictionary, or converted by a tool that did not know the tag) holds the DS
/// text as bytes: it is read as text, never as a binary number.
fn numbers(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    let Some(e) = obj.get(tag) else {
        return Vec::new();
    };
    if e.vr() == dicom_core::VR::UN {
        let Ok(bytes) = e.to_bytes() else {
            return Vec::new();
        };
        return String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .split('\\')
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .collect();
    }
    e.to_multi_float64().unwrap_or_default()
}

fn number(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    numbers(obj, tag).first().copied().filter(|v| v.is_finite())
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = if e.vr() == dicom_core::VR::UN {
        String::from_utf8_lossy(&e.to_bytes().ok()?).into_owned()
    } else {
        e.to_str().ok()?.into_owned()
    };
    let s = s
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or_default()
}

/// One LUT of a Modality or VOI LUT Sequence item (PS3.3 C.11.1.1.1): the descriptor gives the
/// number of entries (0 meaning 65536), the first value mapped (signed when the pixel data is)
/// and the bits per entry; the data are 16-bit words, or bytes for some 8-bit tables.
///
/// `Ok(None)` for an item that holds no table; a table whose descriptor is out of range or whose
/// data are not as long as the descriptor says is an error, never used in part.
fn read_lut(
    item: &InMemDicomObject,
    signed_input: bool,
    what: &str,
) -> Result<Option<Lut>, RenderError> {
    let bad = |why: String| RenderError::Decode(format!("the {what}: {why}"));
    let (Some(desc), data) = (item.get(tags::LUT_DESCRIPTOR), item.get(tags::LUT_DATA)) else {
        if item.get(tags::LUT_DATA).is_some() {
            return Err(bad("LUT Data without a LUT Descriptor".into()));
        }
        return Ok(None);
    };
    let e = data.ok_or_else(|| bad("a LUT Descriptor without LUT Data".into()))?;
    let d: Vec<i64> = desc
        .to_multi_int::<i64>()
        .ok()
        .filter(|d| d.len() == 3)
        .ok_or_else(|| bad("the LUT Descriptor is not 3 numbers".into()))?;
    if !(-32768..=65535).contains(&d[0]) || !(-32768..=65535).contains(&d[1]) {
        return Err(bad(format!(
            "the LUT Descriptor {d:?} is out of range (16-bit entry count and first value)"
        )));
    }
    // PS3.3 C.11.1.1.1 and C.11.2.1.1: 8 to 16 bits an entry
    if !(8..=16).contains(&d[2]) {
        return Err(bad(format!(
            "the LUT Descriptor gives {} bits an entry (8 to 16 allowed)",
            d[2]
        )));
    }
    let entries = match d[0] & 0xFFFF {
        0 => 65536,
        n => n as usize,
    };
    let first = if desc.vr() == dicom_core::VR::SS || (signed_input && d[1] > 32767) {
        (d[1] as u16) as i16 as i64
    } else {
        d[1] & 0xFFFF
    };
    let bits = d[2] as u16;
    let data: Vec<u16> = match e.vr() {
        dicom_core::VR::OB | dicom_core::VR::UN => {
            let bytes = e
                .to_bytes()
                .map_err(|_| bad("the LUT Data are not bytes".into()))?;
            if bits <= 8 && (bytes.len() == entries || bytes.len() == entries + 1) {
                bytes.iter().map(|&b| u16::from(b)).collect()
            } else {
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect()
            }
        }
        // US, SS or OW: each value's 16-bit pattern
        _ => e
            .to_multi_int::<i64>()
            .map_err(|_| bad("the LUT Data are not numbers".into()))?
            .into_iter()
            .map(|v| v as u16)
            .collect(),
    };
    // 8-bit entries packed two per word (PS3.3 C.11.1.1.1, retired usage): unpack
    let data = if bits <= 8 && data.len() != entries && data.len() == entries.div_ceil(2) {
        data.iter()
            .flat_map(|w| [w & 0xFF, w >> 8])
            .collect::<Vec<u16>>()
    } else {
        data
    };
    // what the descriptor says, or (8-bit, odd count) one byte of padding more
    let padded = bits <= 8 && entries % 2 == 1 && data.len() == entries + 1;
    if data.len() != entries && !padded {
        return Err(bad(format!(
            "the LUT Data hold {} entries, the LUT Descriptor says {entries}",
            data.len()
        )));
    }
    let mut data = data;
    data.truncate(entries);
    Ok(Some(Lut { first, bits, data }))
}

/// Windows of one dataset or functional-group item.
fn read_windows(obj: &InMemDicomObject) -> Vec<Window> {
    let centers = numbers(obj, tags::WINDOW_CENTER);
    let widths = numbers(obj, tags::WINDOW_WIDTH);
    let function = text(obj, tags::VOILUT_FUNCTION)
        .and_then(|f| VoiFunction::parse(&f))
        .unwrap_or(VoiFunction::Linear);
    centers
        .iter()
        .zip(&widths)
        .map(|(&center, &width)| Window {
            center,
            width,
            function,
        })
        .filter(width_allowed)
        .collect()
}

impl Presentation {
    /// What `obj` says about presenting frame `frame` (0-based). A Modality or VOI LUT whose
    /// descriptor does not describe its data is an error.
    pub fn from_object(obj: &InMemDicomObject, frame: u32) -> Result<Presentation, RenderError> {
        let signed = obj
            .get(tags::PIXEL_REPRESENTATION)
            .and_then(|e| e.to_int::<u16>().ok())
            == Some(1);
        let mut p = Presentation {
            modality: text(obj, tags::MODALITY).unwrap_or_default(),
            inverse: text(obj, tags::PRESENTATION_LUT_SHAPE).as_deref() == Some("INVERSE"),
            ..Presentation::default()
        };
        let table = match items(obj, tags::MODALITY_LUT_SEQUENCE).first() {
            Some(item) => read_lut(item, signed, "Modality LUT")?,
            None => None,
        };
        p.modality_lut = match table {
            Some(lut) => ModalityLut::Table(lut),
            None => ModalityLut::Rescale {
                slope: number(obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
                intercept: number(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            },
        };
        p.windows = read_windows(obj);
        if p.modality == "RTDOSE" {
            // PS3.3 C.8.8.3: dose = stored value × Dose Grid Scaling
            p.dose_units = Some(text(obj, tags::DOSE_UNITS).unwrap_or_default());
            if let Some(scaling) = number(obj, tags::DOSE_GRID_SCALING) {
                p.modality_lut = ModalityLut::Rescale {
                    slope: scaling,
                    intercept: 0.0,
                };
            }
        }
        let pixel_presentation = text(obj, tags::PIXEL_PRESENTATION).unwrap_or_default();
        let grey = text(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .is_some_and(|pi| pi.starts_with("MONOCHROME"));
        if grey
            && matches!(pixel_presentation.as_str(), "COLOR" | "MIXED")
            && obj
                .get(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)
                .is_some()
        {
            p.supplemental = Some(std::sync::Arc::new(crate::decode::colour::Palette::read(
                obj,
            )?));
        }
        // VOI LUT input is the modality LUT's output: signed when a rescale can make it so
        p.voi_luts = Vec::new();
        for item in items(obj, tags::VOILUT_SEQUENCE) {
            p.voi_luts.extend(read_lut(item, true, "VOI LUT")?);
        }
        // enhanced multi-frame: shared groups, then this frame's own, each overriding
        let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
        let own = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).get(frame as usize);
        for group in shared.into_iter().chain(own) {
            if let Some(t) = items(group, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).first() {
                if let (Some(slope), Some(intercept)) = (
                    number(t, tags::RESCALE_SLOPE),
                    number(t, tags::RESCALE_INTERCEPT),
                ) {
                    p.modality_lut = ModalityLut::Rescale { slope, intercept };
                }
            }
            if let Some(v) = items(group, tags::FRAME_VOILUT_SEQUENCE).first() {
                let windows = read_windows(v);
                if !windows.is_empty() {
                    p.windows = windows;
                }
            }
        }
        Ok(p)
    }
}

/// The VOI stage as it will be applied to one frame.
#[derive(Debug, Clone)]
enum Voi {
    Window(Window),
    Table(Lut),
}

/// PS3.3 C.11.2.1.2/3: a modality value through a window to [0, 255] (not yet rounded).
fn window(x: f64, w: &Window) -> f64 {
    const YMAX: f64 = 255.0;
    let (c, wd) = (w.center, w.width);
    match w.function {
        VoiFunction::Linear => {
            if x <= c - 0.5 - (wd - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (wd - 1.0) / 2.0 {
                YMAX
            } else {
                ((x - (c - 0.5)) / (wd - 1.0) + 0.5) * YMAX
            }
        }
        VoiFunction::LinearExact => {
            if x <= c - wd / 2.0 {
                0.0
            } else if x > c + wd / 2.0 {
                YMAX
            } else {
                ((x - c) / wd + 0.5) * YMAX
            }
        }
        VoiFunction::Sigmoid => YMAX / (1.0 + (-4.0 * (x - c) / wd).exp()),
    }
}

/// A stored value read as a number: an unsigned 32-bit value is kept as its bit pattern.
fn stored_value(v: i32, signed: bool, bits_stored: u16) -> f64 {
    if !signed && bits_stored >= 32 {
        f64::from(v as u32)
    } else {
        f64::from(v)
    }
}

/// The automatic window when neither the file nor the viewer gives one: the 0.5th to 99.5th
/// percentile of the frame's modality values (so padding and a few hot pixels do not flatten
/// the image), or the full range when that is a single value (a mask, a 1-bit image).
fn automatic_window(modality_values: impl Iterator<Item = f64>, count: usize) -> Window {
    // a bounded sample keeps this cheap on large frames; percentiles barely move
    const SAMPLES: usize = 1 << 16;
    let step = count.div_ceil(SAMPLES).max(1);
    let mut sample: Vec<f64> = modality_values.step_by(step).collect();
    sample.sort_by(|a, b| a.total_cmp(b));
    let full = |s: &[f64]| (s.first().copied(), s.last().copied());
    let (min, max) = match full(&sample) {
        (Some(a), Some(b)) => (a, b),
        _ => (0.0, 0.0),
    };
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
    let (mut lo, mut hi) = if sample.is_empty() {
        (0.0, 0.0)
    } else {
        (at(0.005), at(0.995))
    };
    if hi <= lo {
        (lo, hi) = (min, max);
    }
    // LINEAR with width hi - lo + 1 maps lo to 0 and hi to 255 exactly
    let width = (hi - lo + 1.0).max(1.0);
    Window {
        center: lo + width / 2.0,
        width,
        function: VoiFunction::Linear,
    }
}

/// The largest modality value (a dose, for RT Dose) of a grey frame; None for colour.
pub fn largest_value(frame: &DecodedFrame, presentation: &Presentation) -> Option<f64> {
    let Pixels::Grey {
        values,
        signed,
        bits_stored,
        ..
    } = &frame.pixels
    else {
        return None;
    };
    values
        .iter()
        .map(|&v| {
            presentation
                .modality_lut
                .apply(stored_value(v, *signed, *bits_stored))
        })
        .reduce(f64::max)
}

/// The window of a dose map from no dose to `top`.
pub fn dose_window(top: f64) -> Window {
    let width = if top > 0.0 && top.is_finite() {
        top
    } else {
        1.0
    };
    Window {
        center: width / 2.0,
        width,
        function: VoiFunction::LinearExact,
    }
}

/// Render a decoded frame as the view asks.
pub fn render(
    frame: &DecodedFrame,
    presentation: &Presentation,
    view: &View,
) -> Result<Rendered, RenderError> {
    let (w, h) = (frame.columns, frame.rows);
    let n = w as usize * h as usize;
    let (pixels, channels) = match &frame.pixels {
        Pixels::Grey {
            values,
            bits_stored,
            signed,
            monochrome1,
            ..
        } => {
            if values.len() < n {
                return Err(RenderError::Decode(format!(
                    "{} values for {w}×{h} pixels",
                    values.len()
                )));
            }
            let values = &values[..n];
            let shown = grey(
                values,
                *signed,
                *bits_stored,
                *monochrome1,
                presentation,
                view,
            )?;
            if presentation.dose_units.is_some() {
                let rgb = shown.iter().flat_map(|&g| dose_colour(g)).collect();
                return resample(
                    &Rendered {
                        width: w,
                        height: h,
                        channels: 3,
                        pixels: rgb,
                    },
                    view,
                );
            }
            match &presentation.supplemental {
                // the palette's own stored values in colour, the rest grey
                Some(palette) => (
                    values
                        .iter()
                        .zip(&shown)
                        .flat_map(|(&v, &g)| palette.colour(v).unwrap_or([g, g, g]))
                        .collect(),
                    3u8,
                ),
                None => (shown, 1u8),
            }
        }
        Pixels::Rgb(rgb) => {
            if rgb.len() < n * 3 {
                return Err(RenderError::Decode(format!(
                    "{} bytes for {w}×{h} RGB pixels",
                    rgb.len()
                )));
            }
            (rgb[..n * 3].to_vec(), 3u8)
        }
    };
    resample(
        &Rendered {
            width: w,
            height: h,
            channels,
            pixels,
        },
        view,
    )
}

/// Stored values to 8-bit display values through the whole grey pipeline.
fn grey(
    values: &[i32],
    signed: bool,
    bits_stored: u16,
    monochrome1: bool,
    p: &Presentation,
    view: &View,
) -> Result<Vec<u8>, RenderError> {
    if let Some(w) = &view.window {
        w.validate()?;
    }
    let modality = |v: i32| p.modality_lut.apply(stored_value(v, signed, bits_stored));
    let voi = match (view.window, p.windows.first(), p.voi_luts.first()) {
        (Some(w), _, _) => Voi::Window(w),
        (None, Some(w), _) => Voi::Window(*w),
        (None, None, Some(t)) => Voi::Table(t.clone()),
        // a dose map without a window: from no dose to the frame's highest
        (None, None, None) if p.dose_units.is_some() => {
            let top = values.iter().map(|&v| modality(v)).fold(0.0, f64::max);
            Voi::Window(dose_window(top))
        }
        (None, None, None) => Voi::Window(automatic_window(
            values.iter().map(|&v| modality(v)),
            values.len(),
        )),
    };
    let invert = monochrome1 || p.inverse;
    let display = |v: i32| -> u8 {
        let m = modality(v);
        let y = match &voi {
            Voi::Window(w) => window(m, w),
            Voi::Table(t) => t.lookup(m) * 255.0 / t.max_output(),
        };
        // the VOI output quantised to 8 bits, then the presentation shape on those 256 levels
        let y = y.round().clamp(0.0, 255.0) as u8;
        if invert {
            255 - y
        } else {
            y
        }
    };
    // One evaluation per distinct stored value when the range is small (it nearly always is:
    // 16 bits at most), instead of one per pixel.
    let (min, max) = values
        .iter()
        .fold((i32::MAX, i32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let unsigned32 = !signed && bits_stored >= 32;
    let range = i64::from(max) - i64::from(min) + 1;
    if !values.is_empty() && !unsigned32 && range <= (values.len() as i64).max(1 << 16) {
        let table: Vec<u8> = (min..=max).map(display).collect();
        Ok(values.iter().map(|&v| table[(v - min) as usize]).collect())
    } else {
        Ok(values.iter().map(|&v| display(v)).collect())
    }
}

/// Where the source image lands on the viewport: its scale and the viewport position of its
/// top-left corner.
#[derive(Debug, Clone, Copy)]
struct Placement {
    out_w: u32,
    out_h: u32,
    scale: f64,
    x0: f64,
    y0: f64,
}

fn placement(w: u32, h: u32, view: &View) -> Result<Placement, RenderError> {
    let (out_w, out_h) = view.viewport.unwrap_or((w, h));
    if out_w == 0 || out_h == 0 || w == 0 || h == 0 {
        return Err(RenderError::Unsupported(format!(
            "an empty image or viewport ({w}×{h} into {out_w}×{out_h})"
        )));
    }
    if !(view.zoom.is_finite() && view.zoom > 0.0) {
        return Err(RenderError::Unsupported(format!(
            "zoom {} must be above 0",
            view.zoom
        )));
    }
    if !(view.pan.0.is_finite() && view.pan.1.is_finite()) {
        return Err(RenderError::Unsupported("pan must be finite".into()));
    }
    let fit = (f64::from(out_w) / f64::from(w)).min(f64::from(out_h) / f64::from(h));
    let scale = fit * view.zoom;
    Ok(Placement {
        out_w,
        out_h,
        scale,
        x0: (f64::from(out_w) - f64::from(w) * scale) / 2.0 + view.pan.0,
        y0: (f64::from(out_h) - f64::from(h) * scale) / 2.0 + view.pan.1,
    })
}

/// The source pixels (first index and weights) that make one output pixel along one axis, or
/// none when the output pixel lies outside the image.
type Taps = Option<(usize, Vec<f32>)>;

/// Filter taps along one axis: bilinear (pixel centres aligned) when magnifying, the exact
/// area each output pixel covers when minifying.
fn axis_taps(src: u32, dst: u32, scale: f64, origin: f64) -> Vec<Taps> {
    let src_len = f64::from(src);
    (0..dst)
        .map(|d| {
            let d = f64::from(d);
            if scale >= 1.0 {
                let s = (d + 0.5 - origin) / scale;
                if !(0.0..src_len).contains(&s) {
                    return None;
                }
                let f = (s - 0.5).clamp(0.0, src_len - 1.0);
                let i = f.floor();
                let t = (f - i) as f32;
                let i = i as usize;
                if t == 0.0 || i + 1 >= src as usize {
                    Some((i, vec![1.0]))
                } else {
                    Some((i, vec![1.0 - t, t]))
                }
            } else {
                let a = (d - origin) / scale;
                let b = (d + 1.0 - origin) / scale;
                let (ca, cb) = (a.max(0.0), b.min(src_len));
                // mostly outside the image: background
                if cb - ca < (b - a) / 2.0 {
                    return None;
                }
                let first = ca.floor() as usize;
                let last = (cb.ceil() as usize).min(src as usize);
                let weights: Vec<f32> = (first..last)
                    .map(|i| {
                        let lo = ca.max(i as f64);
                        let hi = cb.min(i as f64 + 1.0);
                        ((hi - lo).max(0.0) / (cb - ca)) as f32
                    })
                    .collect();
                Some((first, weights))
            }
        })
        .collect()
}

/// Resample an 8-bit image to the viewport; outside the image is black.
fn resample(img: &Rendered, view: &View) -> Result<Rendered, RenderError> {
    let p = placement(img.width, img.height, view)?;
    if p.out_w == img.width && p.out_h == img.height && p.scale == 1.0 && p.x0 == 0.0 && p.y0 == 0.0
    {
        return Ok(img.clone());
    }
    let c = img.channels as usize;
    let xs = axis_taps(img.width, p.out_w, p.scale, p.x0);
    let ys = axis_taps(img.height, p.out_h, p.scale, p.y0);
    if c == 1 {
        return Ok(resample_grey(img, &p, &xs, &ys));
    }
    let (sw, ow) = (img.width as usize, p.out_w as usize);
    // horizontal pass over the source rows the vertical pass needs
    let mut needed = vec![false; img.height as usize];
    for (first, weights) in ys.iter().flatten() {
        for n in needed.iter_mut().skip(*first).take(weights.len()) {
            *n = true;
        }
    }
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); img.height as usize];
    for (y, row) in rows.iter_mut().enumerate() {
        if !needed[y] {
            continue;
        }
        let src = &img.pixels[y * sw * c..(y + 1) * sw * c];
        let mut out = vec![0f32; ow * c];
        for (x, taps) in xs.iter().enumerate() {
            if let Some((first, weights)) = taps {
                for (k, wgt) in weights.iter().enumerate() {
                    let s = (first + k) * c;
                    for ch in 0..c {
                        out[x * c + ch] += wgt * f32::from(src[s + ch]);
                    }
                }
            }
        }
        *row = out;
    }
    let mut pixels = vec![0u8; ow * p.out_h as usize * c];
    for (y, taps) in ys.iter().enumerate() {
        let Some((first, weights)) = taps else {
            continue;
        };
        let out = &mut pixels[y * ow * c..(y + 1) * ow * c];
        for (x, xt) in xs.iter().enumerate() {
            if xt.is_none() {
                continue;
            }
            for ch in 0..c {
                let i = x * c + ch;
                let v: f32 = weights
                    .iter()
                    .enumerate()
                    .map(|(k, wgt)| wgt * rows[first + k][i])
                    .sum();
                out[i] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(Rendered {
        width: p.out_w,
        height: p.out_h,
        channels: img.channels,
        pixels,
    })
}

/// [`resample`] for grey images, the stream's every frame: the same filter, with the one- and
/// two-tap cases (all of bilinear magnification) written out so they compile to straight loops.
fn resample_grey(img: &Rendered, p: &Placement, xs: &[Taps], ys: &[Taps]) -> Rendered {
    let (sw, ow, oh) = (img.width as usize, p.out_w as usize, p.out_h as usize);
    let row_pass = |src: &[u8], out: &mut [f32]| {
        for (o, taps) in out.iter_mut().zip(xs) {
            *o = match taps {
                None => 0.0,
                Some((i, w)) if w.len() == 1 => f32::from(src[*i]),
                Some((i, w)) if w.len() == 2 => {
                    w[0] * f32::from(src[*i]) + w[1] * f32::from(src[*i + 1])
                }
                Some((i, w)) => w
                    .iter()
                    .enumerate()
                    .map(|(k, wgt)| wgt * f32::from(src[i + k]))
                    .sum(),
            };
        }
    };
    // each source row is filtered horizontally once, however many output rows use it
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; img.height as usize];
    for (first, weights) in ys.iter().flatten() {
        for (y, slot) in rows.iter_mut().enumerate().skip(*first).take(weights.len()) {
            if slot.is_none() {
                let mut out = vec![0f32; ow];
                row_pass(&img.pixels[y * sw..(y + 1) * sw], &mut out);
                *slot = Some(out);
            }
        }
    }
    let row = |y: usize| rows[y].as_deref().expect("filtered above");
    // round half up on the non-negative range: `f32::round` is a library call, this is two
    // instructions, and a million pixels a frame go through it
    let to_u8 = |v: f32| (v.clamp(0.0, 255.0) + 0.5) as u8;
    let mut pixels = vec![0u8; ow * oh];
    for (out, taps) in pixels.chunks_exact_mut(ow).zip(ys) {
        match taps {
            None => {}
            Some((i, w)) if w.len() == 1 => {
                for (o, &a) in out.iter_mut().zip(row(*i)) {
                    *o = to_u8(a);
                }
            }
            Some((i, w)) if w.len() == 2 => {
                let (w0, w1) = (w[0], w[1]);
                for ((o, &a), &b) in out.iter_mut().zip(row(*i)).zip(row(*i + 1)) {
                    *o = to_u8(w0 * a + w1 * b);
                }
            }
            Some((i, w)) => {
                for (x, o) in out.iter_mut().enumerate() {
                    *o = to_u8(
                        w.iter()
                            .enumerate()
                            .map(|(k, wgt)| wgt * row(i + k)[x])
                            .sum(),
                    );
                }
            }
        }
    }
    Rendered {
        width: p.out_w,
        height: p.out_h,
        channels: 1,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey_frame(w: u32, h: u32, values: Vec<i32>) -> DecodedFrame {
        DecodedFrame {
            rows: h,
            columns: w,
            pixels: Pixels::Grey {
                values,
                bits_stored: 16,
                bits_allocated: 16,
                signed: true,
                monochrome1: false,
            },
        }
    }

    #[test]
    fn identity_view_keeps_the_size_and_a_magnified_edge_stays_sharp_inside() {
        let f = grey_frame(2, 1, vec![0, 100]);
        let p = Presentation {
            windows: vec![Window {
                center: 50.0,
                width: 100.0,
                function: VoiFunction::LinearExact,
            }],
            ..Presentation::default()
        };
        let r = render(&f, &p, &View::default()).unwrap();
        assert_eq!((r.width, r.height, r.pixels.clone()), (2, 1, vec![0, 255]));
        let big = render(
            &f,
            &p,
            &View {
                viewport: Some((4, 2)),
                ..View::default()
            },
        )
        .unwrap();
        assert_eq!((big.width, big.height), (4, 2));
        // bilinear between the two centres: 0, 63.75, 191.25, 255
        assert_eq!(&big.pixels[..4], &[0, 64, 191, 255]);
    }

    #[test]
    fn minifying_averages_the_area() {
        let f = grey_frame(
            4,
            4,
            (0..16).map(|i| if i % 2 == 0 { 0 } else { 254 }).collect(),
        );
        let p = Presentation {
            windows: vec![Window {
                center: 127.0,
                width: 254.0,
                function: VoiFunction::LinearExact,
            }],
            ..Presentation::default()
        };
        let r = render(
            &f,
            &p,
            &View {
                viewport: Some((2, 2)),
                ..View::default()
            },
        )
        .unwrap();
        assert_eq!(r.pixels, vec![128; 4], "stripes average to mid-grey");
    }

    #[test]
    fn zoom_and_pan_move_the_image_in_the_viewport() {
        let f = grey_frame(4, 4, (0..16).map(|i| (i % 4) * 85).collect());
        let p = Presentation {
            windows: vec![Window {
                center: 127.5,
                width: 255.0,
                function: VoiFunction::LinearExact,
            }],
            ..Presentation::default()
        };
        let view = |zoom, pan| View {
            viewport: Some((4, 4)),
            zoom,
            pan,
            ..View::default()
        };
        let plain = render(&f, &p, &view(1.0, (0.0, 0.0))).unwrap();
        assert_eq!(&plain.pixels[..4], &[0, 85, 170, 255]);
        // panned one pixel right: the left column is background, the rest shifted
        let panned = render(&f, &p, &view(1.0, (1.0, 0.0))).unwrap();
        assert_eq!(&panned.pixels[..4], &[0, 0, 85, 170]);
        // panned out of sight: all background
        let gone = render(&f, &p, &view(1.0, (10.0, 0.0))).unwrap();
        assert!(gone.pixels.iter().all(|&v| v == 0));
        // zoom 2 shows the middle half, magnified: columns 1 and 2 spread over four pixels
        let zoomed = render(&f, &p, &view(2.0, (0.0, 0.0))).unwrap();
        assert_eq!(&zoomed.pixels[..4], &[64, 106, 149, 191]);
        assert!(render(&f, &p, &view(0.0, (0.0, 0.0))).is_err());
    }

    #[test]
    fn presets_and_functions_parse() {
        assert_eq!(preset("CT", "Lung").unwrap().center, -600.0);
        assert!(preset("MR", "lung").is_none());
        assert_eq!(
            VoiFunction::parse("linear-exact"),
            Some(VoiFunction::LinearExact)
        );
        assert_eq!(VoiFunction::parse("cubic"), None);
    }

    #[test]
    fn the_automatic_window_spans_a_one_bit_image() {
        let w = automatic_window([0.0, 0.0, 0.0, 1.0].into_iter(), 4);
        assert_eq!(window(0.0, &w), 0.0);
        assert_eq!(window(1.0, &w), 255.0);
    }
}
