//! A cluster: three real `strata serve` nodes, each with its own data folder, on one PostgreSQL
//! index and three Garage replicas, with one master key, behind a real HAProxy running
//! `examples/cluster/haproxy.cfg`. What is stored through the proxy (storescu, STOW-RS) is
//! answered alike by every node (QIDO-RS, WADO-RS, the viewer's stream); a rolling restart of
//! every node while a client stores and queries loses nothing acknowledged and fails no request
//! beyond those the client's protocol retries. And one node's drain on its own: `/readyz` says
//! 503 while the request under way finishes; what is still open when the drain runs out is cut
//! off and leaves nothing behind.

mod common;

use common::cluster::Cluster;
use common::{text, tool, uids, TestArchive};
use futures::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_render::stream::{Header, KIND_FRAME, KIND_STILL};
use strata_synth::{Modality, SynthOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Longest a node may take to exit after SIGTERM here: its drain (2 s not-ready, then what is
/// under way: 20 s at most in the cluster, 30 s alone) and its background workers' rounds,
/// bounded by the same.
const EXIT_WITHIN: Duration = Duration::from_secs(40);

/// One small CT study of its own (one series), seeded by `seed`.
fn study(seed: u64, slices: usize) -> SynthOptions {
    SynthOptions {
        seed,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices,
        rows: 32,
        cols: 32,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

/// storescu of `files` on one association to the DIMSE port `port`: true when every instance
/// was acknowledged, and storescu's log.
fn storescu(port: u16, files: &[PathBuf]) -> (bool, String) {
    let mut args: Vec<String> = ["-v", "-aet", "CLUSTER", "-aec", "STRATA", "127.0.0.1"]
        .map(String::from)
        .to_vec();
    args.push(port.to_string());
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = tool(120, "storescu", &args);
    let log = text(&out);
    let acknowledged = log.matches("Received Store Response (Success)").count();
    (out.status.success() && acknowledged == files.len(), log)
}

/// Stores `studies` through the DIMSE port `port`, each on one association tried again (three
/// associations at most) when it fails, as a modality would; stops early once `until` is set
/// and a few studies are in. An aborted association is a failure unless `aborts_expected` (a
/// node killed): a drain lets every open association finish. Returns the instances
/// acknowledged and how many associations were tried again.
fn store_through(
    port: u16,
    studies: Vec<Vec<PathBuf>>,
    until: Option<Arc<AtomicBool>>,
    aborts_expected: bool,
) -> Result<(Vec<PathBuf>, usize), String> {
    let (mut acknowledged, mut retried) = (Vec::new(), 0);
    for files in studies {
        if until.as_ref().is_some_and(|u| u.load(Ordering::Relaxed)) && acknowledged.len() >= 6 {
            break;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let (ok, log) = storescu(port, &files);
            if ok {
                break;
            }
            if tries == 3 {
                return Err(format!("a study not stored after 3 associations:\n{log}"));
            }
            if !aborts_expected && log.to_lowercase().contains("abort") {
                return Err(format!("an association was aborted:\n{log}"));
            }
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.starts_with("I: Rec") || l.starts_with("E:") || l.starts_with("F:"))
                .collect();
            eprintln!("storescu failed, tried again: {why:?}");
            retried += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        acknowledged.extend(files);
    }
    Ok((acknowledged, retried))
}

/// A QIDO-RS answer at `base`, which must be 200.
fn qido(base: &str, auth: &str, path: &str) -> serde_json::Value {
    let a = common::http(
        "GET",
        &format!("{base}{path}"),
        &[("Authorization", auth)],
        None,
    );
    assert_eq!(a.status, 200, "GET {base}{path}: {}", a.text());
    serde_json::from_slice(&a.body).unwrap()
}

/// The instance in a Part-10 file as WADO-RS at `base` returns it: the one part of the
/// multipart answer, as stored.
fn wado(base: &str, auth: &str, file: &Path) -> Vec<u8> {
    let a = common::http(
        "GET",
        &format!("{base}{}", common::instance_path(file)),
        &[
            ("Authorization", auth),
            (
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            ),
        ],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    a.only_part().to_vec()
}

/// The data set of a Part-10 file: what follows its file meta information (which a DIMSE
/// receiver writes anew: the sender's AE title, the archive's implementation).
fn data_set(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM", "a Part-10 file");
    assert_eq!(&part10[132..136], [2, 0, 0, 0], "(0002,0000) first");
    let group_length = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_length..]
}

/// Opens the series on the viewer's stream at `base` (its WebSocket): the series message, and
/// the lossless still of the first slice (PNG) that follows the first frame.
async fn stream_still(
    base: &str,
    auth: &str,
    study: &str,
    series: &str,
) -> (serde_json::Value, Vec<u8>) {
    let url = format!("{}/api/stream", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("the stream at {base} opens: {e}"));
    let open = serde_json::json!({"type": "open", "study": study, "series": series});
    ws.send(Message::text(open.to_string())).await.unwrap();
    let view = serde_json::json!({"type": "view", "seq": 1, "viewport": [64, 64]});
    ws.send(Message::text(view.to_string())).await.unwrap();
    let mut meta = None;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the stream answers")
            .expect("the stream stays open")
            .expect("a message");
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "series", "{v}");
                meta = Some(v);
            }
            Message::Binary(b) => {
                let (h, payload) = Header::parse(&b).expect("a frame header");
                if h.kind == KIND_FRAME {
                    let ack = serde_json::json!({"type": "ack", "frame": h.frame});
                    ws.send(Message::text(ack.to_string())).await.unwrap();
                } else if h.kind == KIND_STILL {
                    let _ = ws.close(None).await;
                    return (
                        meta.expect("the series before its pictures"),
                        payload.to_vec(),
                    );
                }
            }
            _ => {}
        }
    }
}

/// A study-level search through the proxy, the way a client retries it: `Err` says why it
/// failed (a status other than 200, or no answer).
fn try_search(base: &str, auth: &str) -> Result<usize, String> {
    let answer = ureq::get(&format!("{base}/dicomweb/studies"))
        .set("Authorization", auth)
        .timeout(Duration::from_secs(30))
        .call();
    match answer {
        Ok(r) => {
            let body = r.into_string().map_err(|e| e.to_string())?;
            let found: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            found
                .as_array()
                .map(Vec::len)
                .ok_or_else(|| format!("not a list: {body}"))
        }
        Err(ureq::Error::Status(code, r)) => {
            Err(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn three_nodes_behind_haproxy_answer_alike_and_restart_one_by_one_without_loss() {
    let started = Instant::now();
    let mut c = Cluster::start();
    eprintln!("three nodes and the proxy up in {:?}", started.elapsed());
    let dir = c.dir.path().to_path_buf();
    let auth = c.auth();
    let proxy = c.proxy.base();

    // Stored through the proxy: a study by storescu (one association), one by STOW-RS.
    let a_files = strata_synth::generate(&dir.join("a"), &study(1, 3)).unwrap();
    let (ok, log) = storescu(c.proxy.dimse, &a_files);
    assert!(ok, "storescu through the proxy:\n{log}");
    let b_files = strata_synth::generate(&dir.join("b"), &study(2, 3)).unwrap();
    let b_bytes: Vec<Vec<u8>> = b_files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let parts: Vec<(&str, &[u8])> = b_bytes
        .iter()
        .map(|b| ("application/dicom", &b[..]))
        .collect();
    let (ctype, body) = common::multipart(&parts);
    let stow = common::http(
        "POST",
        &format!("{proxy}/dicomweb/studies"),
        &[("Authorization", &auth)],
        Some((&ctype, &body)),
    );
    assert_eq!(
        stow.status,
        200,
        "STOW-RS through the proxy: {}",
        stow.text()
    );

    // QIDO-RS through the proxy, and from each node directly: the same answers.
    let [study_a, series_a, _] = uids(&a_files[0]);
    let [study_b, _, _] = uids(&b_files[0]);
    let searches = [
        "/dicomweb/studies".to_string(),
        format!("/dicomweb/studies/{study_a}/series"),
        format!("/dicomweb/studies/{study_b}/instances"),
        format!("/dicomweb/studies/{study_a}/series/{series_a}/metadata"),
    ];
    for path in &searches {
        let via = qido(&proxy, &auth, path);
        assert!(!via.as_array().unwrap().is_empty(), "{path}: {via}");
        for (i, n) in c.nodes.iter().enumerate() {
            assert_eq!(
                qido(&n.base(), &auth, path),
                via,
                "{path}: node {} answers otherwise",
                i + 1
            );
        }
    }
    assert_eq!(
        qido(&proxy, &auth, "/dicomweb/studies")
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // WADO-RS through the proxy: byte for byte what STOW-RS sent, the data set storescu sent;
    // and from every node directly, byte for byte what the proxy gave.
    for (f, sent) in b_files.iter().zip(&b_bytes) {
        assert!(wado(&proxy, &auth, f) == *sent, "{}", f.display());
    }
    for f in &a_files {
        let via = wado(&proxy, &auth, f);
        assert!(data_set(&via) == data_set(&std::fs::read(f).unwrap()));
        for (i, n) in c.nodes.iter().enumerate() {
            assert!(
                wado(&n.base(), &auth, f) == via,
                "node {}: {}",
                i + 1,
                f.display()
            );
        }
    }

    // The viewer's stream (a WebSocket) through the proxy: the same series and the same exact
    // still as every node gives directly.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (meta, still) = rt.block_on(stream_still(&proxy, &auth, &study_a, &series_a));
    assert_eq!(meta["slices"], 3, "{meta}");
    assert!(still.len() > 8, "a PNG still");
    for (i, n) in c.nodes.iter().enumerate() {
        let (m, s) = rt.block_on(stream_still(&n.base(), &auth, &study_a, &series_a));
        assert_eq!(m, meta, "node {}'s series message", i + 1);
        assert!(s == still, "node {}'s still differs", i + 1);
    }

    // A rolling restart (SIGTERM, exit 0, start again, next node) while a client stores study
    // after study, each on one association retried when it fails, and another searches, each
    // search retried once when it fails.
    let studies: Vec<Vec<PathBuf>> = (0..80)
        .map(|i| strata_synth::generate(&dir.join(format!("r{i}")), &study(100 + i, 2)).unwrap())
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let dimse_port = c.proxy.dimse;
    let storer = {
        let done = done.clone();
        std::thread::spawn(move || store_through(dimse_port, studies, Some(done), false))
    };
    let searcher = {
        let (done, proxy, auth) = (done.clone(), proxy.clone(), auth.clone());
        std::thread::spawn(move || {
            let (mut searches, mut retried, mut failed) = (0, 0, Vec::new());
            while !done.load(Ordering::Relaxed) {
                searches += 1;
                let mut errors: Vec<String> = Vec::new();
                while let Err(e) = try_search(&proxy, &auth) {
                    errors.push(e);
                    // what a drain could cause (a 503, no answer) is retried once; a server
                    // error is a failure
                    if errors.len() == 2 || errors.iter().any(|e| e.starts_with("500")) {
                        failed.push(errors.join("; then "));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if !errors.is_empty() {
                    eprintln!("a search retried: {}", errors.join("; then "));
                    retried += 1;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            (searches, retried, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let restarts = Instant::now();
    for i in 0..3 {
        let name = format!("node{}", i + 1);
        let node = &mut c.nodes[i];
        let status = node.server().terminate(EXIT_WITHIN);
        let log = node.server().log_text();
        assert!(status.success(), "{name} exited with {status}:\n{log}");
        for phase in [
            "SIGTERM: draining",
            "closing the listeners",
            "drained: exiting",
        ] {
            assert!(log.contains(phase), "{name} did not log {phase:?}:\n{log}");
        }
        node.start();
        c.proxy.wait_up(&name, Duration::from_secs(30));
    }
    eprintln!("rolling restart of three nodes in {:?}", restarts.elapsed());
    done.store(true, Ordering::Relaxed);
    let (acknowledged, store_retries) = storer.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let (searches, search_retries, failed) = searcher.join().unwrap();
    eprintln!(
        "{} instances acknowledged ({store_retries} associations retried); {searches} searches ({search_retries} retried)",
        acknowledged.len()
    );
    assert!(failed.is_empty(), "searches failed: {failed:?}");
    assert!(searches > 10, "the searches ran all along: {searches}");

    // Every acknowledged instance is there, its data set byte for byte, whichever node answers.
    for (k, f) in acknowledged.iter().enumerate() {
        let via = wado(&proxy, &auth, f);
        assert!(
            data_set(&via) == data_set(&std::fs::read(f).unwrap()),
            "{}",
            f.display()
        );
        let n = &c.nodes[k % 3];
        assert!(wado(&n.base(), &auth, f) == via, "{}", f.display());
    }
    let stored_studies = acknowledged.len() / 2;
    let found = qido(&proxy, &auth, "/dicomweb/studies?limit=1000");
    assert_eq!(found.as_array().unwrap().len(), 2 + stored_studies);
    for n in &c.nodes {
        assert_eq!(
            qido(&n.base(), &auth, "/dicomweb/studies?limit=1000"),
            found
        );
    }
}

/// Sends the headers of a POST of `body` and its first `sent` bytes: a request under way.
fn start_upload(
    http: std::net::SocketAddr,
    auth: &str,
    ctype: &str,
    body: &[u8],
    sent: usize,
) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /dicomweb/studies HTTP/1.1\r\nHost: {http}\r\nAuthorization: {auth}\r\n\
         Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..sent]).unwrap();
    s.flush().unwrap();
    s
}

/// Waits until nothing accepts connections at `addr` any more (the listener closed).
fn wait_closed(addr: std::net::SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

#[test]
fn a_draining_node_says_not_ready_while_its_request_finishes_and_cuts_off_what_outlasts_it() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let configure = |drain_max: u64| {
        std::fs::write(
            t.data().join("strata.toml"),
            format!(
                "[ingest]\nspool_threshold_bytes = 4096\n\n\
                 [node]\ndrain_seconds = 2\ndrain_max_seconds = {drain_max}\n"
            ),
        )
        .unwrap()
    };
    configure(30);
    let files = t.generate("in", &study(7, 1));
    let original = std::fs::read(&files[0]).unwrap();
    let mut server = t.serve();
    let auth = format!("Bearer {}", common::token(&t, "admin"));
    let (ctype, body) = common::multipart(&[("application/dicom", &original)]);

    // Under way when SIGTERM comes: a STOW-RS request, an association (held by a pynetdicom
    // peer), and a viewing session on the stream's WebSocket.
    let half = body.len() / 2;
    let mut upload = start_upload(server.http, &auth, &ctype, &body, half);
    let mut holder = std::process::Command::new(common::python())
        .arg(common::peer_script("hold.py"))
        .args(["127.0.0.1", &server.port()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting hold.py");
    let mut said = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert_eq!(line.trim(), "associated");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut viewer = rt.block_on(async {
        let mut req = format!("ws://{}/api/stream", server.http)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", auth.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    });
    server.signal("-TERM");
    // Not ready at once, while the listener still accepts (the proxy's health check asks).
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        let r = common::http("GET", &format!("http://{}/readyz", server.http), &[], None);
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ready.status, 503, "{}", ready.text());
    let readiness: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(readiness["draining"], true, "{readiness}");
    // Then both listeners close.
    wait_closed(server.http, Duration::from_secs(10));
    wait_closed(server.dimse, Duration::from_secs(10));
    // The viewing session is told the node is going away (the viewer reconnects elsewhere).
    let closed = rt.block_on(async {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), viewer.next())
                .await
                .expect("the stream says it closes")
                .expect("a close frame")
                .expect("a message");
            if let Message::Close(frame) = msg {
                break frame;
            }
        }
    });
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(1001), "going away");
    // The request under way goes on and is answered; the association goes on and is released.
    upload.write_all(&body[half..]).unwrap();
    let mut answer = String::new();
    let _ = upload.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(holder.stdin.take());
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    assert!(holder.wait().unwrap().success(), "{rest}");
    assert_eq!(rest.trim(), "echo ok");
    let status = server.wait_exit(EXIT_WITHIN);
    let log = server.log_text();
    assert!(status.success(), "exit {status}:\n{log}");
    for phase in [
        "SIGTERM: draining",
        "http: every request finished",
        "dimse: listener closed; 1 associations finishing",
        "dimse: every association ended",
        "drained: exiting",
    ] {
        assert!(log.contains(phase), "{phase:?} not logged:\n{log}");
    }
    drop(server);
    let got = t.path("got.dcm");
    t.ok(&[
        "get",
        &common::sop_uid(&files[0]),
        "-o",
        got.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&got).unwrap() == original, "stored as sent");

    // A request and a connection that outlast the drain: cut off, nothing acknowledged, the
    // half-received instance's spool file gone by the next start.
    configure(2);
    let other = t.generate(
        "other",
        &SynthOptions {
            rows: 256,
            cols: 256,
            ..study(8, 1)
        },
    );
    let other_bytes = std::fs::read(&other[0]).unwrap();
    let (ctype, body) = common::multipart(&[("application/dicom", &other_bytes)]);
    let mut server = t.serve();
    let mut upload = start_upload(server.http, &auth, &ctype, &body, body.len() / 2);
    let mut idle_dimse = std::net::TcpStream::connect(server.dimse).unwrap();
    idle_dimse
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let spool = t.data().join("spool");
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_in(&spool).is_empty() {
        assert!(Instant::now() < deadline, "the upload is spooled");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal("-TERM");
    let status = server.wait_exit(EXIT_WITHIN);
    let log = server.log_text();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains("still open when the drain ran out"), "{log}");
    let mut answer = String::new();
    let _ = upload.read_to_string(&mut answer);
    assert!(!answer.contains(" 200 "), "nothing acknowledged: {answer}");
    // the connection that never associated is told A-ABORT (PS3.8 9.3.8) before it closes
    let mut pdu = [0u8; 10];
    idle_dimse.read_exact(&mut pdu).expect("an A-ABORT");
    assert_eq!(pdu[0], 0x07, "A-ABORT: {pdu:?}");
    drop(server);
    let gone = t.run(&["get", &common::sop_uid(&other[0]), "-o", "/dev/null"]);
    assert!(!gone.status.success(), "the cut-off instance is not stored");
    let server = t.serve();
    assert!(files_in(&spool).is_empty(), "{:?}", files_in(&spool));
    drop(server);
}

/// The leases as the index holds them: work to the node holding it, once all are held.
fn lease_holders(index: &str) -> std::collections::BTreeMap<String, String> {
    let mut db = postgres::Client::connect(index, postgres::NoTls).unwrap();
    db.query(
        "SELECT name, holder FROM strata.leases
         WHERE expires_at > (extract(epoch from now()) * 1000)::bigint",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The leases of the work done once per archive: audit export, expiry, MPI estimate, repair,
/// scrub and send.
const LEASED: usize = 6;

/// kill -9 of the node holding the upkeep's leases while a client stores through the proxy
/// (storescu tries a failed association again, as its protocol allows): every instance
/// acknowledged is there, byte for byte, and the work is another node's within the leases'
/// expiry (3 s here).
#[test]
fn a_node_killed_mid_ingest_loses_nothing_acknowledged_and_its_leases_move() {
    let mut c = Cluster::start();
    let (auth, proxy) = (c.auth(), c.proxy.base());
    let index = c.nodes[0].archive.index_url.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let holders = loop {
        let h = lease_holders(&index);
        if h.len() == LEASED {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the leases were not all taken: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let doomed = holders["repair"].clone();
    let n: usize = doomed.trim_start_matches("node").parse().unwrap();

    // three clients at once, so every node is in the middle of an association at the kill
    let dir = c.dir.path().join("killed");
    let dimse_port = c.proxy.dimse;
    let storers: Vec<_> = (0..3u64)
        .map(|k| {
            let studies: Vec<Vec<PathBuf>> = (0..8)
                .map(|i| {
                    let seed = 500 + 10 * k + i;
                    strata_synth::generate(&dir.join(format!("k{seed}")), &study(seed, 12)).unwrap()
                })
                .collect();
            std::thread::spawn(move || store_through(dimse_port, studies, None, true))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = c.nodes[n - 1].server().process_id();
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // the work goes to the nodes still running within the leases' expiry and a renewal's wait
    let moved = loop {
        let h = lease_holders(&index);
        if h.len() == LEASED && h.values().all(|holder| *holder != doomed) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "{doomed}'s leases not taken over: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{doomed} killed: its leases taken over in {moved:?}");
    assert!(moved < Duration::from_secs(3 + 2 + 2), "{moved:?}");
    let (mut acknowledged, mut retried) = (Vec::new(), 0);
    for storer in storers {
        let (a, r) = storer.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        acknowledged.extend(a);
        retried += r;
    }
    eprintln!(
        "{} instances acknowledged, {retried} associations tried again",
        acknowledged.len()
    );
    assert_eq!(
        acknowledged.len(),
        3 * 8 * 12,
        "every study was stored in the end"
    );
    for f in &acknowledged {
        let via = wado(&proxy, &auth, f);
        assert!(
            data_set(&via) == data_set(&std::fs::read(f).unwrap()),
            "{}",
            f.display()
        );
    }
}
