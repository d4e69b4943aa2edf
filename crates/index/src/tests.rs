use super::*;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use strata_core::audit::{AuditEvent, Outcome, Verdict};
use strata_core::config::OnConflict;
use strata_core::BlobId;
use strata_dicom::record::{InstanceRecord, InstanceRow, PatientRecord, SeriesRecord, StudyRecord};

/// The SQLite backend itself, for tests that run SQL of their own.
fn sqlite_index(path: &std::path::Path) -> sqlite::SqliteIndex {
    sqlite::SqliteIndex::open(path, Arc::new(strata_core::Metrics::new())).unwrap()
}

/// The engines the catalog runs on; the tests below that speak only through the catalog run on
/// each (`on_both_engines!`).
#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

/// An empty catalog on `engine` (the SQLite file in `dir`; a new database on the test cluster).
fn open_engine(engine: Engine, dir: &std::path::Path) -> sqlite::SqliteIndex {
    match engine {
        Engine::Sqlite => sqlite_index(&dir.join("i.sqlite")),
        Engine::Postgres => sqlite::SqliteIndex::open_postgres(
            &strata_testkit::postgres::database(),
            PG_SCHEMA,
            Arc::new(strata_core::Metrics::new()),
            None,
        )
        .unwrap(),
    }
}

/// A test per engine of `case(engine)`: `<case>::sqlite` and `<case>::postgres`.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$case(super::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$case(super::Engine::Postgres).await
            }
        }
    )*};
}

on_both_engines!(
    insert_duplicate_conflict_and_replace,
    concurrent_writes_are_grouped_and_all_committed,
    repair_queue_backs_off_and_clears,
    an_instance_rewrites_its_patient_study_and_series_only_to_change_them,
    the_audit_trail_chains_and_reads_back_by_filter,
    a_page_of_a_search_is_the_slice_of_the_whole_answer,
    a_renamed_patients_studies_are_found_by_the_new_name_only,
    a_name_matching_many_studies_pages_as_one_matching_few,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    two_nodes_racing_for_a_free_lease_get_one_holder,
    two_proposals_at_once_put_a_study_in_one_waiting_batch,
    a_deletion_checks_the_holds_in_its_own_transaction,
    a_heartbeat_writes_and_rewrites_its_nodes_row,
);

/// A blob address for test content (the store keys its hash; the index only carries it).
fn address(content: &[u8]) -> BlobId {
    BlobId::from_bytes(Sha256::digest(content).into())
}

fn record(sop: &str, study: &str, series: &str, content: &[u8]) -> InstanceRecord {
    InstanceRecord {
        patient: PatientRecord {
            patient_id: "P1".into(),
            issuer: "HOSP_A".into(),
            name: Some("Müller^Anna".into()),
            birth_date: Some("19800101".into()),
            sex: Some("F".into()),
            address: None,
            phone: None,
            other_ids: vec![],
            issuer_source: None,
        },
        study: StudyRecord {
            uid: study.into(),
            date: Some("20240102".into()),
            ..Default::default()
        },
        series: SeriesRecord {
            uid: series.into(),
            modality: Some("CT".into()),
            ..Default::default()
        },
        instance: InstanceRow {
            sop_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            number: Some(1),
            blob_id: address(content),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size: content.len() as u64,
            frames: None,
            rows: Some(2),
            columns: Some(2),
            content_date: None,
            content_time: None,
            metadata: "{}".into(),
            source: "test".into(),
            received_at: 1,
        },
    }
}

async fn insert_duplicate_conflict_and_replace(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    let a = record("1.1", "9.1", "8.1", b"a");
    assert_eq!(
        index
            .insert_instance(a.clone(), OnConflict::Reject, vec![])
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        index
            .insert_instance(a.clone(), OnConflict::Reject, vec![])
            .await
            .unwrap(),
        InsertOutcome::AlreadyPresent
    );
    let b = record("1.1", "9.1", "8.1", b"b");
    assert!(matches!(
        index
            .insert_instance(b.clone(), OnConflict::Reject, vec![])
            .await
            .unwrap(),
        InsertOutcome::Conflict { .. }
    ));
    assert_eq!(
        index.instance("1.1").await.unwrap().unwrap().blob_id,
        a.instance.blob_id
    );
    assert_eq!(
        index
            .insert_instance(b.clone(), OnConflict::Replace, vec![])
            .await
            .unwrap(),
        InsertOutcome::Replaced {
            previous: a.instance.blob_id
        }
    );
    assert_eq!(
        index.instance("1.1").await.unwrap().unwrap().blob_id,
        b.instance.blob_id
    );
    let counts = index.counts().await.unwrap();
    assert_eq!(
        (counts.studies, counts.series, counts.instances),
        (1, 1, 1),
        "replacing keeps the counters true"
    );
    assert_eq!(
        index.blob_ids().await.unwrap().len(),
        2,
        "the old blob stays known through the history"
    );
    let s = &index.studies().await.unwrap()[0];
    assert_eq!((s.num_series, s.num_instances), (1, 1));
}

async fn concurrent_writes_are_grouped_and_all_committed(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Arc::new(open_engine(engine, dir.path()));
    let jobs = (0..200).map(|i| {
        let index = index.clone();
        tokio::spawn(async move {
            let r = record(
                &format!("1.{i}"),
                &format!("9.{}", i % 7),
                &format!("8.{}", i % 13),
                format!("{i}").as_bytes(),
            );
            index.insert_instance(r, OnConflict::Reject, vec![]).await
        })
    });
    for j in futures::future::join_all(jobs).await {
        assert_eq!(j.unwrap().unwrap(), InsertOutcome::Inserted);
    }
    assert_eq!(index.counts().await.unwrap().instances, 200);
    // A failing job does not spoil the others of its group.
    let bad = index
        .write("test", |c| {
            c.execute("INSERT INTO nonexistent VALUES (1)", crate::params![])
        })
        .await;
    assert!(bad.is_err());
    assert_eq!(index.counts().await.unwrap().instances, 200);
}

async fn repair_queue_backs_off_and_clears(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    let blob = address(b"x");
    index
        .enqueue_repairs(vec![(blob, 2, "missing".into())])
        .await
        .unwrap();
    index
        .enqueue_repairs(vec![(blob, 2, "still missing".into())])
        .await
        .unwrap();
    assert_eq!(
        index.repair_queue_len().await.unwrap(),
        1,
        "one entry per copy"
    );
    let due = index.due_repairs(10).await.unwrap();
    assert_eq!(due.len(), 1);
    index
        .repair_failed(due[0].clone(), "down".into())
        .await
        .unwrap();
    assert!(
        index.due_repairs(10).await.unwrap().is_empty(),
        "backed off"
    );
    assert_eq!(index.repairs_for(blob).await.unwrap().len(), 1);
    index.repair_done(blob, 2).await.unwrap();
    assert_eq!(index.repair_queue_len().await.unwrap(), 0);
}

/// The chain and the filters, on either engine; that the trail refuses changes is each
/// engine's own trigger (below).
async fn the_audit_trail_chains_and_reads_back_by_filter(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    for i in 0..5 {
        let e = AuditEvent::now("CT1", "dimse", "dimse.store", Outcome::Success)
            .patient(Some(format!("P{i}")), None);
        index.audit(e).await.unwrap();
    }
    let events = index.audit_events(AuditFilter::default()).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        strata_core::audit::verify(None, events),
        Verdict::Intact { events: 5 }
    );
    let filtered = index
        .audit_events(AuditFilter {
            patient_id: Some("P3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(index.audit_last_id().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_audit_trail_refuses_changes() {
    let url = strata_testkit::postgres::database();
    let index = Index(Arc::new(
        sqlite::SqliteIndex::open_postgres(
            &url,
            PG_SCHEMA,
            Arc::new(strata_core::Metrics::new()),
            None,
        )
        .unwrap(),
    ));
    for i in 0..3 {
        let e = AuditEvent::now("CT1", "dimse", "dimse.store", Outcome::Success)
            .patient(Some(format!("P{i}")), None);
        index.audit(e).await.unwrap();
    }
    let outcome = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let update = c.execute("UPDATE strata.audit SET actor = 'x' WHERE id = 2", &[]);
        let delete = c.execute("DELETE FROM strata.audit WHERE id = 2", &[]);
        let truncate = c.batch_execute("TRUNCATE strata.audit");
        (update.is_err(), delete.is_err(), truncate.is_err())
    })
    .await
    .unwrap();
    assert_eq!(outcome, (true, true, true), "append-only");
    let events = index.audit_events(AuditFilter::default()).await.unwrap();
    assert_eq!(
        strata_core::audit::verify(None, events),
        Verdict::Intact { events: 3 }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_trail_chains_and_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.sqlite");
    let index = Index::open(&path).unwrap();
    for i in 0..5 {
        let e = AuditEvent::now("CT1", "dimse", "dimse.store", Outcome::Success)
            .patient(Some(format!("P{i}")), None);
        index.audit(e).await.unwrap();
    }
    let events = index.audit_events(AuditFilter::default()).await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(
        strata_core::audit::verify(None, events),
        Verdict::Intact { events: 5 }
    );
    let filtered = index
        .audit_events(AuditFilter {
            patient_id: Some("P3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    let c = rusqlite::Connection::open(&path).unwrap();
    assert!(
        c.execute("UPDATE audit SET actor = 'x' WHERE id = 2", [])
            .is_err(),
        "append-only"
    );
    assert!(
        c.execute("DELETE FROM audit WHERE id = 2", []).is_err(),
        "append-only"
    );
    c.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    c.execute("UPDATE audit SET actor = 'mallory' WHERE id = 3", [])
        .unwrap();
    let events = index.audit_events(AuditFilter::default()).await.unwrap();
    assert!(matches!(
        strata_core::audit::verify(None, events),
        Verdict::Broken { id: 3, .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_commit_beside_durable_writes_and_sync_makes_them_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.sqlite");
    let index = Index::open(&path).unwrap();
    // Read audit events (committed, fsynced after) and stores (durable) in the same groups.
    let jobs = (0..100).map(|i| {
        let index = index.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                let e = AuditEvent::now("reader", "radiologist", "http.qido", Outcome::Success)
                    .detail(format!("{i}"));
                index.audit_read(e).await
            } else {
                let r = record(&format!("1.{i}"), "9.1", "8.1", format!("{i}").as_bytes());
                index
                    .insert_instance(r, OnConflict::Reject, vec![])
                    .await
                    .map(drop)
            }
        })
    });
    for j in futures::future::join_all(jobs).await {
        j.unwrap().unwrap();
    }
    // A committed event is visible to every reader at once, before its fsync.
    let e = AuditEvent::now("reader", "radiologist", "http.wado", Outcome::Success);
    index.audit_read(e).await.unwrap();
    let seen = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM audit", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(seen, 51);
    // The WAL's fsync is found and succeeds (it names the file if it cannot).
    index.sync().await.unwrap();
    index.sync().await.unwrap();
    let events = index.audit_events(AuditFilter::default()).await.unwrap();
    assert_eq!(
        strata_core::audit::verify(None, events),
        Verdict::Intact { events: 51 }
    );
    index.close().await.unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.counts().await.unwrap().instances, 50);
    assert_eq!(
        index
            .audit_events(AuditFilter::default())
            .await
            .unwrap()
            .len(),
        51
    );
}

async fn an_instance_rewrites_its_patient_study_and_series_only_to_change_them(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = open_engine(engine, dir.path());
    let rows = || {
        index.read("test", |c| {
            c.query_row(
                "SELECT p.updated_at, p.patient_name, s.updated_at, s.accession_number,
                        s.study_date, r.updated_at, r.body_part, r.modality, r.num_instances
                 FROM patients p JOIN studies s ON s.patient_fk = p.id
                 JOIN series r ON r.study_fk = s.id",
                crate::params![],
                |r| {
                    Ok((
                        [r.get::<i64>(0)?, r.get(2)?, r.get(5)?],
                        [r.get::<Option<String>>(1)?, r.get(3)?, r.get(4)?],
                        [r.get::<Option<String>>(6)?, r.get(7)?],
                        r.get::<i64>(8)?,
                    ))
                },
            )
        })
    };
    let insert = |rec: InstanceRecord| {
        let index = &index;
        async move {
            // a new millisecond, so a rewritten row would show a new updated_at
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            let got = index.insert_instance(rec, OnConflict::Reject, vec![]);
            assert_eq!(got.await.unwrap(), InsertOutcome::Inserted);
        }
    };
    insert(record("1.1", "9.1", "8.1", b"a")).await;
    let (first, values, series, _) = rows().await.unwrap();
    // the same patient, study and series again: no row rewritten, the counts still kept
    insert(record("1.2", "9.1", "8.1", b"b")).await;
    let (stamps, again, same_series, n) = rows().await.unwrap();
    assert_eq!(
        (stamps, &again, &same_series, n),
        (first, &values, &series, 2)
    );
    // a value the study lacked, and one the series lacked: those two rows are rewritten
    let mut rec = record("1.3", "9.1", "8.1", b"c");
    rec.study.accession_number = Some("ACC7".into());
    rec.series.body_part = Some("CHEST".into());
    // a series value given as stored, and a study value left out: no change from them
    rec.series.modality = Some("CT".into());
    rec.study.date = None;
    insert(rec).await;
    let (stamps, values, series, n) = rows().await.unwrap();
    assert_eq!(stamps[0], first[0], "the patient did not change");
    assert!(stamps[1] > first[1] && stamps[2] > first[2]);
    assert_eq!(values[1..], [Some("ACC7".into()), Some("20240102".into())]);
    assert_eq!((series, n), ([Some("CHEST".into()), Some("CT".into())], 3));
    // another name for the patient: the latest instance's demographics win, as before
    let mut rec = record("1.4", "9.1", "8.1", b"d");
    rec.patient.name = Some("Müller^Anna Maria".into());
    insert(rec).await;
    let (stamps, values, ..) = rows().await.unwrap();
    assert!(stamps[0] > first[0]);
    assert_eq!(values[0].as_deref(), Some("Müller^Anna Maria"));
}

/// The answer of a search at `level` with `keys` (and a page, limit and offset).
async fn search(
    index: &Index,
    level: crate::query::Level,
    keys: &[(dicom_core::Tag, &str)],
    page: Option<(usize, usize)>,
) -> Vec<dicom_object::InMemDicomObject> {
    let keys = keys.iter().map(|(t, v)| crate::query::Key::new(*t, *v));
    let mut q = crate::query::Query::all(level, keys.collect());
    if let Some((limit, offset)) = page {
        (q.limit, q.offset) = (Some(limit), offset);
    }
    index.find(q).await.unwrap()
}

/// The values of `tag` in `found`, in its order.
fn values(found: &[dicom_object::InMemDicomObject], tag: dicom_core::Tag) -> Vec<String> {
    found
        .iter()
        .map(|o| o.element(tag).unwrap().to_str().unwrap().to_string())
        .collect()
}

/// Searches with a limit choose their page's rows first and compute the columns of those
/// alone; dates and times match through bounds an index range can use. Neither may change an
/// answer: every page, at every level, is the same slice of the unlimited answer, in its order,
/// and the date and time matches are those of DICOM (a range's end includes what it prefixes).
async fn a_page_of_a_search_is_the_slice_of_the_whole_answer(engine: Engine) {
    use crate::query::Level;
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    // study k: two patients in turn, dates repeating (one missing), times with fractions
    let dates = [Some("20240102"), None, Some("20231231"), Some("20240102")];
    let times = ["101500", "101500.25", "101559.9", "1016"];
    for k in 0..16usize {
        let mut r = record(
            &format!("1.{k}"),
            &format!("9.{k}"),
            &format!("8.{k}"),
            format!("{k}").as_bytes(),
        );
        r.patient.patient_id = format!("P{}", k % 2);
        r.patient.name = Some(if k % 2 == 0 { "SMITH^ANN" } else { "SMYTHE^BO" }.into());
        r.study.date = dates[k % 4].map(String::from);
        r.study.time = Some(times[k / 4].into());
        r.series.modality = Some(if k % 3 == 0 { "MR" } else { "CT" }.into());
        let added = index.insert_instance(r, OnConflict::Reject, vec![]);
        assert_eq!(added.await.unwrap(), InsertOutcome::Inserted);
    }
    let cases = [
        (Level::Study, tags::STUDY_INSTANCE_UID, vec![]),
        (
            Level::Study,
            tags::STUDY_INSTANCE_UID,
            vec![(tags::PATIENT_NAME, "SM*")],
        ),
        (
            Level::Study,
            tags::STUDY_INSTANCE_UID,
            vec![(tags::STUDY_DATE, "20240101-")],
        ),
        (
            Level::Study,
            tags::STUDY_INSTANCE_UID,
            vec![(tags::MODALITIES_IN_STUDY, "MR")],
        ),
        (
            Level::Series,
            tags::SERIES_INSTANCE_UID,
            vec![(tags::STUDY_DATE, "-20240102")],
        ),
        (
            Level::Image,
            tags::SOP_INSTANCE_UID,
            vec![(tags::PATIENT_NAME, "SMITH*")],
        ),
        (Level::Patient, tags::PATIENT_ID, vec![]),
    ];
    for (level, tag, mut keys) in cases {
        // computed and header-borne attributes returned beside the matched ones
        keys.push((tag, ""));
        if level == Level::Study {
            keys.push((tags::NUMBER_OF_STUDY_RELATED_INSTANCES, ""));
            keys.push((tags::MODALITIES_IN_STUDY, ""));
            keys.push((tags::INSTITUTION_NAME, ""));
        }
        let whole = search(&index, level, &keys, None).await;
        assert!(whole.len() > 1, "{level:?} {keys:?} found {}", whole.len());
        for (limit, offset) in [(1, 0), (2, 1), (5, 3), (100, 0), (3, 100)] {
            let page = search(&index, level, &keys, Some((limit, offset))).await;
            let expected: Vec<_> = whole.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(
                values(&page, tag),
                values(&expected, tag),
                "{level:?} {keys:?}"
            );
            assert_eq!(
                page, expected,
                "{level:?} {keys:?} page {limit} at {offset}"
            );
        }
    }
    let studies = |key, value| {
        let index = &index;
        async move {
            let keys = [(key, value), (tags::STUDY_INSTANCE_UID, "")];
            let found = search(index, Level::Study, &keys, Some((100, 0))).await;
            let mut found = values(&found, tags::STUDY_INSTANCE_UID);
            found.sort();
            found
        }
    };
    let of = |ks: &[usize]| {
        let mut v: Vec<String> = ks.iter().map(|k| format!("9.{k}")).collect();
        v.sort();
        v
    };
    let date = tags::STUDY_DATE;
    assert_eq!(
        studies(date, "20240102").await,
        of(&[0, 3, 4, 7, 8, 11, 12, 15])
    );
    assert_eq!(studies(date, "2024").await, of(&[]));
    assert_eq!(studies(date, "-2023").await, of(&[2, 6, 10, 14]));
    assert_eq!(
        studies(date, "20231231-20240101").await,
        of(&[2, 6, 10, 14])
    );
    // a single time matches itself and its fractions; a range's end what it is a prefix of
    let time = tags::STUDY_TIME;
    assert_eq!(studies(time, "101500").await, of(&[0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(studies(time, "1015").await, of(&[]));
    assert_eq!(
        studies(time, "-1015").await,
        of(&(0..12).collect::<Vec<_>>())
    );
    assert_eq!(
        studies(time, "101559-1016").await,
        of(&(8..16).collect::<Vec<_>>())
    );
}

/// A search of studies matches the patient's name on the folded name each study carries: when
/// the patient's name changes (a later instance, or an administrator's correction), each of
/// their studies is found by the new name, at every level and page, and none by the old.
async fn a_renamed_patients_studies_are_found_by_the_new_name_only(engine: Engine) {
    use crate::query::Level;
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    for (k, name) in [(0, "Müller^Anna"), (1, "Müller^Anna"), (2, "Mueller^Hans")] {
        let mut r = record(
            &format!("1.{k}"),
            &format!("9.{k}"),
            &format!("8.{k}"),
            &[k],
        );
        r.patient.name = Some(name.into());
        if k == 2 {
            r.patient.patient_id = "P2".into();
        }
        let added = index.insert_instance(r, OnConflict::Reject, vec![]);
        assert_eq!(added.await.unwrap(), InsertOutcome::Inserted);
    }
    let found = |level: Level, name: &'static str| {
        let index = &index;
        async move {
            let (uid, page) = match level {
                Level::Study => (tags::STUDY_INSTANCE_UID, Some((1, 0))),
                Level::Series => (tags::SERIES_INSTANCE_UID, None),
                _ => (tags::SOP_INSTANCE_UID, Some((100, 0))),
            };
            let keys = [(tags::PATIENT_NAME, name), (uid, "")];
            let mut all = values(&search(index, level, &keys, None).await, uid);
            all.sort();
            if let Some(page) = page {
                let paged = search(index, level, &keys, Some(page)).await;
                assert_eq!(paged.len(), all.len().min(page.0), "{level:?} {name}");
            }
            all
        }
    };
    let muller = ["9.0".to_string(), "9.1".to_string()];
    assert_eq!(found(Level::Study, "müller*").await, muller);
    assert_eq!(found(Level::Study, "MUELLER^HANS").await, ["9.2"]);
    // a later instance of P1 under another name: both of P1's studies follow it
    let mut r = record("1.3", "9.1", "8.1", b"3");
    r.patient.name = Some("Schmidt^Anna".into());
    let added = index.insert_instance(r, OnConflict::Reject, vec![]);
    assert_eq!(added.await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(found(Level::Study, "SCHMIDT*").await, muller);
    assert_eq!(found(Level::Series, "schmidt^anna").await, ["8.0", "8.1"]);
    assert_eq!(found(Level::Image, "SCH*").await, ["1.0", "1.1", "1.3"]);
    assert!(found(Level::Study, "MÜLLER*").await.is_empty());
    // an administrator corrects P2's name: the study follows it
    let identity = strata_mpi::Identity {
        issuer: "HOSP_A".into(),
        patient_id: "P2".into(),
        family_name: "Meyer".into(),
        given_name: "Hans".into(),
        ..Default::default()
    };
    let op = MpiOp::Demographics {
        key: strata_mpi::LocalKey {
            issuer: "HOSP_A".into(),
            patient_id: "P2".into(),
        },
        identity: Box::new(identity),
    };
    let audit = AuditEvent::now("admin", "admin", "mpi.demographics", Outcome::Success);
    let journal: Journal = Box::new(|_: &MpiChange, _: i64| Ok(()));
    index
        .mpi_op(op, "admin".into(), audit, journal)
        .await
        .unwrap();
    assert_eq!(found(Level::Study, "MEYER^HANS").await, ["9.2"]);
    assert!(found(Level::Study, "MUELLER*").await.is_empty());
    // fuzzy matching still reads the patient's own keys
    let mut q = crate::query::Query::all(
        Level::Study,
        vec![
            crate::query::Key::new(tags::PATIENT_NAME, "meier"),
            crate::query::Key::new(tags::STUDY_INSTANCE_UID, ""),
        ],
    );
    q.fuzzy = true;
    assert_eq!(
        values(&index.find(q).await.unwrap(), tags::STUDY_INSTANCE_UID),
        ["9.2"]
    );
}

/// A name matching more studies than a search counts before choosing its plan (on SQLite:
/// walk the answer's order rather than sort every match) pages exactly as one matching few:
/// each page is the slice of the unlimited answer, with and without another condition.
async fn a_name_matching_many_studies_pages_as_one_matching_few(engine: Engine) {
    use crate::query::Level;
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    let inserts = (0..1300usize).map(|k| {
        let mut r = record(
            &format!("1.{k}"),
            &format!("9.{k}"),
            &format!("8.{k}"),
            &k.to_be_bytes(),
        );
        // 1,200 studies of Smiths (three a patient), 100 of Jones; dates repeat, some missing
        r.patient.patient_id = format!("P{}", k / 3);
        r.patient.name = Some(if k < 1200 {
            format!("SMITH^P{}", k / 3)
        } else {
            format!("JONES^P{k}")
        });
        r.study.date = (k % 7 != 0).then(|| format!("2024{:02}{:02}", 1 + k % 12, 1 + k % 28));
        r.study.time = Some(format!("{:02}0000", k % 24));
        let index = index.clone();
        async move {
            index
                .insert_instance(r, OnConflict::Reject, vec![])
                .await
                .unwrap()
        }
    });
    let added = futures::future::join_all(inserts).await;
    assert!(added.iter().all(|a| *a == InsertOutcome::Inserted));
    let uid = tags::STUDY_INSTANCE_UID;
    for keys in [
        vec![(tags::PATIENT_NAME, "SMITH*"), (uid, "")],
        vec![
            (tags::PATIENT_NAME, "SM?TH^*"),
            (tags::STUDY_DATE, "20240301-"),
            (uid, ""),
        ],
        vec![(tags::PATIENT_NAME, "JONES*"), (uid, "")],
        vec![(tags::PATIENT_NAME, "SMITH^P7"), (uid, "")],
    ] {
        let whole = search(&index, Level::Study, &keys, None).await;
        assert!(!whole.is_empty(), "{keys:?}");
        for (limit, offset) in [(100, 0), (100, 150), (7, 1195), (100, 1250)] {
            let page = search(&index, Level::Study, &keys, Some((limit, offset))).await;
            let expected: Vec<_> = whole.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(
                values(&page, uid),
                values(&expected, uid),
                "{keys:?} page {limit} at {offset}"
            );
        }
    }
    let smiths = [(tags::PATIENT_NAME, "SMITH*"), (uid, "")];
    assert_eq!(
        search(&index, Level::Study, &smiths, None).await.len(),
        1200
    );
}

/// Three writers (as three archive processes would open it) on one PostgreSQL index, storing
/// the same new patients' instances at the same moment: one person per patient, one row per
/// study and series with every instance counted, no store refused, and one audit chain with
/// an event per store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_of_one_postgres_index_store_the_same_patients_at_once() {
    let url = strata_testkit::postgres::database();
    let key = strata_core::audit::AuditKey::from_bytes([7; 32]);
    let nodes: Vec<Index> = (0..3)
        .map(|_| {
            Index::open_postgres(
                &url,
                PG_SCHEMA,
                Arc::new(strata_core::Metrics::new()),
                Some(key.clone()),
            )
            .unwrap()
        })
        .collect();
    const NAMES: [&str; 6] = [
        "SMITH^JOHN",
        "JONES^MARY",
        "BROWN^PETER",
        "TAYLOR^SUSAN",
        "WILSON^JAMES",
        "DAVIES^HELEN",
    ];
    let (rounds, per_node) = (NAMES.len(), 12);
    for (round, name) in NAMES.iter().enumerate() {
        // Each node stores its own instances of the round's patient, study and series, and the
        // last four of them are sent to every node (the same bytes).
        let stores = (0..per_node).flat_map(|i| {
            (0..nodes.len()).map(move |n| {
                let sop = if i >= per_node - 4 {
                    format!("1.{round}.{i}")
                } else {
                    format!("1.{round}.{n}.{i}")
                };
                (n, sop)
            })
        });
        let jobs = stores.map(|(n, sop)| {
            let node = nodes[n].clone();
            let mut rec = record(
                &sop,
                &format!("9.{round}"),
                &format!("8.{round}.{}", sop.len() % 2),
                sop.as_bytes(),
            );
            // even rounds: one local key sent to every node; odd rounds: each node's own key
            // for the patient (its own issuer), which the matcher links by demographics
            rec.patient.patient_id = format!("NEW{round}");
            if round % 2 == 1 {
                rec.patient.issuer = format!("HOSP_{n}");
            }
            rec.patient.name = Some(name.to_string());
            rec.patient.birth_date = Some(format!(
                "19{:02}0{}1{}",
                40 + round,
                1 + round % 9,
                round % 10
            ));
            rec.patient.sex = Some("M".into());
            let event = AuditEvent::now("CT1", "dimse", "dimse.store", Outcome::Success)
                .detail(sop.clone());
            tokio::spawn(async move {
                node.insert_instance_audited(rec, OnConflict::Reject, vec![], Some(event))
                    .await
            })
        });
        for outcome in futures::future::join_all(jobs).await {
            let outcome = outcome.unwrap().expect("no store is refused");
            assert!(
                matches!(
                    outcome,
                    InsertOutcome::Inserted | InsertOutcome::AlreadyPresent
                ),
                "{outcome:?}"
            );
        }
    }
    let counts = nodes[1].counts().await.unwrap();
    let instances = rounds * (4 + 3 * (per_node - 4));
    let keys = rounds / 2 + rounds / 2 * nodes.len();
    assert_eq!(
        (counts.patients, counts.studies, counts.instances),
        (keys as i64, rounds as i64, instances as i64)
    );
    let persons = nodes[2].persons(PersonSearch::default()).await.unwrap();
    assert_eq!(persons.len(), rounds, "one person per patient: {persons:?}");
    for s in nodes[0].studies().await.unwrap() {
        assert_eq!(s.num_instances, (4 + 3 * (per_node - 4)) as i64, "{s:?}");
    }
    // Every store wrote its event (an instance another node had just stored too); the chain
    // holds them in one line.
    let events = nodes[0].audit_events(AuditFilter::default()).await.unwrap();
    assert_eq!(events.len(), rounds * 3 * per_node);
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=events.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        strata_core::audit::verify(Some(&key), events.clone()),
        Verdict::Intact {
            events: events.len() as u64
        }
    );
    for node in &nodes {
        node.close().await.unwrap();
    }
}

/// The decision journal's stamps, taken by three writers of one PostgreSQL index at once (one
/// of them on a machine whose clock is an hour behind): each distinct, each writer's later
/// than its last, never behind the clock of whoever took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journal_stamps_are_one_order_across_writers() {
    let url = strata_testkit::postgres::database();
    let nodes: Vec<Index> = (0..3)
        .map(|_| {
            Index::open_postgres(&url, PG_SCHEMA, Arc::new(strata_core::Metrics::new()), None)
                .unwrap()
        })
        .collect();
    let takers = nodes.iter().enumerate().map(|(n, node)| {
        let node = node.clone();
        tokio::spawn(async move {
            let mut stamps = vec![];
            for _ in 0..40 {
                let now = strata_core::now_ms() - if n == 2 { 3_600_000 } else { 0 };
                let stamp = node.journal_stamp(now).await.unwrap();
                assert!(stamp >= now, "{stamp} < {now}");
                stamps.push(stamp);
            }
            stamps
        })
    });
    let mut all = vec![];
    for stamps in futures::future::join_all(takers).await {
        let stamps = stamps.unwrap();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        all.extend(stamps);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a stamp was given twice");
    for node in &nodes {
        node.close().await.unwrap();
    }
}

fn claim(name: &str, holder: &str, now: i64) -> LeaseClaim {
    LeaseClaim {
        name: name.into(),
        holder: holder.into(),
        incarnation: format!("{holder}-1"),
        now,
        duration_ms: 30_000,
    }
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    let a = claim("scrub", "node-a", 1_000);
    let got = index.acquire_lease(a.clone()).await.unwrap();
    assert!(got.held_by(&a));
    assert_eq!((got.acquired_at, got.expires_at), (1_000, 31_000));
    // another node is refused while it runs, and learns who holds it until when
    let b = claim("scrub", "node-b", 20_000);
    let seen = index.acquire_lease(b.clone()).await.unwrap();
    assert!(!seen.held_by(&b));
    assert_eq!((seen.holder.as_str(), seen.expires_at), ("node-a", 31_000));
    // the holder renews it: the same acquisition, a later expiry
    let renewed = index
        .acquire_lease(LeaseClaim {
            now: 25_000,
            ..a.clone()
        })
        .await
        .unwrap();
    assert_eq!((renewed.acquired_at, renewed.expires_at), (1_000, 55_000));
    // the same node started again is another process: it waits for the expiry too
    let restarted = LeaseClaim {
        incarnation: "node-a-2".into(),
        now: 30_000,
        ..a.clone()
    };
    assert!(!index.acquire_lease(restarted).await.unwrap().held_by(&b));
    // once expired, the other node takes it over
    let taken = index
        .acquire_lease(LeaseClaim {
            now: 55_000,
            ..b.clone()
        })
        .await
        .unwrap();
    assert!(taken.held_by(&b));
    assert_eq!((taken.acquired_at, taken.expires_at), (55_000, 85_000));
    // and the first one, back, is refused
    let late = index
        .acquire_lease(LeaseClaim {
            now: 56_000,
            ..a.clone()
        })
        .await
        .unwrap();
    assert!(!late.held_by(&a) && late.holder == "node-b");
    // a release frees the node's leases at once, and only its own
    index
        .acquire_lease(claim("repair", "node-a", 56_000))
        .await
        .unwrap();
    assert_eq!(
        index
            .release_leases("node-b".into(), "node-b-1".into(), 57_000)
            .await
            .unwrap(),
        1
    );
    let all = index.leases().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|l| (l.name.as_str(), l.holder.as_str(), l.expires_at))
            .collect::<Vec<_>>(),
        [("repair", "node-a", 86_000), ("scrub", "node-b", 57_000)]
    );
    let again = index
        .acquire_lease(LeaseClaim {
            now: 57_000,
            ..a.clone()
        })
        .await
        .unwrap();
    assert!(again.held_by(&a) && again.acquired_at == 57_000);
}

/// Two nodes' indexes (two connections to one database; on SQLite two handles on one file)
/// asking for the same free lease at the same moment, many times: each time exactly one gets it.
/// Two handles on one catalog, as two nodes have.
fn two_nodes(engine: Engine, dir: &std::path::Path) -> (Index, Index) {
    match engine {
        Engine::Sqlite => (
            Index(Arc::new(sqlite_index(&dir.join("i.sqlite")))),
            Index(Arc::new(sqlite_index(&dir.join("i.sqlite")))),
        ),
        Engine::Postgres => {
            let url = strata_testkit::postgres::database();
            let open = || {
                Index(Arc::new(
                    sqlite::SqliteIndex::open_postgres(
                        &url,
                        PG_SCHEMA,
                        Arc::new(strata_core::Metrics::new()),
                        None,
                    )
                    .unwrap(),
                ))
            };
            (open(), open())
        }
    }
}

async fn two_nodes_racing_for_a_free_lease_get_one_holder(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = two_nodes(engine, dir.path());
    for round in 0..20 {
        let name = format!("work-{round}");
        let (a, b) = (claim(&name, "node-a", 1_000), claim(&name, "node-b", 1_000));
        let (x, y) = tokio::join!(one.acquire_lease(a.clone()), two.acquire_lease(b.clone()));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x, y, "both see the same holder");
        assert!(x.held_by(&a) != x.held_by(&b), "{x:?}");
    }
}

/// A node's heartbeat creates its row, the next one replaces it; every node is listed by id,
/// until one not seen for long is forgotten.
async fn a_heartbeat_writes_and_rewrites_its_nodes_row(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    let beat = |id: &str, seen: i64, stored: u64| NodeRow {
        id: id.into(),
        role: "all".into(),
        address: format!("http://{id}:8080"),
        version: "1.2.3".into(),
        started_at: 1_000,
        last_seen: seen,
        load: serde_json::json!({"stored_last_minute": stored, "http_in_flight": 1}),
    };
    index.heartbeat(beat("node-b", 2_000, 1), 0).await.unwrap();
    index.heartbeat(beat("node-a", 2_500, 0), 0).await.unwrap();
    index.heartbeat(beat("node-b", 7_000, 40), 0).await.unwrap();
    let nodes = index.nodes().await.unwrap();
    assert_eq!(nodes, [beat("node-a", 2_500, 0), beat("node-b", 7_000, 40)]);
    // node-a, not seen since 2.5 s, is forgotten by a heartbeat that forgets what is older
    // than 3 s; node-b's own row stays
    index
        .heartbeat(beat("node-b", 9_000, 41), 3_000)
        .await
        .unwrap();
    let nodes = index.nodes().await.unwrap();
    assert_eq!(nodes, [beat("node-b", 9_000, 41)]);
}

/// Two nodes proposing the same studies at once: each study waits in one batch only; once that
/// batch is dismissed, a later proposal may take its studies again.
async fn two_proposals_at_once_put_a_study_in_one_waiting_batch(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = two_nodes(engine, dir.path());
    let item = |i: usize| ExpiryItem {
        study_uid: format!("1.2.9.{i}"),
        retained_until: "20200101".into(),
        instances: 1,
        bytes: 10,
        outcome: "proposed".into(),
    };
    for round in 0..10 {
        let items: Vec<ExpiryItem> = (round * 5..round * 5 + 5).map(item).collect();
        let (x, y) = tokio::join!(
            one.propose_expiry(items.clone(), 1),
            two.propose_expiry(items.clone(), 1)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let held = x.map_or(0, |b| b.1) + y.map_or(0, |b| b.1);
        assert_eq!(held, 5, "round {round}: {x:?} {y:?}");
    }
    let mut waiting = one.expiry_pending().await.unwrap();
    waiting.dedup();
    assert_eq!(waiting.len(), 50, "each study once");
    // the same studies proposed again: all taken already
    let again: Vec<ExpiryItem> = (0..5).map(item).collect();
    assert_eq!(one.propose_expiry(again.clone(), 2).await.unwrap(), None);
    // dismissed, they wait no more and may be proposed again
    let mut first = None;
    for b in one.expiry_batches(100).await.unwrap() {
        let items = one.expiry_items(b.id).await.unwrap();
        if items.iter().any(|i| i.study_uid == "1.2.9.0") {
            first = Some(b.id);
        }
    }
    let first = first.unwrap();
    assert!(one
        .decide_expiry(first, "proposed", "dismissed", "admin".into(), 3)
        .await
        .unwrap());
    let items = one.expiry_items(first).await.unwrap();
    assert!(items.iter().all(|i| i.outcome == "dismissed"), "{items:?}");
    let (_, n) = two.propose_expiry(again, 4).await.unwrap().unwrap();
    assert_eq!(n, items.len());
}

/// A deletion that must respect holds checks them where it deletes: a hold placed after the
/// caller's own check still stops it, and nothing is removed. A replayed deletion does not ask.
async fn a_deletion_checks_the_holds_in_its_own_transaction(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index(Arc::new(open_engine(engine, dir.path())));
    for (sop, content) in [("1.1", b"a"), ("1.2", b"b")] {
        index
            .insert_instance(
                record(sop, "9.1", "8.1", content),
                OnConflict::Reject,
                vec![],
            )
            .await
            .unwrap();
    }
    let hold = index
        .place_hold(
            None,
            Some("9.1".into()),
            "litigation".into(),
            "admin".into(),
            1,
        )
        .await
        .unwrap();
    let sops = vec!["1.1".to_string(), "1.2".to_string()];
    assert!(matches!(
        index.delete_instances(sops.clone(), true).await,
        Err(IndexError::Held(study)) if study == "9.1"
    ));
    assert_eq!(
        index.counts().await.unwrap().instances,
        2,
        "nothing removed"
    );
    assert!(index.release_hold(hold, "admin".into(), 2).await.unwrap());
    assert_eq!(
        index
            .delete_instances(sops.clone(), true)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(index.counts().await.unwrap().instances, 0);
    // a replay removes what it names, held or not
    index
        .insert_instance(
            record("1.3", "9.2", "8.2", b"c"),
            OnConflict::Reject,
            vec![],
        )
        .await
        .unwrap();
    index
        .place_hold(
            None,
            Some("9.2".into()),
            "litigation".into(),
            "admin".into(),
            3,
        )
        .await
        .unwrap();
    let gone = index
        .delete_instances(vec!["1.3".into()], false)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    // the purge of a rejected instance asks too
    index
        .insert_instance(
            record("1.4", "9.3", "8.3", b"d"),
            OnConflict::Reject,
            vec![],
        )
        .await
        .unwrap();
    let sop = vec!["1.4".to_string()];
    let taken = index
        .reject_instances("9.3".into(), sop.clone(), "2.1".into(), "113001".into(), 4)
        .await
        .unwrap();
    assert_eq!(taken, sop);
    let hold = index
        .place_hold(
            None,
            Some("9.3".into()),
            "litigation".into(),
            "admin".into(),
            5,
        )
        .await
        .unwrap();
    let (purged, blobs) = index.forget_rejected(sop.clone(), true).await.unwrap();
    assert!(purged.is_empty() && blobs.is_empty(), "{purged:?}");
    assert!(index.release_hold(hold, "admin".into(), 6).await.unwrap());
    let (purged, blobs) = index.forget_rejected(sop.clone(), true).await.unwrap();
    assert_eq!((purged, blobs.len()), (sop, 1));
}
