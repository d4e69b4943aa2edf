//! Multiplanar reformatting: a series' slices stacked into a volume by their geometry (Image
//! Position and Orientation (Patient), Pixel Spacing), and planes cut through it in patient
//! coordinates, one voxel thick or as a slab (MIP, MinIP, average).
//!
//! A volume keeps each slice's stored values as 16 bits and its rescale, so a 512×512×400 CT
//! takes 200 MB. Sampling is trilinear: along the stack it interpolates between the two slices
//! whose depths (positions along the slices' normal) bracket the point, each read at the point
//! projected onto that slice's own plane. So slices spaced unevenly are placed where they are,
//! and a stack whose origins drift sideways (a tilted gantry) is sampled where each slice truly
//! lies; both are named in [`Geometry`] so the viewer can say so.
//!
//! A reformatted image comes out as a [`CachedFrame`] of modality values (in eighths, through
//! a rescale), so the grey pipeline windows and places it, and the measuring tools measure it,
//! exactly as they do an acquired slice.

use crate::pipeline::{ModalityLut, Presentation};
use crate::pool::CachedFrame;
use crate::{DecodedFrame, Pixels, RenderError};

pub type V3 = [f64; 3];

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn add_scaled(a: V3, b: V3, s: f64) -> V3 {
    [a[0] + b[0] * s, a[1] + b[1] * s, a[2] + b[2] * s]
}

fn unit(a: V3) -> Option<V3> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-9).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// What one slice says about where it lies.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGeometry {
    /// Image Position (Patient): the centre of the first pixel, mm.
    pub position: V3,
    /// Image Orientation (Patient): the row direction (across), then the column direction (down).
    pub orientation: [f64; 6],
    /// Pixel Spacing: between rows, between columns, mm.
    pub pixel_spacing: (f64, f64),
    pub rows: u32,
    pub columns: u32,
}

impl SliceGeometry {
    /// How far patient point `p` lies from the slice's plane, mm.
    pub fn distance(&self, p: V3) -> f64 {
        let o = self.orientation;
        let normal = cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        dot(sub(p, self.position), normal).abs()
    }
}

/// The geometry of a stack of parallel slices of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub rows: u32,
    pub columns: u32,
    /// Direction of increasing column (across a row) and of increasing row (down), unit vectors.
    pub across: V3,
    pub down: V3,
    /// across × down: the direction the slices are stacked along.
    pub normal: V3,
    /// Pixel Spacing: between rows and between columns, mm.
    pub row_mm: f64,
    pub column_mm: f64,
    /// Each slice's first pixel centre, in order of depth.
    pub origins: Vec<V3>,
    /// Each slice's position along the normal, ascending.
    pub depths: Vec<f64>,
    /// The least and the greatest distance between neighbouring slices, mm.
    pub spacing: (f64, f64),
    /// The angle between the stack's direction (first to last origin) and the normal, degrees:
    /// above zero for a gantry tilt.
    pub tilt_degrees: f64,
}

/// Spacings within this share of each other count as even.
const EVEN_SPACING: f64 = 0.01;

impl Geometry {
    /// The stack the slices make, and the order of depth they take in it (indices into
    /// `slices`). Refused with the reason when they do not make one volume: fewer than two,
    /// sizes or orientations that differ, two slices at one depth.
    pub fn new(slices: &[SliceGeometry]) -> Result<(Geometry, Vec<usize>), String> {
        let first = slices
            .first()
            .ok_or("a volume needs slices with Image Position and Orientation")?;
        if slices.len() < 2 {
            return Err("a volume needs at least two slices".into());
        }
        let o = first.orientation;
        let across = unit([o[0], o[1], o[2]]).ok_or("Image Orientation (Patient) is not usable")?;
        let down = unit([o[3], o[4], o[5]]).ok_or("Image Orientation (Patient) is not usable")?;
        if dot(across, down).abs() > 1e-3 {
            return Err("Image Orientation (Patient) is not two perpendicular directions".into());
        }
        let normal = cross(across, down);
        let (row_mm, column_mm) = first.pixel_spacing;
        if !(row_mm > 0.0 && column_mm > 0.0 && row_mm.is_finite() && column_mm.is_finite()) {
            return Err(format!("Pixel Spacing {row_mm}\\{column_mm} is not usable"));
        }
        for s in slices {
            if (s.rows, s.columns) != (first.rows, first.columns) {
                return Err(format!(
                    "the slices differ in size ({}×{} and {}×{}): not one volume",
                    first.columns, first.rows, s.columns, s.rows
                ));
            }
            if s.orientation
                .iter()
                .zip(&o)
                .any(|(a, b)| (a - b).abs() > 1e-3)
            {
                return Err(
                    "the slices are not parallel (Image Orientation differs): not one volume"
                        .into(),
                );
            }
            if (s.pixel_spacing.0 - row_mm).abs() > 1e-4
                || (s.pixel_spacing.1 - column_mm).abs() > 1e-4
            {
                return Err("the slices' Pixel Spacing differs: not one volume".into());
            }
            if s.position.iter().any(|v| !v.is_finite()) {
                return Err("an Image Position (Patient) is not a number".into());
            }
        }
        let mut order: Vec<usize> = (0..slices.len()).collect();
        let depth = |i: usize| dot(slices[i].position, normal);
        order.sort_by(|&a, &b| depth(a).total_cmp(&depth(b)));
        let depths: Vec<f64> = order.iter().map(|&i| depth(i)).collect();
        let origins: Vec<V3> = order.iter().map(|&i| slices[i].position).collect();
        let gaps: Vec<f64> = depths.windows(2).map(|w| w[1] - w[0]).collect();
        let least = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let most = gaps.iter().copied().fold(0.0, f64::max);
        if least < 1e-3 {
            return Err(
                "two slices lie at the same depth: not one volume (two stacks in one series?)"
                    .into(),
            );
        }
        let stack = sub(origins[origins.len() - 1], origins[0]);
        let tilt_degrees = (dot(stack, normal) / dot(stack, stack).sqrt())
            .clamp(-1.0, 1.0)
            .acos()
            .to_degrees();
        Ok((
            Geometry {
                rows: first.rows,
                columns: first.columns,
                across,
                down,
                normal,
                row_mm,
                column_mm,
                origins,
                depths,
                spacing: (least, most),
                tilt_degrees,
            },
            order,
        ))
    }

    /// The slices are evenly spaced (within 1 %).
    pub fn even(&self) -> bool {
        self.spacing.1 - self.spacing.0 <= self.spacing.0 * EVEN_SPACING
    }

    /// Bytes the volume's values take (each slice in whole tiles).
    pub fn bytes(&self) -> u64 {
        self.tiled_slice_len() as u64 * self.depths.len() as u64 * 2
    }

    /// Values a slice takes in tiles of [`TILE`]².
    fn tiled_slice_len(&self) -> usize {
        let t = TILE as u32;
        (self.rows.div_ceil(t) * t) as usize * (self.columns.div_ceil(t) * t) as usize
    }

    /// The mean distance between slices, mm.
    fn slice_mm(&self) -> f64 {
        (self.depths[self.depths.len() - 1] - self.depths[0]) / (self.depths.len() - 1) as f64
    }

    /// The centres of the volume's eight corner voxels.
    fn corners(&self) -> Vec<V3> {
        let (c, r) = (
            f64::from(self.columns.saturating_sub(1)) * self.column_mm,
            f64::from(self.rows.saturating_sub(1)) * self.row_mm,
        );
        let ends = [self.origins[0], self.origins[self.origins.len() - 1]];
        let mut out = Vec::new();
        for o in ends {
            for (a, b) in [(0.0, 0.0), (c, 0.0), (0.0, r), (c, r)] {
                out.push(add_scaled(add_scaled(o, self.across, a), self.down, b));
            }
        }
        out
    }

    /// How `plane` cuts the volume: square pixels the size of the finer Pixel Spacing (coarser
    /// when an image side would pass `max_side`), covering the whole volume, and slices as far
    /// apart as the volume's voxels are along the plane's normal.
    pub fn layout(&self, plane: Plane, max_side: u32) -> Layout {
        let g = self;
        let corners = g.corners();
        let range = |axis: V3| {
            corners
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &c| {
                    let d = dot(c, axis);
                    (a.min(d), b.max(d))
                })
        };
        // the image reaches half a voxel past the corner voxels' centres
        let half = g.row_mm.max(g.column_mm) / 2.0;
        let (u0, u1) = range(plane.across);
        let (v0, v1) = range(plane.down);
        let (u0, u1, v0, v1) = (u0 - half, u1 + half, v0 - half, v1 + half);
        let side = f64::from(max_side.max(16));
        let pixel_mm = g
            .row_mm
            .min(g.column_mm)
            .max((u1 - u0) / side)
            .max((v1 - v0) / side);
        let columns = ((u1 - u0) / pixel_mm).ceil().max(1.0) as u32;
        let rows = ((v1 - v0) / pixel_mm).ceil().max(1.0) as u32;
        // the voxel grid's spacing along the normal
        let per_mm = |axis: V3, mm: f64| (dot(plane.normal, axis) / mm).powi(2);
        let step = 1.0
            / (per_mm(g.across, g.column_mm)
                + per_mm(g.down, g.row_mm)
                + per_mm(g.normal, g.slice_mm()))
            .sqrt();
        let (d0, d1) = range(plane.normal);
        let count = ((d1 - d0) / step + 1e-6).floor() as usize + 1;
        Layout {
            plane,
            corner: add_scaled(add_scaled([0.0; 3], plane.across, u0), plane.down, v0),
            pixel_mm,
            columns,
            rows,
            depths: (0..count).map(|i| d0 + i as f64 * step).collect(),
        }
    }
}

/// A plane of patient space as a screen shows it: `across` to the right, `down` downwards,
/// `normal` (across × down) the direction its slices follow each other in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    pub across: V3,
    pub down: V3,
    pub normal: V3,
}

/// The three planes of the patient (LPS coordinates, PS3.3 C.7.6.2.1.1), shown as radiologists
/// read them: axial from the feet (the patient's right on the left), coronal from the front,
/// sagittal from the patient's left; head up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    Axial,
    Coronal,
    Sagittal,
}

impl Orientation {
    pub fn parse(s: &str) -> Option<Orientation> {
        match s {
            "axial" => Some(Orientation::Axial),
            "coronal" => Some(Orientation::Coronal),
            "sagittal" => Some(Orientation::Sagittal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::Axial => "axial",
            Orientation::Coronal => "coronal",
            Orientation::Sagittal => "sagittal",
        }
    }
}

impl Plane {
    pub fn new(across: V3, down: V3) -> Plane {
        Plane {
            across,
            down,
            normal: cross(across, down),
        }
    }

    pub fn standard(o: Orientation) -> Plane {
        match o {
            Orientation::Axial => Plane::new([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            Orientation::Coronal => Plane::new([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
            Orientation::Sagittal => Plane::new([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
        }
    }

    /// The plane turned by `degrees` about `axis` (right-handed): an oblique plane, as a reader
    /// makes one by turning the crosshair of another view (whose normal is the axis).
    pub fn rotated(self, axis: V3, degrees: f64) -> Result<Plane, String> {
        let k = unit(axis).ok_or("the axis of rotation must not be zero")?;
        if !degrees.is_finite() {
            return Err("the angle must be a number".into());
        }
        let (s, c) = degrees.to_radians().sin_cos();
        // Rodrigues: v cos + (k × v) sin + k (k·v)(1 − cos)
        let turn = |v: V3| {
            let kv = cross(k, v);
            let d = dot(k, v) * (1.0 - c);
            [
                v[0] * c + kv[0] * s + k[0] * d,
                v[1] * c + kv[1] * s + k[1] * d,
                v[2] * c + kv[2] * s + k[2] * d,
            ]
        };
        Ok(Plane::new(turn(self.across), turn(self.down)))
    }
}

/// How a plane is cut through a volume: where image coordinate (0, 0) (the top left corner of
/// the first pixel, PS3.3 C.18.6.1.1) lies at depth 0, the square pixel's size, the image size,
/// and the depths (along the plane's normal) of its slices.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub plane: Plane,
    pub corner: V3,
    pub pixel_mm: f64,
    pub columns: u32,
    pub rows: u32,
    pub depths: Vec<f64>,
}

impl Layout {
    /// The patient point of image point (x, y) of slice `index`.
    pub fn point(&self, index: usize, x: f64, y: f64) -> V3 {
        let p = add_scaled(self.corner, self.plane.across, x * self.pixel_mm);
        let p = add_scaled(p, self.plane.down, y * self.pixel_mm);
        add_scaled(p, self.plane.normal, self.depths[index])
    }
}

/// What a slab shows of the voxels across its thickness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlabMode {
    /// Maximum intensity projection.
    Mip,
    /// Minimum intensity projection.
    Minip,
    Average,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slab {
    pub thickness_mm: f64,
    pub mode: SlabMode,
}

/// The thickest slab a view may ask for, mm.
pub const MAX_SLAB_MM: f64 = 500.0;
/// Samples across a slab at most: a thicker slab samples more sparsely.
const MAX_SLAB_SAMPLES: usize = 256;
/// Image rows a slab is made in at a time.
const SLAB_ROWS: usize = 8;
/// Modality values are kept in the reformatted frame in these fractions of a unit.
const FRACTIONS: f64 = 8.0;

/// Where value (x, y) of a slice lies in its tiles.
#[inline]
fn tiled(tiles_across: usize, x: usize, y: usize) -> usize {
    (((y / TILE) * tiles_across + x / TILE) * TILE + y % TILE) * TILE + x % TILE
}

/// Four neighbouring values of a slice (their places in its tiles) and the weights between them.
struct Bilinear {
    at: [usize; 4],
    fx: f32,
    fy: f32,
}

/// Between two samples, `t` of the way from the first; one alone when the other is outside.
fn mix(a: Option<f32>, b: Option<f32>, t: f32) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + (b - a) * t),
        (a, b) => a.or(b),
    }
}

/// Adds sample `v` to a slab's running maximum, minimum or sum `a` of `n` samples.
#[inline]
fn gather(a: &mut f32, n: &mut u16, v: f32, mode: SlabMode) {
    *a = match (*n, mode) {
        (0, _) => v,
        (_, SlabMode::Mip) => a.max(v),
        (_, SlabMode::Minip) => a.min(v),
        (_, SlabMode::Average) => *a + v,
    };
    *n += 1;
}

/// A change of depth along a whole image row below this (mm) is none: the row is at one depth.
const FLAT: f64 = 1e-9;
/// A position within this share of a voxel of its centre is on it.
const ON_VOXEL: f64 = 1e-6;

/// Slices are kept in square tiles of this side, so a plane read down a slice's columns (a
/// sagittal plane of an axial series) finds its next values in the cache lines it has just read,
/// as a plane read along its rows does.
const TILE: usize = 8;

/// The size of a volume's slices and how they are tiled.
#[derive(Debug, Clone, Copy)]
pub struct SliceShape {
    rows: u32,
    columns: u32,
    slice_len: usize,
    tiles_across: usize,
}

/// One slice's values as a volume keeps them, ready for [`Volume::place`].
#[derive(Debug)]
pub struct TiledSlice {
    values: Vec<i16>,
    extremes: (i16, i16),
    rescale: (f32, f32),
    presentation: Presentation,
    monochrome1: bool,
}

impl SliceShape {
    /// A decoded slice's stored values shifted into 16 bits signed and laid out in tiles, with
    /// its rescale: grey values of at most 16 bits with a linear modality LUT; anything else is
    /// refused with the reason.
    pub fn tile(&self, frame: &CachedFrame) -> Result<TiledSlice, RenderError> {
        let n = self.rows as usize * self.columns as usize;
        if (frame.frame.rows, frame.frame.columns) != (self.rows, self.columns) {
            return Err(RenderError::Unsupported(
                "a slice does not have the volume's size".into(),
            ));
        }
        let Pixels::Grey {
            values,
            bits_stored,
            signed,
            monochrome1,
            ..
        } = &frame.frame.pixels
        else {
            return Err(RenderError::Unsupported(
                "colour images are not reformatted".into(),
            ));
        };
        if *bits_stored > 16 {
            return Err(RenderError::Unsupported(format!(
                "{bits_stored}-bit values are not reformatted (16 at most)"
            )));
        }
        let ModalityLut::Rescale { slope, intercept } = frame.presentation.modality_lut else {
            return Err(RenderError::Unsupported(
                "a Modality LUT table is not reformatted (a rescale is)".into(),
            ));
        };
        // unsigned values are shifted down by 2^15 to fit; the shift goes into the intercept
        let shift: i32 = if *signed { 0 } else { 1 << 15 };
        if values.len() < n {
            return Err(RenderError::Decode(format!(
                "{} values for {} pixels",
                values.len(),
                n
            )));
        }
        let w = self.columns as usize;
        let mut out = vec![0i16; self.slice_len];
        let (mut lo, mut hi) = (i16::MAX, i16::MIN);
        for (y, row) in values[..n].chunks(w).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                let v = (v - shift).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
                (lo, hi) = (lo.min(v), hi.max(v));
                out[tiled(self.tiles_across, x, y)] = v;
            }
        }
        Ok(TiledSlice {
            values: out,
            extremes: (lo, hi),
            rescale: (slope as f32, (intercept + f64::from(shift) * slope) as f32),
            presentation: frame.presentation.clone(),
            monochrome1: *monochrome1,
        })
    }
}

/// A series' values stacked by its geometry.
#[derive(Debug)]
pub struct Volume {
    pub geometry: Geometry,
    /// Stored values shifted into 16 bits signed, slice by slice, each slice in tiles of
    /// [`TILE`]² (row by row within a tile, tiles row by row).
    values: Vec<i16>,
    /// Values a slice takes, and tiles across a slice.
    slice_len: usize,
    tiles_across: usize,
    /// Each slice's lowest and highest stored value (shifted).
    extremes: Vec<(i16, i16)>,
    /// Each slice's modality LUT as a rescale of the shifted values: modality = v × slope + intercept.
    rescale: Vec<(f32, f32)>,
    /// Slices filled so far.
    filled: Vec<bool>,
    /// The first slice's presentation: windows, modality, and whether it is shown inverted.
    presentation: Presentation,
    monochrome1: bool,
    /// Each slice's origin from the first one's, in voxels across and down: zero but for a
    /// tilted gantry (or a stack shifted sideways).
    shift: Vec<(f64, f64)>,
    sheared: bool,
    /// With evenly spaced slices: the first depth and slices per mm, to find a depth's slices
    /// without a search.
    even: Option<(f64, f64)>,
    /// The lowest modality value, found once the volume is complete.
    lowest: std::sync::OnceLock<f32>,
}

impl Volume {
    /// An empty volume for `geometry`; [`Volume::put`] fills its slices.
    pub fn new(geometry: Geometry) -> Volume {
        let slice_len = geometry.tiled_slice_len();
        let n = slice_len * geometry.depths.len();
        let slices = geometry.depths.len();
        let tiles_across = (geometry.columns as usize).div_ceil(TILE);
        let g = &geometry;
        let shift: Vec<(f64, f64)> = g
            .origins
            .iter()
            .map(|&o| {
                let q = sub(o, g.origins[0]);
                (dot(q, g.across) / g.column_mm, dot(q, g.down) / g.row_mm)
            })
            .collect();
        let sheared = shift.iter().any(|&(a, b)| a.abs() > 1e-6 || b.abs() > 1e-6);
        let even = g.even().then(|| (g.depths[0], 1.0 / g.slice_mm()));
        Volume {
            values: vec![0; n],
            slice_len,
            tiles_across,
            extremes: vec![(0, 0); slices],
            rescale: vec![(1.0, 0.0); slices],
            filled: vec![false; slices],
            presentation: Presentation::default(),
            monochrome1: false,
            shift,
            sheared,
            even,
            lowest: std::sync::OnceLock::new(),
            geometry,
        }
    }

    /// Puts slice `index` (in order of depth): grey values of at most 16 bits with a linear
    /// modality LUT; anything else is refused with the reason.
    pub fn put(&mut self, index: usize, frame: &CachedFrame) -> Result<(), RenderError> {
        let slice = self.shape().tile(frame)?;
        self.place(index, &slice)
    }

    /// The size of the volume's slices, to tile a slice with before it is placed (on another
    /// thread than the one building the volume, when it likes).
    pub fn shape(&self) -> SliceShape {
        SliceShape {
            rows: self.geometry.rows,
            columns: self.geometry.columns,
            slice_len: self.slice_len,
            tiles_across: self.tiles_across,
        }
    }

    /// Places a slice [`SliceShape::tile`] made as slice `index` (in order of depth).
    pub fn place(&mut self, index: usize, slice: &TiledSlice) -> Result<(), RenderError> {
        if index >= self.geometry.depths.len() || slice.values.len() != self.slice_len {
            return Err(RenderError::Unsupported(
                "a slice does not have the volume's size".into(),
            ));
        }
        let start = index * self.slice_len;
        self.values[start..start + self.slice_len].copy_from_slice(&slice.values);
        self.extremes[index] = slice.extremes;
        self.rescale[index] = slice.rescale;
        if !self.filled.iter().any(|&f| f) {
            self.presentation = slice.presentation.clone();
            self.monochrome1 = slice.monochrome1;
        }
        self.filled[index] = true;
        Ok(())
    }

    /// Every slice is in.
    pub fn complete(&self) -> bool {
        self.filled.iter().all(|&f| f)
    }

    /// The modality value of slice `k` at column `x`, row `y` (pixel centres at whole numbers),
    /// bilinear; None outside the slice.
    fn at(&self, k: usize, x: f64, y: f64) -> Option<f32> {
        self.weights(x, y).map(|b| self.value(k, &b))
    }

    /// Where column `x`, row `y` falls among a slice's values (the same in every slice of a
    /// stack that is not sheared): None outside the slice.
    fn weights(&self, x: f64, y: f64) -> Option<Bilinear> {
        let g = &self.geometry;
        let (w, h) = (g.columns as usize, g.rows as usize);
        if !(x >= -0.5 && y >= -0.5 && x <= w as f64 - 0.5 && y <= h as f64 - 0.5) {
            return None;
        }
        let x = x.clamp(0.0, (w - 1) as f64);
        let y = y.clamp(0.0, (h - 1) as f64);
        // not negative: truncation is the floor, without a call
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let t = self.tiles_across;
        Some(Bilinear {
            at: [
                tiled(t, x0, y0),
                tiled(t, x1, y0),
                tiled(t, x0, y1),
                tiled(t, x1, y1),
            ],
            fx: (x - x0 as f64) as f32,
            fy: (y - y0 as f64) as f32,
        })
    }

    /// Slice `k`'s modality value at `b`.
    fn value(&self, k: usize, b: &Bilinear) -> f32 {
        let slice = &self.values[k * self.slice_len..(k + 1) * self.slice_len];
        let v = |i: usize| f32::from(slice[b.at[i]]);
        let top = v(0) * (1.0 - b.fx) + v(1) * b.fx;
        let bottom = v(2) * (1.0 - b.fx) + v(3) * b.fx;
        let (slope, intercept) = self.rescale[k];
        (top * (1.0 - b.fy) + bottom * b.fy) * slope + intercept
    }

    /// The modality value at patient point `p`, trilinear; None outside the volume.
    pub fn sample(&self, p: V3) -> Option<f32> {
        let g = &self.geometry;
        let d = dot(p, g.normal);
        let n = g.depths.len();
        // half a gap beyond the end slices still belongs to them
        let (lo, hi) = (
            g.depths[0] - (g.depths[1] - g.depths[0]) / 2.0,
            g.depths[n - 1] + (g.depths[n - 1] - g.depths[n - 2]) / 2.0,
        );
        if !(d >= lo && d <= hi) {
            return None;
        }
        let in_slice = |k: usize| {
            let q = sub(p, g.origins[k]);
            self.at(k, dot(q, g.across) / g.column_mm, dot(q, g.down) / g.row_mm)
        };
        let k = g.depths.partition_point(|&x| x <= d);
        if k == 0 || k == n {
            return in_slice(k.min(n - 1));
        }
        let t = ((d - g.depths[k - 1]) / (g.depths[k] - g.depths[k - 1])) as f32;
        match (in_slice(k - 1), in_slice(k)) {
            (Some(a), Some(b)) => Some(a * (1.0 - t) + b * t),
            (a, b) => a.or(b),
        }
    }

    /// How `plane` cuts this volume: [`Geometry::layout`].
    pub fn layout(&self, plane: Plane, max_side: u32) -> Layout {
        self.geometry.layout(plane, max_side)
    }

    /// Slice `index` of `layout`, one voxel thick or as `slab`, as a frame of modality values
    /// with the volume's presentation. Points outside the volume take its lowest value.
    pub fn reformat(
        &self,
        layout: &Layout,
        index: usize,
        slab: Option<Slab>,
    ) -> Result<CachedFrame, RenderError> {
        let values = self.reformat_rows(layout, index, slab, 0..layout.rows)?;
        Ok(self.frame(layout, values))
    }

    /// Rows `rows` of [`Volume::reformat`]'s image, its values in eighths: bands of one image
    /// can be made on several threads and joined with [`Volume::frame`].
    pub fn reformat_rows(
        &self,
        layout: &Layout,
        index: usize,
        slab: Option<Slab>,
        rows: std::ops::Range<u32>,
    ) -> Result<Vec<i32>, RenderError> {
        if rows.end > layout.rows || rows.start > rows.end {
            return Err(RenderError::Unsupported(format!(
                "rows {rows:?} are not rows of the plane (it has {})",
                layout.rows
            )));
        }
        if index >= layout.depths.len() {
            return Err(RenderError::Unsupported(format!(
                "slice {index} does not exist (the plane has {})",
                layout.depths.len()
            )));
        }
        if !self.complete() {
            return Err(RenderError::Unsupported(
                "the volume is not complete".into(),
            ));
        }
        let step = if layout.depths.len() > 1 {
            layout.depths[1] - layout.depths[0]
        } else {
            self.geometry.spacing.0
        };
        let offsets: Vec<f64> = match slab {
            Some(s) if s.thickness_mm > step => {
                if s.thickness_mm.is_nan() || s.thickness_mm > MAX_SLAB_MM {
                    return Err(RenderError::Unsupported(format!(
                        "a slab is at most {MAX_SLAB_MM} mm thick"
                    )));
                }
                // the planes of the voxel grid within half the thickness either side (every
                // few of them when there are more than MAX_SLAB_SAMPLES), so each lies where
                // the plane's own slices do
                let half = (s.thickness_mm / 2.0 / step + 1e-9).floor() as usize;
                let stride = (2 * half + 1).div_ceil(MAX_SLAB_SAMPLES);
                let half = (half / stride) as i64;
                (-half..=half)
                    .map(|j| (j * stride as i64) as f64 * step)
                    .collect()
            }
            _ => vec![0.0],
        };
        let mode = slab.map_or(SlabMode::Average, |s| s.mode);
        let background = self.lowest();
        let (w, h) = (layout.columns as usize, rows.len());
        let mut acc = vec![0f32; w * h];
        let mut count = vec![0u16; w * h];
        // a few rows through every depth of the slab before the next few: the slab's depths
        // read neighbouring voxels, still in the cache
        let band = w * SLAB_ROWS;
        for (i, (acc, count)) in acc.chunks_mut(band).zip(count.chunks_mut(band)).enumerate() {
            let first = rows.start + (i * SLAB_ROWS) as u32;
            for &o in &offsets {
                let depth = layout.depths[index] + o;
                self.pass(layout, depth, mode, first, acc, count);
            }
        }
        Ok(acc
            .iter()
            .zip(&count)
            .map(|(&a, &n)| {
                let v = match (n, mode) {
                    (0, _) => background,
                    (_, SlabMode::Average) => a / f32::from(n),
                    _ => a,
                };
                // to the nearest, halves away from zero (a conversion, not a call)
                let v = v * FRACTIONS as f32;
                (v + 0.5f32.copysign(v)) as i32
            })
            .collect())
    }

    /// A reformatted image of `layout` from its values (all its rows, in eighths).
    pub fn frame(&self, layout: &Layout, values: Vec<i32>) -> CachedFrame {
        let presentation = Presentation {
            modality_lut: ModalityLut::Rescale {
                slope: 1.0 / FRACTIONS,
                intercept: 0.0,
            },
            voi_luts: Vec::new(),
            ..self.presentation.clone()
        };
        CachedFrame {
            frame: DecodedFrame {
                rows: layout.rows,
                columns: layout.columns,
                pixels: Pixels::Grey {
                    values,
                    bits_stored: 16,
                    bits_allocated: 16,
                    signed: true,
                    monochrome1: self.monochrome1,
                },
            },
            presentation,
        }
    }

    /// Samples `layout`'s plane at `depth` (mm along its normal) into `acc` (the slab's running
    /// maximum, minimum or sum) and `count` (samples inside the volume), pixel by pixel, for the
    /// image rows from `first_row` on that `acc` holds. Column, row and depth are linear in the
    /// image position, so each is a multiply-add; the slices a depth falls between are found
    /// directly when evenly spaced, else by walking from the previous pixel's.
    fn pass(
        &self,
        layout: &Layout,
        depth: f64,
        mode: SlabMode,
        first_row: u32,
        acc: &mut [f32],
        count: &mut [u16],
    ) {
        let g = &self.geometry;
        let pl = layout.plane;
        let corner = add_scaled(layout.corner, pl.across, 0.5 * layout.pixel_mm);
        let base = add_scaled(
            add_scaled(corner, pl.down, 0.5 * layout.pixel_mm),
            pl.normal,
            depth,
        );
        let step_x = add_scaled([0.0; 3], pl.across, layout.pixel_mm);
        let step_y = add_scaled([0.0; 3], pl.down, layout.pixel_mm);
        let q = sub(base, g.origins[0]);
        let axis = |a: V3, mm: f64| (dot(q, a) / mm, dot(step_x, a) / mm, dot(step_y, a) / mm);
        let (c0, cx, cy) = axis(g.across, g.column_mm);
        let (r0, rx, ry) = axis(g.down, g.row_mm);
        let (d0, dx, dy) = (
            dot(base, g.normal),
            dot(step_x, g.normal),
            dot(step_y, g.normal),
        );
        let n = g.depths.len();
        let (lo, hi) = (
            g.depths[0] - (g.depths[1] - g.depths[0]) / 2.0,
            g.depths[n - 1] + (g.depths[n - 1] - g.depths[n - 2]) / 2.0,
        );
        let w = layout.columns as usize;
        let mut k = 0usize;
        for (y, (acc_row, count_row)) in acc.chunks_mut(w).zip(count.chunks_mut(w)).enumerate() {
            let y = (y + first_row as usize) as f64;
            let (cr, rr, dr) = (c0 + y * cy, r0 + y * ry, d0 + y * dy);
            if !self.sheared && dx.abs() < FLAT {
                // a row at one depth (every standard plane, and a plane turned about the
                // stack's normal): its two slices and the weight between them found once
                if dr >= lo && dr <= hi {
                    let t = self.around(dr, &mut k);
                    self.row_at_depth(k, t, (cr, cx), (rr, rx), mode, acc_row, count_row);
                }
                continue;
            }
            for (x, (a, c)) in acc_row.iter_mut().zip(count_row.iter_mut()).enumerate() {
                let x = x as f64;
                let d = dr + x * dx;
                if !(d >= lo && d <= hi) {
                    continue;
                }
                let t = self.around(d, &mut k);
                let (col, row) = (cr + x * cx, rr + x * rx);
                let v = if self.sheared {
                    let (a0, b0) = self.shift[k];
                    let (a1, b1) = self.shift[k + 1];
                    mix(
                        self.at(k, col - a0, row - b0),
                        self.at(k + 1, col - a1, row - b1),
                        t as f32,
                    )
                } else {
                    // one place in both slices: its weights found once
                    self.weights(col, row)
                        .map(|b| self.between(k, t as f32, &b))
                };
                if let Some(v) = v {
                    gather(a, c, v, mode);
                }
            }
        }
    }

    /// The slices `k` and `k + 1` around depth `d` (mm along the stack's normal), and how far
    /// from `k` towards `k + 1` it lies (0 to 1). `k` is where the search starts (the previous
    /// depth's slice) and is left at the answer: direct when the slices are evenly spaced.
    fn around(&self, d: f64, k: &mut usize) -> f64 {
        let g = &self.geometry;
        let n = g.depths.len();
        match self.even {
            Some((first, per_mm)) => {
                let kf = ((d - first) * per_mm).clamp(0.0, (n - 1) as f64);
                *k = (kf as usize).min(n - 2);
                (kf - *k as f64).clamp(0.0, 1.0)
            }
            None => {
                while *k + 2 < n && g.depths[*k + 1] <= d {
                    *k += 1;
                }
                while *k > 0 && g.depths[*k] > d {
                    *k -= 1;
                }
                ((d - g.depths[*k]) / (g.depths[*k + 1] - g.depths[*k])).clamp(0.0, 1.0)
            }
        }
    }

    /// Slices `k` and `k + 1` at `b`, `t` of the way from the first.
    fn between(&self, k: usize, t: f32, b: &Bilinear) -> f32 {
        if t == 0.0 {
            return self.value(k, b);
        }
        let a = self.value(k, b);
        a + (self.value(k + 1, b) - a) * t
    }

    /// One image row at one depth, between slices `k` and `k + 1` (`t` of the way), whose
    /// pixels fall at column `c.0 + x c.1` and row `r.0 + x r.1` of the slices: into `acc` and
    /// `count` as [`Volume::pass`] does. When every pixel falls on a voxel's centre (the plane
    /// is square to the volume and its pixels are the voxels' size: the standard planes of an
    /// axial, coronal or sagittal stack) each slice is read at that voxel, not interpolated.
    #[allow(clippy::too_many_arguments)]
    fn row_at_depth(
        &self,
        mut k: usize,
        mut t: f64,
        c: (f64, f64),
        r: (f64, f64),
        mode: SlabMode,
        acc: &mut [f32],
        count: &mut [u16],
    ) {
        if t > 1.0 - ON_VOXEL {
            (k, t) = (k + 1, 0.0);
        } else if t < ON_VOXEL {
            t = 0.0;
        }
        let t = t as f32;
        let whole = |v: f64| (v - v.round()).abs() < ON_VOXEL;
        if !(whole(c.0) && whole(c.1) && whole(r.0) && whole(r.1)) {
            for (x, (a, n)) in acc.iter_mut().zip(count.iter_mut()).enumerate() {
                let x = x as f64;
                if let Some(b) = self.weights(c.0 + x * c.1, r.0 + x * r.1) {
                    gather(a, n, self.between(k, t, &b), mode);
                }
            }
            return;
        }
        let g = &self.geometry;
        let (w, h) = (i64::from(g.columns), i64::from(g.rows));
        let (c0, cx, r0, rx) = (
            c.0.round() as i64,
            c.1.round() as i64,
            r.0.round() as i64,
            r.1.round() as i64,
        );
        let len = self.slice_len;
        let first = &self.values[k * len..(k + 1) * len];
        let second = &self.values[(k + 1).min(g.depths.len() - 1) * len..][..len];
        let (s0, i0) = self.rescale[k];
        let (s1, i1) = self.rescale[(k + 1).min(g.depths.len() - 1)];
        for (x, (a, n)) in acc.iter_mut().zip(count.iter_mut()).enumerate() {
            let (col, row) = (c0 + x as i64 * cx, r0 + x as i64 * rx);
            if col < 0 || row < 0 || col >= w || row >= h {
                continue;
            }
            let i = tiled(self.tiles_across, col as usize, row as usize);
            let v = f32::from(first[i]) * s0 + i0;
            let v = if t == 0.0 {
                v
            } else {
                v + (f32::from(second[i]) * s1 + i1 - v) * t
            };
            gather(a, n, v, mode);
        }
    }

    /// The lowest modality value the volume holds.
    fn lowest(&self) -> f32 {
        *self.lowest.get_or_init(|| self.find_lowest())
    }

    fn find_lowest(&self) -> f32 {
        self.extremes
            .iter()
            .zip(&self.rescale)
            .map(|(&(lo, hi), &(slope, intercept))| {
                (f32::from(lo) * slope + intercept).min(f32::from(hi) * slope + intercept)
            })
            .fold(f32::INFINITY, f32::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cube of `n` slices of `size`² pixels of `pixel` mm, `gap` mm apart (or at `depths`),
    /// with a sphere of 100 HU of radius `radius` mm in −1000 HU, centred at `centre`.
    fn sphere_volume(
        size: u32,
        pixel: f64,
        depths: &[f64],
        centre: V3,
        radius: f64,
        shear: f64,
    ) -> Volume {
        let slices: Vec<SliceGeometry> = depths
            .iter()
            .map(|&z| SliceGeometry {
                position: [-50.0 + shear * z, -50.0, z],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                pixel_spacing: (pixel, pixel),
                rows: size,
                columns: size,
            })
            .collect();
        let (geometry, order) = Geometry::new(&slices).unwrap();
        let mut v = Volume::new(geometry);
        for (k, &i) in order.iter().enumerate() {
            let s = &slices[i];
            let mut values = Vec::new();
            for r in 0..size {
                for c in 0..size {
                    let p = [
                        s.position[0] + f64::from(c) * pixel,
                        s.position[1] + f64::from(r) * pixel,
                        s.position[2],
                    ];
                    let d = dot(sub(p, centre), sub(p, centre)).sqrt();
                    values.push(if d <= radius { 1124 } else { 24 });
                }
            }
            let frame = CachedFrame {
                frame: DecodedFrame {
                    rows: size,
                    columns: size,
                    pixels: Pixels::Grey {
                        values,
                        bits_stored: 12,
                        bits_allocated: 16,
                        signed: false,
                        monochrome1: false,
                    },
                },
                presentation: Presentation {
                    modality_lut: ModalityLut::Rescale {
                        slope: 1.0,
                        intercept: -1024.0,
                    },
                    modality: "CT".into(),
                    ..Presentation::default()
                },
            };
            v.put(k, &frame).unwrap();
        }
        v
    }

    /// The widest run of pixels above `threshold` HU in any row, and in any column, of a frame.
    fn extent(f: &CachedFrame, threshold: f64) -> (usize, usize) {
        let Pixels::Grey { values, .. } = &f.frame.pixels else {
            panic!()
        };
        let (w, h) = (f.frame.columns as usize, f.frame.rows as usize);
        let hot = |x: usize, y: usize| f64::from(values[y * w + x]) / FRACTIONS > threshold;
        let rows = (0..h)
            .map(|y| (0..w).filter(|&x| hot(x, y)).count())
            .max()
            .unwrap();
        let cols = (0..w)
            .map(|x| (0..h).filter(|&y| hot(x, y)).count())
            .max()
            .unwrap();
        (rows, cols)
    }

    fn middle(layout: &Layout, centre: V3) -> usize {
        let d = dot(centre, layout.plane.normal);
        layout
            .depths
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - d).abs().total_cmp(&(b.1 - d).abs()))
            .unwrap()
            .0
    }

    #[test]
    fn a_sphere_is_a_circle_of_its_diameter_in_every_plane() {
        // 1 mm pixels, 2 mm slices: the coronal and sagittal images have 1 mm square pixels
        let depths: Vec<f64> = (0..50).map(|i| f64::from(i) * 2.0).collect();
        let centre = [0.0, 0.0, 50.0];
        let v = sphere_volume(100, 1.0, &depths, centre, 20.0, 0.0);
        assert!(v.geometry.even() && v.geometry.tilt_degrees < 1e-6);
        assert_eq!(
            v.geometry.bytes(),
            104 * 104 * 50 * 2,
            "slices in whole 8×8 tiles"
        );
        for o in [
            Orientation::Axial,
            Orientation::Coronal,
            Orientation::Sagittal,
        ] {
            let layout = v.layout(Plane::standard(o), 1024);
            assert_eq!(layout.pixel_mm, 1.0, "{o:?}");
            let f = v.reformat(&layout, middle(&layout, centre), None).unwrap();
            let (across, down) = extent(&f, -450.0);
            for (what, px) in [("across", across), ("down", down)] {
                let mm = px as f64 * layout.pixel_mm;
                assert!(
                    (mm - 40.0).abs() <= 2.0,
                    "{o:?} {what}: {mm} mm across a 40 mm sphere"
                );
            }
            // the centre reads the sphere's value, a corner the background
            let Pixels::Grey { values, .. } = &f.frame.pixels else {
                panic!()
            };
            let at = |x: f64, y: f64| {
                let p = layout.point(middle(&layout, centre), x, y);
                let (c, r) = (x.floor() as usize, y.floor() as usize);
                (
                    p,
                    f64::from(values[r * layout.columns as usize + c]) / FRACTIONS,
                )
            };
            let inside = (0..layout.rows as usize)
                .flat_map(|r| (0..layout.columns as usize).map(move |c| (c, r)))
                .map(|(c, r)| at(c as f64 + 0.5, r as f64 + 0.5))
                .filter(|(p, _)| dot(sub(*p, centre), sub(*p, centre)).sqrt() < 15.0)
                .map(|(_, v)| v)
                .collect::<Vec<_>>();
            assert!(
                !inside.is_empty() && inside.iter().all(|&v| (v - 100.0).abs() < 0.01),
                "{o:?}"
            );
            assert!((at(0.5, 0.5).1 + 1000.0).abs() < 0.01, "{o:?} corner");
        }
    }

    #[test]
    fn uneven_spacing_and_a_tilted_gantry_are_placed_where_the_slices_lie() {
        // slices 1 mm apart in the middle, 3 mm at the ends
        let mut depths: Vec<f64> = (0..10).map(|i| f64::from(i) * 3.0).collect();
        depths.extend((1..40).map(|i| 27.0 + f64::from(i)));
        depths.extend((1..10).map(|i| 66.0 + f64::from(i) * 3.0));
        let centre = [0.0, 0.0, 47.0];
        let v = sphere_volume(100, 1.0, &depths, centre, 20.0, 0.0);
        assert!(!v.geometry.even());
        assert_eq!(v.geometry.spacing, (1.0, 3.0));
        let layout = v.layout(Plane::standard(Orientation::Coronal), 1024);
        let f = v.reformat(&layout, middle(&layout, centre), None).unwrap();
        let (across, down) = extent(&f, -450.0);
        assert!(
            (across as f64 - 40.0).abs() <= 2.0 && (down as f64 - 40.0).abs() <= 2.0,
            "{across} {down}"
        );

        // each slice shifted sideways 0.3 mm per mm of depth: 16.7° of tilt
        let depths: Vec<f64> = (0..50).map(|i| f64::from(i) * 2.0).collect();
        let v = sphere_volume(140, 1.0, &depths, centre, 20.0, 0.3);
        assert!((v.geometry.tilt_degrees - 0.3f64.atan().to_degrees()).abs() < 0.01);
        let layout = v.layout(Plane::standard(Orientation::Sagittal), 1024);
        let f = v.reformat(&layout, middle(&layout, centre), None).unwrap();
        let (across, down) = extent(&f, -450.0);
        assert!(
            (across as f64 - 40.0).abs() <= 2.0 && (down as f64 - 40.0).abs() <= 2.0,
            "{across} {down}"
        );
        // the sphere's centre point holds the sphere's value, the slab's edge none of it
        assert!((v.sample(centre).unwrap() - 100.0).abs() < 0.01);
        assert!((v.sample([0.0, 0.0, 75.0]).unwrap() + 1000.0).abs() < 0.01);
        assert_eq!(v.sample([0.0, 0.0, 200.0]), None);
    }

    #[test]
    fn a_slab_shows_the_brightest_the_darkest_or_the_mean_across_its_thickness() {
        let depths: Vec<f64> = (0..40).map(f64::from).collect();
        // a 2 mm bright ball at z = 20: a coronal slice at y = 6 misses it
        let centre = [0.0, 0.0, 20.0];
        let v = sphere_volume(64, 1.0, &depths, centre, 2.0, 0.0);
        let layout = v.layout(Plane::standard(Orientation::Coronal), 1024);
        let at_y = |y: f64| {
            layout
                .depths
                .iter()
                .position(|&d| (d - y).abs() < 0.5)
                .unwrap()
        };
        let hottest = |f: &CachedFrame| {
            let Pixels::Grey { values, .. } = &f.frame.pixels else {
                panic!()
            };
            f64::from(*values.iter().max().unwrap()) / FRACTIONS
        };
        let thin = v.reformat(&layout, at_y(6.0), None).unwrap();
        assert_eq!(
            hottest(&thin),
            -1000.0,
            "one voxel thick, the ball is not there"
        );
        let slab = |mode| {
            Some(Slab {
                thickness_mm: 16.0,
                mode,
            })
        };
        let mip = v.reformat(&layout, at_y(6.0), slab(SlabMode::Mip)).unwrap();
        assert_eq!(hottest(&mip), 100.0, "a 16 mm MIP reaches the ball");
        let minip = v
            .reformat(&layout, at_y(0.0), slab(SlabMode::Minip))
            .unwrap();
        assert_eq!(hottest(&minip), -1000.0, "MinIP takes the air around it");
        let mean = v
            .reformat(&layout, at_y(0.0), slab(SlabMode::Average))
            .unwrap();
        let h = hottest(&mean);
        assert!(h > -1000.0 && h < 100.0, "the mean lies between: {h}");
        let too_thick = Some(Slab {
            thickness_mm: 600.0,
            mode: SlabMode::Mip,
        });
        assert!(v.reformat(&layout, 0, too_thick).is_err());
        assert!(v.reformat(&layout, layout.depths.len(), None).is_err());
    }

    /// Each pixel of slice `index` of `layout` is what sampling its patient point gives (the
    /// volume's lowest value outside it); the image, and how many pixels fall inside.
    fn sampled_pixel_by_pixel(v: &Volume, layout: &Layout, index: usize) -> (Vec<i32>, usize) {
        let whole = v.reformat(layout, index, None).unwrap();
        let Pixels::Grey { values, .. } = whole.frame.pixels else {
            panic!()
        };
        let lowest = v.lowest();
        let mut inside = 0;
        for (i, &got) in values.iter().enumerate() {
            let (x, y) = (i % layout.columns as usize, i / layout.columns as usize);
            let p = layout.point(index, x as f64 + 0.5, y as f64 + 0.5);
            let want = v.sample(p).unwrap_or(lowest);
            inside += usize::from(v.sample(p).is_some());
            assert!(
                (f64::from(got) / FRACTIONS - f64::from(want)).abs() <= 0.25,
                "pixel ({x}, {y}): {got} eighths, sampled {want}"
            );
        }
        assert!(inside > 0, "the plane cuts the volume");
        (values, inside)
    }

    #[test]
    fn each_pixel_is_the_volume_sampled_at_its_point_and_bands_join_into_the_image() {
        // a tilted stack of uneven slices, cut by an oblique plane: the fast row walk must give
        // what sampling each pixel's patient point gives
        let mut depths: Vec<f64> = (0..20).map(|i| f64::from(i) * 2.0).collect();
        depths.extend((1..30).map(|i| 38.0 + f64::from(i)));
        let centre = [3.0, -2.0, 40.0];
        let v = sphere_volume(90, 1.1, &depths, centre, 18.0, 0.2);
        assert!(!v.geometry.even() && v.geometry.tilt_degrees > 10.0);
        let plane = Plane::standard(Orientation::Coronal)
            .rotated([0.3, 0.1, 1.0], 25.0)
            .unwrap();
        let layout = v.layout(plane, 1024);
        let index = middle(&layout, centre);
        let (values, inside) = sampled_pixel_by_pixel(&v, &layout, index);
        assert!(inside > values.len() / 4, "{inside} pixels inside");
        // three bands of rows are the image
        let h = layout.rows;
        let mut joined = Vec::new();
        for band in [0..h / 3, h / 3..h / 2, h / 2..h] {
            joined.extend(v.reformat_rows(&layout, index, None, band).unwrap());
        }
        assert_eq!(joined, values);
        assert!(v.reformat_rows(&layout, index, None, 0..h + 1).is_err());
    }

    #[test]
    fn rows_at_one_depth_read_on_voxels_give_what_sampling_gives() {
        // an even stack square to the axes: every standard plane's rows lie at one depth and
        // its pixels on voxel centres (read without interpolating in the slice), and a plane
        // turned about the stack's normal has rows at one depth between voxels; the uneven
        // stack takes the search for its slices
        let centre = [1.0, 2.0, 30.0];
        let even: Vec<f64> = (0..40).map(|i| f64::from(i) * 1.5).collect();
        let mut uneven: Vec<f64> = (0..20).map(|i| f64::from(i) * 2.0).collect();
        uneven.extend((1..25).map(|i| 38.0 + f64::from(i)));
        for depths in [&even, &uneven] {
            let v = sphere_volume(80, 1.0, depths, centre, 15.0, 0.0);
            let turned = Plane::standard(Orientation::Coronal)
                .rotated([0.0, 0.0, 1.0], 33.0)
                .unwrap();
            for plane in [
                Plane::standard(Orientation::Axial),
                Plane::standard(Orientation::Coronal),
                Plane::standard(Orientation::Sagittal),
                turned,
            ] {
                let layout = v.layout(plane, 1024);
                for index in [0, middle(&layout, centre), layout.depths.len() - 1] {
                    sampled_pixel_by_pixel(&v, &layout, index);
                }
            }
        }
    }

    #[test]
    fn an_oblique_plane_turns_about_the_axis_and_stays_square() {
        let p = Plane::standard(Orientation::Coronal)
            .rotated([0.0, 0.0, 1.0], 90.0)
            .unwrap();
        // the coronal plane turned a quarter about the feet-to-head axis faces the side
        let s = Plane::standard(Orientation::Sagittal);
        for (a, b) in [(p.across, s.across), (p.down, s.down), (p.normal, s.normal)] {
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9),
                "{a:?} {b:?}"
            );
        }
        let q = Plane::standard(Orientation::Axial)
            .rotated([0.0, 0.0, 1.0], 30.0)
            .unwrap();
        assert!(
            dot(q.across, q.down).abs() < 1e-12 && (dot(q.normal, q.normal) - 1.0).abs() < 1e-12
        );
        assert!(Plane::standard(Orientation::Axial)
            .rotated([0.0; 3], 3.0)
            .is_err());
    }

    #[test]
    fn what_is_not_one_volume_is_refused_with_its_reason() {
        let slice = |z: f64, o: [f64; 6], size: u32| SliceGeometry {
            position: [0.0, 0.0, z],
            orientation: o,
            pixel_spacing: (1.0, 1.0),
            rows: size,
            columns: size,
        };
        let ax = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let cor = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
        assert!(Geometry::new(&[slice(0.0, ax, 8)]).is_err());
        let e = Geometry::new(&[slice(0.0, ax, 8), slice(1.0, cor, 8)]).unwrap_err();
        assert!(e.contains("parallel"), "{e}");
        let e = Geometry::new(&[slice(0.0, ax, 8), slice(1.0, ax, 9)]).unwrap_err();
        assert!(e.contains("size"), "{e}");
        let e = Geometry::new(&[slice(0.0, ax, 8), slice(0.0, ax, 8)]).unwrap_err();
        assert!(e.contains("same depth"), "{e}");
        let (g, order) =
            Geometry::new(&[slice(2.0, ax, 8), slice(0.0, ax, 8), slice(1.0, ax, 8)]).unwrap();
        assert_eq!(order, [1, 2, 0]);
        assert_eq!(g.depths, [0.0, 1.0, 2.0]);
        let mut v = Volume::new(g);
        let rgb = CachedFrame {
            frame: DecodedFrame {
                rows: 8,
                columns: 8,
                pixels: Pixels::Rgb(vec![0; 192]),
            },
            presentation: Presentation::default(),
        };
        assert!(v.put(0, &rgb).is_err());
        assert!(!v.complete());
    }
}
