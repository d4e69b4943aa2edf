//! C-GET, C-MOVE and Storage Commitment against real peers: dcmtk's getscu, movescu and
//! storescp, and pynetdicom for cancel and commitment. Every retrieved instance must be identical
//! in content to what was stored.

mod common;

use common::{
    assert_same_content, audit_events, files_under, free_port, peer_script, python, sop_uid,
    storescp, text, tool, TestArchive,
};
use dicom_object::InMemDicomObject;
use std::path::{Path, PathBuf};
use strata_synth::{Modality, SynthOptions};

fn study(slices: usize) -> SynthOptions {
    SynthOptions {
        seed: 5,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

fn study_uid(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

/// Retrieves a whole study with dcmtk's getscu into `<tmp>/got`, asserting it succeeded.
fn getscu_study(t: &TestArchive, server: &common::Server, study: &str) -> PathBuf {
    common::getscu_study(t, server, study, "got").0
}

/// dcmtk's movescu of a study (`key`: "StudyInstanceUID=...") to `destination`.
fn movescu_study(server: &common::Server, destination: &str, key: &str) -> std::process::Output {
    let args = [
        "-aec",
        "STRATA",
        "-aem",
        destination,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        key,
        "127.0.0.1",
        &server.port(),
    ];
    tool(120, "movescu", &args)
}

#[test]
fn getscu_retrieves_a_whole_study_identical() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(3));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let out = getscu_study(&t, &server, &study_uid(&files[0]));
    assert_same_content(&files, &out);
    // series and image levels take only what they name
    let one = t.path("one");
    std::fs::create_dir_all(&one).unwrap();
    let res = tool(
        60,
        "getscu",
        &[
            "-aec",
            "STRATA",
            "-S",
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            &format!("StudyInstanceUID={}", study_uid(&files[0])),
            "-k",
            "SeriesInstanceUID=",
            "-k",
            &format!("SOPInstanceUID={}", sop_uid(&files[4])),
            "-od",
            one.to_str().unwrap(),
            "127.0.0.1",
            &server.port(),
        ],
    );
    assert!(res.status.success(), "{}", text(&res));
    assert_same_content(&files[4..5], &one);
    // Each retrieve is audited before its first sub-operation, and again with what arrived.
    let started = audit_events(&t, "dimse.get");
    let done = audit_events(&t, "dimse.get.result");
    assert_eq!((started.len(), done.len()), (2, 2), "{started:?} {done:?}");
    assert_eq!(started[0]["detail"], "6 instances to send");
    assert_eq!(started[1]["detail"], "1 instance to send");
    assert!(done[0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("6 completed, 0 failed"));
    for (s, d) in started.iter().zip(&done) {
        assert_eq!(s["actor"], "GETSCU");
        assert!(s["id"].as_i64() < d["id"].as_i64(), "{s} {d}");
    }
}

#[test]
fn a_move_whose_every_sub_operation_fails_is_audited_before_it_starts() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(2));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    // in the AE table, and nobody listens there
    t.ok(&[
        "ae",
        "add",
        "DEADSCP",
        "127.0.0.1",
        &free_port().to_string(),
    ]);
    let server = t.serve();
    let study = study_uid(&files[0]);
    let res = movescu_study(&server, "DEADSCP", &format!("StudyInstanceUID={study}"));
    assert!(
        text(&res).to_lowercase().contains("a702") || text(&res).contains("Refused"),
        "{}",
        text(&res)
    );
    drop(server);
    let started = audit_events(&t, "dimse.move");
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["study_uid"], study.as_str());
    assert_eq!(started[0]["detail"], "4 instances to send to DEADSCP");
    let done = audit_events(&t, "dimse.move.result");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["outcome"], "failure");
    assert!(
        done[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("0 completed, 4 failed"),
        "{}",
        done[0]
    );
    assert!(started[0]["id"].as_i64() < done[0]["id"].as_i64());
}

#[test]
fn movescu_sends_a_study_to_a_peer_from_the_ae_table() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(3));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let dest_port = free_port();
    let out = t.path("moved");
    std::fs::create_dir_all(&out).unwrap();
    let scp = storescp("MOVESCP", dest_port, &out);
    // The destination comes from the managed AE table, added while nothing runs.
    t.ok(&["ae", "add", "MOVESCP", "127.0.0.1", &dest_port.to_string()]);
    assert!(t.ok(&["ae", "list"]).contains("MOVESCP"));
    let server = t.serve();
    let study = format!("StudyInstanceUID={}", study_uid(&files[0]));
    let unknown = movescu_study(&server, "NOWHERE", &study);
    assert!(
        text(&unknown).contains("a801") || text(&unknown).contains("MoveDestinationUnknown"),
        "{}",
        text(&unknown)
    );
    let res = movescu_study(&server, "MOVESCP", &study);
    drop(scp);
    assert!(res.status.success(), "{}", text(&res));
    assert_same_content(&files, &out);
    drop(server);

    // The AE table is a decision the blobs cannot tell: it is journaled, and reindex restores it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(t.data().join(format!("index.sqlite{suffix}")));
    }
    t.ok(&["reindex", "--from-replica", "3"]);
    assert!(
        t.ok(&["ae", "list"]).contains("MOVESCP"),
        "restored by reindex"
    );
    t.ok(&["ae", "remove", "MOVESCP"]);
    assert!(!t.ok(&["ae", "list"]).contains("MOVESCP"));
    assert!(!t.run(&["ae", "remove", "MOVESCP"]).status.success());
}

fn run_json(args: &[String]) -> serde_json::Value {
    let py = python();
    let out = tool(120, py.to_str().unwrap(), args);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn pynetdicom_get_and_move_complete_and_can_be_cancelled() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(20));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    std::fs::write(t.data().join("strata.toml"), "").unwrap();
    let dest_port = free_port();
    std::fs::write(
        t.data().join("strata.toml"),
        format!("[[dimse.peers]]\naet = \"MOVEDEST\"\nhost = \"127.0.0.1\"\nport = {dest_port}\n"),
    )
    .unwrap();
    let server = t.serve();
    let uid = study_uid(&files[0]);
    let get = |cancel: bool| {
        let out = t.path(if cancel { "get-cancel" } else { "get-all" });
        std::fs::create_dir_all(&out).unwrap();
        let mut args = vec![
            peer_script("get_cancel.py").display().to_string(),
            server.port(),
            uid.clone(),
            out.display().to_string(),
        ];
        if cancel {
            args.push("cancel".into());
        }
        run_json(&args)
    };
    let all = get(false);
    assert_eq!(all["status"], 0, "{all}");
    assert_eq!(all["completed"], 40, "{all}");
    assert_eq!(all["received"], 40, "{all}");
    assert_same_content(&files, &t.path("get-all"));
    let cancelled = get(true);
    assert_eq!(cancelled["status"], 0xFE00, "{cancelled}");
    assert!(cancelled["received"].as_u64().unwrap() < 40, "{cancelled}");

    let mv = |cancel: bool| {
        let mut args = vec![
            peer_script("move_cancel.py").display().to_string(),
            server.port(),
            dest_port.to_string(),
            uid.clone(),
        ];
        if cancel {
            args.push("cancel".into());
        }
        run_json(&args)
    };
    let all = mv(false);
    assert_eq!(all["status"], 0, "{all}");
    assert_eq!(all["completed"], 40, "{all}");
    assert_eq!(all["received"], 40, "{all}");
    let cancelled = mv(true);
    assert_eq!(cancelled["status"], 0xFE00, "{cancelled}");
    assert!(cancelled["received"].as_u64().unwrap() < 40, "{cancelled}");
}

#[test]
fn storage_commitment_reports_each_instance() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(2));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let stored = sop_uid(&files[0]);
    let absent = "1.2.3.4.5.6.7.8.9";
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    let args = vec![
        peer_script("commit.py").display().to_string(),
        server.port(),
        ct.into(),
        stored.clone(),
        absent.into(),
    ];
    let r = run_json(&args);
    assert_eq!(r["action_status"], 0, "{r}");
    assert_eq!(r["event_type"], 2, "failures exist: {r}");
    assert_eq!(r["transaction"], r["sent_transaction"], "{r}");
    assert_eq!(r["committed"], serde_json::json!([stored]), "{r}");
    assert_eq!(
        r["failed"],
        serde_json::json!([[absent, 0x0112]]),
        "no such object instance: {r}"
    );
    let all: Vec<String> = files.iter().map(|f| sop_uid(f)).collect();
    let mut args = vec![
        peer_script("commit.py").display().to_string(),
        server.port(),
        ct.into(),
    ];
    args.extend(all.iter().cloned());
    let r = run_json(&args);
    assert_eq!(r["event_type"], 1, "all committed: {r}");
    assert_eq!(r["committed"].as_array().unwrap().len(), all.len(), "{r}");
    let audit = t.ok(&["audit", "list", "--action", "dimse.commit"]);
    assert!(audit.contains("COMMITSCU"), "{audit}");

    // A requester that releases at once gets its report on a new association, to the address
    // the AE table gives for it.
    let listen = free_port();
    t.ok(&["ae", "add", "LATESCU", "127.0.0.1", &listen.to_string()]);
    let mut args = vec![
        peer_script("commit_later.py").display().to_string(),
        server.port(),
        listen.to_string(),
        ct.into(),
    ];
    args.extend(all.iter().cloned());
    let r = run_json(&args);
    assert_eq!(r["action_status"], 0, "{r}");
    assert_eq!(r["event_type"], 1, "all committed: {r}");
    assert_eq!(r["transaction"], r["sent_transaction"], "{r}");
    assert_eq!(
        r["on_listener"], true,
        "the report came on a new association: {r}"
    );
    assert_eq!(r["calling_ae"], "STRATA", "{r}");
    assert_eq!(r["committed"].as_array().unwrap().len(), all.len(), "{r}");
    // (audited once the requester released the new association: it may take a moment)
    let mut audit = String::new();
    for _ in 0..50 {
        audit = t.ok(&["audit", "list", "--action", "dimse.commit.report"]);
        if audit.contains("LATESCU") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        audit.contains("delivered on a new association to LATESCU"),
        "{audit}\n{}",
        server.log_text()
    );
    assert!(
        !audit.contains("COMMITSCU"),
        "reports answered on the association: {audit}"
    );
}

#[test]
fn compressed_instances_are_decoded_for_a_peer_that_accepts_only_uncompressed() {
    let t = TestArchive::new();
    let files = t.generate("in", &study(2));
    let jpeg = t.path("jpeg");
    std::fs::create_dir_all(&jpeg).unwrap();
    let mut compressed = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let out = jpeg.join(format!("{i}.dcm"));
        let r = tool(
            60,
            "dcmcjpeg",
            &["+e1", f.to_str().unwrap(), out.to_str().unwrap()],
        );
        assert!(r.status.success(), "{}", text(&r));
        compressed.push(out);
    }
    t.ok(&["import", jpeg.to_str().unwrap()]);
    let server = t.serve();
    // getscu accepts only uncompressed syntaxes for its storage sub-operations by default
    let got = files_under(&getscu_study(&t, &server, &study_uid(&files[0])));
    assert_eq!(got.len(), files.len());
    for g in &got {
        let obj = dicom_object::open_file(g).unwrap();
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            "1.2.840.10008.1.2.1",
            "decoded to Explicit VR LE"
        );
        // lossless: the pixels are those of the uncompressed original
        let uid = sop_uid(g);
        let original = files.iter().find(|f| sop_uid(f) == uid).unwrap();
        let o = dicom_object::open_file(original).unwrap();
        let px = |x: &dicom_object::DefaultDicomObject| {
            x.element(dicom_dictionary_std::tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap()
                .to_vec()
        };
        assert!(px(&obj) == px(&o), "{uid}: pixels differ after decoding");
    }
}

#[test]
fn findscu_matches_inside_sequences_and_returns_only_requested_item_keys() {
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let t = TestArchive::new();
    let opts = SynthOptions {
        seed: 9,
        patients: 2,
        studies: 2,
        series_per_study: 1,
        slices: 1,
        rows: 16,
        cols: 16,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let files = t.generate("in", &opts);
    // Give each study a Procedure Code Sequence: HEAD for the first, CHEST for the second.
    let codes = [("A1", "CT HEAD"), ("B2", "CT CHEST")];
    for (f, (code, meaning)) in files.iter().zip(codes) {
        let mut obj = dicom_object::open_file(f).unwrap();
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from(code),
        ));
        item.put(DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from("LOCAL"),
        ));
        item.put(DataElement::new(
            tags::CODE_MEANING,
            VR::LO,
            PrimitiveValue::from(meaning),
        ));
        obj.put(DataElement::new(
            tags::PROCEDURE_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        obj.write_to_file(f).unwrap();
    }
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let find = |value: &str| {
        let out = tool(
            30,
            "findscu",
            &[
                "-aec",
                "STRATA",
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "StudyInstanceUID",
                "-k",
                &format!("ProcedureCodeSequence[0].CodeValue={value}"),
                "-k",
                "ProcedureCodeSequence[0].CodeMeaning",
                "127.0.0.1",
                &server.port(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let chest = find("B*");
    assert!(
        chest.contains("CT CHEST") && !chest.contains("CT HEAD"),
        "{chest}"
    );
    assert!(
        !chest.contains("LOCAL"),
        "only the requested item keys come back: {chest}"
    );
    assert_eq!(chest.matches("Find Response:").count(), 1, "{chest}");
    let all = find("");
    assert_eq!(
        all.matches("Find Response:").count(),
        2,
        "an empty item key matches every study: {all}"
    );
}

/// One instance of `frames` frames of `rows` × `columns` 16-bit pixels made from a small
/// generated one: large enough that holding it whole, or twice, shows in the server's resident
/// memory. Sample `i` of the pixel data is `i % 251`.
fn large_instance(t: &TestArchive, rows: u16, columns: u16, frames: u32) -> PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let small = t.generate("small", &study(1));
    let mut obj = dicom_object::open_file(&small[0]).unwrap();
    let pixels: Vec<u8> = (0..rows as usize * columns as usize * frames as usize)
        .flat_map(|i| ((i % 251) as u16).to_le_bytes())
        .collect();
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(frames.to_string()),
    ));
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(columns),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(pixels),
    ));
    let path = t.path("large.dcm");
    obj.write_to_file(&path).unwrap();
    path
}

#[test]
fn a_large_instance_leaves_by_every_door_as_it_is_read_and_conversions_stay_within_budget() {
    let t = TestArchive::new();
    let (rows, columns, frames) = (2000u16, 2000u16, 20u32);
    let file = large_instance(&t, rows, columns, frames); // 160 MB of pixel data
    let size = std::fs::metadata(&file).unwrap().len();
    t.ok(&["import", file.to_str().unwrap()]);
    let dest_port = free_port();
    t.ok(&["ae", "add", "BIGSCP", "127.0.0.1", &dest_port.to_string()]);
    let server = t.serve();
    let study = study_uid(&file);
    let sop = sop_uid(&file);
    let obj = dicom_object::open_file(&file).unwrap();
    let series = obj
        .element(dicom_dictionary_std::tags::SERIES_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    drop(obj);

    // C-GET and C-MOVE: the data set goes out window by window
    let got = getscu_study(&t, &server, &study);
    assert_same_content(std::slice::from_ref(&file), &got);
    let moved = t.path("moved");
    std::fs::create_dir_all(&moved).unwrap();
    let scp = storescp("BIGSCP", dest_port, &moved);
    let res = movescu_study(&server, "BIGSCP", &format!("StudyInstanceUID={study}"));
    drop(scp);
    assert!(res.status.success(), "{}", text(&res));
    assert_same_content(std::slice::from_ref(&file), &moved);

    // WADO-URI as stored: the stored bytes, streamed
    let admin = format!("Bearer {}", common::token(&t, "admin"));
    let before = server.http.to_string();
    let uri = format!(
        "http://{}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom",
        server.http
    );
    let answer = common::http("GET", &uri, &[("Authorization", &admin)], None);
    assert_eq!(answer.status, 200);
    assert!(
        answer.body == std::fs::read(&file).unwrap(),
        "WADO-URI returns the stored instance"
    );
    drop(answer);
    // many at once: each holds a window, not the instance
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                let got = common::http("GET", &uri, &[("Authorization", &admin)], None);
                assert_eq!(got.status, 200);
                assert_eq!(got.body.len() as u64, size);
            });
        }
        for n in 0..2 {
            let (t, server, study) = (&t, &server, &study);
            s.spawn(move || {
                let out = common::getscu_study(t, server, study, &format!("got-{n}")).0;
                assert_eq!(files_under(&out).len(), 1);
            });
        }
    });
    // none of these held the instance whole: eight at once stay below the size of one
    let peak = server.peak_rss_kib();
    eprintln!("peak resident memory sending a {size}-byte instance: {peak} KiB");
    assert!(
        peak * 1024 < size,
        "the server peaked at {} MiB sending a {} MiB instance",
        peak / 1024,
        size >> 20
    );

    drop(server);

    // Its frames, as stored, are read by their byte ranges; rendering one reads that frame alone
    // (measured in a server of their own)
    let server = t.serve();
    let uri = uri.replace(&before, &server.http.to_string());
    let base = format!(
        "http://{}/dicomweb/studies/{study}/series/{series}/instances/{sop}",
        server.http
    );
    let samples = rows as usize * columns as usize;
    for n in [1usize, 20] {
        let got = common::http(
            "GET",
            &format!("{base}/frames/{n}"),
            &[("Authorization", &admin)],
            None,
        );
        assert_eq!(got.status, 200, "{}", got.text());
        let first = (n - 1) * samples;
        let expected: Vec<u8> = (first..first + samples)
            .flat_map(|i| ((i % 251) as u16).to_le_bytes())
            .collect();
        let at = got
            .body
            .windows(expected.len().min(64))
            .position(|w| w == &expected[..64])
            .expect("the frame's first bytes");
        assert!(
            got.body[at..at + expected.len()] == expected[..],
            "frame {n} differs"
        );
    }
    let rendered = common::http(
        "GET",
        &format!("{base}/frames/20/rendered"),
        &[("Authorization", &admin), ("Accept", "image/png")],
        None,
    );
    assert_eq!(rendered.status, 200, "{}", rendered.text());
    assert_eq!(rendered.content_type, "image/png");
    // its pixel data as bulk data streams from the stored bytes, a range of it too
    let bulk = common::http(
        "GET",
        &format!("{base}/bulk/7FE00010"),
        &[
            ("Authorization", &admin),
            ("Accept", "application/octet-stream"),
            ("Range", "bytes=1000-1999"),
        ],
        None,
    );
    assert_eq!(bulk.status, 206, "{}", bulk.text());
    let expected: Vec<u8> = (500..1000)
        .flat_map(|i| ((i % 251) as u16).to_le_bytes())
        .collect();
    assert!(bulk.body == expected, "the range of the pixel data");
    let whole = common::http(
        "GET",
        &format!("{base}/bulk/7FE00010"),
        &[
            ("Authorization", &admin),
            ("Accept", "application/octet-stream"),
        ],
        None,
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len(), samples * 2 * frames as usize);
    drop(whole);
    // none of these held the instance whole (which alone would take its size)
    let peak = server.peak_rss_kib();
    eprintln!("peak resident memory with frames and rendering: {peak} KiB");
    assert!(
        peak * 1024 < size,
        "the server peaked at {} MiB serving frames of a {} MiB instance",
        peak / 1024,
        size >> 20
    );

    // What needs it whole is held to render.instance_memory_bytes (256 MiB): converted, the
    // instance would need twice its size, and is refused clearly.
    let converted = common::http(
        "GET",
        &format!("{uri}&transferSyntax=1.2.840.10008.1.2"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(converted.status, 406, "{}", converted.text());
    assert_eq!(converted.content_type, "application/problem+json");
    assert!(
        converted.text().contains("render.instance_memory_bytes"),
        "{}",
        converted.text()
    );
    let peak = server.peak_rss_kib();
    assert!(
        peak < 512 * 1024,
        "the server peaked at {} MiB",
        peak / 1024
    );
    drop(server);
}
