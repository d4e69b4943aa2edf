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
