//! `/api/stream`: one viewing session per WebSocket (protocol: schemas/render-stream.md).
//!
//! The client opens a series and sends view states (slice, window or preset, zoom, pan, viewport
//! size), each with a sequence number. The session renders only the newest state through
//! [`super::render_instance`], encodes it with [`super::h264`] and sends it as an H.264 frame;
//! states that arrive while a frame is being made replace each other, so the stale ones are
//! dropped before encoding, and an encoded frame is always sent (dropping one would break the
//! decoder's references). At most [`MAX_IN_FLIGHT`] frames wait for the client's
//! acknowledgement, so a slow client gets fewer, newer frames instead of a queue. About
//! [`STILL_AFTER`] after the last input the exact render goes out as PNG with its CRC-32, and then
//! nothing until the next input.
//!
//! What crosses the socket is series metadata (JSON), frames, stills and errors: never DICOM
//! bytes or original pixel values. Opening a series is audited like any access to patient data.

use super::h264::{self, EncodedFrame, H264Encoder};
use super::{Priority, Rendered, View, VoiFunction, Window};
use crate::archive::Archive;
use crate::audit::Outcome;
use crate::auth::http::Caller;
use crate::auth::Permission;
use crate::index::InstanceRef;
use crate::problem::Problem;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::Extension;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames sent and not yet acknowledged, at most: enough to keep the pipe busy while the client
/// decodes one, few enough that what it shows is never more than two frames behind.
pub const MAX_IN_FLIGHT: u32 = 2;
/// Quiet time after the last input before the lossless still is sent: long enough not to spend
/// PNG bandwidth in the middle of a scroll, short enough to feel immediate.
pub const STILL_AFTER: Duration = Duration::from_millis(120);
/// Largest client message: view states are a few hundred bytes.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Client messages queued while a frame is made; more than this and the reader waits.
const INBOX: usize = 256;
/// Bytes of the binary header in front of every frame and still.
pub const HEADER_LEN: usize = 44;
pub const KIND_FRAME: u8 = 1;
pub const KIND_STILL: u8 = 2;
pub const FLAG_KEYFRAME: u8 = 1;
pub const FLAG_RGB: u8 = 2;

/// Slices on either side of the one shown that are decoded ahead (at the lowest priority), so
/// scrolling finds them in the decoded-frame cache.
const PREFETCH_SLICES: usize = 6;

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
    super::pipeline::preset("CT", name)
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the client went away: {0}")]
    Socket(#[from] axum::Error),
    #[error(transparent)]
    H264(#[from] h264::H264Error),
    #[error("a worker failed: {0}")]
    Task(String),
}

/// What the client sends (text messages, JSON).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Open(OpenSeries),
    View(ViewChange),
    Ack(Ack),
    Keyframe(Empty),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenSeries {
    study: String,
    series: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    frame: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    center: f64,
    width: f64,
}

/// A change of view state: absent fields keep their value.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ViewChange {
    seq: u32,
    slice: Option<u32>,
    window: Option<WindowSpec>,
    /// One of [`PRESETS`], or "default" for the series' own window.
    preset: Option<String>,
    zoom: Option<f64>,
    pan: Option<[f64; 2]>,
    viewport: Option<[u32; 2]>,
    qp: Option<u8>,
}

/// Which window the viewer asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WindowChoice {
    /// The instance's own window (else automatic).
    Default,
    Explicit(Window),
}

/// The newest view state of a session.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ViewState {
    slice: u32,
    window: WindowChoice,
    zoom: f64,
    pan: (f64, f64),
    /// Frame size: the viewport rounded down to even and capped.
    frame: Option<(u32, u32)>,
    qp: u8,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            slice: 0,
            window: WindowChoice::Default,
            zoom: 1.0,
            pan: (0.0, 0.0),
            frame: None,
            qp: h264::DEFAULT_QP,
        }
    }
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

impl ViewState {
    /// Applies a change; a bad value is refused whole, leaving the state as it was.
    fn apply(&self, c: &ViewChange, slices: u32) -> Result<ViewState, String> {
        let mut s = *self;
        if let Some(i) = c.slice {
            if i >= slices {
                return Err(format!(
                    "slice {i} does not exist (the series has {slices})"
                ));
            }
            s.slice = i;
        }
        match (&c.window, &c.preset) {
            (Some(_), Some(_)) => return Err("give a window or a preset, not both".into()),
            (Some(w), None) => {
                if !(w.width >= 1.0 && w.width.is_finite() && w.center.is_finite()) {
                    return Err(format!("window width must be at least 1 (got {})", w.width));
                }
                s.window = WindowChoice::Explicit(Window {
                    center: w.center,
                    width: w.width,
                    function: VoiFunction::Linear,
                });
            }
            (None, Some(p)) if p == "default" => s.window = WindowChoice::Default,
            (None, Some(p)) => {
                let w = preset_window(p).ok_or_else(|| {
                    format!(
                        "unknown preset {p:?}: one of default, {}",
                        PRESETS.join(", ")
                    )
                })?;
                s.window = WindowChoice::Explicit(w);
            }
            (None, None) => {}
        }
        if let Some(z) = c.zoom {
            if !(z.is_finite() && (0.01..=100.0).contains(&z)) {
                return Err(format!("zoom must be within 0.01 to 100 (got {z})"));
            }
            s.zoom = z;
        }
        if let Some([x, y]) = c.pan {
            if !(x.is_finite() && y.is_finite()) {
                return Err("pan must be two finite numbers".into());
            }
            s.pan = (x, y);
        }
        if let Some([w, h]) = c.viewport {
            if w == 0 || h == 0 {
                return Err("the viewport must be at least 1×1".into());
            }
            s.frame = Some(frame_size(w, h));
        }
        if let Some(q) = c.qp {
            if q > 51 {
                return Err(format!("qp must be within 0 to 51 (got {q})"));
            }
            s.qp = q;
        }
        Ok(s)
    }

    fn view(&self) -> View {
        View {
            window: match self.window {
                WindowChoice::Default => None,
                WindowChoice::Explicit(w) => Some(w),
            },
            viewport: self.frame,
            zoom: self.zoom,
            pan: self.pan,
        }
    }
}

/// One image of a series: frame `frame` of instance `sop_uid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub sop_uid: String,
    pub frame: u32,
    /// Position along the slice normal, in mm, when the instance says where it is.
    pub position: Option<f64>,
}

/// An opened series: its slices in order, and what the viewer shows about it.
#[derive(Debug, Clone)]
pub struct OpenedSeries {
    pub study: String,
    pub series: String,
    pub slices: Vec<Slice>,
    /// The `series` message sent to the client.
    pub metadata: Value,
}

/// The values of one attribute in DICOM JSON (PS3.18 F.2).
fn values<'a>(attrs: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    attrs.get(tag)?.get("Value")?.as_array()
}

/// Numbers of an attribute; DS and IS may come as numbers or as strings.
fn numbers(attrs: &Value, tag: &str) -> Option<Vec<f64>> {
    values(attrs, tag)?
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .collect()
}

fn text(attrs: &Value, tag: &str) -> Option<String> {
    let v = values(attrs, tag)?.first()?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(pn) => pn
            .get("Alphabetic")
            .and_then(Value::as_str)
            .map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Orders a series' instances into slices: along the normal of ImageOrientationPatient by
/// ImagePositionPatient when every instance has both, else by InstanceNumber (the index's
/// order); the frames of a multi-frame instance follow each other.
pub fn open_series(refs: &[InstanceRef]) -> Result<OpenedSeries, String> {
    let first = refs.first().ok_or("the series has no instances")?;
    let parsed: Vec<Value> = refs
        .iter()
        .map(|r| serde_json::from_str(&r.metadata).unwrap_or(Value::Null))
        .collect();
    let has_pixels = |a: &Value| a.get("00280010").is_some();
    let mut items: Vec<(usize, Option<f64>, Option<f64>)> = Vec::new(); // (ref, position, number)
    for (i, a) in parsed.iter().enumerate() {
        if !has_pixels(a) {
            continue; // a structured report or a presentation state in an image series
        }
        let position = match (numbers(a, "00200032"), numbers(a, "00200037")) {
            (Some(p), Some(o)) if p.len() == 3 && o.len() == 6 => {
                let n = [
                    o[1] * o[5] - o[2] * o[4],
                    o[2] * o[3] - o[0] * o[5],
                    o[0] * o[4] - o[1] * o[3],
                ];
                Some(p[0] * n[0] + p[1] * n[1] + p[2] * n[2])
            }
            _ => None,
        };
        let number = numbers(a, "00200013").and_then(|v| v.first().copied());
        items.push((i, position, number));
    }
    if items.is_empty() {
        return Err("the series has no images".into());
    }
    if items.iter().all(|(_, p, _)| p.is_some()) {
        items.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
    } else {
        items.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
    }
    let mut slices = Vec::new();
    for &(i, position, _) in &items {
        let frames = numbers(&parsed[i], "00280008")
            .and_then(|v| v.first().copied())
            .unwrap_or(1.0)
            .max(1.0) as u32;
        for frame in 0..frames {
            slices.push(Slice {
                sop_uid: refs[i].sop_uid.clone(),
                frame,
                position: if frames == 1 { position } else { None },
            });
        }
    }
    let a = &parsed[items[0].0];
    let window = match (numbers(a, "00281050"), numbers(a, "00281051")) {
        (Some(c), Some(w)) if !c.is_empty() && !w.is_empty() => {
            json!({ "center": c[0], "width": w[0] })
        }
        _ => Value::Null,
    };
    let metadata = json!({
        "type": "series",
        "study": first.study_uid,
        "series": first.series_uid,
        "slices": slices.len(),
        "positions": slices.iter().map(|s| s.position).collect::<Vec<_>>(),
        "default_window": window,
        "presets": PRESETS,
        "modality": text(a, "00080060"),
        "rows": numbers(a, "00280010").and_then(|v| v.first().copied()),
        "columns": numbers(a, "00280011").and_then(|v| v.first().copied()),
        "pixel_spacing": numbers(a, "00280030"),
        "series_description": text(a, "0008103E"),
        "series_number": text(a, "00200011"),
        "patient": {
            "name": text(a, "00100010"),
            "id": text(a, "00100020"),
            "birth_date": text(a, "00100030"),
            "sex": text(a, "00100040"),
        },
        "study_info": {
            "date": text(a, "00080020"),
            "time": text(a, "00080030"),
            "description": text(a, "00081030"),
            "accession": text(a, "00080050"),
        },
    });
    Ok(OpenedSeries {
        study: first.study_uid.clone(),
        series: first.series_uid.clone(),
        slices,
        metadata,
    })
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

/// `GET /api/stream`: upgrades to the viewing session. Rendered views are what a role that may
/// read metadata gets; original pixels never go this way.
pub async fn handler(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    caller.require(Permission::Metadata)?;
    // A browser sends cookies with a cross-site WebSocket handshake: only our own pages may open
    // a session on the user's behalf.
    if !same_origin(&headers) {
        return Err(Problem::forbidden("cross-origin WebSocket refused"));
    }
    let ws =
        ws.map_err(|e| Problem::bad_request(format!("/api/stream is a WebSocket endpoint: {e}")))?;
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let remote = caller.remote.clone();
            if let Err(e) = serve(archive, caller, socket).await {
                tracing::debug!(%remote, "stream ended: {e}");
            }
        }))
}

/// `Origin`, when sent, names the Host.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
        None => true,
        Some(o) => o
            .split("://")
            .nth(1)
            .is_some_and(|rest| rest.split('/').next() == Some(host)),
    }
}

/// What the reader task hands the session: a message and when it arrived.
enum Inbound {
    Message(Result<ClientMessage, String>, Instant),
    Closed,
}

/// The last frame sent, kept for the still.
struct Shown {
    frame: u32,
    input_seq: u32,
    slice: u32,
    rendered: Arc<Rendered>,
    x: i32,
    y: i32,
    render_us: u32,
}

struct Session {
    archive: Arc<Archive>,
    caller: Caller,
    series: Option<OpenedSeries>,
    state: ViewState,
    /// The state changed since the last frame (or a keyframe was asked for).
    pending: bool,
    /// Sequence number of the newest input applied, and when it arrived.
    input_seq: u32,
    input_at: Instant,
    force_keyframe: bool,
    encoder: Option<H264Encoder>,
    frames_sent: u32,
    acked: u32,
    shown: Option<Shown>,
    still_sent: bool,
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

async fn serve(
    archive: Arc<Archive>,
    caller: Caller,
    socket: WebSocket,
) -> Result<(), StreamError> {
    let (mut tx, mut rx) = socket.split();
    let (in_tx, mut inbox) = tokio::sync::mpsc::channel::<Inbound>(INBOX);
    let reader = tokio::spawn(async move {
        while let Some(msg) = rx.next().await {
            let at = Instant::now();
            let parsed = match msg {
                Ok(Message::Text(t)) => serde_json::from_str::<ClientMessage>(t.as_str())
                    .map_err(|e| format!("not a message of the stream protocol: {e}")),
                Ok(Message::Binary(_)) => Err("the client sends JSON text messages only".into()),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => break,
            };
            if in_tx.send(Inbound::Message(parsed, at)).await.is_err() {
                break;
            }
        }
        let _ = in_tx.send(Inbound::Closed).await;
    });
    let mut s = Session {
        archive,
        caller,
        series: None,
        state: ViewState::default(),
        pending: false,
        input_seq: 0,
        input_at: Instant::now(),
        force_keyframe: true,
        encoder: None,
        frames_sent: 0,
        acked: 0,
        shown: None,
        still_sent: true,
    };
    let result = s.run(&mut tx, &mut inbox).await;
    reader.abort();
    let _ = tx.close().await;
    result
}

impl Session {
    async fn run(
        &mut self,
        tx: &mut Sink,
        inbox: &mut tokio::sync::mpsc::Receiver<Inbound>,
    ) -> Result<(), StreamError> {
        loop {
            // Everything that arrived while the last frame was made: only the newest state is
            // rendered.
            while let Ok(m) = inbox.try_recv() {
                if !self.handle(m, tx).await? {
                    return Ok(());
                }
            }
            if self.pending && self.frames_sent - self.acked < MAX_IN_FLIGHT {
                self.send_frame(tx).await?;
                continue;
            }
            let still_due = (!self.pending && !self.still_sent && self.shown.is_some())
                .then(|| self.input_at + STILL_AFTER);
            tokio::select! {
                m = inbox.recv() => {
                    let Some(m) = m else { return Ok(()) };
                    if !self.handle(m, tx).await? {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep_until(still_due.unwrap_or_else(Instant::now).into()),
                    if still_due.is_some() => {
                    self.send_still(tx).await?;
                }
            }
        }
    }

    /// Applies one client message; false when the client has gone.
    async fn handle(&mut self, m: Inbound, tx: &mut Sink) -> Result<bool, StreamError> {
        let (msg, at) = match m {
            Inbound::Closed => return Ok(false),
            Inbound::Message(Err(e), _) => {
                send_json(tx, error_message(None, &e)).await?;
                return Ok(true);
            }
            Inbound::Message(Ok(msg), at) => (msg, at),
        };
        match msg {
            ClientMessage::Open(o) => self.open(o, at, tx).await?,
            ClientMessage::View(c) => {
                let Some(series) = &self.series else {
                    send_json(tx, error_message(Some(c.seq), "open a series first")).await?;
                    return Ok(true);
                };
                match self.state.apply(&c, series.slices.len() as u32) {
                    Ok(next) => {
                        if next.qp != self.state.qp {
                            self.force_keyframe = true;
                        }
                        self.state = next;
                        self.input_seq = c.seq;
                        self.input_at = at;
                        self.pending = self.state.frame.is_some();
                        self.still_sent = false;
                    }
                    Err(e) => send_json(tx, error_message(Some(c.seq), &e)).await?,
                }
            }
            ClientMessage::Ack(a) => {
                if a.frame > self.frames_sent {
                    let e = format!("frame {} has not been sent", a.frame);
                    send_json(tx, error_message(None, &e)).await?;
                } else {
                    self.acked = self.acked.max(a.frame);
                }
            }
            ClientMessage::Keyframe(_) => {
                self.force_keyframe = true;
                self.pending = self.series.is_some() && self.state.frame.is_some();
            }
        }
        Ok(true)
    }

    async fn open(&mut self, o: OpenSeries, at: Instant, tx: &mut Sink) -> Result<(), StreamError> {
        let found = match (
            crate::ingest::is_valid_uid(&o.study),
            crate::ingest::is_valid_uid(&o.series),
        ) {
            (true, true) => self
                .archive
                .index
                .instances_under(
                    o.study.clone(),
                    Some(o.series.clone()),
                    None,
                    self.caller.scope(),
                )
                .await
                .map_err(|e| e.to_string()),
            _ => Err("study and series must be valid DICOM UIDs".to_string()),
        };
        let opened = found.and_then(|refs| {
            if refs.is_empty() {
                return Err(format!("no series {} in study {}", o.series, o.study));
            }
            let opened = open_series(&refs)?;
            Ok((refs[0].patient_id.clone(), opened))
        });
        let (patient, opened) = match opened {
            Ok(x) => x,
            Err(e) => {
                // A caller limited to one person's studies is refused here as an HTTP route
                // refuses with 404: the same answer as for nothing there, and an audit event.
                if self.caller.scope() != crate::index::Scope::All {
                    let event = self
                        .caller
                        .event("http.stream.open", Outcome::Denied)
                        .patient(None, Some(o.study.clone()))
                        .detail(format!(
                            "series {}: outside the caller's studies or absent",
                            o.series
                        ));
                    if let Err(e) = self.archive.index.audit_read(event).await {
                        tracing::error!("audit failed: {e}");
                    }
                }
                send_json(tx, error_message(None, &e)).await?;
                return Ok(());
            }
        };
        let event = self
            .caller
            .event("http.stream.open", Outcome::Success)
            .patient(Some(patient), Some(opened.study.clone()))
            .detail(format!(
                "series {}, {} slices",
                opened.series,
                opened.slices.len()
            ));
        if let Err(e) = self.archive.index.audit_read(event).await {
            // no access without its audit event
            tracing::error!("audit failed: {e}");
            let msg = error_message(None, "the archive cannot record the access now");
            send_json(tx, msg).await?;
            return Ok(());
        }
        send_json(tx, opened.metadata.clone()).await?;
        self.state = ViewState {
            frame: self.state.frame,
            qp: self.state.qp,
            ..ViewState::default()
        };
        self.series = Some(opened);
        // the first frame waits for the client's first view state, so every frame answers an
        // input of this series
        self.force_keyframe = true;
        self.input_at = at;
        self.pending = false;
        self.still_sent = true;
        self.shown = None;
        Ok(())
    }

    /// Renders the newest state, encodes and sends it.
    async fn send_frame(&mut self, tx: &mut Sink) -> Result<(), StreamError> {
        self.pending = false;
        let (Some(series), Some((fw, fh))) = (&self.series, self.state.frame) else {
            return Ok(());
        };
        let state = self.state;
        let input_seq = self.input_seq;
        let slice = &series.slices[state.slice as usize];
        let started = Instant::now();
        let rendered = super::render_instance(
            &self.archive,
            &slice.sop_uid,
            slice.frame,
            state.view(),
            Priority::Interactive,
        )
        .await;
        let rendered = match rendered {
            Ok(r) => Arc::new(r),
            Err(e) => {
                let msg = format!(
                    "slice {} of {} of series {} cannot be shown: {e}",
                    state.slice + 1,
                    series.slices.len(),
                    series.series
                );
                return send_json(tx, error_message(Some(input_seq), &msg)).await;
            }
        };
        let rendered_at = Instant::now();
        // While the user scrolls, decode the neighbouring slices before they are asked for.
        let here = state.slice as usize;
        let neighbours: Vec<String> = series
            .slices
            .iter()
            .enumerate()
            .filter(|(i, s)| s.frame == 0 && *i != here && i.abs_diff(here) <= PREFETCH_SLICES)
            .map(|(_, s)| s.sop_uid.clone())
            .collect();
        super::prefetch(&self.archive, &neighbours);
        let mut encoder = match self.encoder.take() {
            Some(e) if e.width() == fw && e.height() == fh => e,
            _ => {
                self.force_keyframe = false; // a new encoder starts with one
                H264Encoder::new(fw, fh, state.qp)?
            }
        };
        encoder.set_qp(state.qp)?;
        if std::mem::take(&mut self.force_keyframe) {
            encoder.force_keyframe();
        }
        let r = rendered.clone();
        let (encoder, placed) = tokio::task::spawn_blocking(move || {
            let (pixels, x, y) = place(&r, fw, fh);
            let encoded = if r.channels == 3 {
                encoder.encode_rgb(&pixels)
            } else {
                encoder.encode_grey(&pixels)
            };
            (encoder, encoded.map(|e| (e, x, y)))
        })
        .await
        .map_err(|e| StreamError::Task(e.to_string()))?;
        self.encoder = Some(encoder);
        let (EncodedFrame { annex_b, keyframe }, x, y) = placed?;
        let encoded_at = Instant::now();
        self.frames_sent += 1;
        let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
        let header = Header {
            kind: KIND_FRAME,
            flags: if keyframe { FLAG_KEYFRAME } else { 0 },
            frame: self.frames_sent,
            input_seq,
            slice: state.slice,
            width: fw as u16,
            height: fh as u16,
            wait_us: us(started - self.input_at.min(started)),
            render_us: us(rendered_at - started),
            encode_us: us(encoded_at - rendered_at),
            crc32: 0,
            x: 0,
            y: 0,
        };
        let bytes = annex_b.len();
        let mut msg = Vec::with_capacity(HEADER_LEN + bytes);
        msg.extend_from_slice(&header.to_bytes());
        msg.extend_from_slice(&annex_b);
        tx.send(Message::Binary(msg.into())).await?;
        tracing::debug!(
            frame = header.frame,
            input_seq,
            total_us = us(self.input_at.elapsed()),
            wait_us = header.wait_us,
            render_us = header.render_us,
            encode_us = header.encode_us,
            bytes,
            keyframe,
            "stream frame sent"
        );
        self.shown = Some(Shown {
            frame: header.frame,
            input_seq,
            slice: state.slice,
            rendered,
            x,
            y,
            render_us: header.render_us,
        });
        Ok(())
    }

    /// The exact render of the last frame, as PNG with the CRC-32 of its pixels.
    async fn send_still(&mut self, tx: &mut Sink) -> Result<(), StreamError> {
        self.still_sent = true;
        let Some(shown) = &self.shown else {
            return Ok(());
        };
        let r = shown.rendered.clone();
        let started = Instant::now();
        let (png, crc) = tokio::task::spawn_blocking(move || (png(&r), crc32fast::hash(&r.pixels)))
            .await
            .map_err(|e| StreamError::Task(e.to_string()))?;
        let png = png.map_err(StreamError::Task)?;
        let header = Header {
            kind: KIND_STILL,
            flags: if shown.rendered.channels == 3 {
                FLAG_RGB
            } else {
                0
            },
            frame: shown.frame,
            input_seq: shown.input_seq,
            slice: shown.slice,
            width: shown.rendered.width as u16,
            height: shown.rendered.height as u16,
            wait_us: 0,
            render_us: shown.render_us,
            encode_us: started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
            crc32: crc,
            x: shown.x,
            y: shown.y,
        };
        let mut msg = Vec::with_capacity(HEADER_LEN + png.len());
        msg.extend_from_slice(&header.to_bytes());
        msg.extend_from_slice(&png);
        tx.send(Message::Binary(msg.into())).await?;
        Ok(())
    }
}

/// PNG of a render: fast compression, since it goes out once per pause.
fn png(r: &Rendered) -> Result<Vec<u8>, String> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::{ExtendedColorType, ImageEncoder};
    let mut out = Vec::new();
    let colour = if r.channels == 3 {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(&r.pixels, r.width, r.height, colour)
        .map_err(|e| format!("PNG: {e}"))?;
    Ok(out)
}

fn error_message(seq: Option<u32>, message: &str) -> Value {
    json!({ "type": "error", "seq": seq, "message": message })
}

async fn send_json(tx: &mut Sink, v: Value) -> Result<(), StreamError> {
    tx.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(sop: &str, number: i32, z: f64, frames: Option<u32>) -> InstanceRef {
        let mut meta = json!({
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00200013": {"vr": "IS", "Value": [number]},
            "00200032": {"vr": "DS", "Value": [-100.0, -100.0, z]},
            "00200037": {"vr": "DS", "Value": [1, 0, 0, 0, 1, 0]},
            "00280010": {"vr": "US", "Value": [64]},
            "00281050": {"vr": "DS", "Value": ["40"]},
            "00281051": {"vr": "DS", "Value": ["400"]},
        });
        if let Some(f) = frames {
            meta["00280008"] = json!({"vr": "IS", "Value": [f]});
        }
        InstanceRef {
            patient_id: "P1".into(),
            study_uid: "1.2.3".into(),
            series_uid: "1.2.3.4".into(),
            sop_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            blob_id: "0".repeat(64).parse().unwrap(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size: 1,
            metadata: meta.to_string(),
        }
    }

    #[test]
    fn slices_follow_the_normal_not_the_instance_number() {
        let refs = [
            instance("1.1", 1, 30.0, None),
            instance("1.2", 2, 10.0, None),
            instance("1.3", 3, 20.0, None),
        ];
        let s = open_series(&refs).unwrap();
        let order: Vec<_> = s.slices.iter().map(|s| s.sop_uid.as_str()).collect();
        assert_eq!(order, ["1.2", "1.3", "1.1"]);
        assert_eq!(s.metadata["positions"], json!([10.0, 20.0, 30.0]));
        assert_eq!(
            s.metadata["default_window"],
            json!({"center": 40.0, "width": 400.0})
        );
        assert_eq!(s.metadata["patient"]["name"], "Doe^Jane");
        // without positions, the instance number decides; frames follow each other
        let mut a = instance("2.1", 2, 0.0, Some(2));
        let mut b = instance("2.2", 1, 0.0, None);
        for r in [&mut a, &mut b] {
            let mut v: Value = serde_json::from_str(&r.metadata).unwrap();
            v.as_object_mut().unwrap().remove("00200032");
            r.metadata = v.to_string();
        }
        let s = open_series(&[a, b]).unwrap();
        let order: Vec<_> = s
            .slices
            .iter()
            .map(|s| (s.sop_uid.as_str(), s.frame))
            .collect();
        assert_eq!(order, [("2.2", 0), ("2.1", 0), ("2.1", 1)]);
        assert!(open_series(&[]).is_err());
    }

    #[test]
    fn view_changes_are_checked_and_presets_map_to_windows() {
        let s = ViewState::default();
        let parse = |j: &str| match serde_json::from_str::<ClientMessage>(j).unwrap() {
            ClientMessage::View(c) => c,
            m => panic!("{m:?}"),
        };
        let c = parse(r#"{"type":"view","seq":3,"slice":2,"preset":"lung","viewport":[1023,769]}"#);
        let n = s.apply(&c, 5).unwrap();
        assert_eq!(n.slice, 2);
        assert_eq!(n.frame, Some((1022, 768)));
        assert_eq!(n.view().window.unwrap().center, -600.0);
        for bad in [
            r#"{"type":"view","seq":1,"slice":5}"#,
            r#"{"type":"view","seq":1,"preset":"spleen"}"#,
            r#"{"type":"view","seq":1,"window":{"center":1,"width":0}}"#,
            r#"{"type":"view","seq":1,"zoom":0}"#,
            r#"{"type":"view","seq":1,"qp":60}"#,
        ] {
            assert!(s.apply(&parse(bad), 5).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"view","seq":1,"x":2}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shell"}"#).is_err());
        let pipeline: Vec<&str> = super::super::pipeline::presets("CT")
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            PRESETS.to_vec(),
            pipeline,
            "the stream offers the pipeline's presets"
        );
        assert_eq!(frame_size(5000, 3000), (3840, 2160));
        assert_eq!(frame_size(3000, 5000), (2160, 3840));
        assert_eq!(frame_size(1, 1), (16, 16));
    }

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
}
