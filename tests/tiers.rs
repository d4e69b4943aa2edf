//! Hot and cold tiers end to end: studies past the policy (on a clock the test moves) are
//! erasure-coded onto six cold stores (4 data + 2 parity shards) and leave the replicas only
//! once every shard is durable; with two of the six stores gone, every cold study is still
//! served byte for byte by WADO-RS and dcmtk's getscu; the scrub rebuilds the lost shards; a
//! reindex from a replica, or from the cold stores alone, finds the cold studies again.

mod common;

use common::viewer::{node, screenshots};
use common::{
    blobs_of, by_study, files_under, http, on_replicas, sop_uid, text, token, TestArchive,
};
use dicom_object::InMemDicomObject;
use std::path::{Path, PathBuf};
use strata_core::Clock;
use strata_services::tiers::MONTH_MS;
use strata_synth::{Modality, SynthOptions};

fn studies() -> SynthOptions {
    SynthOptions {
        seed: 21,
        patients: 1,
        studies: 3,
        series_per_study: 1,
        slices: 4,
        rows: 256,
        cols: 256,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

fn cold_store(t: &TestArchive, i: usize) -> PathBuf {
    t.data().join(format!("cold-{i}"))
}

/// An archive with six cold stores, the policy at 12 months old and 6 unread, its worker off
/// (the test applies the policy itself).
fn archive() -> TestArchive {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let stores: Vec<String> = (1..=6)
        .map(|i| format!("\"file://{}\"", cold_store(&t, i).display()))
        .collect();
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[tiers]\nstores = [{}]\ndata_shards = 4\nparity_shards = 2\nolder_than_months = 12\n\
             unread_for_months = 6\nrestored_for_days = 30\nstudies_per_minute = 0\n",
            stores.join(", ")
        ),
    )
    .unwrap();
    t
}

/// Bytes of the files below `dir`.
fn bytes_under(dir: &Path) -> u64 {
    if !dir.exists() {
        return 0;
    }
    files_under(dir)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum()
}

/// Every instance of `files` read by WADO-RS is the file stored, byte for byte.
fn wado_identical(server: &common::Server, tok: &str, files: &[PathBuf]) {
    for f in files {
        let url = format!("{}{}", common::base(server), common::instance_path(f));
        let auth = format!("Bearer {tok}");
        let got = http(
            "GET",
            &url,
            &[
                ("Authorization", &auth),
                ("Accept", "multipart/related; type=\"application/dicom\""),
            ],
            None,
        );
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(
            got.only_part() == std::fs::read(f).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_studies_survive_two_lost_stores_and_come_back_from_shards() {
    let t = tokio::task::block_in_place(archive);
    let files = t.generate("in", &studies());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let groups = by_study(&files);
    assert_eq!(groups.len(), 3);
    let (a_uid, a_files) = &groups[0];
    let (b_uid, _) = &groups[1];
    let (c_uid, c_files) = &groups[2];

    // The dry run on the real clock with no age limits: every study would move, and it says
    // what that saves; nothing moves.
    let dry = t
        .cmd()
        .env("STRATA_TIERS_OLDER_THAN_MONTHS", "0")
        .env("STRATA_TIERS_UNREAD_FOR_MONTHS", "0")
        .args(["tier", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("would move 3 studies to cold"),
        "{}",
        text(&dry)
    );
    assert_eq!(bytes_under(&cold_store(&t, 1)), 0);

    let clock = Clock::system();
    let a = strata_archive::Archive::open_with_clock(t.config(), clock.clone())
        .await
        .unwrap();
    // nothing is old yet
    assert!(a.tiers().plan(100).await.unwrap().studies.is_empty());
    // B is read ten months on; thirteen months on, A and C are past the policy, B is not
    let now = clock.now_ms();
    a.index()
        .note_reads(vec![b_uid.clone()], now + 10 * MONTH_MS)
        .await
        .unwrap();
    clock.advance(13 * MONTH_MS);
    let plan = a.tiers().plan(100).await.unwrap();
    let planned: Vec<&str> = plan.studies.iter().map(|s| s.study_uid.as_str()).collect();
    let mut expected = vec![a_uid.as_str(), c_uid.as_str()];
    expected.sort();
    assert_eq!(planned, expected);
    assert!(plan.saved_bytes() > 0, "{plan:?}");
    assert_eq!(plan.instances, 8);

    // A cold store that cannot take its shard: the study stays hot, its copies untouched.
    let a_blobs = blobs_of(&a, a_uid).await;
    let sixth = cold_store(&t, 6);
    std::fs::remove_dir_all(&sixth).ok();
    std::fs::write(&sixth, b"not a folder").unwrap();
    assert!(a.tiers().move_study(a_uid).await.is_err());
    assert!(a_blobs.iter().all(|b| on_replicas(&t, b) == 3));
    let tier = a.index().study_tier(a_uid.clone()).await.unwrap();
    assert!(tier.as_ref().is_none_or(|t| t.tier == "hot"), "{tier:?}");
    std::fs::remove_file(&sixth).unwrap();
    std::fs::create_dir_all(&sixth).unwrap();

    // Now the policy moves A and C: every shard durable, then the replicas' copies gone.
    let moved = a
        .tiers()
        .apply(100, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(moved.studies.len(), 2);
    let c_blobs = blobs_of(&a, c_uid).await;
    for b in a_blobs.iter().chain(&c_blobs) {
        assert_eq!(on_replicas(&t, b), 0, "a cold blob left on the replicas");
        assert!(a
            .index()
            .cold_blob(*b)
            .await
            .unwrap()
            .is_some_and(|c| !c.hot));
    }
    for b in blobs_of(&a, b_uid).await {
        assert_eq!(on_replicas(&t, &b), 3, "B stays hot");
    }
    assert_eq!(
        a.index()
            .study_tier(a_uid.clone())
            .await
            .unwrap()
            .unwrap()
            .tier,
        "cold"
    );
    // bytes stored: (k + m) / k of the data, and a few headers
    let data: u64 = a_files
        .iter()
        .chain(c_files)
        .map(|f| f.metadata().unwrap().len())
        .sum();
    let cold: u64 = (1..=6).map(|i| bytes_under(&cold_store(&t, i))).sum();
    let ratio = cold as f64 / data as f64;
    assert!((1.5..1.52).contains(&ratio), "cold/data = {ratio}");
    let totals = a.index().tier_totals().await.unwrap();
    assert_eq!((totals.cold_studies, totals.cold_blobs), (2, 8));
    a.index().close().await.unwrap();
    drop(a);

    // Two of the six stores lost.
    for i in [2, 5] {
        std::fs::remove_dir_all(cold_store(&t, i)).unwrap();
    }
    let server = t.serve();
    let tok = token(&t, "admin");
    // WADO-RS rebuilds A from four shards and serves it byte for byte
    wado_identical(&server, &tok, a_files);
    // C-GET rebuilds C and sends it identical
    let got = files_under(&common::getscu_study(&t, &server, c_uid, "got-c").0);
    assert_eq!(got.len(), c_files.len());
    for g in &got {
        let o = c_files.iter().find(|o| sop_uid(o) == sop_uid(g)).unwrap();
        let (x, y) = (
            dicom_object::open_file(o).unwrap(),
            dicom_object::open_file(g).unwrap(),
        );
        let (x, y): (&InMemDicomObject, &InMemDicomObject) = (&x, &y);
        assert!(x == y, "{} differs", g.display());
    }
    drop(server);
    // restored: on the replicas again, the shards kept
    for b in a_blobs.iter().chain(&c_blobs) {
        assert_eq!(on_replicas(&t, b), 3);
    }

    // the restore rewrote the shards it found missing
    for i in [2, 5] {
        assert!(bytes_under(&cold_store(&t, i)) > 0);
    }

    // Two other stores lost: the scrub finds their shards missing and rebuilds them.
    for i in [3, 6] {
        std::fs::remove_dir_all(cold_store(&t, i)).unwrap();
    }
    let out = t.run(&["scrub"]);
    assert!(!out.status.success(), "lost shards are reported");
    assert!(
        text(&out).contains("cold store 3") && text(&out).contains("8 missing"),
        "{}",
        text(&out)
    );
    let out = t.ok(&["scrub", "--repair"]);
    assert!(out.contains("8 repaired"), "{out}");
    let out = t.ok(&["scrub"]);
    assert!(
        out.contains("cold store 6 (") && !out.contains(" 8 missing"),
        "{out}"
    );

    // Thirty-one days on, the restored studies go back to cold (their shards were kept).
    let a = strata_archive::Archive::open_with_clock(t.config(), clock.clone())
        .await
        .unwrap();
    clock.advance(31 * 86_400_000);
    a.tiers()
        .apply(100, std::time::Duration::ZERO)
        .await
        .unwrap();
    for b in a_blobs.iter().chain(&c_blobs) {
        assert_eq!(on_replicas(&t, b), 0);
    }
    a.index().close().await.unwrap();
    drop(a);

    // A reindex from a replica finds the cold studies on the cold stores.
    tokio::task::block_in_place(|| t.lose_index());
    let out = t.ok(&["reindex", "--from-replica", "1"]);
    assert!(out.contains("8 of them indexed from their shards"), "{out}");
    let a = strata_archive::Archive::open(t.config()).await.unwrap();
    let counts = a.index().counts().await.unwrap();
    assert_eq!((counts.studies, counts.instances), (3, 12));
    assert_eq!(
        a.index()
            .study_tier(c_uid.clone())
            .await
            .unwrap()
            .unwrap()
            .tier,
        "cold"
    );
    a.index().close().await.unwrap();
    drop(a);
    // and from the cold stores alone: the cold studies, served byte for byte
    tokio::task::block_in_place(|| t.lose_index());
    let out = t.ok(&["reindex", "--from-shards"]);
    assert!(out.contains("8 instances indexed"), "{out}");
    let a = strata_archive::Archive::open(t.config()).await.unwrap();
    let counts = a.index().counts().await.unwrap();
    assert_eq!((counts.studies, counts.instances), (2, 8));
    for f in a_files.iter().chain(c_files) {
        let mut got = Vec::new();
        a.reads()
            .read_instance(&sop_uid(f), |c| {
                got.extend_from_slice(c);
                Ok(())
            })
            .await
            .unwrap();
        assert!(got == std::fs::read(f).unwrap(), "{} differs", f.display());
    }
}

/// With two of the six cold stores lost, a cold study opened in the viewer
/// (tests/viewer/cold.mjs, Debian's chromium): the page says it is retrieving it from cold
/// storage until it is back, then shows it; another, retrieved by dcmtk's getscu, gets a pending
/// response at once, before its first sub-operation, and arrives whole and byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_cold_study_comes_back_for_the_viewer_and_c_get_with_word_of_it_meanwhile() {
    let t = archive();
    let files = t.generate("in", &studies());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let groups = by_study(&files);
    let (a_uid, b_uid) = (&groups[0].0, &groups[1].0);
    {
        let a = t.open_archive().await;
        a.tiers().move_study(a_uid).await.unwrap();
        a.tiers().move_study(b_uid).await.unwrap();
        for b in blobs_of(&a, a_uid).await {
            assert_eq!(on_replicas(&t, &b), 0);
        }
    }
    // two of the six cold stores lost: the four left bring both studies back
    for i in [2, 5] {
        std::fs::remove_dir_all(cold_store(&t, i)).unwrap();
    }
    common::add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let shots = screenshots("cold");
    let (ok, log) = node(
        "cold.mjs",
        &[
            ("BASE", common::base(&server).as_str()),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("OUT", shots.as_str()),
            ("STUDY", a_uid.as_str()),
        ],
        || {},
    );
    assert!(
        ok,
        "cold study in chromium:\n{log}\nserver:\n{}",
        server.log_text()
    );
    for step in [
        "ok: the viewer asked until the study was back",
        "ok: the viewer says it came from cold storage",
        "ok: the restored study is shown",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }

    // C-GET of the other: a pending response before the first sub-operation, then every file
    let (dir, said) = common::getscu_study(&t, &server, b_uid, "got-b");
    let pending = said
        .find("Received C-GET Response (Pending)")
        .expect("a pending response");
    let first_store = said
        .find("Received C-STORE Request")
        .expect("a sub-operation");
    assert!(pending < first_store, "{said}");
    assert_eq!(files_under(&dir).len(), groups[1].1.len(), "{said}");
    common::assert_same_content(&groups[1].1, &dir);
    drop(server);
    let e = t.open().await;
    for uid in [a_uid, b_uid] {
        let tier = e.index.study_tier(uid.clone()).await.unwrap().unwrap();
        assert_eq!(tier.tier, "hot");
        assert!(tier.restored_until.is_some());
    }
}
