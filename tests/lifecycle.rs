//! A record's end, end to end. Expiry proposes exactly the studies past retention (seven years
//! after the person's last study; a child's until the configured age) and under no hold; after
//! an administrator's approval they are gone from the index, the replicas and the cold stores,
//! and a study held after the proposal survives it, as it survives a DICOMweb DELETE. A
//! rejection note sent by dcmtk's storescu (written by pydicom) hides the instances it names from
//! findscu, QIDO and WADO at once; they are purged once the delay has passed (on a clock the test
//! moves), while one still under retention stays; a reindex keeps both the hiding and the holds.
//! Instances a note named before they came are refused when they come.

mod common;

use common::viewer::{node, screenshots};
use common::{
    blobs_of, by_study, files_under, on_replicas, peer_script, python, text, token, tool, Api,
    TestArchive,
};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use std::path::{Path, PathBuf};
use strata_core::{BlobId, Clock};
use strata_index::{PersonSearch, Scope};
use strata_store::shards::ShardState;
use strata_synth::{Modality, SynthOptions};

const DAY_MS: i64 = 86_400_000;

/// Small CT studies (one series of `slices` 32×32 slices each) for `patients` people.
fn small_ct(seed: u64, patients: usize, studies: usize, slices: usize) -> SynthOptions {
    SynthOptions {
        seed,
        patients,
        studies,
        series_per_study: 1,
        slices,
        rows: 32,
        cols: 32,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

fn set(files: &[PathBuf], study_date: &str, birth_date: &str) {
    for f in files {
        let mut obj = dicom_object::open_file(f).unwrap();
        for (tag, value) in [
            (tags::STUDY_DATE, study_date),
            (tags::SERIES_DATE, study_date),
            (tags::PATIENT_BIRTH_DATE, birth_date),
        ] {
            obj.put(DataElement::new(tag, VR::DA, PrimitiveValue::from(value)));
        }
        obj.write_to_file(f).unwrap();
    }
}

fn patient_id(f: &Path) -> String {
    let obj = dicom_object::open_file(f).unwrap();
    obj.element(tags::PATIENT_ID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string()
}

fn cold_store(t: &TestArchive, i: usize) -> PathBuf {
    t.data().join(format!("cold-{i}"))
}

/// An archive with six cold stores (4 + 2), its expiry worker proposing nothing by itself.
fn archive() -> TestArchive {
    archive_with("")
}

/// [`archive`], with more `[tiers]` settings.
fn archive_with(tiers: &str) -> TestArchive {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let stores: Vec<String> = (1..=6)
        .map(|i| format!("\"file://{}\"", cold_store(&t, i).display()))
        .collect();
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[tiers]\nstores = [{}]\ndata_shards = 4\nparity_shards = 2\nstudies_per_minute = 0\n{tiers}\n\
             [retention]\nadult_years = 7\nminor_until_age = 25\npropose_every_hours = 0\n\
             rejected_purge_after_days = 30\n",
            stores.join(", ")
        ),
    )
    .unwrap();
    t
}

async fn proposed(a: &strata_archive::Archive, id: i64) -> Vec<String> {
    let (_, items) = a.retention().batch(id).await.unwrap();
    items.into_iter().map(|i| i.study_uid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_exactly_the_studies_past_retention_and_spares_held_ones() {
    // (a PostgreSQL index is made and dropped by a blocking client)
    let t = tokio::task::block_in_place(archive);
    let files = t.generate("in", &small_ct(29, 5, 6, 2));
    let studies = by_study(&files);
    assert_eq!(studies.len(), 6);
    // one patient has two studies: an old one and one last year (kept for the person's sake)
    let mut by_patient: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, (_, fs)) in studies.iter().enumerate() {
        let p = patient_id(&fs[0]);
        match by_patient.iter_mut().find(|(q, _)| *q == p) {
            Some((_, list)) => list.push(i),
            None => by_patient.push((p, vec![i])),
        }
    }
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    let twice = by_patient
        .iter()
        .find(|(_, l)| l.len() == 2)
        .unwrap()
        .1
        .clone();
    let once: Vec<usize> = by_patient
        .iter()
        .filter(|(_, l)| l.len() == 1)
        .map(|(_, l)| l[0])
        .collect();
    let [expired, minor, study_held, person_held] = once[..] else {
        panic!("{by_patient:?}")
    };
    let uid = |i: usize| studies[i].0.clone();
    set(&studies[twice[0]].1, "20100105", "19600101");
    set(
        &studies[twice[1]].1,
        &format!("{}0601", year - 1),
        "19600101",
    );
    set(&studies[expired].1, "20100105", "19550101");
    set(&studies[minor].1, "20100105", &format!("{}0101", year - 10));
    set(&studies[study_held].1, "20100105", "19500101");
    set(&studies[person_held].1, "20100105", "19450101");
    t.ok(&["import", t.path("in").to_str().unwrap()]);

    let clock = Clock::system();
    let a = strata_archive::Archive::open_with_clock(t.config(), clock.clone())
        .await
        .unwrap();
    // the expired study lives in the cold tier: its end must reach the shards too
    a.tiers().move_study(&uid(expired)).await.unwrap();
    let expired_blobs = blobs_of(&a, &uid(expired)).await;
    let shards = a.tiers().shards().unwrap().clone();
    for b in &expired_blobs {
        assert_eq!(on_replicas(&t, b), 0);
        assert!(shards.check(b).await.iter().all(|s| *s == ShardState::Good));
    }

    let r = a.retention();
    let hold = r
        .place_hold(None, Some(uid(study_held)), "litigation".into(), "admin")
        .await
        .unwrap();
    // a held study is refused by the DICOMweb DELETE path as by any other
    let held_sops: Vec<String> = studies[study_held]
        .1
        .iter()
        .map(|f| common::sop_uid(f))
        .collect();
    let refused = r.delete_instances(held_sops.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("legal hold"), "{refused}");
    // a study under retention is refused too
    let recent: Vec<String> = studies[twice[1]]
        .1
        .iter()
        .map(|f| common::sop_uid(f))
        .collect();
    let refused = r.delete_instances(recent).await.unwrap_err();
    assert!(refused.to_string().contains("retention"), "{refused}");

    // the proposal: exactly the studies past retention and under no hold
    let batch = r.propose("admin", "admin").await.unwrap().unwrap();
    let mut want = vec![uid(expired), uid(person_held)];
    want.sort();
    assert_eq!(proposed(&a, batch).await, want);
    // proposing again proposes nothing new: those are pending
    assert_eq!(r.propose("admin", "admin").await.unwrap(), None);
    // nothing is deleted before approval
    r.tick().await.unwrap();
    assert_eq!(blobs_of(&a, &uid(expired)).await.len(), 2);

    // a hold placed after the proposal, on the person, still wins
    let person = a
        .index()
        .persons(PersonSearch {
            study: Some(uid(person_held)),
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id
        .clone();
    r.place_hold(Some(person), None, "court order".into(), "admin")
        .await
        .unwrap();
    r.approve(batch, "admin", "admin").await.unwrap();
    assert!(
        r.approve(batch, "admin", "admin").await.is_err(),
        "approved once"
    );
    let done = r.tick().await.unwrap();
    assert_eq!(
        (done.deleted_studies, done.kept_studies),
        (1, 1),
        "{done:?}"
    );
    let (b, items) = r.batch(batch).await.unwrap();
    assert_eq!(b.state, "done");
    let outcome = |s: &str| {
        items
            .iter()
            .find(|i| i.study_uid == s)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(outcome(&uid(expired)), "deleted");
    assert_eq!(outcome(&uid(person_held)), "kept");

    // gone from the index, the replicas and every cold store
    let gone = a
        .index()
        .instances_under(uid(expired), None, None, Scope::All)
        .await
        .unwrap();
    assert!(gone.is_empty());
    for b in &expired_blobs {
        assert_eq!(on_replicas(&t, b), 0);
        assert!(a.index().cold_blob(*b).await.unwrap().is_none());
        assert!(
            shards
                .check(b)
                .await
                .iter()
                .all(|s| *s == ShardState::Missing),
            "a shard of a deleted study is left"
        );
    }
    let shard_files: usize = (1..=6)
        .map(|i| {
            let d = cold_store(&t, i);
            if d.exists() {
                files_under(&d).len()
            } else {
                0
            }
        })
        .sum();
    assert_eq!(shard_files, 0, "shards left on the cold stores");
    // everything else is untouched
    for i in [twice[0], twice[1], minor, study_held, person_held] {
        for b in blobs_of(&a, &uid(i)).await {
            assert_eq!(on_replicas(&t, &b), 3);
        }
        assert_eq!(blobs_of(&a, &uid(i)).await.len(), 2);
    }

    // eight years on, the two-study person's studies are past too; the child's are not, and
    // the held ones stay held whatever the clock says
    clock.advance(8 * 366 * DAY_MS);
    let later = r.propose("admin", "admin").await.unwrap().unwrap();
    let mut want = vec![uid(twice[0]), uid(twice[1])];
    want.sort();
    assert_eq!(proposed(&a, later).await, want);
    r.dismiss(later, "admin", "admin").await.unwrap();
    r.tick().await.unwrap();
    assert_eq!(blobs_of(&a, &uid(twice[0])).await.len(), 2, "dismissed");

    // released, a hold no longer keeps its study
    r.release_hold(hold, "admin").await.unwrap();
    assert!(r.holds(true).await.unwrap().len() == 1);
    r.delete_instances(held_sops).await.unwrap();
    assert!(blobs_of(&a, &uid(study_held)).await.is_empty());
    drop(a);

    // the holds come back with a reindex: the person's hold is in force, the released one not
    tokio::task::block_in_place(|| t.lose_index());
    let out = t.run(&["reindex", "--from-replica", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let a = t.open_archive().await;
    let holds = a.retention().holds(true).await.unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(holds[0].person.is_some());
    assert_eq!(a.retention().holds(false).await.unwrap().len(), 2);
    assert!(
        blobs_of(&a, &uid(expired)).await.is_empty(),
        "reindex brought back a deleted study"
    );
    assert!(blobs_of(&a, &uid(study_held)).await.is_empty());
    assert_eq!(blobs_of(&a, &uid(person_held)).await.len(), 2);
}

/// C-FIND at IMAGE level of `study`: the SOP Instance UIDs found.
fn found_instances(server: &common::Server, study: &str) -> Vec<String> {
    let out = tool(
        60,
        "findscu",
        &[
            "-aec",
            "STRATA",
            "-S",
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            &format!("StudyInstanceUID={study}"),
            "-k",
            "SOPInstanceUID",
            "127.0.0.1",
            &server.port(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut sops: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("(0008,0018)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .map(|uid| uid.trim_end_matches('\0').to_string())
        .collect();
    sops.sort();
    sops
}

fn storescu(server: &common::Server, files: &[&Path]) -> String {
    let mut args: Vec<String> = vec!["-aec".into(), "STRATA".into()];
    args.extend(["127.0.0.1".into(), server.port()]);
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = tool(120, "storescu", &args);
    text(&out)
}

fn rejection_note(t: &TestArchive, name: &str, code: &str, rejected: &[PathBuf]) -> PathBuf {
    let out = t.path(name);
    let mut args = vec![
        peer_script("rejection_note.py").display().to_string(),
        out.display().to_string(),
        code.to_string(),
    ];
    args.extend(rejected.iter().map(|f| f.display().to_string()));
    let res = tool(60, python().to_str().unwrap(), &args);
    assert!(res.status.success(), "{}", text(&res));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_note_hides_its_instances_at_once_and_they_are_purged_after_the_delay() {
    let t = tokio::task::block_in_place(archive);
    let files = t.generate("in", &small_ct(31, 2, 2, 3));
    let studies = by_study(&files);
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    // the old study is past retention; the new one is not
    let (old, new) = (&studies[0], &studies[1]);
    set(&old.1, "20100105", "19600101");
    set(&new.1, &format!("{}0105", year - 1), "19600101");
    common::add_user(&t, "admin1", "admin");
    let tok = token(&t, "admin1");
    let mut server = t.serve();
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    storescu(&server, &all);
    let api = Api::new(&server, &tok);
    let sops = |fs: &[PathBuf]| -> Vec<String> {
        let mut v: Vec<String> = fs.iter().map(|f| common::sop_uid(f)).collect();
        v.sort();
        v
    };
    assert_eq!(found_instances(&server, &old.0), sops(&old.1));

    // two of the old study's three instances rejected for quality reasons, one of the new
    let old_note = rejection_note(&t, "old-note.dcm", "113001", &old.1[..2]);
    let new_note = rejection_note(&t, "new-note.dcm", "113038", &new.1[..1]);
    let log = storescu(&server, &[&old_note, &new_note]);
    let note_uid = common::sop_uid(&old_note);
    // hidden at once: findscu and QIDO find the rest and the note, WADO serves nothing rejected
    let mut left = vec![common::sop_uid(&old.1[2]), note_uid.clone()];
    left.sort();
    assert_eq!(found_instances(&server, &old.0), left, "{log}");
    let qido = api.ok(api.get(&format!("/dicomweb/studies/{}/instances", old.0)));
    let mut qido_sops: Vec<String> = qido
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["00080018"]["Value"][0].as_str().unwrap().to_string())
        .collect();
    qido_sops.sort();
    assert_eq!(qido_sops, left);
    for f in &old.1[..2] {
        let got = api.get(&common::instance_path(f));
        assert_eq!(got.status, 404, "a rejected instance was served");
    }
    assert_eq!(
        found_instances(&server, &new.0).len(),
        3,
        "2 kept + the note"
    );
    // a rejected instance sent again is refused, and stays hidden
    let again = tool(
        60,
        "storescu",
        &[
            "-v",
            "-aec",
            "STRATA",
            "127.0.0.1",
            &server.port(),
            old.1[0].to_str().unwrap(),
        ],
    );
    assert!(text(&again).contains("Status: 0x124"), "{}", text(&again));
    assert_eq!(found_instances(&server, &old.0), left);
    let listed = api.ok(api.get("/api/rejections"));
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    server.stop();

    // before the delay nothing is purged; after it, the old study's rejected instances are,
    // while the new study's one waits for its retention to end
    let rejected_blobs: Vec<BlobId> = {
        let e = t.open().await;
        e.index
            .rejected_instances(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.study_uid == old.0)
            .map(|r| r.blob_id)
            .collect()
    };
    assert_eq!(rejected_blobs.len(), 2);
    let clock = Clock::system();
    let a = strata_archive::Archive::open_with_clock(t.config(), clock.clone())
        .await
        .unwrap();
    assert_eq!(a.retention().purge_rejected().await.unwrap(), 0);
    for b in &rejected_blobs {
        assert_eq!(on_replicas(&t, b), 3, "the blobs are kept until the purge");
    }
    clock.advance(31 * DAY_MS);
    assert_eq!(a.retention().purge_rejected().await.unwrap(), 2);
    for b in &rejected_blobs {
        assert_eq!(on_replicas(&t, b), 0, "a purged instance's copy is left");
    }
    // purged, it is still refused if sent again
    let again = a
        .ingest()
        .ingest_file(&old.1[0], &strata_services::ingest::Source::Import)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("rejected"), "{again}");
    let still = a.index().rejected_instances(None, None, 100).await.unwrap();
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].study_uid, new.0);
    assert_eq!(on_replicas(&t, &still[0].blob_id), 3);
    drop(a);

    // a reindex hides the new study's rejected instance again, and does not bring back the
    // purged ones
    tokio::task::block_in_place(|| t.lose_index());
    let out = t.run(&["reindex", "--from-replica", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let server = t.serve();
    assert_eq!(found_instances(&server, &old.0), left);
    assert_eq!(found_instances(&server, &new.0).len(), 3);
    let api = Api::new(&server, &tok);
    assert_eq!(
        api.ok(api.get("/api/rejections")).as_array().unwrap().len(),
        1
    );
}

/// A rejection note that comes before the instances it names: those are refused when they come
/// (0124H by C-STORE; failed, with its UID, by STOW-RS), and the rest of the study is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_a_note_named_before_they_came_are_refused_when_they_come() {
    let t = tokio::task::block_in_place(archive);
    let files = t.generate("in", &small_ct(32, 1, 1, 3));
    let study = by_study(&files)[0].0.clone();
    common::add_user(&t, "admin1", "admin");
    let tok = token(&t, "admin1");
    let server = t.serve();
    let note = rejection_note(&t, "note.dcm", "113001", &files[..2]);
    storescu(&server, &[&note]);
    assert_eq!(
        found_instances(&server, &study),
        vec![common::sop_uid(&note)]
    );
    // the first comes by C-STORE: refused
    let sent = tool(
        60,
        "storescu",
        &[
            "-v",
            "-aec",
            "STRATA",
            "127.0.0.1",
            &server.port(),
            files[0].to_str().unwrap(),
        ],
    );
    assert!(text(&sent).contains("Status: 0x124"), "{}", text(&sent));
    // the second by STOW-RS: listed as failed, 0110H with its UID
    let api = Api::new(&server, &tok);
    let stowed = api.stow(&files[1]);
    assert_eq!(stowed.status, 409, "{}", stowed.text());
    assert!(
        stowed.text().contains("00081198") && stowed.text().contains(&common::sop_uid(&files[1])),
        "{}",
        stowed.text()
    );
    // the third, never named, is stored
    storescu(&server, &[&files[2]]);
    let mut left = vec![common::sop_uid(&files[2]), common::sop_uid(&note)];
    left.sort();
    assert_eq!(found_instances(&server, &study), left);
}

#[test]
fn holds_and_expiry_are_for_administrators_and_audited() {
    let t = archive();
    let files = t.generate("in", &small_ct(47, 1, 1, 2));
    // recent: nothing is past retention
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    set(&files, &format!("{}0105", year - 1), "19600101");
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let study = by_study(&files)[0].0.clone();
    common::add_user(&t, "admin1", "admin");
    common::add_user(&t, "integ", "integrator");
    let (admin, integ) = (token(&t, "admin1"), token(&t, "integ"));
    let server = t.serve();
    let api = Api::new(&server, &admin);
    let other = Api::new(&server, &integ);
    for path in ["/api/holds", "/api/expiry", "/api/rejections"] {
        assert_eq!(other.get(path).status, 403, "{path}");
        assert_eq!(
            common::http(
                "GET",
                &format!("{}{path}", common::base(&server)),
                &[],
                None
            )
            .status,
            401
        );
    }
    let unknown = api.post(
        "/api/holds",
        serde_json::json!({"study": "1.2.3.4", "reason": "audit"}),
    );
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    let placed = api.post(
        "/api/holds",
        serde_json::json!({"study": study, "reason": "audit"}),
    );
    assert_eq!(placed.status, 201, "{}", placed.text());
    // the DICOMweb DELETE of a held study: 409, and the refusal audited
    let refused = api.call("DELETE", &format!("/dicomweb/studies/{study}"), &[], None);
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("legal hold"), "{}", refused.text());
    let both = api.post(
        "/api/holds",
        serde_json::json!({"study": "1.2.3", "person": "x", "reason": "r"}),
    );
    assert_eq!(both.status, 400, "{}", both.text());
    let holds = api.ok(api.get("/api/holds"));
    assert_eq!(holds[0]["study_uid"], study.as_str());
    let id = holds[0]["id"].as_i64().unwrap();
    let released = api.post(&format!("/api/holds/{id}/release"), serde_json::json!({}));
    assert_eq!(released.status, 200, "{}", released.text());
    assert!(api.ok(api.get("/api/holds")).as_array().unwrap().is_empty());
    // nothing stored, nothing past retention
    let proposed = api.post("/api/expiry", serde_json::json!({}));
    assert_eq!(proposed.status, 200, "{}", proposed.text());
    assert_eq!(
        api.post("/api/expiry/7/approve", serde_json::json!({}))
            .status,
        404
    );
    drop(server);
    let placed = common::audit_events(&t, "hold.place");
    assert_eq!(placed.len(), 1);
    assert_eq!(common::audit_events(&t, "hold.release").len(), 1);
    let denied = common::audit_events(&t, "http.delete");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["outcome"], "denied", "{denied:?}");
    // the proposal that found nothing is on the record too
    assert_eq!(common::audit_events(&t, "expiry.propose").len(), 1);
}

/// The console's storage page (bytes and projected cost per tier and store, reads per study by
/// age) and retention page (a batch proposed, looked at and approved; a hold placed and
/// released) in Debian's chromium (tests/viewer/retention.mjs); screenshots under
/// target/viewer-screenshots/retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_storage_cost_and_decay_and_runs_expiry_and_holds() {
    let t = tokio::task::block_in_place(|| {
        archive_with("replica_price_per_gib_month = [0.023]\ncold_price_per_gib_month = [0.004]")
    });
    let files = t.generate("in", &small_ct(37, 4, 4, 2));
    let studies = by_study(&files);
    let year: i32 = chrono::Utc::now().format("%Y").to_string().parse().unwrap();
    set(&studies[0].1, "20100105", "19600101");
    for (i, back) in [(1, 1), (2, 3), (3, 6)] {
        set(&studies[i].1, &format!("{}0301", year - back), "19600101");
    }
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    {
        let a = t.open_archive().await;
        a.tiers().move_study(&studies[3].0).await.unwrap();
    }
    common::add_user(&t, "boss", "admin");
    let tok = token(&t, "boss");
    let server = t.serve();
    let api = Api::new(&server, &tok);
    // reads the audit trail will count (the cold study is not read: it would come back hot)
    for (uid, _) in &studies[..3] {
        let got = api.get(&format!("/dicomweb/studies/{uid}"));
        assert_eq!(got.status, 200, "{}", got.text());
    }
    // the decay the page will show: three studies read today, each at its own age (before the
    // page approves a batch whose deletion would take the 2010 study's reads with it)
    let decay = api.ok(api.get("/api/storage/decay"));
    assert_eq!(decay["studies_read"], 3, "{decay}");
    let read_at: Vec<i64> = decay["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["reads"].as_u64().unwrap() > 0)
        .map(|b| b["from_months"].as_i64().unwrap())
        .collect();
    assert_eq!(
        read_at.len(),
        2,
        "the 2010 study is past ten years: {decay}"
    );
    assert!(read_at[0] >= 6 && read_at[0] < 24, "{decay}");
    assert!(read_at[1] >= 30 && read_at[1] < 48, "{decay}");
    let shots = screenshots("retention");
    let (ok, log) = node(
        "retention.mjs",
        &[
            ("BASE", common::base(&server).as_str()),
            ("ADMIN_USER", "boss"),
            ("ADMIN_PASSWORD", common::PASSWORD),
            ("OUT", shots.as_str()),
            ("EXPIRED", studies[0].0.as_str()),
            ("HOLD_STUDY", studies[1].0.as_str()),
            ("COLD_STORES", "6"),
        ],
        || {},
    );
    assert!(
        ok,
        "retention in chromium:\n{log}\nserver:\n{}",
        server.log_text()
    );
    for step in [
        "ok: the hot tier's bytes and cost are shown",
        "ok: the cold tier's bytes and cost are shown",
        "ok: every replica and cold store is listed",
        "ok: reads per study are shown by age",
        "ok: a batch is proposed from the page",
        "ok: the batch holds exactly the study past retention",
        "ok: a hold placed from the page is listed",
        "ok: a hold released from the page is gone",
        "ok: a batch approved from the page leaves the proposed state",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    // what the pages did reached the archive
    let batches = api.ok(api.get("/api/expiry"));
    assert!(
        ["approved", "done"].contains(&batches[0]["state"].as_str().unwrap()),
        "{batches}"
    );
    let holds = api.ok(api.get("/api/holds?all=true"));
    assert_eq!(holds.as_array().unwrap().len(), 1, "{holds}");
    assert!(holds[0]["released_at"].is_i64(), "{holds}");
    drop(server);
    assert_eq!(common::audit_events(&t, "expiry.approve").len(), 1);
}
