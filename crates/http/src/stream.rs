//! `/api/stream`: one viewing session per WebSocket (protocol: schemas/render-stream.md).
//!
//! The client opens a series and sends view states (slice, window or preset, zoom, pan, viewport
//! size), each with a sequence number. The session renders only the newest state through
//! the archive's pictures service, encodes it with [`strata_render::h264`] and sends it as an H.264 frame;
//! states that arrive while a frame is being made replace each other, so the stale ones are
//! dropped before encoding, and an encoded frame is always sent (dropping one would break the
//! decoder's references). At most [`MAX_IN_FLIGHT`] frames wait for the client's
//! acknowledgement, so a slow client gets fewer, newer frames instead of a queue. About
//! [`STILL_AFTER`] after the last input the exact render goes out as PNG with its CRC-32, and then
//! nothing until the next input.
//!
//! Cine (`play`, `stop`): the session advances the slice on its own clock at the rate asked for
//! (else the series' own, from its Frame Time or Cine Rate), looping at the end, and renders
//! each step like an input. A step whose frame could not go out before the next one is due (the
//! client has not acknowledged, or rendering took longer than a period) is skipped, not queued:
//! a slow client sees the loop at its true speed with fewer frames. No still is sent while
//! playing; stopping settles on the slice shown with its lossless still.
//!
//! MPR (`open` with `mpr`): the session shows a plane (axial, coronal, sagittal, or one of
//! them turned about an axis) cut through the series' volume instead of its own slices; the
//! slices it scrolls through are the plane's depths, and a view may ask for a slab (MIP, MinIP,
//! average). The `series` message then carries the plane's geometry (`mpr`), so the client can
//! draw where other planes cross it. The volume is the archive's, shared by every view of the
//! series and kept within `render.volume_bytes`.
//!
//! What crosses the socket is series metadata (JSON), frames, stills and errors: never DICOM
//! bytes or original pixel values. Opening a series is audited like any access to patient data,
//! and so is each image the session shows, the first time it shows it (`http.stream.view`,
//! written while the frame goes out; a session whose view cannot be recorded stops showing).

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_render::h264::{self, EncodedFrame, H264Encoder};
use strata_render::picture::png;
use strata_render::stream::{
    place, ClientMessage, Header, MprSpec, OpenSeries, OpenedSeries, Play, ViewState,
    FLAG_KEYFRAME, FLAG_RGB, HEADER_LEN, KIND_FRAME, KIND_STILL, MAX_IN_FLIGHT, STILL_AFTER,
};
use strata_render::volume::{Geometry, Layout, Volume};
use strata_render::{Priority, Rendered};
use strata_services::auth::Holder;
use strata_services::auth::Permission;
use strata_services::pictures::WholeVolume;
use strata_services::ServiceError;

/// Largest client message: view states are a few hundred bytes.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Client messages queued while a frame is made; more than this and the reader waits.
const INBOX: usize = 256;

/// Slices on either side of the one shown that are decoded ahead (at the lowest priority), so
/// scrolling finds them in the decoded-frame cache.
const PREFETCH_SLICES: usize = 6;
/// Viewing sessions open at once on this node: each holds an encoder and renders on the shared
/// pool, so their number is what bounds the stream's memory and CPU.
pub const MAX_SESSIONS: usize = 256;
/// Viewing sessions one user may hold at once: a viewer uses one per viewport (four in a 2×2
/// layout), a few tabs more.
pub const MAX_SESSIONS_PER_USER: usize = 16;
/// Least time between two keyframes a client asks for: each costs a full encode; the ones
/// asked for sooner are folded into the next allowed one.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);

/// The sessions open now, in all and per user.
#[derive(Default)]
struct Sessions {
    by_user: HashMap<String, usize>,
    total: usize,
}

static SESSIONS: std::sync::LazyLock<std::sync::Mutex<Sessions>> =
    std::sync::LazyLock::new(Default::default);

/// One session's place among [`MAX_SESSIONS`], given back when it ends.
struct SessionSlot {
    user: String,
}

impl SessionSlot {
    fn take(user: &str) -> Result<SessionSlot, Problem> {
        let mut s = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.by_user.get(user).copied().unwrap_or(0);
        if s.total >= MAX_SESSIONS || mine >= MAX_SESSIONS_PER_USER {
            let why = if mine >= MAX_SESSIONS_PER_USER {
                format!("{user} has {MAX_SESSIONS_PER_USER} viewing sessions open already")
            } else {
                format!("this node serves {MAX_SESSIONS} viewing sessions already")
            };
            return Err(Problem::new(StatusCode::TOO_MANY_REQUESTS, why));
        }
        s.total += 1;
        *s.by_user.entry(user.to_string()).or_default() += 1;
        Ok(SessionSlot {
            user: user.to_string(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut s = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                s.by_user.remove(&self.user);
            }
        }
    }
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
    let slot = SessionSlot::take(&caller.principal.user)?;
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let remote = caller.remote.clone();
            if let Err(e) = serve(archive, caller, socket).await {
                tracing::debug!(%remote, "stream ended: {e}");
            }
            drop(slot);
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

/// A cine loop playing.
struct Cine {
    fps: f64,
    period: Duration,
    /// When the next step is due.
    next: Instant,
    /// Frames sent while playing, and steps skipped (never shown).
    sent: u32,
    skipped: u32,
}

impl Cine {
    fn new(fps: f64, from: Instant) -> Cine {
        let period = Duration::from_secs_f64(1.0 / fps);
        Cine {
            fps,
            period,
            next: from + period,
            sent: 0,
            skipped: 0,
        }
    }

    /// Moves the clock past `now`: the number of steps due (more than one when a whole period
    /// or more was missed; those are not caught up, the loop keeps its speed).
    fn steps_due(&mut self, now: Instant) -> u32 {
        if now < self.next {
            return 0;
        }
        let late = (now - self.next).as_secs_f64() / self.period.as_secs_f64();
        let steps = late as u32 + 1;
        self.next += self.period * steps;
        steps
    }
}

/// The largest side of a reformatted image, in pixels: a volume wider than this many of its
/// finest voxels is shown with coarser ones.
pub const MPR_MAX_SIDE: u32 = 1024;

/// An MPR view: the series' volume and how the plane cuts it.
struct Mpr {
    /// What the plane is cut from: the whole volume, or a coarse one while that is built.
    volume: Arc<Volume>,
    layout: Arc<Layout>,
    /// While the whole volume is built: it, when done (the view then shows it, and only then
    /// settles on its lossless still).
    whole: Option<WholeVolume>,
}

/// The plane's geometry as the `series` message gives it: where image point (x, y) of slice k
/// lies is `corner + x·pixel_mm·across + y·pixel_mm·down + depths[k]·normal` (patient
/// coordinates, mm).
fn mpr_metadata(spec: &MprSpec, g: &Geometry, layout: &Layout) -> Value {
    json!({
        "plane": spec.plane,
        "rotate": spec.rotate.map(|r| json!({"axis": r.axis, "degrees": r.degrees})),
        "across": layout.plane.across,
        "down": layout.plane.down,
        "normal": layout.plane.normal,
        "corner": layout.corner,
        "pixel_mm": layout.pixel_mm,
        "depths": layout.depths,
        "source_slices": g.depths.len(),
        "spacing": [g.spacing.0, g.spacing.1],
        "even": g.even(),
        "tilt_degrees": g.tilt_degrees,
    })
}

struct Session {
    archive: Arc<Archive>,
    caller: Caller,
    series: Option<OpenedSeries>,
    mpr: Option<Mpr>,
    /// An RT Dose series' own window, from no dose to its highest over every frame, so its
    /// dose map and legend keep one scale through the grid.
    dose_window: Option<strata_render::Window>,
    state: ViewState,
    /// The state changed since the last frame (or a keyframe was asked for).
    pending: bool,
    /// Sequence number of the newest input applied, and when it arrived.
    input_seq: u32,
    input_at: Instant,
    force_keyframe: bool,
    /// When the client last got a keyframe it asked for.
    keyframe_at: Option<Instant>,
    encoder: Option<H264Encoder>,
    frames_sent: u32,
    acked: u32,
    shown: Option<Shown>,
    still_sent: bool,
    /// The patient of the open series, and the images this session has shown (each audited
    /// once per session).
    patient: String,
    viewed: HashSet<String>,
    audit_failed: Arc<AtomicBool>,
    cine: Option<Cine>,
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
        mpr: None,
        dose_window: None,
        state: ViewState::default(),
        pending: false,
        input_seq: 0,
        input_at: Instant::now(),
        force_keyframe: true,
        keyframe_at: None,
        encoder: None,
        frames_sent: 0,
        acked: 0,
        shown: None,
        still_sent: true,
        patient: String::new(),
        viewed: HashSet::new(),
        audit_failed: Arc::new(AtomicBool::new(false)),
        cine: None,
    };
    let result = s.run(&mut tx, &mut inbox).await;
    reader.abort();
    let _ = tx.close().await;
    result
}

impl Session {
    /// The slices the open series scrolls through: its own, or its MPR plane's depths.
    fn slice_count(&self) -> u32 {
        match (&self.mpr, &self.series) {
            (Some(m), _) => m.layout.depths.len() as u32,
            (None, Some(s)) => s.slices.len() as u32,
            (None, None) => 0,
        }
    }

    /// Audits the first showing of an image in this session, while its frame goes out (a
    /// scroll through a series must not wait on the trail's commit for every slice). False
    /// once any view of the session failed to be recorded: then nothing more is shown.
    fn audit_view(&mut self, sop_uid: String) -> bool {
        if self.audit_failed.load(Ordering::Relaxed) {
            return false;
        }
        let Some(series) = &self.series else {
            return true;
        };
        if !self.viewed.insert(sop_uid.clone()) {
            return true;
        }
        let event = self
            .caller
            .event("http.stream.view", Outcome::Success)
            .patient(Some(self.patient.clone()), Some(series.study.clone()))
            .detail(sop_uid);
        let (archive, failed) = (self.archive.clone(), self.audit_failed.clone());
        tokio::spawn(async move {
            if let Err(e) = archive.audit().record_read(event).await {
                tracing::error!("audit failed: {e}");
                failed.store(true, Ordering::Relaxed);
            }
        });
        true
    }

    async fn run(
        &mut self,
        tx: &mut Sink,
        inbox: &mut tokio::sync::mpsc::Receiver<Inbound>,
    ) -> Result<(), StreamError> {
        // A node that stops closes its sessions as its listener closes ("going away"): the
        // viewer reconnects, through the load balancer, to a node that serves on.
        let mut closing = std::pin::pin!(self
            .archive
            .drain()
            .reached(strata_archive::drain::Phase::Closed));
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
            let whole = self.mpr.as_ref().and_then(|m| m.whole.clone());
            let still_due = (!self.pending
                && !self.still_sent
                && self.shown.is_some()
                && self.cine.is_none()
                && whole.is_none())
            .then(|| self.input_at + STILL_AFTER);
            let step_due = self.cine.as_ref().map(|c| c.next);
            let idle = Duration::from_secs(self.archive.config().http.stream_idle_seconds);
            tokio::select! {
                m = tokio::time::timeout(idle, inbox.recv()) => {
                    let Ok(m) = m else {
                        let why = format!("closed after {} s without a message", idle.as_secs());
                        send_json(tx, error_message(None, &why)).await?;
                        return Ok(());
                    };
                    let Some(m) = m else { return Ok(()) };
                    if !self.handle(m, tx).await? {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep_until(still_due.unwrap_or_else(Instant::now).into()),
                    if still_due.is_some() => {
                    self.send_still(tx).await?;
                }
                _ = tokio::time::sleep_until(step_due.unwrap_or_else(Instant::now).into()),
                    if step_due.is_some() => {
                    self.step(Instant::now());
                }
                built = async {
                    let mut rx = whole.clone()?;
                    let done = rx.wait_for(Option::is_some).await.ok()?.clone();
                    done
                }, if whole.is_some() => {
                    self.whole_volume(built, tx).await?;
                }
                _ = &mut closing => {
                    let frame = axum::extract::ws::CloseFrame {
                        code: axum::extract::ws::close_code::AWAY,
                        reason: "the node is stopping: reconnect".into(),
                    };
                    let _ = tx.send(Message::Close(Some(frame))).await;
                    return Ok(());
                }
            }
        }
    }

    /// The whole volume of the MPR view is built (or could not be): the view shows it from now
    /// on, the frame shown is made again from it, and the client is told.
    async fn whole_volume(
        &mut self,
        built: Option<Result<Arc<Volume>, String>>,
        tx: &mut Sink,
    ) -> Result<(), StreamError> {
        let Some(m) = &mut self.mpr else {
            return Ok(());
        };
        m.whole = None;
        match built {
            Some(Ok(volume)) => {
                m.volume = volume;
                send_json(tx, json!({"type": "volume", "complete": true})).await?;
                if self.shown.is_some() {
                    // the frame shown again, now exact; its still follows
                    self.pending = true;
                    self.still_sent = false;
                }
                Ok(())
            }
            failed => {
                let why = match failed {
                    Some(Err(e)) => e,
                    _ => "its build stopped".to_string(),
                };
                self.series = None;
                self.mpr = None;
                let msg = error_message(None, &format!("no MPR of this series: {why}"));
                send_json(tx, msg).await
            }
        }
    }

    /// The next step of a cine loop: the slice after the one shown (or after the ones skipped),
    /// to be rendered as soon as the client has room for a frame.
    fn step(&mut self, now: Instant) {
        let n = u64::from(self.slice_count());
        let Some(cine) = &mut self.cine else {
            return;
        };
        if n == 0 {
            return;
        }
        let steps = cine.steps_due(now);
        if steps == 0 {
            return;
        }
        // a step still pending was never shown, nor were the ones missed
        cine.skipped += steps - 1 + u32::from(self.pending);
        self.state.slice = ((u64::from(self.state.slice) + u64::from(steps)) % n) as u32;
        self.input_at = now;
        self.pending = self.state.frame.is_some();
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
            ClientMessage::Open(o) => {
                // the credential may have been revoked, or the session ended, since the socket
                // opened: asked again at every series opened
                let still = self.caller.credential.holder(&self.archive).await;
                if !matches!(still, Ok(Some(Holder::Principal(_)))) {
                    let msg = "the session or token of this socket is no longer valid";
                    send_json(tx, error_message(None, msg)).await?;
                    return Ok(false);
                }
                self.open(o, at, tx).await?
            }
            ClientMessage::View(c) => {
                if self.series.is_none() {
                    send_json(tx, error_message(Some(c.seq), "open a series first")).await?;
                    return Ok(true);
                }
                if c.slab.is_some() && self.mpr.is_none() {
                    let e = "a slab is for MPR views: open the series with mpr";
                    send_json(tx, error_message(Some(c.seq), e)).await?;
                    return Ok(true);
                }
                match self.state.apply(&c, self.slice_count()) {
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
                // a keyframe is a full encode: one per KEYFRAME_INTERVAL at most; one asked
                // for sooner is dropped (the last one is at most that old)
                let due = self
                    .keyframe_at
                    .is_none_or(|t| at.duration_since(t) >= KEYFRAME_INTERVAL);
                if due {
                    self.keyframe_at = Some(at);
                    self.force_keyframe = true;
                    self.pending = self.series.is_some() && self.state.frame.is_some();
                }
            }
            ClientMessage::Play(p) => self.play(p, at, tx).await?,
            ClientMessage::Stop(_) => {
                if let Some(cine) = self.cine.take() {
                    // settle on the slice shown: its still follows as after any input
                    self.input_at = at;
                    self.still_sent = false;
                    let stopped = json!({
                        "type": "cine", "playing": false, "fps": cine.fps,
                        "slice": self.state.slice, "sent": cine.sent, "skipped": cine.skipped,
                    });
                    send_json(tx, stopped).await?;
                }
            }
        }
        Ok(true)
    }

    /// Starts (or changes the rate of) the cine loop, from the slice shown.
    async fn play(&mut self, p: Play, at: Instant, tx: &mut Sink) -> Result<(), StreamError> {
        let Some(series) = &self.series else {
            return send_json(tx, error_message(None, "open a series first")).await;
        };
        match p.rate(series.cine_fps) {
            Ok(fps) => {
                self.cine = Some(Cine::new(fps, at));
                let playing = json!({
                    "type": "cine", "playing": true, "fps": fps, "slice": self.state.slice,
                });
                send_json(tx, playing).await
            }
            Err(e) => send_json(tx, error_message(None, &e)).await,
        }
    }

    async fn open(&mut self, o: OpenSeries, at: Instant, tx: &mut Sink) -> Result<(), StreamError> {
        let found = match (
            strata_dicom::is_valid_uid(&o.study),
            strata_dicom::is_valid_uid(&o.series),
        ) {
            (true, true) => self
                .archive
                .reads()
                .resolve(&o.study, Some(&o.series), None, self.caller.scope())
                .await
                .map_err(|e| match e {
                    ServiceError::NotInScope => {
                        format!("no series {} in study {}", o.series, o.study)
                    }
                    e => e.to_string(),
                }),
            _ => Err("study and series must be valid DICOM UIDs".to_string()),
        };
        let opened = match found {
            Ok(refs) => (self.archive.pictures().open_series(&refs).await)
                .map(|opened| (refs[0].patient_id.clone(), opened)),
            Err(e) => Err(e),
        };
        let opened = match (opened, &o.mpr) {
            (Ok((patient, mut opened)), Some(spec)) => {
                match self.open_mpr(spec, &opened).await {
                    Ok((mpr, detail)) => {
                        // the plane's depths are the slices; it has no instances of its own
                        let m = &mut opened.metadata;
                        m["slices"] = json!(mpr.layout.depths.len());
                        m["positions"] = json!(mpr.layout.depths);
                        m["planes"] = json!([]); // `mpr` says where the plane's slices lie
                        m["instances"] = json!([]);
                        m["rows"] = json!(mpr.layout.rows);
                        m["columns"] = json!(mpr.layout.columns);
                        m["pixel_spacing"] = json!([mpr.layout.pixel_mm, mpr.layout.pixel_mm]);
                        m["mpr"] = detail;
                        Ok((patient, opened, Some(mpr)))
                    }
                    Err(e) => Err(e),
                }
            }
            (Ok((patient, opened)), None) => Ok((patient, opened, None)),
            (Err(e), _) => Err(e),
        };
        let opened = match opened {
            Ok((patient, mut opened, mpr)) if opened.metadata["modality"] == "RTDOSE" => {
                match self.dose_legend(&opened).await {
                    Ok(legend) => {
                        opened.metadata["dose"] = legend;
                        Ok((patient, opened, mpr))
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        let (patient, opened, mpr) = match opened {
            Ok(x) => x,
            Err(e) => {
                // A caller limited to one person's studies is refused here as an HTTP route
                // refuses with 404: the same answer as for nothing there, and an audit event.
                if self.caller.scope() != strata_index::Scope::All {
                    let event = self
                        .caller
                        .event("http.stream.open", Outcome::Denied)
                        .patient(None, Some(o.study.clone()))
                        .detail(format!(
                            "series {}: outside the caller's studies or absent",
                            o.series
                        ));
                    if let Err(e) = self.archive.audit().record_read(event).await {
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
            .patient(Some(patient.clone()), Some(opened.study.clone()))
            .detail(match &mpr {
                None => format!("series {}, {} slices", opened.series, opened.slices.len()),
                Some(m) => format!(
                    "series {}, {} slices, MPR {} of {} planes",
                    opened.series,
                    opened.slices.len(),
                    o.mpr.as_ref().map_or("", |s| s.plane.as_str()),
                    m.layout.depths.len()
                ),
            });
        if let Err(e) = self.archive.audit().record_read(event).await {
            // no access without its audit event
            tracing::error!("audit failed: {e}");
            let msg = error_message(None, "the archive cannot record the access now");
            send_json(tx, msg).await?;
            return Ok(());
        }
        send_json(tx, opened.metadata.clone()).await?;
        self.patient = patient;
        self.state = ViewState {
            frame: self.state.frame,
            qp: self.state.qp,
            ..ViewState::default()
        };
        self.dose_window = opened.metadata["dose"]["max"]
            .as_f64()
            .map(strata_render::pipeline::dose_window);
        if let Some(m) = &mpr {
            // a plane opens at the middle of the volume
            self.state.slice = (m.layout.depths.len() / 2) as u32;
        }
        self.series = Some(opened);
        self.mpr = mpr;
        self.cine = None;
        // the first frame waits for the client's first view state, so every frame answers an
        // input of this series
        self.force_keyframe = true;
        self.input_at = at;
        self.pending = false;
        self.still_sent = true;
        self.shown = None;
        Ok(())
    }

    /// An RT Dose series' legend: its units, its highest dose over every frame (the top of the
    /// scale) and the colours from none to that.
    async fn dose_legend(&self, opened: &OpenedSeries) -> Result<Value, String> {
        let frames: Vec<(String, u32)> = opened
            .slices
            .iter()
            .map(|s| (s.sop_uid.clone(), s.frame))
            .collect();
        let top = self
            .archive
            .pictures()
            .largest_value(&frames)
            .await
            .map_err(|e| format!("the dose grid cannot be read: {e}"))?;
        Ok(json!({
            "units": opened.metadata["dose_units"],
            "max": top,
            "colours": strata_render::pipeline::DOSE_COLOURS,
        }))
    }

    /// The series' volume and the plane asked for, with the plane's geometry for the client.
    async fn open_mpr(
        &self,
        spec: &MprSpec,
        opened: &OpenedSeries,
    ) -> Result<(Mpr, Value), String> {
        let plane = spec.plane()?;
        let shown = self
            .archive
            .pictures()
            .volume(opened)
            .await
            .map_err(|e| format!("no MPR of this series: {e}"))?;
        let layout = shown.geometry.layout(plane, MPR_MAX_SIDE);
        let mut detail = mpr_metadata(spec, &shown.geometry, &layout);
        detail["complete"] = json!(shown.whole.is_none());
        Ok((
            Mpr {
                volume: shown.volume,
                layout: Arc::new(layout),
                whole: shown.whole,
            },
            detail,
        ))
    }

    /// Renders the newest state, encodes and sends it.
    async fn send_frame(&mut self, tx: &mut Sink) -> Result<(), StreamError> {
        self.pending = false;
        let (Some(series), Some((fw, fh))) = (&self.series, self.state.frame) else {
            return Ok(());
        };
        let state = self.state;
        let input_seq = self.input_seq;
        let started = Instant::now();
        // A new encoder (tens of ms: the first frame of a view, or a new size) is made while the
        // frame renders, off the runtime's threads.
        let making = match &self.encoder {
            Some(e) if e.width() == fw && e.height() == fh => None,
            _ => Some(tokio::task::spawn_blocking(move || {
                H264Encoder::new(fw, fh, state.qp)
            })),
        };
        let (rendered, shown_as) = match &self.mpr {
            Some(m) => (
                self.archive
                    .pictures()
                    .render_plane(
                        m.volume.clone(),
                        m.layout.clone(),
                        state.slice as usize,
                        state.slab,
                        state.view(),
                        Priority::Interactive,
                    )
                    .await,
                // a plane shows every instance of the series: its view is recorded as the series'
                format!("series {} (MPR)", series.series),
            ),
            None => {
                let slice = &series.slices[state.slice as usize];
                let mut view = state.view();
                if view.window.is_none() {
                    view.window = self.dose_window;
                }
                let r = self
                    .archive
                    .pictures()
                    .render(&slice.sop_uid, slice.frame, view, Priority::Interactive)
                    .await;
                (r, slice.sop_uid.clone())
            }
        };
        let rendered = match rendered {
            Ok(r) => Arc::new(r),
            Err(e) => {
                let msg = format!(
                    "slice {} of {} of series {} cannot be shown: {e}",
                    state.slice + 1,
                    self.slice_count(),
                    series.series
                );
                return send_json(tx, error_message(Some(input_seq), &msg)).await;
            }
        };
        if !self.audit_view(shown_as) {
            self.series = None;
            let msg = error_message(Some(input_seq), "the archive cannot record the access now");
            return send_json(tx, msg).await;
        }
        let Some(series) = &self.series else {
            return Ok(());
        };
        let rendered_at = Instant::now();
        // While the user scrolls, decode the neighbouring slices before they are asked for.
        let here = state.slice as usize;
        if self.mpr.is_none() {
            let neighbours: Vec<String> = series
                .slices
                .iter()
                .enumerate()
                .filter(|(i, s)| s.frame == 0 && *i != here && i.abs_diff(here) <= PREFETCH_SLICES)
                .map(|(_, s)| s.sop_uid.clone())
                .collect();
            self.archive.pictures().prefetch(&neighbours);
        }
        let mut encoder = match (making, self.encoder.take()) {
            (None, Some(e)) => e,
            (making, _) => {
                self.force_keyframe = false; // a new encoder starts with one
                match making {
                    Some(m) => m.await.map_err(|e| StreamError::Task(e.to_string()))??,
                    None => H264Encoder::new(fw, fh, state.qp)?,
                }
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
        self.archive
            .metrics()
            .observe("render", "h264_encode", encoded_at - rendered_at);
        self.frames_sent += 1;
        if let Some(cine) = &mut self.cine {
            cine.sent += 1;
        }
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
        self.archive
            .metrics()
            .observe("render", "still_encode", started.elapsed());
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

    #[test]
    fn a_cine_clock_skips_what_it_missed_instead_of_catching_up() {
        let t0 = Instant::now();
        let mut c = Cine::new(10.0, t0);
        assert_eq!(c.steps_due(t0 + Duration::from_millis(50)), 0);
        assert_eq!(c.steps_due(t0 + Duration::from_millis(100)), 1);
        assert_eq!(c.next, t0 + Duration::from_millis(200));
        // 350 ms late: the steps at 200, 300 and 400 ms are due at once, the next at 500 ms
        assert_eq!(c.steps_due(t0 + Duration::from_millis(450)), 3);
        assert_eq!(c.next, t0 + Duration::from_millis(500));
    }
}
