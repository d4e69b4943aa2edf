//! The render stream's benchmark client: `benches/stream_bench.sh` runs it.
//!
//! `stream_bench client ADDR TOKEN STUDY SERIES`: one viewer on `/api/stream` with a 1024×1024
//! viewport. (1) latency: one input, wait for its frame, repeat; (2) scroll every slice at 60
//! inputs a second; (3) idle after the still. Prints `key value` lines.
//!
//! `stream_bench breakdown DATA_DIR STUDY SERIES`: where the time of one frame goes, in process
//! on the same archive (server stopped): read from the store, parse and decode, pipeline, H.264.

use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use strata_render::stream::{Header, KIND_FRAME, KIND_STILL};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const VIEWPORT: u32 = 1024;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn send(ws: &mut Socket, v: serde_json::Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next binary message's header and size (acknowledging frames), or None after `wait`.
async fn next(ws: &mut Socket, wait: Duration) -> Option<(Header, usize, Instant)> {
    loop {
        let m = tokio::time::timeout(wait, ws.next()).await.ok()??.unwrap();
        let at = Instant::now();
        match m {
            Message::Binary(b) => {
                let (h, _) = Header::parse(&b).unwrap();
                if h.kind == KIND_FRAME {
                    send(ws, serde_json::json!({"type": "ack", "frame": h.frame})).await;
                }
                return Some((h, b.len(), at));
            }
            Message::Text(t) => {
                assert!(!t.contains("\"error\""), "server error: {t}");
            }
            _ => {}
        }
    }
}

async fn client(addr: &str, token: &str, study: &str, series: &str) {
    let mut req = format!("ws://{addr}/api/stream")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap();
    send(
        &mut ws,
        serde_json::json!({"type": "open", "study": study, "series": series}),
    )
    .await;
    let meta = loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            break serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
    };
    let slices = meta["slices"].as_u64().unwrap() as u32;
    println!("slices {slices}");
    let mut seq = 0u32;

    // (1) latency, one input at a time: the client's round trip and the server's own figures
    let mut round_trip = Vec::new();
    let mut server_parts = Vec::new();
    for i in 0..300u32 {
        seq += 1;
        let mut v = serde_json::json!({"type": "view", "seq": seq, "slice": (i * 7) % slices});
        if i == 0 {
            v["viewport"] = serde_json::json!([VIEWPORT, VIEWPORT]);
        }
        let sent = Instant::now();
        send(&mut ws, v).await;
        loop {
            let (h, _, at) = next(&mut ws, Duration::from_secs(30)).await.unwrap();
            if h.kind == KIND_FRAME && h.input_seq == seq {
                if i >= 10 {
                    round_trip.push((at - sent).as_secs_f64() * 1e3);
                    server_parts.push(f64::from(h.wait_us + h.render_us + h.encode_us) / 1e3);
                }
                break;
            }
        }
    }
    println!(
        "latency_round_trip_ms p50 {:.2} p99 {:.2}",
        percentile(&mut round_trip, 0.5),
        percentile(&mut round_trip, 0.99)
    );
    println!(
        "latency_header_ms p50 {:.2} p99 {:.2}",
        percentile(&mut server_parts, 0.5),
        percentile(&mut server_parts, 0.99)
    );
    // let the still of the last state go by
    while let Some((h, _, _)) = next(&mut ws, Duration::from_millis(400)).await {
        let _ = h;
    }

    // (2) scroll every slice at 60 inputs a second, acknowledging as a browser would
    let period = Duration::from_micros(16_667);
    let start = Instant::now();
    let mut frames: Vec<(Instant, usize, Header)> = Vec::new();
    let mut next_input = start;
    let mut slice = 0u32;
    let first_seq = seq + 1;
    let mut last_input_at = start;
    let mut render_us = Vec::new();
    let mut encode_us = Vec::new();
    loop {
        let now = Instant::now();
        if slice < slices && now >= next_input {
            seq += 1;
            send(
                &mut ws,
                serde_json::json!({"type": "view", "seq": seq, "slice": slice}),
            )
            .await;
            last_input_at = Instant::now();
            slice += 1;
            next_input += period;
            continue;
        }
        let wait = if slice < slices {
            next_input.saturating_duration_since(now)
        } else {
            Duration::from_secs(5)
        };
        match next(&mut ws, wait.max(Duration::from_micros(100))).await {
            Some((h, len, at)) if h.kind == KIND_FRAME => {
                render_us.push(f64::from(h.render_us) / 1e3);
                encode_us.push(f64::from(h.encode_us) / 1e3);
                frames.push((at, len, h));
                if h.input_seq == seq && slice >= slices {
                    break;
                }
            }
            Some((h, _, _)) if h.kind == KIND_STILL => {}
            Some(_) => {}
            None if slice >= slices => panic!("the last slice never came"),
            None => {}
        }
    }
    let end = frames.last().unwrap().0;
    let secs = (end - start).as_secs_f64();
    let bytes: usize = frames.iter().map(|f| f.1).sum();
    let gaps: Vec<f64> = frames
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64() * 1e3)
        .collect();
    let max_gap = gaps.iter().cloned().fold(0.0, f64::max);
    let first_frame = (frames[0].0 - start).as_secs_f64() * 1e3;
    let states_shown = frames.iter().filter(|f| f.2.input_seq >= first_seq).count();
    println!("scroll_inputs {slices}");
    println!("scroll_frames {}", frames.len());
    println!("scroll_states_shown {states_shown}");
    println!("scroll_seconds {secs:.3}");
    println!("scroll_fps {:.1}", frames.len() as f64 / secs);
    println!("scroll_max_gap_ms {max_gap:.1} (first frame after {first_frame:.1} ms)");
    println!(
        "scroll_final_after_last_input_ms {:.1}",
        (end - last_input_at).as_secs_f64() * 1e3
    );
    println!("scroll_mbit_s {:.2}", bytes as f64 * 8.0 / secs / 1e6);
    println!(
        "scroll_frame_kb_mean {:.1}",
        bytes as f64 / frames.len() as f64 / 1024.0
    );
    println!(
        "scroll_render_ms p50 {:.2} p99 {:.2}",
        percentile(&mut render_us, 0.5),
        percentile(&mut render_us, 0.99)
    );
    println!(
        "scroll_encode_ms p50 {:.2} p99 {:.2}",
        percentile(&mut encode_us, 0.5),
        percentile(&mut encode_us, 0.99)
    );

    // (3) the still comes once, then nothing
    let mut after = Vec::new();
    while let Some((h, len, at)) = next(&mut ws, Duration::from_secs(2)).await {
        after.push((h.kind, len, (at - end).as_secs_f64() * 1e3));
    }
    let stills: Vec<_> = after.iter().filter(|a| a.0 == KIND_STILL).collect();
    println!(
        "idle_still_count {} (after {:?} ms, {:?} bytes)",
        stills.len(),
        stills.iter().map(|s| s.2.round()).collect::<Vec<_>>(),
        stills.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    println!("idle_other_messages {}", after.len() - stills.len());
}

async fn breakdown(data: &str, study: &str, series: &str) {
    use strata_render::h264::{H264Encoder, DEFAULT_QP};
    use strata_render::{decode_frame, render, Presentation, View};
    let config =
        strata_core::config::Config::load(std::path::Path::new(data), None, Vec::new()).unwrap();
    let archive = strata_archive::Archive::open(config).await.unwrap();
    let refs = archive
        .index()
        .instances_under(
            study.into(),
            Some(series.into()),
            None,
            strata_index::Scope::All,
        )
        .await
        .unwrap();
    let slices = archive.pictures().open_series(&refs).await.unwrap().slices;
    let view = View {
        viewport: Some((VIEWPORT, VIEWPORT)),
        ..View::default()
    };
    let mut enc = H264Encoder::new(VIEWPORT, VIEWPORT, DEFAULT_QP).unwrap();
    let (mut read, mut decode, mut pipeline, mut place, mut encode, mut whole) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for s in slices.iter().step_by(5).take(100) {
        let t0 = Instant::now();
        let mut bytes = Vec::new();
        archive
            .reads()
            .read_instance(&s.sop_uid, |c| {
                bytes.extend_from_slice(c);
                Ok(())
            })
            .await
            .unwrap();
        let t1 = Instant::now();
        let obj = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).unwrap();
        let decoded = decode_frame(&obj, s.frame).unwrap();
        let t2 = Instant::now();
        let r = render(
            &decoded,
            &Presentation::from_object(&obj, s.frame).unwrap(),
            &view,
        )
        .unwrap();
        let t3 = Instant::now();
        let (pixels, _, _) = strata_render::stream::place(&r, VIEWPORT, VIEWPORT);
        let t4 = Instant::now();
        enc.encode_grey(&pixels).unwrap();
        let t5 = Instant::now();
        let w0 = Instant::now();
        archive
            .pictures()
            .render(
                &s.sop_uid,
                s.frame,
                view,
                strata_render::Priority::Interactive,
            )
            .await
            .unwrap();
        whole.push(w0.elapsed().as_secs_f64() * 1e3);
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        read.push(ms(t0, t1));
        decode.push(ms(t1, t2));
        pipeline.push(ms(t2, t3));
        place.push(ms(t3, t4));
        encode.push(ms(t4, t5));
    }
    // Quality and size against QP: 20 consecutive slices (a scroll), each window, at 1024×1024,
    // decoded and compared with the exact render.
    let windows = [
        ("default", None),
        ("abdomen", strata_render::stream::preset_window("abdomen")),
        ("brain", strata_render::stream::preset_window("brain")),
    ];
    for qp in [14u8, 16, 18, 20, 22] {
        for (wname, window) in windows {
            let view = View { window, ..view };
            let mut enc = H264Encoder::new(VIEWPORT, VIEWPORT, qp).unwrap();
            let mut dec = openh264::decoder::Decoder::new().unwrap();
            let (mut worst, mut bytes) = (f64::INFINITY, 0usize);
            for s in slices.iter().skip(slices.len() / 2).take(20) {
                let r = archive
                    .pictures()
                    .render(
                        &s.sop_uid,
                        s.frame,
                        view,
                        strata_render::Priority::Interactive,
                    )
                    .await
                    .unwrap();
                let (pixels, _, _) = strata_render::stream::place(&r, VIEWPORT, VIEWPORT);
                let f = enc.encode_grey(&pixels).unwrap();
                bytes += f.annex_b.len();
                let yuv = dec.decode(&f.annex_b).unwrap().unwrap();
                use openh264::formats::YUVSource;
                let stride = yuv.strides().0;
                let w = VIEWPORT as usize;
                let mse = (0..w)
                    .flat_map(|y| (0..w).map(move |x| (y, x)))
                    .map(|(y, x)| {
                        let d = f64::from(yuv.y()[y * stride + x]) - f64::from(pixels[y * w + x]);
                        d * d
                    })
                    .sum::<f64>()
                    / (w * w) as f64;
                worst = worst.min(10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10());
            }
            println!(
                "qp {qp} window {wname}: lowest PSNR {worst:.1} dB, {:.1} KiB a frame ({:.1} Mbit/s at 60 frames/s)",
                bytes as f64 / 20.0 / 1024.0,
                bytes as f64 / 20.0 * 8.0 * 60.0 / 1e6
            );
        }
    }
    for (name, v) in [
        ("read_from_store", &mut read),
        ("parse_and_decode", &mut decode),
        ("pipeline", &mut pipeline),
        ("place_in_frame", &mut place),
        ("h264_encode", &mut encode),
        ("render_instance_whole", &mut whole),
    ] {
        println!(
            "breakdown_{name}_ms p50 {:.2} p99 {:.2}",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["client", addr, token, study, series] => rt.block_on(client(addr, token, study, series)),
        ["breakdown", data, study, series] => rt.block_on(breakdown(data, study, series)),
        _ => {
            eprintln!("usage: stream_bench client ADDR TOKEN STUDY SERIES | breakdown DATA STUDY SERIES (benches/stream_bench.sh runs it)");
            std::process::exit(2);
        }
    }
}
