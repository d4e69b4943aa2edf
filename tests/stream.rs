//! The render stream against the running binary, with a client in Rust (tokio-tungstenite and
//! openh264's decoder): a radiologist opens a generated CT series, scrolls and drags the window;
//! every frame decodes close to the exact render of its state, the lossless still is exact and
//! its CRC checks, a grey ramp survives the lowest QP, nothing else crosses the socket, and
//! errors leave the session usable.

mod common;

use common::{add_user, token, Server, TestArchive};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use futures::{SinkExt, StreamExt};
use openh264::formats::YUVSource;
use std::collections::HashMap;
use std::time::Duration;
use strata_render::stream::{Header, FLAG_KEYFRAME, KIND_FRAME, KIND_STILL};
use strata_render::{Rendered, View, VoiFunction, Window};
use strata_synth::{Modality, SynthOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, token: Option<&str>) -> Result<Socket, String> {
    let mut req = format!("ws://{}/api/stream", server.http)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// What the server sent, decoded.
enum Received {
    Json(serde_json::Value),
    Frame(Header),
    Still(Header, Vec<u8>),
}

/// The client: sends inputs, acknowledges and decodes every frame as it arrives.
struct Client {
    ws: Socket,
    decoder: openh264::decoder::Decoder,
    /// Every frame decoded: (header, luma of the frame size).
    frames: Vec<(Header, Vec<u8>)>,
    stills: Vec<(Header, Vec<u8>)>,
    bytes: usize,
    /// Whether frames are acknowledged (a client too slow to acknowledge does not).
    ack: bool,
}

impl Client {
    fn new(ws: Socket) -> Client {
        Client {
            ws,
            decoder: openh264::decoder::Decoder::new().unwrap(),
            frames: Vec::new(),
            stills: Vec::new(),
            bytes: 0,
            ack: true,
        }
    }

    async fn send(&mut self, v: serde_json::Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next message, or None after `wait` of silence. Frames are decoded and acknowledged;
    /// anything that is neither metadata, an error, a frame nor a still fails the test.
    async fn next(&mut self, wait: Duration) -> Option<Received> {
        let msg = match tokio::time::timeout(wait, self.ws.next()).await {
            Err(_) => return None,
            Ok(m) => m.expect("the socket stays open").expect("a message"),
        };
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                let kind = v["type"].as_str().unwrap_or("");
                assert!(
                    kind == "series" || kind == "error" || kind == "cine",
                    "unexpected message {v}"
                );
                Some(Received::Json(v))
            }
            Message::Binary(b) => {
                self.bytes += b.len();
                let (h, payload) = Header::parse(&b).expect("a header");
                match h.kind {
                    KIND_FRAME => {
                        assert!(payload.starts_with(&[0, 0, 0, 1]), "Annex B");
                        let (w, hgt) = (h.width as usize, h.height as usize);
                        let yuv = self
                            .decoder
                            .decode(payload)
                            .expect("the frame decodes")
                            .expect("every frame gives a picture");
                        assert_eq!(yuv.dimensions(), (w, hgt));
                        let stride = yuv.strides().0;
                        let luma: Vec<u8> = (0..hgt)
                            .flat_map(|y| yuv.y()[y * stride..y * stride + w].to_vec())
                            .collect();
                        // chroma stays neutral: grey in, grey out
                        assert!(yuv.u().iter().all(|&c| c.abs_diff(128) <= 2));
                        if self.ack {
                            let ack = serde_json::json!({"type": "ack", "frame": h.frame});
                            self.ws.send(Message::text(ack.to_string())).await.unwrap();
                        }
                        self.frames.push((h, luma));
                        Some(Received::Frame(h))
                    }
                    KIND_STILL => {
                        assert!(payload.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
                        let img = image::load_from_memory(payload).expect("the PNG decodes");
                        let pixels = img.to_luma8().into_raw();
                        assert_eq!(
                            crc32fast::hash(&pixels),
                            h.crc32,
                            "the still's CRC matches its pixels"
                        );
                        self.stills.push((h, pixels.clone()));
                        Some(Received::Still(h, pixels))
                    }
                    k => panic!("unknown binary message kind {k}"),
                }
            }
            Message::Ping(_) | Message::Pong(_) => Box::pin(self.next(wait)).await,
            m => panic!("unexpected message {m:?}"),
        }
    }

    /// Reads (decoding and acknowledging) whatever comes for `d`, as a viewer does between
    /// inputs; errors fail the test.
    async fn pump(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            if let Some(Received::Json(v)) = self.next(left).await {
                panic!("unexpected {v}");
            }
        }
    }

    async fn json(&mut self) -> serde_json::Value {
        loop {
            match self.next(Duration::from_secs(30)).await {
                Some(Received::Json(v)) => return v,
                Some(_) => continue,
                None => panic!("no JSON message within 30 s"),
            }
        }
    }

    /// Reads until the still for input `seq` arrives.
    async fn until_still(&mut self, seq: u32) -> (Header, Vec<u8>) {
        loop {
            match self.next(Duration::from_secs(30)).await {
                Some(Received::Still(h, p)) if h.input_seq == seq => return (h, p),
                Some(Received::Json(v)) if v["type"] == "error" => panic!("error: {v}"),
                Some(_) => continue,
                None => panic!("no still for input {seq} within 30 s"),
            }
        }
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// A one-slice study whose pixels are a horizontal 0–255 ramp (8-bit, no rescale), windowed so
/// the render is the ramp itself.
fn ramp_file(path: &std::path::Path) {
    let (rows, cols) = (64u16, 256u16);
    let mut obj = dicom_object::InMemDicomObject::new_empty();
    let texts = [
        (
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        (
            tags::SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.7.3",
        ),
        (
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.7.1",
        ),
        (
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.7.2",
        ),
        (tags::MODALITY, VR::CS, "OT"),
        (tags::PATIENT_ID, VR::LO, "RAMP1"),
        (tags::PATIENT_NAME, VR::PN, "Ramp^Grey"),
        (tags::INSTANCE_NUMBER, VR::IS, "1"),
        (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        (tags::WINDOW_CENTER, VR::DS, "127.5"),
        (tags::WINDOW_WIDTH, VR::DS, "256"),
    ];
    for (tag, vr, v) in texts {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }
    for (tag, v) in [
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::ROWS, rows),
        (tags::COLUMNS, cols),
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    let pixels: Vec<u8> = (0..rows).flat_map(|_| 0..=255u8).collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    write(obj, path);
}

/// A CT instance whose pixel data is far shorter than its rows and columns say.
fn broken_file(path: &std::path::Path) {
    let mut obj = dicom_object::InMemDicomObject::new_empty();
    let texts = [
        (tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        (
            tags::SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.8.3",
        ),
        (
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.8.1",
        ),
        (
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1.8.2",
        ),
        (tags::MODALITY, VR::CS, "CT"),
        (tags::PATIENT_ID, VR::LO, "BROKEN1"),
        (tags::INSTANCE_NUMBER, VR::IS, "1"),
        (tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
    ];
    for (tag, vr, v) in texts {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }
    for (tag, v) in [
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::ROWS, 512),
        (tags::COLUMNS, 512),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 12),
        (tags::HIGH_BIT, 11),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(vec![7u8; 16]),
    ));
    write(obj, path);
}

fn write(obj: dicom_object::InMemDicomObject, path: &std::path::Path) {
    let file = obj
        .with_meta(
            dicom_object::meta::FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        )
        .unwrap();
    file.write_to_file(path).unwrap();
}

/// The window a state asked for, as the test sent it.
#[derive(Clone, Copy)]
struct Sent {
    slice: u32,
    window: Option<(f64, f64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radiologist_scrolls_and_windows_a_ct_series() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 6,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 8,
            rows: 256,
            cols: 256,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    std::fs::create_dir_all(t.path("in/extra")).unwrap();
    ramp_file(&t.path("in/extra/ramp.dcm"));
    broken_file(&t.path("in/extra/broken.dcm"));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let first = dicom_object::open_file(&files[0]).unwrap();
    let uid = |tag| {
        first
            .element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let (study, series) = (
        uid(tags::STUDY_INSTANCE_UID),
        uid(tags::SERIES_INSTANCE_UID),
    );
    add_user(&t, "reader", "radiologist");
    add_user(&t, "robot", "modality");
    let server = t.serve();

    // no credentials, or a role without access: no socket
    let Err(refused) = connect(&server, None).await else {
        panic!("a connection without credentials was accepted")
    };
    assert!(refused.contains("401"), "{refused}");
    let Err(refused) = connect(&server, Some(&token(&t, "robot"))).await else {
        panic!("a modality's connection was accepted")
    };
    assert!(refused.contains("403"), "{refused}");

    let mut c = Client::new(connect(&server, Some(&token(&t, "reader"))).await.unwrap());
    c.send(serde_json::json!({"type": "open", "study": study, "series": series}))
        .await;
    let meta = c.json().await;
    assert_eq!(meta["type"], "series", "{meta}");
    assert_eq!(meta["slices"], 8);
    let positions: Vec<f64> = meta["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(meta["patient"]["id"], uid(tags::PATIENT_ID));
    let default_window = (
        meta["default_window"]["center"].as_f64().unwrap(),
        meta["default_window"]["width"].as_f64().unwrap(),
    );

    // scroll through every slice, then drag the window, as fast as inputs come
    let mut sent: HashMap<u32, Sent> = HashMap::new();
    let mut seq = 0;
    let mut state = Sent {
        slice: 0,
        window: None,
    };
    for slice in 0..8u32 {
        seq += 1;
        state.slice = slice;
        sent.insert(seq, state);
        let mut v = serde_json::json!({"type": "view", "seq": seq, "slice": slice});
        if seq == 1 {
            v["viewport"] = serde_json::json!([256, 256]);
        }
        c.send(v).await;
        c.pump(Duration::from_millis(30)).await;
    }
    for step in 0..8 {
        seq += 1;
        let w = (
            default_window.0 + 10.0 * f64::from(step),
            default_window.1 + 40.0 * f64::from(step),
        );
        state.window = Some(w);
        sent.insert(seq, state);
        c.send(serde_json::json!({"type": "view", "seq": seq, "window": {"center": w.0, "width": w.1}}))
            .await;
        c.pump(Duration::from_millis(30)).await;
    }
    let (still, still_pixels) = c.until_still(seq).await;
    let distinct = still_pixels
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct > 20,
        "a CT slice has many grey levels, this has {distinct}"
    );
    assert_eq!(still.slice, 7);
    assert!(c.frames.len() >= 2, "{} frames", c.frames.len());
    assert!(
        c.frames[0].0.flags & 1 == 1,
        "the first frame is a keyframe"
    );
    assert!(
        c.frames
            .windows(2)
            .all(|w| w[0].0.frame + 1 == w[1].0.frame),
        "no frame is ever dropped"
    );
    let last = c.frames.last().unwrap().0;
    assert_eq!(last.input_seq, seq, "the last state is on screen");
    assert_eq!(still.frame, last.frame);
    // idle after the still: nothing at all
    assert!(c.next(Duration::from_millis(500)).await.is_none());

    // a preset, then a keyframe on demand
    seq += 1;
    c.send(serde_json::json!({"type": "view", "seq": seq, "preset": "lung"}))
        .await;
    sent.insert(
        seq,
        Sent {
            slice: 7,
            window: Some((-600.0, 1500.0)),
        },
    );
    c.until_still(seq).await;
    c.send(serde_json::json!({"type": "keyframe"})).await;
    match c.next(Duration::from_secs(30)).await {
        Some(Received::Frame(h)) => assert!(h.flags & 1 == 1, "a keyframe"),
        _ => panic!("a keyframe was asked for"),
    }

    // bad input: an error, and the session goes on
    c.send(serde_json::json!({"type": "view", "seq": 99, "slice": 8}))
        .await;
    let e = c.json().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["seq"], 99);
    c.send(serde_json::json!({"type": "open", "study": study, "series": "1.2.3.999"}))
        .await;
    assert_eq!(c.json().await["type"], "error");
    c.send(serde_json::json!({"type": "bogus"})).await;
    assert_eq!(c.json().await["type"], "error");

    // a series that cannot be decoded: an error on the stream, then another series works
    c.send(
        serde_json::json!({"type": "open", "study": "1.2.826.0.1.3680043.10.1.8.1",
        "series": "1.2.826.0.1.3680043.10.1.8.2"}),
    )
    .await;
    assert_eq!(c.json().await["type"], "series");
    c.send(serde_json::json!({"type": "view", "seq": 150}))
        .await;
    let e = c.json().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["seq"], 150);
    assert!(
        e["message"].as_str().unwrap().contains("cannot be shown"),
        "{e}"
    );

    // the ramp at the lowest QP comes back within ±1
    c.send(
        serde_json::json!({"type": "open", "study": "1.2.826.0.1.3680043.10.1.7.1",
        "series": "1.2.826.0.1.3680043.10.1.7.2"}),
    )
    .await;
    assert_eq!(c.json().await["type"], "series");
    c.send(serde_json::json!({"type": "view", "seq": 200, "viewport": [256, 64], "qp": 0}))
        .await;
    let (rh, ramp) = c.until_still(200).await;
    assert_eq!((rh.width, rh.height, rh.x, rh.y), (256, 64, 0, 0));
    for row in ramp.chunks(256) {
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "a ramp");
        assert_eq!((row[0], row[255]), (0, 255), "the full grey range");
    }
    let (fh, luma) = c.frames.last().unwrap();
    assert_eq!(fh.input_seq, 200);
    let worst = luma
        .iter()
        .zip(&ramp)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "ramp at QP 0: worst difference {worst}");
    let ct_frames: Vec<(Header, Vec<u8>)> = c
        .frames
        .iter()
        .filter(|(h, _)| sent.contains_key(&h.input_seq))
        .cloned()
        .collect();
    assert!(
        ct_frames.len() >= 4,
        "{} frames of the CT series",
        ct_frames.len()
    );
    drop(c);

    // the audit trail has every series opened
    let audit = t.ok(&["audit", "list", "--action", "http.stream.open"]);
    assert!(audit.matches("http.stream.open").count() >= 3, "{audit}");
    assert!(audit.contains(&uid(tags::PATIENT_ID)), "{audit}");
    assert!(audit.contains(&series), "the series is named: {audit}");
    // and every image shown, named once per session when it is first shown
    let views = t.ok(&["audit", "list", "--action", "http.stream.view"]);
    let ct_sops: Vec<String> = files.iter().map(|f| common::sop_uid(f)).collect();
    let shown: std::collections::BTreeSet<u32> = ct_frames.iter().map(|(h, _)| h.slice).collect();
    let viewed: std::collections::BTreeSet<&String> = ct_sops
        .iter()
        .filter(|sop| views.contains(sop.as_str()))
        .collect();
    assert!(
        viewed.len() >= shown.len(),
        "{} CT slices shown, {} audited: {views}",
        shown.len(),
        viewed.len()
    );

    // Against the server's own render, computed here on the same data: every frame of the CT
    // series is close, and the still is exact.
    drop(server);
    let archive = t.open_archive().await;
    let sop_of: Vec<String> = {
        let refs = archive
            .index()
            .instances_under(
                study.clone(),
                Some(series.clone()),
                None,
                strata_index::Scope::All,
            )
            .await
            .unwrap();
        archive
            .pictures()
            .open_series(&refs)
            .await
            .unwrap()
            .slices
            .into_iter()
            .map(|s| s.sop_uid)
            .collect()
    };
    let render = |s: Sent| {
        let archive = archive.clone();
        let sop = sop_of[s.slice as usize].clone();
        async move {
            let view = View {
                window: s.window.map(|(center, width)| Window {
                    center,
                    width,
                    function: VoiFunction::Linear,
                }),
                viewport: Some((256, 256)),
                ..View::default()
            };
            archive
                .pictures()
                .render(&sop, 0, view, strata_render::Priority::Interactive)
                .await
                .unwrap()
        }
    };
    let mut checked = 0;
    let mut worst = f64::INFINITY;
    for (h, luma) in &ct_frames {
        let s = sent[&h.input_seq];
        assert_eq!(h.slice, s.slice);
        let r = render(s).await;
        let (expected, _, _) = strata_render::stream::place(&r, 256, 256);
        let p = psnr(luma, &expected);
        assert!(
            p >= 42.0,
            "frame {} (slice {}): PSNR {p:.1} dB",
            h.frame,
            h.slice
        );
        worst = worst.min(p);
        checked += 1;
    }
    assert_eq!(checked, ct_frames.len());
    eprintln!("{checked} frames of the CT series, lowest PSNR {worst:.1} dB");
    let exact: Rendered = render(sent[&still.input_seq]).await;
    assert_eq!(
        (u32::from(still.width), u32::from(still.height)),
        (exact.width, exact.height)
    );
    assert!(
        still_pixels == exact.pixels,
        "the still is the server's render, exactly"
    );
}

/// The stream's own bounds: sessions per user, keyframes on demand, idle sockets, and a
/// credential revoked while its socket is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keyframes_idle_sockets_and_revoked_tokens_are_bounded() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 8,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 2,
            rows: 64,
            cols: 64,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    std::fs::write(
        t.data().join("strata.toml"),
        "[http]\nstream_idle_seconds = 2\n",
    )
    .unwrap();
    let [study, series, _] = common::uids(&files[0]);
    let open = serde_json::json!({"type": "open", "study": study, "series": series});
    add_user(&t, "reader", "radiologist");
    add_user(&t, "colleague", "radiologist");
    let server = t.serve();
    let reader = token(&t, "reader");
    let colleague = token(&t, "colleague");

    // 16 sessions a user; the 17th is refused until one ends
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(connect(&server, Some(&reader)).await.unwrap());
    }
    let Err(refused) = connect(&server, Some(&reader)).await else {
        panic!("a 17th session was accepted")
    };
    assert!(refused.contains("429"), "{refused}");
    connect(&server, Some(&colleague))
        .await
        .expect("another user has sessions of their own");
    let mut last = held.pop().unwrap();
    last.close(None).await.unwrap();
    drop(last);
    drop(held);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = connect(&server, Some(&reader)).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = Client::new(again.expect("a session again once one has ended"));

    // keyframes on demand: at most one per 250 ms, however many are asked for
    c.send(open.clone()).await;
    assert_eq!(c.json().await["type"], "series");
    c.send(serde_json::json!({"type": "view", "seq": 1, "slice": 0, "viewport": [64, 64]}))
        .await;
    c.until_still(1).await;
    let before = c.frames.len();
    for _ in 0..15 {
        c.send(serde_json::json!({"type": "keyframe"})).await;
        c.pump(Duration::from_millis(30)).await;
    }
    c.pump(Duration::from_millis(300)).await;
    let keyframes = c.frames[before..]
        .iter()
        .filter(|(h, _)| h.flags & FLAG_KEYFRAME != 0)
        .count();
    assert!(
        (1..=3).contains(&keyframes),
        "{keyframes} keyframes for 15 requests over 450 ms"
    );

    // a socket whose token is revoked is closed at the next series it opens
    let out = t.ok(&["token", "revoke", &reader]);
    assert!(out.contains("revoked"), "{out}");
    c.send(open.clone()).await;
    let refused = c.json().await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("no longer valid"),
        "{refused}"
    );

    // an idle socket is closed after http.stream_idle_seconds
    let mut idle = Client::new(connect(&server, Some(&colleague)).await.unwrap());
    let said = idle.json().await;
    assert!(
        said["message"]
            .as_str()
            .unwrap()
            .contains("closed after 2 s without a message"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cine_steps_on_the_servers_clock_and_skips_for_a_slow_client() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 9,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 6,
            rows: 64,
            cols: 64,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let [study, series, _] = common::uids(&files[0]);
    add_user(&t, "reader", "radiologist");
    let server = t.serve();
    let mut c = Client::new(connect(&server, Some(&token(&t, "reader"))).await.unwrap());

    c.send(serde_json::json!({"type": "play"})).await;
    let refused = c.json().await;
    assert_eq!(refused["message"], "open a series first", "{refused}");
    c.send(serde_json::json!({"type": "open", "study": study, "series": series}))
        .await;
    let opened = c.json().await;
    assert_eq!(opened["cine_fps"], 10.0, "a CT series has no frame time");
    c.send(serde_json::json!({"type": "view", "seq": 1, "slice": 4, "viewport": [64, 64]}))
        .await;
    c.until_still(1).await;
    for bad in [0.5, 61.0] {
        c.send(serde_json::json!({"type": "play", "fps": bad}))
            .await;
        let refused = c.json().await;
        assert!(
            refused["message"].as_str().unwrap().contains("1 to 60"),
            "{refused}"
        );
    }

    // 20 fps for 1.5 s: about 30 frames, each the next slice, looping after the sixth
    c.send(serde_json::json!({"type": "play", "fps": 20})).await;
    let playing = c.json().await;
    assert_eq!(
        playing,
        serde_json::json!({"type": "cine", "playing": true, "fps": 20.0, "slice": 4})
    );
    let before = c.frames.len();
    c.pump(Duration::from_millis(1500)).await;
    let slices: Vec<u32> = c.frames[before..].iter().map(|(h, _)| h.slice).collect();
    assert!(
        (24..=32).contains(&slices.len()),
        "{} frames in 1.5 s at 20 fps",
        slices.len()
    );
    assert_eq!(slices[0], 5, "{slices:?}");
    let steps_of_one = slices.windows(2).filter(|w| w[1] == (w[0] + 1) % 6).count();
    assert!(steps_of_one + 3 >= slices.len(), "{slices:?}");
    assert!(c.stills.len() == 1, "no still while playing");

    // a client that stops acknowledging gets at most two more frames, not a queue
    c.ack = false;
    let before = c.frames.len();
    c.pump(Duration::from_millis(1000)).await;
    let unacked = c.frames.len() - before;
    assert!(
        unacked <= 2,
        "{unacked} frames sent without acknowledgement"
    );
    c.ack = true;
    let last = c.frames.last().unwrap().0.frame;
    c.send(serde_json::json!({"type": "ack", "frame": last}))
        .await;

    // stop: the steps not shown are counted, and the slice shown settles lossless
    c.send(serde_json::json!({"type": "stop"})).await;
    let stopped = c.json().await;
    assert_eq!(stopped["playing"], false, "{stopped}");
    assert!(stopped["skipped"].as_u64().unwrap() >= 15, "{stopped}");
    let (still, _) = c.until_still(1).await;
    assert_eq!(
        u64::from(still.slice),
        stopped["slice"].as_u64().unwrap(),
        "{stopped}"
    );
    let settled = c.frames.len();
    c.pump(Duration::from_millis(500)).await;
    assert_eq!(c.frames.len(), settled, "nothing moves once stopped");
}
