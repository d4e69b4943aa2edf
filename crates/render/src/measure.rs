//! Measurements from stored values, never from a rendered picture: lengths and angles in the
//! patient's millimetres (from Pixel Spacing, else Imager Pixel Spacing, else in pixels and said
//! so), region statistics and probes in the modality's units (the modality LUT applied: HU for
//! CT).
//!
//! Geometry is in image coordinates as PS3.3 C.18.6.1.1 defines them for SCOORD: (column, row),
//! the top left corner of the top left pixel at (0, 0), so the centre of pixel (c, r) is at
//! (c + 0.5, r + 0.5). A region holds the pixels whose centres lie inside it; its area is that
//! of the shape itself (an ellipse's is π·a·b), not a count of pixels, so a small region is not
//! over- or under-counted by the pixel grid.

use serde::Serialize;
use serde_json::Value;

use crate::pipeline::Presentation;
use crate::{DecodedFrame, Pixels};

/// What a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Two points: the distance between them.
    Length,
    /// Three points (end, vertex, end): the angle at the vertex.
    Angle,
    /// Four points, two lines: the acute angle between them.
    Cobb,
    /// Two opposite corners of the ellipse's bounding box (axis-aligned).
    Ellipse,
    /// Two opposite corners.
    Rectangle,
    /// A closed polygon of at least three points.
    Freehand,
    /// One point: the value of the pixel under it.
    Probe,
}

/// The most points a freehand outline may have.
pub const MAX_POINTS: usize = 10_000;
/// The largest coordinate accepted: far past any image, small enough that no sum overflows.
const MAX_COORDINATE: f64 = 1.0e6;

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Length,
        Kind::Angle,
        Kind::Cobb,
        Kind::Ellipse,
        Kind::Rectangle,
        Kind::Freehand,
        Kind::Probe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Length => "length",
            Kind::Angle => "angle",
            Kind::Cobb => "cobb",
            Kind::Ellipse => "ellipse",
            Kind::Rectangle => "rectangle",
            Kind::Freehand => "freehand",
            Kind::Probe => "probe",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether this kind summarises the values of a region.
    pub fn is_region(self) -> bool {
        matches!(self, Kind::Ellipse | Kind::Rectangle | Kind::Freehand)
    }

    /// Checks the number of points and that each is a finite coordinate.
    pub fn check(self, points: &[[f64; 2]]) -> Result<(), MeasureError> {
        let ok = match self {
            Kind::Length | Kind::Ellipse | Kind::Rectangle => points.len() == 2,
            Kind::Angle => points.len() == 3,
            Kind::Cobb => points.len() == 4,
            Kind::Freehand => (3..=MAX_POINTS).contains(&points.len()),
            Kind::Probe => points.len() == 1,
        };
        if !ok {
            return Err(MeasureError::Points(format!(
                "a {} takes {}, not {} point(s)",
                self.as_str(),
                match self {
                    Kind::Length | Kind::Ellipse | Kind::Rectangle => "2".to_string(),
                    Kind::Angle => "3".into(),
                    Kind::Cobb => "4 (two lines)".into(),
                    Kind::Freehand => format!("3 to {MAX_POINTS}"),
                    Kind::Probe => "1".into(),
                },
                points.len()
            )));
        }
        if let Some(p) = points
            .iter()
            .find(|p| p.iter().any(|v| !v.is_finite() || v.abs() > MAX_COORDINATE))
        {
            return Err(MeasureError::Points(format!(
                "point {p:?} is not a coordinate in the image"
            )));
        }
        Ok(())
    }
}

/// Why a measurement could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeasureError {
    #[error("{0}")]
    Points(String),
    #[error("the region holds no pixel centre of the image")]
    EmptyRegion,
    #[error("the point ({0}, {1}) is outside the image")]
    Outside(f64, f64),
    #[error("values can be measured on greyscale images only; this frame is colour")]
    Colour,
}

/// Where the millimetres come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// Pixel Spacing (0028,0030), of the frame or its functional groups: in the patient.
    PixelSpacing { row_mm: f64, column_mm: f64 },
    /// Imager Pixel Spacing (0018,1164): at the detector, not corrected for magnification.
    ImagerPixelSpacing { row_mm: f64, column_mm: f64 },
    /// Neither: lengths and areas in pixels.
    Uncalibrated,
}

impl Calibration {
    /// From an instance's DICOM JSON: Pixel Spacing at the top level or in the shared functional
    /// groups' Pixel Measures, else Imager Pixel Spacing, else none.
    pub fn from_metadata(meta: &Value) -> Calibration {
        let pair = |v: &Value, tag: &str| -> Option<(f64, f64)> {
            let values = v.get(tag)?.get("Value")?.as_array()?;
            let n = |i: usize| -> Option<f64> {
                let x = &values.get(i)?;
                let f = x.as_f64().or_else(|| x.as_str()?.trim().parse().ok())?;
                (f.is_finite() && f > 0.0).then_some(f)
            };
            Some((n(0)?, n(1)?))
        };
        let shared = meta.get("52009229").and_then(|s| {
            s.get("Value")?
                .get(0)?
                .get("00289110")?
                .get("Value")?
                .get(0)
        });
        if let Some((row_mm, column_mm)) =
            pair(meta, "00280030").or_else(|| shared.and_then(|s| pair(s, "00280030")))
        {
            return Calibration::PixelSpacing { row_mm, column_mm };
        }
        match pair(meta, "00181164") {
            Some((row_mm, column_mm)) => Calibration::ImagerPixelSpacing { row_mm, column_mm },
            None => Calibration::Uncalibrated,
        }
    }

    /// Millimetres per pixel across (column) and down (row); 1 when uncalibrated.
    fn scale(self) -> (f64, f64) {
        match self {
            Calibration::PixelSpacing { row_mm, column_mm }
            | Calibration::ImagerPixelSpacing { row_mm, column_mm } => (column_mm, row_mm),
            Calibration::Uncalibrated => (1.0, 1.0),
        }
    }

    /// How the answer says where its lengths come from.
    pub fn label(self) -> &'static str {
        match self {
            Calibration::PixelSpacing { .. } => "pixel spacing",
            Calibration::ImagerPixelSpacing { .. } => "imager pixel spacing (at the detector)",
            Calibration::Uncalibrated => "uncalibrated (pixels)",
        }
    }

    fn length_unit(self) -> &'static str {
        match self {
            Calibration::Uncalibrated => "px",
            _ => "mm",
        }
    }

    fn area_unit(self) -> &'static str {
        match self {
            Calibration::Uncalibrated => "px2",
            _ => "mm2",
        }
    }
}

/// The statistics of a region's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionStats {
    /// The shape's area, in `area_unit`.
    pub area: f64,
    pub area_unit: &'static str,
    pub mean: f64,
    /// Population standard deviation of the values.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    /// Pixels whose centres lie inside.
    pub pixels: u64,
}

/// A measurement's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub kind: Kind,
    /// A length (`unit` mm or px), an angle (deg), a region's mean or a probe's value (in the
    /// modality's unit).
    pub value: f64,
    pub unit: String,
    /// The unit of region and probe values: "HU" for CT, the Rescale Type else, "" when the
    /// image says nothing.
    pub value_unit: String,
    /// Where the millimetres come from.
    pub calibration: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionStats>,
}

/// The unit of modality values: HU for CT (PS3.3 C.8.2.1.1.1), else the Rescale Type, else none.
pub fn value_unit(modality: &str, rescale_type: Option<&str>) -> String {
    if modality == "CT" {
        return "HU".into();
    }
    rescale_type.map(str::trim).unwrap_or("").to_string()
}

/// Measures `points` on `frame` with its presentation's modality LUT.
pub fn measure(
    kind: Kind,
    points: &[[f64; 2]],
    frame: &DecodedFrame,
    presentation: &Presentation,
    calibration: Calibration,
    value_unit: &str,
) -> Result<Measured, MeasureError> {
    kind.check(points)?;
    let (sx, sy) = calibration.scale();
    let answer = |value: f64, unit: &str, region| Measured {
        kind,
        value,
        unit: unit.to_string(),
        value_unit: value_unit.to_string(),
        calibration: calibration.label(),
        region,
    };
    // every point in physical units: the angles are those in the patient, not on the grid
    let physical = |p: [f64; 2]| [p[0] * sx, p[1] * sy];
    match kind {
        Kind::Length => {
            let (a, b) = (physical(points[0]), physical(points[1]));
            let unit = calibration.length_unit();
            Ok(answer((b[0] - a[0]).hypot(b[1] - a[1]), unit, None))
        }
        Kind::Angle => {
            let (a, v, b) = (
                physical(points[0]),
                physical(points[1]),
                physical(points[2]),
            );
            let degrees = between([a[0] - v[0], a[1] - v[1]], [b[0] - v[0], b[1] - v[1]]);
            Ok(answer(degrees, "deg", None))
        }
        Kind::Cobb => {
            let p: Vec<[f64; 2]> = points.iter().map(|&p| physical(p)).collect();
            let d = between(
                [p[1][0] - p[0][0], p[1][1] - p[0][1]],
                [p[3][0] - p[2][0], p[3][1] - p[2][1]],
            );
            Ok(answer(d.min(180.0 - d), "deg", None))
        }
        Kind::Probe => {
            let [x, y] = points[0];
            let (c, r) = (x.floor(), y.floor());
            if c < 0.0 || r < 0.0 || c >= f64::from(frame.columns) || r >= f64::from(frame.rows) {
                return Err(MeasureError::Outside(x, y));
            }
            let values = grey(frame)?;
            let stored = values.get(r as usize * frame.columns as usize + c as usize);
            let v = presentation.modality_lut.apply(stored);
            Ok(answer(v, value_unit, None))
        }
        Kind::Ellipse | Kind::Rectangle | Kind::Freehand => {
            let region = Region::new(kind, points);
            let stats = region_stats(&region, frame, presentation, calibration)?;
            Ok(answer(stats.mean, value_unit, Some(stats)))
        }
    }
}

/// The angle between two vectors, in degrees (0 to 180); 0 when either has no length.
fn between(u: [f64; 2], v: [f64; 2]) -> f64 {
    let (nu, nv) = (u[0].hypot(u[1]), v[0].hypot(v[1]));
    if nu == 0.0 || nv == 0.0 {
        return 0.0;
    }
    let cross = u[0] * v[1] - u[1] * v[0];
    let dot = u[0] * v[0] + u[1] * v[1];
    cross.abs().atan2(dot).to_degrees()
}

/// A frame's stored values, read as the modality LUT takes them.
struct Grey<'a> {
    values: &'a [i32],
    unsigned32: bool,
}

impl Grey<'_> {
    fn get(&self, i: usize) -> f64 {
        let v = self.values[i];
        if self.unsigned32 {
            f64::from(v as u32)
        } else {
            f64::from(v)
        }
    }
}

fn grey(frame: &DecodedFrame) -> Result<Grey<'_>, MeasureError> {
    match &frame.pixels {
        Pixels::Grey {
            values,
            bits_allocated,
            signed,
            ..
        } => Ok(Grey {
            values,
            unsigned32: *bits_allocated == 32 && !signed,
        }),
        Pixels::Rgb(_) => Err(MeasureError::Colour),
    }
}

/// A closed shape in image coordinates.
enum Region {
    Ellipse { centre: [f64; 2], a: f64, b: f64 },
    Rectangle { min: [f64; 2], max: [f64; 2] },
    Polygon(Vec<[f64; 2]>),
}

impl Region {
    fn new(kind: Kind, points: &[[f64; 2]]) -> Region {
        let min = [
            points[0][0].min(points[1][0]),
            points[0][1].min(points[1][1]),
        ];
        let max = [
            points[0][0].max(points[1][0]),
            points[0][1].max(points[1][1]),
        ];
        match kind {
            Kind::Ellipse => Region::Ellipse {
                centre: [(min[0] + max[0]) / 2.0, (min[1] + max[1]) / 2.0],
                a: (max[0] - min[0]) / 2.0,
                b: (max[1] - min[1]) / 2.0,
            },
            Kind::Rectangle => Region::Rectangle { min, max },
            _ => Region::Polygon(points.to_vec()),
        }
    }

    /// The area in pixel units.
    fn area(&self) -> f64 {
        match self {
            Region::Ellipse { a, b, .. } => std::f64::consts::PI * a * b,
            Region::Rectangle { min, max } => (max[0] - min[0]) * (max[1] - min[1]),
            Region::Polygon(p) => {
                let n = p.len();
                let twice: f64 = (0..n)
                    .map(|i| {
                        let (a, b) = (p[i], p[(i + 1) % n]);
                        a[0] * b[1] - b[0] * a[1]
                    })
                    .sum();
                twice.abs() / 2.0
            }
        }
    }

    fn bounds(&self) -> ([f64; 2], [f64; 2]) {
        match self {
            Region::Ellipse { centre, a, b } => (
                [centre[0] - a, centre[1] - b],
                [centre[0] + a, centre[1] + b],
            ),
            Region::Rectangle { min, max } => (*min, *max),
            Region::Polygon(p) => p.iter().fold(
                ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]),
                |(lo, hi), q| {
                    (
                        [lo[0].min(q[0]), lo[1].min(q[1])],
                        [hi[0].max(q[0]), hi[1].max(q[1])],
                    )
                },
            ),
        }
    }

    /// Whether the point lies inside (the boundary counts as inside for an ellipse and a
    /// rectangle; a polygon follows the even-odd rule).
    fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Region::Ellipse { centre, a, b } => {
                if *a <= 0.0 || *b <= 0.0 {
                    return false;
                }
                let (u, v) = ((x - centre[0]) / a, (y - centre[1]) / b);
                u * u + v * v <= 1.0
            }
            Region::Rectangle { min, max } => {
                x >= min[0] && x <= max[0] && y >= min[1] && y <= max[1]
            }
            Region::Polygon(p) => {
                let mut inside = false;
                let mut j = p.len() - 1;
                for i in 0..p.len() {
                    let (a, b) = (p[i], p[j]);
                    if (a[1] > y) != (b[1] > y)
                        && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0]
                    {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

/// Mean, SD, min and max of the modality values of the pixels whose centres lie in `region`,
/// visiting only the rows and columns of its bounding box.
fn region_stats(
    region: &Region,
    frame: &DecodedFrame,
    presentation: &Presentation,
    calibration: Calibration,
) -> Result<RegionStats, MeasureError> {
    let values = grey(frame)?;
    let (lo, hi) = region.bounds();
    // pixel c has its centre at c + 0.5: the first and last whose centres may lie within
    let first = |v: f64| (v - 0.5).ceil().max(0.0) as usize;
    let last = |v: f64, n: u32| ((v - 0.5).floor()).min(f64::from(n) - 1.0);
    let (c0, r0) = (first(lo[0]), first(lo[1]));
    let (c1, r1) = (last(hi[0], frame.columns), last(hi[1], frame.rows));
    let (mut n, mut sum, mut sum_sq) = (0u64, 0.0f64, 0.0f64);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    if c1 >= 0.0 && r1 >= 0.0 {
        let columns = frame.columns as usize;
        for r in r0..=r1 as usize {
            let y = r as f64 + 0.5;
            for c in c0..=c1 as usize {
                if !region.contains(c as f64 + 0.5, y) {
                    continue;
                }
                let v = presentation.modality_lut.apply(values.get(r * columns + c));
                n += 1;
                sum += v;
                sum_sq += v * v;
                min = min.min(v);
                max = max.max(v);
            }
        }
    }
    if n == 0 {
        return Err(MeasureError::EmptyRegion);
    }
    let mean = sum / n as f64;
    let sd = (sum_sq / n as f64 - mean * mean).max(0.0).sqrt();
    let (sx, sy) = calibration.scale();
    Ok(RegionStats {
        area: region.area() * sx * sy,
        area_unit: calibration.area_unit(),
        mean,
        sd,
        min,
        max,
        pixels: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ModalityLut;

    /// A 16×16 CT-like frame: stored value = column + 16·row, rescaled by slope 2, intercept
    /// -1024.
    fn frame() -> (DecodedFrame, Presentation) {
        let values = (0..256).collect();
        let frame = DecodedFrame {
            rows: 16,
            columns: 16,
            pixels: Pixels::Grey {
                values,
                bits_stored: 16,
                bits_allocated: 16,
                signed: true,
                monochrome1: false,
            },
        };
        let presentation = Presentation {
            modality_lut: ModalityLut::Rescale {
                slope: 2.0,
                intercept: -1024.0,
            },
            ..Presentation::default()
        };
        (frame, presentation)
    }

    const SPACING: Calibration = Calibration::PixelSpacing {
        row_mm: 0.5,
        column_mm: 0.25,
    };

    fn run(kind: Kind, points: &[[f64; 2]], cal: Calibration) -> Result<Measured, MeasureError> {
        let (f, p) = frame();
        measure(kind, points, &f, &p, cal, "HU")
    }

    #[test]
    fn lengths_follow_the_spacing_of_rows_and_columns() {
        // 4 columns across (0.25 mm) and 3 rows down (0.5 mm): 1 mm by 1.5 mm
        let m = run(Kind::Length, &[[1.0, 1.0], [5.0, 4.0]], SPACING).unwrap();
        assert!((m.value - 1.0f64.hypot(1.5)).abs() < 1e-12);
        assert_eq!((m.unit.as_str(), m.calibration), ("mm", "pixel spacing"));
        let m = run(
            Kind::Length,
            &[[1.0, 1.0], [4.0, 5.0]],
            Calibration::Uncalibrated,
        )
        .unwrap();
        assert_eq!((m.value, m.unit.as_str()), (5.0, "px"));
        assert_eq!(m.calibration, "uncalibrated (pixels)");
    }

    #[test]
    fn angles_are_measured_in_the_patient() {
        let square = Calibration::PixelSpacing {
            row_mm: 1.0,
            column_mm: 1.0,
        };
        let m = run(Kind::Angle, &[[5.0, 0.0], [0.0, 0.0], [0.0, 5.0]], square).unwrap();
        assert!((m.value - 90.0).abs() < 1e-9);
        // on a grid twice as fine across, (2, 1) pixels is 45° in the patient
        let m = run(Kind::Angle, &[[2.0, 0.0], [0.0, 0.0], [2.0, 1.0]], SPACING).unwrap();
        assert!((m.value - 45.0).abs() < 1e-9, "{}", m.value);
        // Cobb: the acute angle between two lines, whichever way they were drawn
        let cobb = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 0.0]];
        let m = run(Kind::Cobb, &cobb, square).unwrap();
        assert!((m.value - 45.0).abs() < 1e-9);
        assert_eq!(m.unit, "deg");
    }

    #[test]
    fn probes_read_the_value_after_the_modality_lut() {
        // pixel (3, 2) holds 3 + 32 = 35: 70 - 1024 HU
        let m = run(Kind::Probe, &[[3.7, 2.2]], SPACING).unwrap();
        assert_eq!((m.value, m.unit.as_str()), (-954.0, "HU"));
        assert_eq!(
            run(Kind::Probe, &[[16.0, 0.0]], SPACING),
            Err(MeasureError::Outside(16.0, 0.0))
        );
    }

    #[test]
    fn rectangles_take_the_pixels_whose_centres_lie_inside() {
        // columns 2..=4, rows 1..=2: stored 18,19,20 and 34,35,36
        let m = run(Kind::Rectangle, &[[2.0, 1.0], [5.0, 3.0]], SPACING).unwrap();
        let r = m.region.unwrap();
        assert_eq!(r.pixels, 6);
        assert_eq!(r.mean, 2.0 * 27.0 - 1024.0);
        assert_eq!((r.min, r.max), (36.0 - 1024.0, 72.0 - 1024.0));
        // values 36,38,40 and 68,70,72 around 54: deviations ±18 and ±2 → sd = √(2·(18²+16²+14²)/6)…
        let expected = [36.0, 38.0, 40.0, 68.0, 70.0, 72.0]
            .iter()
            .map(|v: &f64| (v - 54.0).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!((r.sd - expected.sqrt()).abs() < 1e-9);
        assert_eq!((r.area, r.area_unit), (3.0 * 0.25 * 2.0 * 0.5, "mm2"));
        assert_eq!(m.value, r.mean);
    }

    #[test]
    fn ellipses_and_polygons_have_their_shapes_area() {
        let m = run(Kind::Ellipse, &[[2.0, 2.0], [14.0, 10.0]], SPACING).unwrap();
        let r = m.region.unwrap();
        let area = std::f64::consts::PI * 6.0 * 4.0 * 0.25 * 0.5;
        assert!((r.area - area).abs() < 1e-9);
        // pixel centres inside an ellipse of semi-axes 6 and 4: about its area in pixels
        assert!((r.pixels as f64 - std::f64::consts::PI * 24.0).abs() < 6.0);
        // a triangle: half of a 4×4 square, the centres below its diagonal
        let tri = [[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]];
        let m = run(Kind::Freehand, &tri, Calibration::Uncalibrated).unwrap();
        let r = m.region.unwrap();
        assert_eq!((r.area, r.area_unit), (8.0, "px2"));
        assert_eq!(r.pixels, 6); // (0,0) (1,0) (2,0) (0,1) (1,1) (0,2)
        assert_eq!(
            run(Kind::Ellipse, &[[40.0, 40.0], [50.0, 50.0]], SPACING),
            Err(MeasureError::EmptyRegion)
        );
    }

    #[test]
    fn bad_geometry_is_refused_with_a_reason() {
        let e = run(Kind::Length, &[[0.0, 0.0]], SPACING).unwrap_err();
        assert_eq!(e.to_string(), "a length takes 2, not 1 point(s)");
        let e = run(Kind::Probe, &[[f64::NAN, 0.0]], SPACING).unwrap_err();
        assert!(e.to_string().contains("not a coordinate"), "{e}");
        let (mut f, p) = frame();
        f.pixels = Pixels::Rgb(vec![0; 16 * 16 * 3]);
        let e = measure(Kind::Probe, &[[1.0, 1.0]], &f, &p, SPACING, "").unwrap_err();
        assert_eq!(e, MeasureError::Colour);
    }

    #[test]
    fn calibration_comes_from_pixel_spacing_then_the_imager() {
        let meta: Value = serde_json::json!({
            "00280030": {"vr": "DS", "Value": [0.5, "0.25"]},
            "00181164": {"vr": "DS", "Value": [0.1, 0.1]},
        });
        assert_eq!(Calibration::from_metadata(&meta), SPACING);
        let meta: Value = serde_json::json!({"00181164": {"vr": "DS", "Value": [0.1, 0.2]}});
        assert_eq!(
            Calibration::from_metadata(&meta),
            Calibration::ImagerPixelSpacing {
                row_mm: 0.1,
                column_mm: 0.2
            }
        );
        let meta: Value = serde_json::json!({"52009229": {"vr": "SQ", "Value": [
            {"00289110": {"vr": "SQ", "Value": [{"00280030": {"vr": "DS", "Value": [0.7, 0.7]}}]}}
        ]}});
        assert!(matches!(
            Calibration::from_metadata(&meta),
            Calibration::PixelSpacing { row_mm, .. } if row_mm == 0.7
        ));
        assert_eq!(
            Calibration::from_metadata(&serde_json::json!({})),
            Calibration::Uncalibrated
        );
        assert_eq!(value_unit("CT", None), "HU");
        assert_eq!(value_unit("PT", Some("BQML ")), "BQML");
    }
}
