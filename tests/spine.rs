//! The spine end to end, through the real binary: import, byte-identical retrieval, ciphertext
//! at rest, replica loss and corruption with repair, reindex from one replica, kill -9 during an
//! import, and bad input refused without touching what is stored.

mod common;

use common::{audit_events, files_under, sop_uid, TestArchive};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use strata_synth::{Modality, SynthOptions};

fn small_set() -> SynthOptions {
    SynthOptions {
        seed: 7,
        patients: 3,
        studies: 4,
        series_per_study: 2,
        slices: 3,
        rows: 64,
        cols: 64,
        modality: None,
        noise: true,
    }
}

#[test]
fn cli_reads_of_patient_data_and_of_the_ae_table_are_audited() {
    let t = TestArchive::new();
    let files = t.generate("in", &small_set());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    t.ok(&["ae", "add", "PACS1", "127.0.0.1", "11112"]);
    assert!(t.ok(&["studies"]).contains("4 studies"));
    let got = t.path("got.dcm");
    t.ok(&["get", &sop_uid(&files[0]), "-o", got.to_str().unwrap()]);
    let none = t.path("none.dcm");
    let missing = t.run(&["get", "1.2.3.4.5", "-o", none.to_str().unwrap()]);
    assert!(!missing.status.success() && !none.exists());
    assert!(t.ok(&["ae", "list"]).contains("PACS1"));

    let cli = |e: &serde_json::Value| {
        assert_eq!(e["role"], "cli", "{e}");
        assert!(e["actor"].as_str().unwrap().starts_with("cli:"), "{e}");
        assert!(
            e["remote"].as_str().unwrap().starts_with("local, uid "),
            "{e}"
        );
    };
    let studies = audit_events(&t, "cli.studies");
    assert_eq!(studies.len(), 1, "{studies:?}");
    assert_eq!(studies[0]["detail"], "4 studies");
    cli(&studies[0]);
    let gets = audit_events(&t, "cli.get");
    assert_eq!(gets.len(), 2, "{gets:?}");
    let obj = dicom_object::open_file(&files[0]).unwrap();
    let value = |tag| {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    use dicom_dictionary_std::tags;
    assert_eq!(gets[0]["outcome"], "success");
    assert_eq!(gets[0]["patient_id"], value(tags::PATIENT_ID).as_str());
    assert_eq!(
        gets[0]["study_uid"],
        value(tags::STUDY_INSTANCE_UID).as_str()
    );
    assert_eq!(gets[1]["outcome"], "failure");
    assert!(gets[1]["detail"].as_str().unwrap().contains("1.2.3.4.5"));
    gets.iter().for_each(cli);
    let ae = audit_events(&t, "cli.ae.list");
    assert_eq!(ae.len(), 1, "{ae:?}");
    assert_eq!(ae[0]["detail"], "1 AE title");
    cli(&ae[0]);
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn import_then_get_is_byte_identical_and_replicas_hold_ciphertext() {
    let t = TestArchive::new();
    let files = t.generate("in", &small_set());
    assert_eq!(files.len(), 24);
    let out = t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert!(out.contains("24 stored"), "{out}");

    for f in &files {
        let uid = sop_uid(f);
        let got = t.path("got.dcm");
        t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(f).unwrap(),
            "{uid} differs"
        );
    }

    let studies = t.ok(&["studies"]);
    assert!(studies.contains("4 studies"), "{studies}");

    // What lies on the replicas reveals nothing: no DICM marker, no names, no UIDs.
    let secrets: Vec<Vec<u8>> = files
        .iter()
        .flat_map(|f| {
            let obj = dicom_object::open_file(f).unwrap();
            let name = obj
                .element(dicom_dictionary_std::tags::PATIENT_NAME)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let family = name.split('^').next().unwrap().to_string();
            vec![family.into_bytes(), sop_uid(f).into_bytes()]
        })
        .collect();
    let mut blobs = 0;
    for letter in ['a', 'b', 'c'] {
        for blob in files_under(&t.replica(letter).join("blobs")) {
            blobs += 1;
            let bytes = std::fs::read(&blob).unwrap();
            assert!(bytes.len() > 132);
            assert_ne!(&bytes[128..132], b"DICM", "{}", blob.display());
            assert!(!bytes.windows(4).any(|w| w == b"DICM"));
            for s in &secrets {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == &s[..]),
                    "plaintext {:?} in {}",
                    String::from_utf8_lossy(s),
                    blob.display()
                );
            }
            let name = blob.file_name().unwrap().to_str().unwrap();
            assert!(!files.iter().any(|f| sop_uid(f) == name));
        }
    }
    assert_eq!(blobs, 3 * 24, "one copy of each instance on each replica");

    // Importing the same files again stores nothing new and succeeds.
    let again = t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert!(
        again.contains("0 stored") && again.contains("24 already present"),
        "{again}"
    );
    assert_eq!(files_under(&t.replica('a').join("blobs")).len(), 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_and_corrupt_copies_are_served_around_and_repaired() {
    let t = TestArchive::new();
    let files = t.generate("in", &small_set());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let f0 = &files[0];
    let uid0 = sop_uid(f0);
    let blob0 = t
        .open()
        .await
        .index
        .instance(&uid0)
        .await
        .unwrap()
        .unwrap()
        .blob_id;
    let got = t.path("got.dcm");

    // One replica's copy deleted: get still works, and the copy comes back.
    std::fs::remove_file(t.blob_file('a', &blob0)).unwrap();
    let out = t.run(&["get", &uid0, "-o", got.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(f0).unwrap());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repaired 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t.blob_file('a', &blob0).exists(),
        "read-repair rewrote the missing copy"
    );
    assert_eq!(
        std::fs::read(t.blob_file('a', &blob0)).unwrap(),
        std::fs::read(t.blob_file('b', &blob0)).unwrap()
    );

    // One byte flipped in another instance's copy: detected by scrub, served from elsewhere,
    // repaired by scrub --repair.
    let uid1 = sop_uid(&files[1]);
    let blob1 = t
        .open()
        .await
        .index
        .instance(&uid1)
        .await
        .unwrap()
        .unwrap()
        .blob_id;
    let victim = t.blob_file('b', &blob1);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let scrub = t.run(&["scrub"]);
    let text = String::from_utf8_lossy(&scrub.stdout);
    assert!(
        !scrub.status.success(),
        "unrepaired corruption must fail scrub: {text}"
    );
    assert!(
        text.contains("1 corrupt") && text.contains("1 unrepaired"),
        "{text}"
    );
    let a = t.open_archive().await;
    let mut served = Vec::new();
    a.reads()
        .read_instance(&uid1, |c| {
            served.extend_from_slice(c);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        served,
        std::fs::read(&files[1]).unwrap(),
        "served from a good copy"
    );
    drop(a);
    let repaired = t.ok(&["scrub", "--repair"]);
    assert!(
        repaired.contains("1 corrupt")
            && repaired.contains("1 repaired")
            && repaired.contains("0 unrepaired"),
        "{repaired}"
    );
    let clean = t.ok(&["scrub"]);
    assert!(clean.contains("0 missing, 0 corrupt"), "{clean}");

    // Two of three replicas gone entirely: every instance still reads back identical.
    std::fs::remove_dir_all(t.replica('a').join("blobs")).unwrap();
    std::fs::remove_dir_all(t.replica('c').join("blobs")).unwrap();
    for f in &files {
        let uid = sop_uid(f);
        t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(f).unwrap());
    }
    let healed = t.ok(&["scrub", "--repair"]);
    assert!(healed.contains("0 unrepaired"), "{healed}");
    assert_eq!(
        files_under(&t.replica('c').join("blobs")).len(),
        files.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reindex_from_one_replica_restores_everything() {
    let t = TestArchive::new();
    let files = t.generate("in", &small_set());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let before = t.open().await.index.counts().await.unwrap();
    let studies_before = t.ok(&["studies"]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(t.data().join(format!("index.sqlite{suffix}")));
    }
    // Replicas 2 and 3 are not even needed.
    std::fs::remove_dir_all(t.replica('b')).unwrap();
    std::fs::remove_dir_all(t.replica('c')).unwrap();
    let out = t.ok(&["reindex", "--from-replica", "1"]);
    assert!(out.contains("24 instances indexed"), "{out}");
    let after = t.open().await.index.counts().await.unwrap();
    assert_eq!(before, after);
    assert_eq!(after.studies, 4);
    assert_eq!(after.series, 8);
    assert_eq!(studies_before, t.ok(&["studies"]));
    let got = t.path("got.dcm");
    for f in &files {
        t.ok(&["get", &sop_uid(f), "-o", got.to_str().unwrap()]);
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(f).unwrap());
    }
    assert!(!t.run(&["reindex", "--from-replica", "4"]).status.success());
}

/// Rewrites a Part-10 file with one attribute changed or removed.
fn edit(
    path: &std::path::Path,
    out: &std::path::Path,
    f: impl FnOnce(&mut dicom_object::DefaultDicomObject),
) {
    let mut obj = dicom_object::open_file(path).unwrap();
    f(&mut obj);
    obj.write_to_file(out).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_are_refused_or_replaced_and_replacements_survive_reindex() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 2,
            ..small_set()
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let original = &files[0];
    let uid = sop_uid(original);
    let changed = t.path("changed.dcm");
    edit(original, &changed, |o| {
        o.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Changed^Name"),
        ));
    });
    let got = t.path("got.dcm");

    let out = t.run(&["import", changed.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("conflict") && text.contains(&uid) && text.contains("changed.dcm"),
        "{text}"
    );
    t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(original).unwrap(),
        "the stored one was kept"
    );

    std::fs::write(
        t.data().join("strata.toml"),
        "[ingest]\non_conflict = \"replace\"\n",
    )
    .unwrap();
    // A replacement is journaled before the index holds it: with a file standing where the
    // journal's folder should be on every replica, it is refused and not made, so the index
    // never holds a decision that reindex would not restore.
    for r in ['a', 'b', 'c'] {
        let journal = t.replica(r).join("journal");
        let _ = std::fs::remove_dir_all(&journal);
        std::fs::write(&journal, b"not a folder").unwrap();
    }
    let out = t.run(&["import", changed.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("not stored"), "{text}");
    t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(original).unwrap(),
        "a replacement the journal could not record is not made"
    );
    for r in ['a', 'b', 'c'] {
        std::fs::remove_file(t.replica(r).join("journal")).unwrap();
    }
    let out = t.ok(&["import", changed.to_str().unwrap()]);
    assert!(out.contains("1 stored"), "{out}");
    t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(&changed).unwrap(),
        "the new one is current"
    );
    // the old blob stays, listed in the history, and scrub knows both
    assert_eq!(
        files_under(&t.replica('a').join("blobs")).len(),
        files.len() + 1
    );

    std::fs::remove_file(t.data().join("index.sqlite")).unwrap();
    let _ = std::fs::remove_file(t.data().join("index.sqlite-wal"));
    let _ = std::fs::remove_file(t.data().join("index.sqlite-shm"));
    let out = t.ok(&["reindex", "--from-replica", "2"]);
    assert!(out.contains("1 replacements replayed"), "{out}");
    t.ok(&["get", &uid, "-o", got.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(&changed).unwrap(),
        "the journal restored the decision"
    );
    assert_eq!(
        t.open().await.index.counts().await.unwrap().instances,
        files.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_by_name_and_changes_nothing() {
    use dicom_dictionary_std::tags;
    let t = TestArchive::new();
    let files = t.generate("in", &small_set());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let snapshot = |t: &TestArchive| {
        let mut v: Vec<(std::path::PathBuf, Vec<u8>)> = ['a', 'b', 'c']
            .iter()
            .flat_map(|l| files_under(&t.replica(*l)))
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&t);
    let studies_before = t.ok(&["studies"]);

    let junk = t.path("junk");
    std::fs::create_dir_all(junk.join("nested")).unwrap();
    std::fs::write(
        junk.join("notes.txt"),
        "this is a text file, not an image\n",
    )
    .unwrap();
    std::fs::write(junk.join("empty.dcm"), b"").unwrap();
    let whole = std::fs::read(&files[0]).unwrap();
    std::fs::write(junk.join("truncated.dcm"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(junk.join("nested").join("header-only.dcm"), &whole[..200]).unwrap();
    edit(&files[1], &junk.join("no-sop-uid.dcm"), |o| {
        o.remove_element(tags::SOP_INSTANCE_UID);
    });
    edit(&files[2], &junk.join("bad-uid.dcm"), |o| {
        o.put(dicom_core::DataElement::new(
            tags::STUDY_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from("1.2.abc.3"),
        ));
    });
    std::fs::write(
        junk.join("nested").join("random.bin"),
        (0..5000u32)
            .map(|i| (i * 31 % 256) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();

    let expect = [
        ("notes.txt", "not a DICOM Part-10 file"),
        ("empty.dcm", "empty file"),
        ("truncated.dcm", "truncated"),
        ("header-only.dcm", ""),
        ("no-sop-uid.dcm", "missing SOP Instance UID"),
        ("bad-uid.dcm", "\"1.2.abc.3\" is not a valid DICOM UID"),
        ("random.bin", "not a DICOM Part-10 file"),
    ];
    // each alone
    for (name, why) in expect {
        let p = files_under(&junk)
            .into_iter()
            .find(|p| p.ends_with(name))
            .unwrap();
        let out = t.run(&["import", p.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(
            text.contains(&format!("refused {}: ", p.display())),
            "{name}: {text}"
        );
        assert!(text.contains(why), "{name}: expected {why:?} in {text}");
        assert!(!text.contains("panicked"));
    }
    // and the mixed folder at once, together with a good file that is already there
    std::fs::copy(&files[3], junk.join("good.dcm")).unwrap();
    let out = t.run(&["import", "-v", junk.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("0 stored")
            && text.contains("1 already present")
            && text.contains("7 refused"),
        "{text}"
    );

    assert!(before == snapshot(&t), "nothing stored changed");
    assert_eq!(studies_before, t.ok(&["studies"]));
    let missing = t.run(&["import", t.path("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_import_loses_nothing_acknowledged() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 11,
            patients: 2,
            studies: 2,
            series_per_study: 1,
            slices: 150,
            rows: 256,
            cols: 256,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    assert_eq!(files.len(), 300);
    let acknowledged = common::import_killed_after(&t, &t.path("in"), 60);
    assert!(
        acknowledged.len() < 300,
        "killed mid-way: {}",
        acknowledged.len()
    );
    common::assert_nothing_acknowledged_lost(&t, &files, &acknowledged).await;
    // Restarted, the import completes; what was already there counts as present.
    let out = t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert!(out.contains("0 refused"), "{out}");
    assert_eq!(t.open().await.index.counts().await.unwrap().instances, 300);
}

#[test]
fn serve_answers_health_readiness_and_metrics() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 2,
            ..small_set()
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let mut child = t
        .cmd()
        .args(["serve", "--http", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = err.next().expect("serve printed its address").unwrap();
        if let Some(i) = line.find("serving http://") {
            break line[i + "serving http://".len()..]
                .split(' ')
                .next()
                .unwrap()
                .to_string();
        }
    };
    let get_as = |path: &str, token: &str| -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let code = resp[9..12].parse().unwrap();
        (code, resp)
    };
    let get = |path: &str| get_as(path, "");
    assert_eq!(get("/healthz").0, 200);
    let (code, body) = get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"replicas_reachable\":3"), "{body}");
    assert_eq!(get("/metrics").0, 401, "metrics need a token");
    let token = t.ok(&["token", "create", "--user", "admin"]);
    let (code, metrics) = get_as("/metrics", token.trim());
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("strata_repair_queue_length"), "{metrics}");
    assert!(metrics.contains("strata_ingest_seconds"), "{metrics}");
    let _ = files;

    // The index cannot be swapped from under a running server, nor a second server started.
    let reindex = t.run(&["reindex", "--from-replica", "1"]);
    assert!(!reindex.status.success());
    assert!(
        String::from_utf8_lossy(&reindex.stderr).contains("being served"),
        "{}",
        String::from_utf8_lossy(&reindex.stderr)
    );
    let second = t.run(&["serve", "--http", "127.0.0.1:0"]);
    assert!(String::from_utf8_lossy(&second.stderr).contains("being served"));

    // A replica folder that vanished costs readiness with the default quorum of all three.
    std::fs::remove_dir_all(t.replica('b')).unwrap();
    let (code, body) = get("/readyz");
    assert_eq!(code, 503, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn configuration_errors_name_the_key_and_the_source() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(t.data().join("strata.toml"), "[store]\nwrite_quorum = 9\n").unwrap();
    let out = t.run(&["studies"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("write_quorum") && err.contains("strata.toml"),
        "{err}"
    );
    std::fs::remove_file(t.data().join("strata.toml")).unwrap();
    let out = t
        .cmd()
        .arg("studies")
        .env("STRATA_INGEST_ON_CONFLICT", "merge")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("STRATA_INGEST_ON_CONFLICT"),
        "{err}"
    );
}

#[test]
fn first_start_creates_a_private_key_and_says_to_back_it_up() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestArchive::new();
    let out = t.run(&["studies"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BACK IT UP"), "{err}");
    let key = t.data().join("keys/master.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = t.run(&["studies"]);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("BACK IT UP"),
        "said once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_replica_write_is_queued_and_repaired_in_the_background() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 3,
            ..small_set()
        },
    );
    std::fs::create_dir_all(t.replica('c')).unwrap();
    // A file where replica c's blob folder should be: every write to c fails.
    std::fs::write(t.replica('c').join("blobs"), b"in the way").unwrap();
    std::fs::write(t.data().join("strata.toml"), "[store]\nwrite_quorum = 2\n[repair]\ninterval_seconds = 1\n[scrub]\nblobs_per_second = 0\n").unwrap();
    let out = t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert!(out.contains("6 stored"), "a quorum of two is enough: {out}");
    {
        let a = t.open().await;
        assert_eq!(
            a.index.repair_queue_len().await.unwrap(),
            6,
            "each failed copy is queued durably"
        );
    }
    std::fs::remove_file(t.replica('c').join("blobs")).unwrap();
    let mut server = t
        .cmd()
        .args(["serve", "--http", "127.0.0.1:0"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The worker writes the copy, then clears its queue row: wait for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let copies = files_under(&t.replica('c').join("blobs")).len();
        let queued = t.open().await.index.repair_queue_len().await.unwrap();
        if (copies == files.len() && queued == 0) || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        files_under(&t.replica('c').join("blobs")).len(),
        files.len(),
        "the repair worker rewrote replica c"
    );
    let a = t.open().await;
    assert_eq!(a.index.repair_queue_len().await.unwrap(), 0);
    for (_, blob) in a.index.instance_blobs().await.unwrap() {
        a.store.verify(&blob, 2).await.unwrap();
    }
}

/// A node asked to stop copies the audit events since the export's last round to the replicas
/// before it exits: rebuilt from one replica alone, the trail is whole up to the stop.
#[test]
fn a_stopping_node_leaves_its_whole_audit_trail_on_the_replicas() {
    let t = TestArchive::new();
    t.generate("in", &small_set());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let mut server = t.serve();
    let auth = format!("Bearer {}", common::token(&t, "admin"));
    for _ in 0..5 {
        let answer = common::http(
            "GET",
            &format!("{}/dicomweb/studies", common::base(&server)),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(answer.status, 200);
    }
    // within the export's first wait (30 s): nothing of this has been copied by a round
    let status = server.terminate(std::time::Duration::from_secs(30));
    assert!(status.success(), "{}", server.log_text());
    assert!(
        server
            .log_text()
            .contains("audit events copied to the replicas before stopping"),
        "{}",
        server.log_text()
    );
    let verified = t.ok(&["audit", "verify"]);
    let events: u64 = verified
        .split("intact: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{verified}"));
    assert!(events >= 5, "the five searches at least: {verified}");
    t.lose_index();
    let out = t.ok(&["reindex", "--from-replica", "1"]);
    assert!(
        out.contains(&format!("{events} audit events restored")),
        "the index held {events} events; the reindex says: {out}"
    );
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
}
