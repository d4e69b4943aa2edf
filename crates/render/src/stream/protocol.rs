//! The stream's wire format (schemas/render-stream.md): what the client sends (JSON text
//! messages), the binary header in front of every frame and still, the presets a client may name,
//! and how a render is placed in a frame of the size the encoder takes.

use crate::{h264, Rendered, Window};
use serde::Deserialize;
use std::time::Duration;

/// Frames sent and not yet acknowledged, at most: enough to keep the pipe busy while the client
/// decodes one, few enough that what it shows is never more than two frames behind.
pub const MAX_IN_FLIGHT: u32 = 2;
/// Quiet time after the last input before the lossless still is sent: long enough not to spend
/// PNG bandwidth in the middle of a scroll, short enough to feel immediate.
pub const STILL_AFTER: Duration = Duration::from_millis(120);
/// Bytes of the binary header in front of every frame and still.
pub const HEADER_LEN: usize = 44;
pub const KIND_FRAME: u8 = 1;
pub const KIND_STILL: u8 = 2;
pub const FLAG_KEYFRAME: u8 = 1;
pub const FLAG_RGB: u8 = 2;
/// Cine rates a client may ask for, in frames per second.
pub const CINE_MIN_FPS: f64 = 1.0;
pub const CINE_MAX_FPS: f64 = 60.0;
/// The rate of a series that does not say its own (no Frame Time, no Cine Rate).
pub const CINE_DEFAULT_FPS: f64 = 10.0;

/// The presets a client may name, in the order a viewer lists them.
pub const PRESETS: [&str; 7] = [
    "brain",
    "subdural",
    "lung",
    "mediastinum",
    "bone",
    "abdomen",
    "liver",
];

/// A preset's window: the render pipeline's CT presets (centre, width in HU).
pub fn preset_window(name: &str) -> Option<Window> {
    crate::pipeline::preset("CT", name)
}

/// What the client sends (text messages, JSON).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Open(OpenSeries),
    View(ViewChange),
    Ack(Ack),
    Keyframe(Empty),
    Play(Play),
    Stop(Empty),
}

/// Plays the series (cine) from the slice shown, looping, at `fps` frames per second (the
/// series' own rate when absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Play {
    pub fps: Option<f64>,
}

impl Play {
    /// The rate to play at: the one asked for, checked, else the series' own.
    pub fn rate(&self, series_fps: f64) -> Result<f64, String> {
        match self.fps {
            None => Ok(series_fps),
            Some(f) if f.is_finite() && (CINE_MIN_FPS..=CINE_MAX_FPS).contains(&f) => Ok(f),
            Some(f) => Err(format!(
                "fps must be within {CINE_MIN_FPS} to {CINE_MAX_FPS} (got {f})"
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSeries {
    pub study: String,
    pub series: String,
    /// Opens the series as a plane cut through its volume instead of its own slices.
    #[serde(default)]
    pub mpr: Option<MprSpec>,
}

/// A plane of the patient through a series' volume: `axial`, `coronal` or `sagittal`, turned
/// `degrees` about `axis` (patient coordinates) when oblique.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct MprSpec {
    pub plane: String,
    #[serde(default)]
    pub rotate: Option<Rotation>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    pub axis: [f64; 3],
    pub degrees: f64,
}

impl MprSpec {
    /// The plane asked for, checked.
    pub fn plane(&self) -> Result<crate::volume::Plane, String> {
        let o = crate::volume::Orientation::parse(&self.plane).ok_or_else(|| {
            format!(
                "unknown plane {:?}: one of axial, coronal, sagittal",
                self.plane
            )
        })?;
        let plane = crate::volume::Plane::standard(o);
        match self.rotate {
            None => Ok(plane),
            Some(r) => plane.rotated(r.axis, r.degrees),
        }
    }
}

/// A slab of an MPR view: `thickness` mm (0: one voxel) shown as `mode`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct SlabSpec {
    pub thickness: f64,
    pub mode: crate::volume::SlabMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub frame: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub center: f64,
    pub width: f64,
}

/// A change of view state: absent fields keep their value.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ViewChange {
    pub seq: u32,
    pub slice: Option<u32>,
    pub window: Option<WindowSpec>,
    /// One of [`PRESETS`], or "default" for the series' own window.
    pub preset: Option<String>,
    pub zoom: Option<f64>,
    pub pan: Option<[f64; 2]>,
    pub viewport: Option<[u32; 2]>,
    pub qp: Option<u8>,
    /// MPR views only.
    pub slab: Option<SlabSpec>,
}

/// The frame size for a viewport: even, within what the encoder takes.
pub fn frame_size(width: u32, height: u32) -> (u32, u32) {
    let (long_max, short_max) = (h264::MAX_LONG_SIDE, h264::MAX_SHORT_SIDE);
    let (wmax, hmax) = if width >= height {
        (long_max, short_max)
    } else {
        (short_max, long_max)
    };
    let even = |v: u32, max: u32| (v.clamp(h264::MIN_SIDE, max)) & !1;
    (even(width, wmax), even(height, hmax))
}

/// The binary header of a frame or a still (little-endian; schemas/render-stream.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub kind: u8,
    pub flags: u8,
    pub frame: u32,
    pub input_seq: u32,
    pub slice: u32,
    pub width: u16,
    pub height: u16,
    /// Input received to render started (waiting for the previous frame or for acks).
    pub wait_us: u32,
    pub render_us: u32,
    /// H.264 (frame) or PNG (still) encoding.
    pub encode_us: u32,
    /// Still: CRC-32 (ISO-HDLC, as zlib) of the raw 8-bit pixels; 0 for a frame.
    pub crc32: u32,
    /// Still: where its top-left corner lies in the frame.
    pub x: i32,
    pub y: i32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.kind;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[4..8].copy_from_slice(&self.frame.to_le_bytes());
        b[8..12].copy_from_slice(&self.input_seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.slice.to_le_bytes());
        b[16..18].copy_from_slice(&self.width.to_le_bytes());
        b[18..20].copy_from_slice(&self.height.to_le_bytes());
        b[20..24].copy_from_slice(&self.wait_us.to_le_bytes());
        b[24..28].copy_from_slice(&self.render_us.to_le_bytes());
        b[28..32].copy_from_slice(&self.encode_us.to_le_bytes());
        b[32..36].copy_from_slice(&self.crc32.to_le_bytes());
        b[36..40].copy_from_slice(&self.x.to_le_bytes());
        b[40..44].copy_from_slice(&self.y.to_le_bytes());
        b
    }

    /// Reads a header back (clients in Rust: the tests and the benchmark).
    pub fn parse(b: &[u8]) -> Option<(Header, &[u8])> {
        let len = usize::from(u16::from_le_bytes(b.get(2..4)?.try_into().ok()?));
        if len < HEADER_LEN || b.len() < len {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().expect("2 bytes"));
        let h = Header {
            kind: b[0],
            flags: b[1],
            frame: u32_at(4),
            input_seq: u32_at(8),
            slice: u32_at(12),
            width: u16_at(16),
            height: u16_at(18),
            wait_us: u32_at(20),
            render_us: u32_at(24),
            encode_us: u32_at(28),
            crc32: u32_at(32),
            x: u32_at(36) as i32,
            y: u32_at(40) as i32,
        };
        Some((h, &b[len..]))
    }
}

/// A render placed in a frame of `width`×`height`: centred, cropped or padded with black, so
/// the frame is what the encoder takes whatever size the pipeline returned. Returns the frame's
/// pixels and where the render's top-left corner lies in it.
pub fn place(r: &Rendered, width: u32, height: u32) -> (Vec<u8>, i32, i32) {
    let ch = usize::from(r.channels);
    if r.width == width && r.height == height {
        return (r.pixels.clone(), 0, 0);
    }
    let x = (width as i32 - r.width as i32) / 2;
    let y = (height as i32 - r.height as i32) / 2;
    let mut out = vec![0u8; width as usize * height as usize * ch];
    let x0 = x.max(0) as usize; // first column written in the frame
    let sx = (-x).max(0) as usize; // first column read from the render
    let cols = (r.width as usize - sx).min(width as usize - x0);
    for row in 0..height as i32 {
        let src_row = row - y;
        if src_row < 0 || src_row >= r.height as i32 {
            continue;
        }
        let src = (src_row as usize * r.width as usize + sx) * ch;
        let dst = (row as usize * width as usize + x0) * ch;
        out[dst..dst + cols * ch].copy_from_slice(&r.pixels[src..src + cols * ch]);
    }
    (out, x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_renders_are_centred() {
        let h = Header {
            kind: KIND_STILL,
            flags: FLAG_KEYFRAME,
            frame: 7,
            input_seq: 9,
            slice: 3,
            width: 512,
            height: 256,
            wait_us: 1,
            render_us: 2,
            encode_us: 3,
            crc32: 0xDEAD_BEEF,
            x: -4,
            y: 5,
        };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(b"payload");
        let (back, payload) = Header::parse(&b).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, b"payload");
        let r = Rendered {
            width: 2,
            height: 2,
            channels: 1,
            pixels: vec![1, 2, 3, 4],
        };
        let (p, x, y) = place(&r, 4, 4);
        assert_eq!((x, y), (1, 1));
        assert_eq!(p, [0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0]);
        let big = Rendered {
            width: 4,
            height: 4,
            channels: 1,
            pixels: (0..16).collect(),
        };
        let (p, x, y) = place(&big, 2, 2);
        assert_eq!((x, y), (-1, -1));
        assert_eq!(p, [5, 6, 9, 10]);
    }

    #[test]
    fn play_takes_a_rate_within_one_to_sixty_or_the_series_own() {
        let play = |j: &str| match serde_json::from_str::<ClientMessage>(j).unwrap() {
            ClientMessage::Play(p) => p,
            m => panic!("{m:?}"),
        };
        assert_eq!(play(r#"{"type":"play","fps":30}"#).rate(10.0), Ok(30.0));
        assert_eq!(play(r#"{"type":"play"}"#).rate(25.0), Ok(25.0));
        for bad in [0.5, 61.0] {
            let p = Play { fps: Some(bad) };
            assert!(p.rate(10.0).unwrap_err().contains("1 to 60"), "{bad}");
        }
        assert!(matches!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"stop"}"#).unwrap(),
            ClientMessage::Stop(_)
        ));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"play","rate":3}"#).is_err());
    }
}
