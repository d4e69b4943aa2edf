//! Hostile input, as an attacker on the open network would send it: each case is refused or
//! answered within bounds, the process lives, its peak resident memory stays bounded, and what
//! was stored before is still served byte for byte.

mod common;

use common::{files_under, peer_script, python, sop_uid, text, tool, Server, TestArchive};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOCALHOST: &str = "127.0.0.1";

/// The fixture studies, imported: what every case must leave as it was.
fn archive_with_fixtures() -> (TestArchive, Vec<PathBuf>) {
    let t = TestArchive::new();
    let studies = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/studies");
    t.ok(&["import", studies.to_str().unwrap()]);
    (t, files_under(&studies))
}

fn configure(t: &TestArchive, toml: &str) {
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(t.data().join("strata.toml"), toml).unwrap();
}

/// Everything stored before is still there, byte for byte.
fn still_served(t: &TestArchive, originals: &[PathBuf]) {
    let got = t.path("check.dcm");
    for f in originals {
        t.ok(&["get", &sop_uid(f), "-o", got.to_str().unwrap()]);
        assert!(
            std::fs::read(&got).unwrap() == std::fs::read(f).unwrap(),
            "{} is no longer served as stored",
            f.display()
        );
    }
}

fn assert_echo_ok(server: &Server) {
    let out = tool(
        30,
        "echoscu",
        &["-aet", "AFTER", "-aec", "STRATA", LOCALHOST, &server.port()],
    );
    assert!(
        out.status.success(),
        "C-ECHO after the attack: {}",
        text(&out)
    );
}

/// A Part-10 file in Deflated Explicit VR Little Endian whose data set names a valid instance and
/// then carries a private OB element of `bomb` zero bytes: a few megabytes on disk that inflate
/// to `bomb` bytes.
fn deflated_file(path: &Path, bomb: u32) {
    use dicom_object::meta::FileMetaTableBuilder;
    let sop = "2.25.1234567890123456789";
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax("1.2.840.10008.1.2.1.99")
        .implementation_class_uid("2.25.1")
        .build()
        .unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&[0u8; 128]).unwrap();
    file.write_all(b"DICM").unwrap();
    meta.write(&mut file).unwrap();
    // explicit VR little endian elements in tag order, the bomb between (0009,0010) and
    // (0010,0020)
    let element = |out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &str| {
        let mut v = v.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(&v);
    };
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    element(
        &mut head,
        0x0008,
        0x0016,
        b"UI",
        "1.2.840.10008.5.1.4.1.1.7",
    );
    element(&mut head, 0x0008, 0x0018, b"UI", sop);
    element(&mut head, 0x0009, 0x0010, b"LO", "BOMB");
    element(&mut tail, 0x0010, 0x0020, b"LO", "BOMB-1");
    element(&mut tail, 0x0020, 0x000D, b"UI", "2.25.1234567890123456790");
    element(&mut tail, 0x0020, 0x000E, b"UI", "2.25.1234567890123456791");
    let mut z = flate2::write::DeflateEncoder::new(file, flate2::Compression::fast());
    z.write_all(&head).unwrap();
    let mut ob = Vec::new();
    ob.extend_from_slice(&0x0009u16.to_le_bytes());
    ob.extend_from_slice(&0x1000u16.to_le_bytes());
    ob.extend_from_slice(b"OB\0\0");
    ob.extend_from_slice(&bomb.to_le_bytes());
    z.write_all(&ob).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = bomb as usize;
    while left > 0 {
        let n = left.min(zeros.len());
        z.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    z.write_all(&tail).unwrap();
    z.finish().unwrap();
}

#[test]
fn a_deflate_bomb_is_refused_in_bounded_memory_and_a_real_deflated_file_is_stored() {
    let (t, originals) = archive_with_fixtures();
    // 1 GiB of zeros, about a megabyte on disk
    let bomb = t.path("bomb.dcm");
    deflated_file(&bomb, 1 << 30);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 16 << 20);
    let (out, peak_kib) = t.run_measured(&["import", bomb.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("inflates to more than"), "{said}");
    assert!(
        peak_kib < 256 * 1024,
        "importing the bomb peaked at {} MiB",
        peak_kib / 1024
    );
    // the same shape with a modest element inflates within bounds and is stored as sent
    let modest = t.path("modest.dcm");
    deflated_file(&modest, 4 << 20);
    let (out, peak_kib) = t.run_measured(&["import", modest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(peak_kib < 256 * 1024, "peaked at {} MiB", peak_kib / 1024);
    let got = t.path("got.dcm");
    t.ok(&[
        "get",
        "2.25.1234567890123456789",
        "-o",
        got.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&modest).unwrap());
    still_served(&t, &originals);
}

#[test]
fn a_command_that_never_ends_aborts_its_association_in_bounded_memory() {
    let (t, originals) = archive_with_fixtures();
    let mut server = t.serve();
    // half a gigabyte of command fragments, none of them the last
    let out = tool(
        120,
        python().to_str().unwrap(),
        &[
            peer_script("flood.py").to_str().unwrap(),
            LOCALHOST,
            &server.port(),
            "command",
            &(512u64 << 20).to_string(),
        ],
    );
    let said = text(&out);
    assert!(said.contains("dropped after"), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.alive(), "the server died:\n{}", server.log_text());
    let log = server.log_text();
    assert!(
        log.contains("a command set of more than 65536 bytes"),
        "{log}"
    );
    let peak = server.peak_rss_kib();
    assert!(
        peak < 256 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    assert_echo_ok(&server);
    drop(server);
    still_served(&t, &originals);
}

#[test]
fn an_identifier_larger_than_any_query_is_refused_with_a_status() {
    let (t, _) = archive_with_fixtures();
    let server = t.serve();
    let out = tool(
        120,
        python().to_str().unwrap(),
        &[
            peer_script("big_identifier.py").to_str().unwrap(),
            LOCALHOST,
            &server.port(),
            &(8u64 << 20).to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let answer: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    // C-FIND answers an identifier it cannot take with A900 (identifier does not match)
    assert_eq!(answer["status"], 0xA900, "{answer}");
    assert!(
        answer["comment"].as_str().unwrap().contains("exceeds"),
        "{answer}"
    );
    assert_echo_ok(&server);
}

#[test]
fn an_instance_over_the_size_limit_is_refused_while_it_arrives() {
    let (t, originals) = archive_with_fixtures();
    configure(
        &t,
        "[ingest]\nmax_instance_bytes = 1048576\nspool_threshold_bytes = 65536\n",
    );
    let big = t.generate(
        "big",
        &strata_synth::SynthOptions {
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 1024,
            cols: 1024,
            seed: 77,
            ..Default::default()
        },
    );
    assert!(std::fs::metadata(&big[0]).unwrap().len() > 1 << 20);
    let server = t.serve();
    let out = tool(
        60,
        "storescu",
        &[
            "-v",
            "-aet",
            "BIG",
            "-aec",
            "STRATA",
            LOCALHOST,
            &server.port(),
            big[0].to_str().unwrap(),
        ],
    );
    let said = text(&out);
    assert!(
        said.contains("Refused: OutOfResources"),
        "expected 0xA700 (refused: out of resources): {said}"
    );
    let audit = t.ok(&["audit", "list", "--action", "dimse.store"]);
    // refused by the spool as the bytes arrived, not by ingest once all of it was on disk
    assert!(
        audit.contains("exceeds the limit of 1048576 bytes (ingest.max_instance_bytes)"),
        "{audit}"
    );
    // nothing of it was kept in the spool
    let spool = t.data().join("spool");
    assert!(
        !spool.exists() || files_under(&spool).is_empty(),
        "{:?}",
        files_under(&spool)
    );
    assert_echo_ok(&server);
    drop(server);
    still_served(&t, &originals);
}

#[test]
fn storage_commitment_needs_the_permission_to_store() {
    let (t, originals) = archive_with_fixtures();
    configure(
        &t,
        "[[dimse.clients]]\naet = \"COMMITSCU\"\npermissions = [\"query\"]\n",
    );
    let server = t.serve();
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            peer_script("commit.py").to_str().unwrap(),
            &server.port(),
            "1.2.840.10008.5.1.4.1.1.4",
            &sop_uid(&originals[0]),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(report["action_status"], 0x0124, "{report}");
    let audit = t.ok(&["audit", "list", "--action", "dimse.commit"]);
    assert!(
        audit.contains("COMMITSCU") && audit.contains("denied"),
        "{audit}"
    );
}

#[test]
fn a_codestream_claiming_a_huge_frame_is_refused_before_it_is_decoded() {
    let (t, originals) = archive_with_fixtures();
    let small = t.generate(
        "small",
        &strata_synth::SynthOptions {
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 16,
            cols: 16,
            seed: 78,
            ..Default::default()
        },
    );
    // JPEG lossless (dcmcjpeg's default), then the frame header made to claim 65535×65535
    let jpeg = t.path("jpeg.dcm");
    let out = tool(
        60,
        "dcmcjpeg",
        &[small[0].to_str().unwrap(), jpeg.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut bytes = std::fs::read(&jpeg).unwrap();
    let sof = bytes
        .windows(2)
        .position(|w| w[0] == 0xFF && (0xC0..=0xC3).contains(&w[1]))
        .expect("a JPEG frame header");
    // marker (2), length (2), precision (1), then Y and X
    assert_eq!(&bytes[sof + 5..sof + 9], &[0, 16, 0, 16]);
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    std::fs::write(&jpeg, &bytes).unwrap();
    t.ok(&["import", jpeg.to_str().unwrap()]);

    let server = t.serve();
    let admin = common::Api::new(&server, &common::token(&t, "admin"));
    let path = format!("{}/rendered", common::instance_path(&jpeg));
    let answer = admin.get(&path);
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("65535×65535, the dataset says 16×16"),
        "{}",
        answer.text()
    );
    let peak = server.peak_rss_kib();
    assert!(
        peak < 256 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    // a frame list naming one frame eight thousand times is answered with it once
    let repeated = vec!["1"; 8000].join(",");
    let frames = admin.get(&format!(
        "{}/frames/{repeated}",
        common::instance_path(&originals[0])
    ));
    assert_eq!(frames.status, 200, "{}", frames.text());
    let parts = frames
        .text()
        .matches("Content-Type: application/octet-stream")
        .count();
    assert_eq!(parts, 1, "one frame, once");
    assert!(frames.body.len() < 64 << 10);
    drop(server);
    still_served(&t, &originals);
}

/// Opens a connection and sends the start of a request's headers, never the end (slowloris).
fn half_request(server: &Server) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: strata\r\nX-Slow: ")
        .unwrap();
    s
}

/// Reads until the server closes the connection or `within` passes; true if it closed.
fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_and_many_http_clients_are_bounded_and_dimse_keeps_serving() {
    let (t, originals) = archive_with_fixtures();
    configure(
        &t,
        "[http]\nheader_timeout_seconds = 2\nbody_idle_seconds = 2\nmax_connections = 6\nmax_connections_per_ip = 4\n",
    );
    let server = t.serve();
    let url = format!("http://{}/healthz", server.http);
    // one address holds its four connections with headers that never end; a fifth is turned
    // away at once with 503, and the modality's DIMSE association is not affected
    let mut slow: Vec<_> = (0..4).map(|_| half_request(&server)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let turned_away = common::http("GET", &url, &[], None);
    assert_eq!(turned_away.status, 503, "{}", turned_away.text());
    assert!(turned_away.content_type.contains("problem+json"));
    assert_echo_ok(&server);
    // the header deadline closes every slow connection, and the address is served again
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(6)),
            "a connection whose headers never end is closed after http.header_timeout_seconds"
        );
    }
    assert_eq!(common::http("GET", &url, &[], None).status, 200);
    // an idle keep-alive connection is closed by the same deadline
    let mut idle = std::net::TcpStream::connect(server.http).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: strata\r\n\r\n")
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(6)));
    // a body that stops arriving is abandoned after http.body_idle_seconds
    let tok = common::token(&t, "admin");
    let mut stalled = std::net::TcpStream::connect(server.http).unwrap();
    write!(
        stalled,
        "POST /dicomweb/studies HTTP/1.1\r\nHost: strata\r\nAuthorization: Bearer {tok}\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Type: application/dicom\r\n\r\nDICM"
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut stalled, Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_secs(1));
    // the process lives, its memory is bounded, and nothing stored changed
    let mut server = server;
    assert!(server.alive());
    assert!(server.peak_rss_kib() < 512 * 1024);
    still_served(&t, &originals);
}

#[test]
fn one_host_cannot_hold_every_association_and_a_find_is_capped() {
    let (t, originals) = archive_with_fixtures();
    configure(
        &t,
        "[dimse]\nmax_associations_per_ip = 2\nmax_find_results = 2\n",
    );
    let server = t.serve();
    // A C-FIND matching the three stored studies: two go out, then Out of Resources.
    let find = tool(
        30,
        "findscu",
        &[
            "-v",
            "-S",
            "-aec",
            "STRATA",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID",
            LOCALHOST,
            &server.port(),
        ],
    );
    let said = text(&find);
    assert_eq!(said.matches("(Pending)").count(), 2, "{said}");
    assert!(
        said.contains("Received Final Find Response (Refused: OutOfResources)"),
        "{said}"
    );
    // Two connections from this address that never associate hold its two places: a third
    // association is rejected, and served again once they are gone.
    let holders: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(server.dimse).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = tool(
        30,
        "echoscu",
        &["-aec", "STRATA", LOCALHOST, &server.port()],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    drop(holders);
    std::thread::sleep(Duration::from_millis(300));
    assert_echo_ok(&server);
    still_served(&t, &originals);
}

#[test]
fn a_study_rendered_at_the_largest_viewport_streams_one_picture_after_another() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &strata_synth::SynthOptions {
            studies: 1,
            patients: 1,
            series_per_study: 1,
            slices: 6,
            rows: 64,
            cols: 64,
            ..Default::default()
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let study = common::uids(&files[0])[0].clone();
    let mut server = t.serve();
    let tok = common::token(&t, "admin");
    let answer = common::http(
        "GET",
        &format!(
            "http://{}/dicomweb/studies/{study}/rendered?viewport=8192,8192",
            server.http
        ),
        &[
            ("Authorization", &format!("Bearer {tok}")),
            ("Accept", "multipart/related; type=\"image/jpeg\""),
        ],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.content_type.starts_with("multipart/related"));
    let parts = answer
        .body
        .windows(b"Content-Type: image/jpeg".len())
        .filter(|w| *w == b"Content-Type: image/jpeg")
        .count();
    assert_eq!(parts, files.len(), "one 8192-pixel picture per instance");
    assert!(answer.body.len() > files.len() * 8192, "whole pictures");
    assert!(server.alive());
    let peak = server.peak_rss_kib();
    eprintln!("peak resident memory rendering at 8192: {peak} KiB");
    assert!(peak < 512 * 1024, "peak resident memory {peak} KiB");
}

/// A STOW-RS request over a raw socket, its body sent in two writes a moment apart, so the
/// server has read the whole body by the time the last bytes push it over a limit (a server
/// that answers before reading a body to its end resets the connection, and the answer can be
/// lost on the way). Returns the answer's status line and the rest of it.
fn stow_in_two(server: &Server, token: &str, first: &[u8], last: &[u8]) -> (String, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    write!(
        s,
        "POST /dicomweb/studies HTTP/1.1\r\nHost: strata\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\nContent-Length: {}\r\n\r\n",
        first.len() + last.len()
    )
    .unwrap();
    s.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(last).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (status, rest) = answer.split_once("\r\n").unwrap_or((&answer, ""));
    (status.to_string(), rest.to_string())
}

#[test]
fn multipart_headers_and_preamble_count_against_the_body_limit() {
    let (t, originals) = archive_with_fixtures();
    configure(&t, "[http]\nmax_body_bytes = 200000\n");
    let server = t.serve();
    let tok = common::token(&t, "admin");
    // Part data under the limit, but with the preamble the body is over it.
    let mut body = vec![b'x'; 60_000];
    body.extend_from_slice(b"\r\n--b\r\nContent-Type: application/dicom\r\n\r\n");
    body.extend_from_slice(&[0u8; 150_000]);
    let split = body.len() - 2000;
    let (status, rest) = stow_in_two(&server, &tok, &body[..split], &body[split..]);
    assert!(status.contains(" 413 "), "{status}\n{rest}");
    assert!(rest.contains("http.max_body_bytes"), "{rest}");
    // A part header that never ends is refused once it passes the allowance, not buffered.
    let mut endless = b"--b\r\nContent-Type: application/dicom\r\nX-Pad: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 70_000));
    let (status, rest) = stow_in_two(&server, &tok, &endless, b"aaaa");
    assert!(status.contains(" 413 "), "{status}\n{rest}");
    assert!(rest.contains("part headers"), "{rest}");
    assert!(rest.contains("problem+json"), "{rest}");
    let mut server = server;
    assert!(server.alive());
    still_served(&t, &originals);
}

#[test]
fn expensive_requests_are_rate_limited_per_user() {
    let (t, originals) = archive_with_fixtures();
    configure(
        &t,
        "[http]\nrenders_per_second = 1\nexports_per_minute = 3\n",
    );
    let study = common::uids(&originals[0])[0].clone();
    let mut server = t.serve();
    common::add_user(&t, "reader", "radiologist");
    let (admin, reader) = (common::token(&t, "admin"), common::token(&t, "reader"));
    let get = |tok: &str, path: &str| {
        common::http(
            "GET",
            &format!("http://{}/dicomweb/studies/{study}{path}", server.http),
            &[
                ("Authorization", &format!("Bearer {tok}")),
                ("Accept", "*/*"),
            ],
            None,
        )
    };
    // five seconds' worth of renders at once (and one more per second taken), then 429 with
    // when to come back
    let started = std::time::Instant::now();
    let answers: Vec<_> = (0..12).map(|_| get(&admin, "/thumbnail")).collect();
    let served = answers.iter().filter(|a| a.status == 200).count();
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (5..=5 + refilled).contains(&served),
        "{served} served in {:?}",
        started.elapsed()
    );
    let limited = answers
        .iter()
        .find(|a| a.status != 200)
        .expect("a request over the rate");
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.content_type.contains("problem+json"));
    assert!(limited.text().contains("http.renders_per_second"));
    // another user has a bucket of their own; searches and metadata are not limited
    assert_eq!(get(&reader, "/thumbnail").status, 200);
    for _ in 0..10 {
        assert_eq!(get(&admin, "/metadata").status, 200);
    }
    // a minute's worth of exports, then 429
    let exports: Vec<u16> = (0..4).map(|_| get(&admin, "").status).collect();
    assert_eq!(exports, [200, 200, 200, 429]);
    assert!(server.alive());
}

/// A connection to the DIMSE door from `127.0.0.<host>`: a peer on another host, as far as the
/// server's per-address accounting can tell.
fn dimse_from(host: u8, server: &Server) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let to = server.dimse;
    let s = rt
        .block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("127.0.0.{host}:0").parse().unwrap())?;
            socket.connect(to).await?.into_std()
        })
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// An A-ASSOCIATE-RQ (PS3.8 9.3.2) from AE `SLOW` proposing Verification in Implicit VR Little
/// Endian on presentation context 1.
fn associate_rq() -> Vec<u8> {
    fn item(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    let mut body = vec![0, 1, 0, 0];
    body.extend_from_slice(b"STRATA          SLOW            ");
    body.extend_from_slice(&[0; 32]);
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    let mut pc = vec![1, 0, 0, 0];
    pc.extend(item(0x30, b"1.2.840.10008.1.1"));
    pc.extend(item(0x40, b"1.2.840.10008.1.2"));
    body.extend(item(0x20, &pc));
    let mut user = item(0x51, &16384u32.to_be_bytes());
    user.extend(item(0x52, b"2.25.42"));
    body.extend(item(0x50, &user));
    let mut pdu = vec![0x01, 0];
    pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pdu.extend(body);
    pdu
}

/// Reads one PDU: its type, or None when the connection closed (or nothing came in `within`).
fn pdu_type(s: &mut std::net::TcpStream, within: Duration) -> Option<u8> {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut header = [0u8; 6];
    s.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(header[0])
}

/// An associated connection from `127.0.0.<host>`.
fn associated_from(host: u8, server: &Server) -> std::net::TcpStream {
    let mut s = dimse_from(host, server);
    s.write_all(&associate_rq()).unwrap();
    assert_eq!(
        pdu_type(&mut s, Duration::from_secs(10)),
        Some(0x02),
        "A-ASSOCIATE-AC"
    );
    s
}

/// A P-DATA-TF PDU carrying a whole C-ECHO-RQ on presentation context 1.
fn echo_rq(message_id: u16) -> Vec<u8> {
    let element = |out: &mut Vec<u8>, e: u16, v: &[u8]| {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    };
    let mut body = Vec::new();
    element(&mut body, 0x0002, b"1.2.840.10008.1.1\0");
    element(&mut body, 0x0100, &0x0030u16.to_le_bytes());
    element(&mut body, 0x0110, &message_id.to_le_bytes());
    element(&mut body, 0x0800, &0x0101u16.to_le_bytes());
    let mut command = Vec::new();
    element(&mut command, 0x0000, &(body.len() as u32).to_le_bytes());
    command.extend(body);
    let mut pdv = ((command.len() + 2) as u32).to_be_bytes().to_vec();
    pdv.extend_from_slice(&[1, 0x03]);
    pdv.extend(command);
    let mut pdu = vec![0x04, 0];
    pdu.extend_from_slice(&(pdv.len() as u32).to_be_bytes());
    pdu.extend(pdv);
    pdu
}

/// Writes `bytes` one at a time, `every` apart, until they are all out or the server closes.
fn trickle(mut s: std::net::TcpStream, bytes: Vec<u8>, every: Duration) {
    std::thread::spawn(move || {
        for b in bytes {
            if s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
}

#[test]
fn slow_peers_on_many_hosts_cannot_keep_a_modality_out() {
    let (t, originals) = archive_with_fixtures();
    // the default 64 slots; short deadlines, so the test does not wait minutes for them
    configure(
        &t,
        "[dimse]\nartim_timeout_seconds = 8\npdu_timeout_seconds = 8\nidle_timeout_seconds = 10\nreclaim_idle_seconds = 1\n",
    );
    let fresh = t.generate(
        "fresh",
        &strata_synth::SynthOptions {
            seed: 16,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 32,
            cols: 32,
            modality: Some(strata_synth::Modality::Ct),
            noise: false,
        },
    );
    let mut server = t.serve();
    // 64 hosts take every slot: 20 send the start of an A-ASSOCIATE-RQ and no more, 24
    // associate and then trickle a P-DATA PDU a byte at a time, 20 associate and idle.
    let mut slow = Vec::new();
    for host in 10..30u8 {
        let mut s = dimse_from(host, &server);
        s.write_all(&associate_rq()[..20]).unwrap();
        slow.push(s);
    }
    for host in 30..54u8 {
        let s = associated_from(host, &server);
        let mut pdu = vec![0x04, 0, 0, 0, 0x10, 0];
        pdu.extend_from_slice(&[0; 4096]);
        trickle(s.try_clone().unwrap(), pdu, Duration::from_millis(200));
        slow.push(s);
    }
    for host in 54..74u8 {
        slow.push(associated_from(host, &server));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // A modality still gets served: the slot of the peer idle the longest is given to it.
    let started = std::time::Instant::now();
    assert_echo_ok(&server);
    let store = tool(
        30,
        "storescu",
        &[
            "-v",
            "-aet",
            "MODALITY",
            "-aec",
            "STRATA",
            LOCALHOST,
            &server.port(),
            fresh[0].to_str().unwrap(),
        ],
    );
    let said = text(&store);
    assert!(
        store.status.success() && said.contains("Received Store Response (Success)"),
        "C-STORE: {said}\n{}",
        server.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "served before any slow peer's own deadline ran out"
    );
    // Every slow peer is answered A-ABORT and closed: reclaimed, or at its own deadline.
    for (i, s) in slow.iter_mut().enumerate() {
        let answer = pdu_type(s, Duration::from_secs(15));
        assert_eq!(
            answer,
            Some(0x07),
            "slow peer {i} is aborted:\n{}",
            server.log_text()
        );
    }
    let log = server.log_text();
    for reason in [
        "its slot went to a new association",
        "dimse.pdu_timeout_seconds",
        "no A-ASSOCIATE-RQ within the ARTIM timeout",
        "dimse.idle_timeout_seconds",
    ] {
        assert!(log.contains(reason), "{reason}:\n{log}");
    }
    // A flood from one more host: its 16 connections hold slots, 64 more wait to be answered
    // A-ASSOCIATE-RJ, and the rest are closed at once instead of holding descriptors.
    let mut flood: Vec<_> = (0..300).map(|_| dimse_from(80, &server)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = flood
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(20)))
        .filter(|closed| *closed)
        .count();
    assert!(closed >= 300 - 16 - 64, "{closed} of 300 closed at once");
    assert_echo_ok(&server);
    drop(flood);
    assert!(server.alive());
    let peak = server.peak_rss_kib();
    assert!(
        peak < 512 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    assert_echo_ok(&server);
    drop(server);
    still_served(&t, &originals);
}

#[test]
fn an_association_ends_at_its_maximum_lifetime_however_busy() {
    let t = TestArchive::new();
    configure(&t, "[dimse]\nmax_association_seconds = 3\n");
    let server = t.serve();
    let started = std::time::Instant::now();
    let mut s = associated_from(1, &server);
    // a C-ECHO every 300 ms: never idle, but cut at three seconds
    let mut answered = 0;
    let ended = loop {
        if s.write_all(&echo_rq(answered + 1)).is_err() {
            break None;
        }
        match pdu_type(&mut s, Duration::from_secs(10)) {
            Some(0x04) => answered += 1,
            other => break other,
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(ended, Some(0x07), "A-ABORT after {answered} echoes");
    let lived = started.elapsed();
    assert!(answered >= 3, "{answered} echoes answered first");
    assert!(
        lived >= Duration::from_secs(3) && lived < Duration::from_secs(6),
        "{lived:?}"
    );
    assert!(server
        .log_text()
        .contains("open for longer than dimse.max_association_seconds"));
    assert_echo_ok(&server);
}

/// `source` opened, given a new SOP Instance UID `sop`, changed by `edit` and written to `to`:
/// a crafted instance that ingest stores as any other.
fn crafted(
    source: &Path,
    to: &Path,
    sop: &str,
    edit: impl FnOnce(&mut dicom_object::DefaultDicomObject),
) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut obj = dicom_object::open_file(source).unwrap();
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(sop),
    ));
    obj.meta_mut().media_storage_sop_instance_uid = sop.to_string();
    edit(&mut obj);
    obj.write_to_file(to).unwrap();
}

/// Three US values, as the LUT and palette descriptors hold them.
fn descriptor(values: [u16; 3]) -> dicom_core::PrimitiveValue {
    dicom_core::PrimitiveValue::U16(values.to_vec().into())
}

#[test]
fn crafted_pixel_headers_are_refused_when_rendered_and_the_archive_serves_on() {
    use dicom_core::value::{DataSetSequence, PixelFragmentSequence, Value};
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    let (t, originals) = archive_with_fixtures();
    configure(&t, "[render]\nmax_frame_samples = 1000000\n");
    let small = t.generate(
        "small",
        &strata_synth::SynthOptions {
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 16,
            cols: 16,
            seed: 79,
            ..Default::default()
        },
    );
    let source = &small[0];
    // RLE Lossless by dcmtk, rendered as is; then its header made to point a segment 4 GB on
    let rle = t.path("rle.dcm");
    let out = tool(
        60,
        "dcmcrle",
        &[source.to_str().unwrap(), rle.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bad_rle = t.path("bad-rle.dcm");
    crafted(&rle, &bad_rle, "2.25.9000000000000000001", |obj| {
        let Value::PixelSequence(seq) = obj.get(tags::PIXEL_DATA).unwrap().value() else {
            panic!("dcmcrle wrote native pixel data");
        };
        let mut fragment = seq.fragments()[0].clone();
        assert_eq!(&fragment[..4], &2u32.to_le_bytes(), "two segments, 16 bits");
        fragment[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![fragment])),
        ));
    });
    // native: Number of Frames claims a million frames of the one present
    let frames = t.path("frames.dcm");
    crafted(source, &frames, "2.25.9000000000000000002", |obj| {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("1000000"),
        ));
    });
    // a Modality LUT whose descriptor claims 65536 entries and holds 4
    let lut = t.path("lut.dcm");
    crafted(source, &lut, "2.25.9000000000000000003", |obj| {
        let mut item = dicom_object::InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            descriptor([0, 0, 16]),
        ));
        item.put(DataElement::new(
            tags::LUT_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![0, 1, 2, 3].into()),
        ));
        obj.put(DataElement::new(
            tags::MODALITY_LUT_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
    });
    // a palette whose red table claims 4096 entries and holds 16
    let palette = t.path("palette.dcm");
    crafted(source, &palette, "2.25.9000000000000000004", |obj| {
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("PALETTE COLOR"),
        ));
        for (d, data, count) in [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                4096,
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                16,
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                16,
            ),
        ] {
            obj.put(DataElement::new(d, VR::US, descriptor([count, 0, 16])));
            obj.put(DataElement::new(
                data,
                VR::OW,
                PrimitiveValue::U16(vec![0xFF00; 16].into()),
            ));
        }
    });
    // a 1024×1024 frame, over the configured render.max_frame_samples
    let large = t.generate(
        "large",
        &strata_synth::SynthOptions {
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 1024,
            cols: 1024,
            seed: 80,
            ..Default::default()
        },
    );
    for f in [&rle, &bad_rle, &frames, &lut, &palette, &large[0]] {
        t.ok(&["import", f.to_str().unwrap()]);
    }

    let mut server = t.serve();
    let admin = common::Api::new(&server, &common::token(&t, "admin"));
    let refused = |file: &Path, what: &str, status: u16, expected: &str| {
        let answer = admin.get(&format!("{}{what}", common::instance_path(file)));
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert!(
            answer.content_type.contains("problem+json"),
            "{}",
            answer.content_type
        );
        assert!(answer.text().contains(expected), "{}", answer.text());
    };
    assert_eq!(
        admin
            .get(&format!("{}/rendered", common::instance_path(&rle)))
            .status,
        200
    );
    refused(
        &bad_rle,
        "/rendered",
        422,
        "RLE segment 1 starts at byte 4294967295, past the fragment",
    );
    // frame 1 is there; frame 500000 (the thumbnail's middle frame too) is not
    assert_eq!(
        admin
            .get(&format!("{}/rendered", common::instance_path(&frames)))
            .status,
        200
    );
    for what in ["/frames/500000/rendered", "/thumbnail"] {
        refused(
            &frames,
            what,
            422,
            "1 whole frames of 512 bytes, and Number of Frames says 1000000",
        );
    }
    refused(
        &lut,
        "/rendered",
        422,
        "the Modality LUT: the LUT Data hold 4 entries, the LUT Descriptor says 65536",
    );
    refused(
        &palette,
        "/rendered",
        422,
        "Red Palette Color Lookup Table Data has 16 entries, the descriptor says 4096",
    );
    refused(
        &large[0],
        "/rendered",
        415,
        "more than the 1000000 render.max_frame_samples allows",
    );
    assert!(server.alive(), "the server died:\n{}", server.log_text());
    let peak = server.peak_rss_kib();
    assert!(
        peak < 256 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    assert_echo_ok(&server);
    drop(server);
    still_served(&t, &originals);
    still_served(&t, &[rle, bad_rle, frames, lut, palette]);
}

/// `source` compressed to JPEG-LS lossless by dcmtk, at `to`.
fn jpeg_ls(source: &Path, to: &Path) {
    let out = tool(
        120,
        "dcmcjpls",
        &[source.to_str().unwrap(), to.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_decoder_process_that_dies_fails_its_frame_and_the_next_frame_gets_a_fresh_one() {
    let (t, originals) = archive_with_fixtures();
    // the JPEG-LS decoder may take 4 MiB beyond what its process holds at start: a 2048×2048
    // 16-bit frame (8 MiB of samples) exhausts it, a 16×16 one does not
    configure(&t, "[render]\ncodec_worker_memory_bytes = 4194304\n");
    let synth = |name: &str, size: u16, seed: u64| {
        t.generate(
            name,
            &strata_synth::SynthOptions {
                patients: 1,
                studies: 1,
                series_per_study: 1,
                slices: 1,
                rows: size,
                cols: size,
                seed,
                ..Default::default()
            },
        )
        .remove(0)
    };
    let (large, small) = (t.path("large-ls.dcm"), t.path("small-ls.dcm"));
    jpeg_ls(&synth("large", 2048, 81), &large);
    jpeg_ls(&synth("small", 16, 82), &small);
    for f in [&large, &small] {
        t.ok(&["import", f.to_str().unwrap()]);
    }
    let mut server = t.serve();
    let admin = common::Api::new(&server, &common::token(&t, "admin"));
    let render = |file: &Path| admin.get(&format!("{}/rendered", common::instance_path(file)));
    for _ in 0..2 {
        let died = render(&large);
        assert_eq!(died.status, 422, "{}", died.text());
        assert!(died.content_type.contains("problem+json"));
        assert!(
            died.text()
                .contains("the JPEG-LS Lossless Image Compression decoder's process ended"),
            "{}",
            died.text()
        );
        // a fresh decoder process for the next frame
        let next = render(&small);
        assert_eq!(next.status, 200, "{}", next.text());
        assert!(!next.body.is_empty());
    }
    assert!(server.alive(), "the server died:\n{}", server.log_text());
    // it was the memory limit that ended the decoder (the worker's stderr is the server's):
    // an allocation refused to Rust code, or one that aborted
    let log = server.log_text();
    assert!(
        log.contains("decode-worker: out of memory") || log.contains("memory allocation of"),
        "{log}"
    );
    let peak = server.peak_rss_kib();
    assert!(
        peak < 256 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    assert_echo_ok(&server);
    drop(server);
    still_served(&t, &originals);
    still_served(&t, &[large, small]);
}

/// One Explicit VR Little Endian element: its header (the long form for OB, OW, UN, SQ, UT) and
/// its value, padded to an even length.
fn explicit(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
    let mut v = v.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" { 0 } else { b' ' });
    }
    explicit_header(out, g, e, vr, v.len() as u32);
    out.extend_from_slice(&v);
}

fn explicit_header(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], len: u32) {
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
}

/// A Part-10 file in Explicit VR Little Endian of SOP class `class` and instance `sop` (study and
/// series UIDs derived from it): `before` holds the elements between (0008,0018) and
/// (0010,0020), `after` those after (0020,000E); `big` (its header, then that many patterned
/// bytes written a megabyte at a time) comes last.
fn crafted_header_file(
    path: &Path,
    class: &str,
    sop: &str,
    before: &[u8],
    after: &[u8],
    big: Option<(u16, u16, u32)>,
) {
    use dicom_object::meta::FileMetaTableBuilder;
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax("1.2.840.10008.1.2.1")
        .implementation_class_uid("2.25.1")
        .build()
        .unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(&[0u8; 128]).unwrap();
    file.write_all(b"DICM").unwrap();
    meta.write(&mut file).unwrap();
    let mut head = Vec::new();
    explicit(&mut head, 0x0008, 0x0016, b"UI", class.as_bytes());
    explicit(&mut head, 0x0008, 0x0018, b"UI", sop.as_bytes());
    head.extend_from_slice(before);
    explicit(&mut head, 0x0010, 0x0020, b"LO", b"HEADER-1");
    explicit(
        &mut head,
        0x0020,
        0x000D,
        b"UI",
        format!("{sop}.1").as_bytes(),
    );
    explicit(
        &mut head,
        0x0020,
        0x000E,
        b"UI",
        format!("{sop}.2").as_bytes(),
    );
    head.extend_from_slice(after);
    file.write_all(&head).unwrap();
    if let Some((g, e, len)) = big {
        let mut h = Vec::new();
        explicit_header(&mut h, g, e, b"OB", len);
        file.write_all(&h).unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    }
    file.flush().unwrap();
}

/// The value `crafted_header_file` writes for a big element of `len` bytes.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i % (1 << 20)) % 251) as u8).collect()
}

/// An element (0009,1001) SQ of undefined length with `items` small items of one element each.
fn many_items(items: usize) -> Vec<u8> {
    let mut out = Vec::new();
    explicit(&mut out, 0x0009, 0x0010, b"LO", b"ITEMS");
    explicit_header(&mut out, 0x0009, 0x1001, b"SQ", u32::MAX);
    for _ in 0..items {
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        out.extend_from_slice(&10u32.to_le_bytes());
        explicit(&mut out, 0x0008, 0x0100, b"SH", b"A");
    }
    out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    out
}

/// Whether two files hold the same bytes, compared a megabyte at a time: a test that held both
/// whole would hand its resident memory to the next process it starts (a forked child starts
/// with its parent's pages counted), and the importer's peak would be measured wrong.
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let open = |p: &Path| std::io::BufReader::new(std::fs::File::open(p).unwrap());
    let (mut a, mut b) = (open(a), open(b));
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
    }
}

/// Imports `file` measuring the importer's peak resident memory, which must stay under 256 MiB.
fn import_bounded(t: &TestArchive, file: &Path) -> std::process::Output {
    let (out, peak_kib) = t.run_measured(&["import", file.to_str().unwrap()]);
    eprintln!(
        "importing {} peaked at {} MiB",
        file.display(),
        peak_kib / 1024
    );
    assert!(
        peak_kib < 256 * 1024,
        "importing {} peaked at {} MiB",
        file.display(),
        peak_kib / 1024
    );
    out
}

#[test]
fn huge_header_values_are_stored_in_bounded_memory_and_served_as_bulk_data() {
    let (t, originals) = archive_with_fixtures();
    // a 512 MiB private OB element before (absent) pixel data
    let private = t.path("private.dcm");
    let mut creator = Vec::new();
    explicit(&mut creator, 0x0029, 0x0010, b"LO", b"HUGE");
    crafted_header_file(
        &private,
        "1.2.840.10008.5.1.4.1.1.7",
        "2.25.9100",
        &[],
        &creator,
        Some((0x0029, 0x1000, 512 << 20)),
    );
    let out = import_bounded(&t, &private);
    assert!(out.status.success(), "{}", text(&out));
    let got = t.path("got.dcm");
    t.ok(&["get", "2.25.9100", "-o", got.to_str().unwrap()]);
    assert!(same_bytes(&got, &private));
    std::fs::remove_file(&private).unwrap();

    // an Encapsulated PDF of 200 MB
    let pdf = t.path("pdf.dcm");
    let mut mime = Vec::new();
    explicit(&mut mime, 0x0042, 0x0010, b"ST", b"a report");
    let pdf_len = 200_000_000u32;
    crafted_header_file(
        &pdf,
        "1.2.840.10008.5.1.4.1.1.104.1",
        "2.25.9200",
        &[],
        &mime,
        Some((0x0042, 0x0011, pdf_len)),
    );
    let out = import_bounded(&t, &pdf);
    assert!(out.status.success(), "{}", text(&out));
    t.ok(&["get", "2.25.9200", "-o", got.to_str().unwrap()]);
    assert!(same_bytes(&got, &pdf));
    std::fs::remove_file(&pdf).unwrap();

    // a sequence of a million small items is refused, named
    let items = t.path("items.dcm");
    crafted_header_file(
        &items,
        "1.2.840.10008.5.1.4.1.1.7",
        "2.25.9300",
        &many_items(1_000_000),
        &[],
        None,
    );
    let out = import_bounded(&t, &items);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("elements and items"), "{}", text(&out));
    // ... and one of a hundred thousand is stored
    crafted_header_file(
        &items,
        "1.2.840.10008.5.1.4.1.1.7",
        "2.25.9301",
        &many_items(100_000),
        &[],
        None,
    );
    let out = import_bounded(&t, &items);
    assert!(out.status.success(), "{}", text(&out));
    t.ok(&["get", "2.25.9301", "-o", got.to_str().unwrap()]);
    assert!(same_bytes(&got, &items));

    // the big values are named in the metadata and served from the stored file
    let mut server = t.serve();
    let tok = common::token(&t, "admin");
    let auth = format!("Bearer {tok}");
    let instance = format!(
        "{}/dicomweb/studies/2.25.9200.1/series/2.25.9200.2/instances/2.25.9200",
        common::base(&server)
    );
    let meta = common::http(
        "GET",
        &format!("{instance}/metadata"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(meta.status, 200, "{}", meta.text());
    let json: serde_json::Value = serde_json::from_slice(&meta.body).unwrap();
    let uri = json[0]["00420011"]["BulkDataURI"]
        .as_str()
        .unwrap_or_else(|| panic!("no BulkDataURI for the document: {json}"))
        .to_string();
    assert_eq!(uri, format!("{instance}/bulk/00420011"));
    assert_eq!(json[0]["00420010"]["Value"][0], "a report");
    assert!(
        meta.body.len() < 64 << 10,
        "the document is not in the metadata"
    );
    let private = common::http(
        "GET",
        &format!(
            "{}/dicomweb/studies/2.25.9100.1/series/2.25.9100.2/instances/2.25.9100/metadata",
            common::base(&server)
        ),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(private.status, 200, "{}", private.text());
    let json: serde_json::Value = serde_json::from_slice(&private.body).unwrap();
    assert!(
        json[0]["00291000"]["BulkDataURI"]
            .as_str()
            .is_some_and(|u| u.ends_with("/instances/2.25.9100/bulk/00291000")),
        "{json}"
    );
    assert_eq!(json[0]["00291000"]["vr"], "OB");
    let bulk = common::http(
        "GET",
        &uri,
        &[
            ("Authorization", &auth),
            ("Accept", "application/octet-stream"),
        ],
        None,
    );
    assert_eq!(bulk.status, 200, "{}", bulk.text());
    assert!(
        bulk.body == patterned(pdf_len as usize),
        "the document as sent"
    );
    assert!(server.alive());
    still_served(&t, &originals);
}
