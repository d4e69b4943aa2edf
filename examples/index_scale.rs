//! The index at scale, on either engine: loads N instances in N/10 studies through the catalog's
//! own interface (`insert_instance`, many in flight, so group commit works as at ingest; no DICOM
//! is stored), then times study searches the way QIDO-RS and C-FIND make them (by Study Instance
//! UID, by a family name prefix, by a study date range) and the instances of one study (as
//! WADO-RS metadata reads them). It prints the load rate, every kind's p50 and p99, and
//! `strata serve` can be started on the same data folder afterwards for whole-process figures.
//! With `--policy` it also times the background workers' scans of the whole index (the tier
//! policy's candidates, the expiry's retention facts) and the date-range search's p99 alone and
//! while the tier scan runs beside it.
//!
//! ```text
//! cargo run --release --example index_scale -- --instances 1000000 --dir /tmp/scale
//! cargo run --release --example index_scale -- --instances 1000000 --dir /tmp/scale-pg \
//!     --url postgres://strata@127.0.0.1:5432/scale
//! ```

use anyhow::Result;
use clap::Parser;
use dicom_dictionary_std::tags;
use futures::stream::{self, StreamExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::config::{IndexLocation, OnConflict};
use strata_core::BlobId;
use strata_dicom::record::{InstanceRecord, InstanceRow, PatientRecord, SeriesRecord, StudyRecord};
use strata_index::query::{Key, Level, Query};
use strata_index::Index;

#[derive(Debug, Parser)]
struct Args {
    /// Instances loaded (ten per study, in one series each).
    #[arg(long, default_value_t = 1_000_000)]
    instances: usize,
    /// Where the SQLite index is made (`<dir>/index.sqlite`, emptied first).
    #[arg(long)]
    dir: PathBuf,
    /// A PostgreSQL database instead (its `strata` schema is dropped first).
    #[arg(long)]
    url: Option<String>,
    /// Inserts in flight at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Load nothing: time the searches over the index already there (loaded by an earlier
    /// run, perhaps by another build, which this one migrates first).
    #[arg(long)]
    keep: bool,
    /// With `--keep`: load instances from this one on (0: none), growing the index already
    /// there to `--instances`.
    #[arg(long, default_value_t = 0)]
    from: usize,
    /// Timed searches of each kind.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Time the tier policy's and the expiry's scans too, and a search beside the tier scan.
    #[arg(long)]
    policy: bool,
}

const PER_STUDY: usize = 10;
const FAMILIES: [&str; 24] = [
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILLIAMS",
    "WILSON",
    "JOHNSON",
    "DAVIES",
    "ROBINSON",
    "WRIGHT",
    "THOMPSON",
    "EVANS",
    "WALKER",
    "WHITE",
    "ROBERTS",
    "GREEN",
    "HALL",
    "WOOD",
    "JACKSON",
    "CLARKE",
    "MUELLER",
    "SCHMIDT",
    "SCHNEIDER",
    "FISCHER",
];

/// The DICOM JSON an instance's header typically makes (about 1.5 KB), with its own UIDs.
fn metadata(study: &str, series: &str, sop: &str, name: &str, date: &str) -> String {
    format!(
        r#"{{"00080016":{{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]}},"00080018":{{"vr":"UI","Value":["{sop}"]}},"00080020":{{"vr":"DA","Value":["{date}"]}},"00080030":{{"vr":"TM","Value":["101500"]}},"00080050":{{"vr":"SH","Value":["ACC1"]}},"00080060":{{"vr":"CS","Value":["CT"]}},"00080070":{{"vr":"LO","Value":["SCALE"]}},"00081030":{{"vr":"LO","Value":["CT CHEST"]}},"0008103E":{{"vr":"LO","Value":["AXIAL 1.25"]}},"00100010":{{"vr":"PN","Value":[{{"Alphabetic":"{name}"}}]}},"00100020":{{"vr":"LO","Value":["P"]}},"00100030":{{"vr":"DA","Value":["19700101"]}},"00100040":{{"vr":"CS","Value":["F"]}},"00180050":{{"vr":"DS","Value":[1.25]}},"00180060":{{"vr":"DS","Value":[120]}},"0020000D":{{"vr":"UI","Value":["{study}"]}},"0020000E":{{"vr":"UI","Value":["{series}"]}},"00200011":{{"vr":"IS","Value":[1]}},"00200013":{{"vr":"IS","Value":[1]}},"00200032":{{"vr":"DS","Value":[-250,-250,100]}},"00200037":{{"vr":"DS","Value":[1,0,0,0,1,0]}},"00280002":{{"vr":"US","Value":[1]}},"00280004":{{"vr":"CS","Value":["MONOCHROME2"]}},"00280010":{{"vr":"US","Value":[512]}},"00280011":{{"vr":"US","Value":[512]}},"00280030":{{"vr":"DS","Value":[0.7,0.7]}},"00280100":{{"vr":"US","Value":[16]}},"00280101":{{"vr":"US","Value":[12]}},"00280102":{{"vr":"US","Value":[11]}},"00280103":{{"vr":"US","Value":[1]}},"00281050":{{"vr":"DS","Value":[40]}},"00281051":{{"vr":"DS","Value":[400]}},"00281052":{{"vr":"DS","Value":[-1024]}},"00281053":{{"vr":"DS","Value":[1]}}}}"#
    )
}

fn study_uid(s: usize) -> String {
    format!("2.25.{}", 100_000_000_000u64 + s as u64)
}

/// The patient of study `s` (two studies each), by name.
fn name(s: usize) -> String {
    format!("{}^PATIENT{}", family(s), s / 2)
}

fn family(s: usize) -> &'static str {
    FAMILIES[(s / 2) % FAMILIES.len()]
}

fn date(s: usize) -> String {
    format!("20{:02}{:02}{:02}", 10 + s % 15, 1 + s % 12, 1 + s % 28)
}

fn record(i: usize) -> InstanceRecord {
    let s = i / PER_STUDY;
    let (study, series) = (
        study_uid(s),
        format!("2.25.{}", 200_000_000_000u64 + s as u64),
    );
    let sop = format!("2.25.{}", 300_000_000_000u64 + i as u64);
    let (name, date) = (name(s), date(s));
    let mut blob = [0u8; 32];
    blob[..8].copy_from_slice(&(i as u64).to_be_bytes());
    InstanceRecord {
        patient: PatientRecord {
            // two studies a patient
            patient_id: format!("P{}", s / 2),
            issuer: "SCALE".into(),
            name: Some(name.clone()),
            birth_date: Some("19700101".into()),
            sex: Some("F".into()),
            ..Default::default()
        },
        study: StudyRecord {
            uid: study.clone(),
            date: Some(date.clone()),
            time: Some("101500".into()),
            accession_number: Some(format!("ACC{s}")),
            description: Some("CT CHEST".into()),
            ..Default::default()
        },
        series: SeriesRecord {
            uid: series.clone(),
            modality: Some("CT".into()),
            number: Some(1),
            ..Default::default()
        },
        instance: InstanceRow {
            sop_uid: sop.clone(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            number: Some((i % PER_STUDY) as i64 + 1),
            blob_id: BlobId::from_bytes(blob),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size: 526_000,
            frames: None,
            rows: Some(512),
            columns: Some(512),
            content_date: None,
            content_time: None,
            metadata: metadata(&study, &series, &sop, &name, &date),
            source: "scale".into(),
            received_at: 1,
        },
    }
}

/// p50 and p99 of `f` run `n` times, in milliseconds.
async fn timed<F, Fut>(n: usize, mut f: F) -> Result<(f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let found = f(i).await?;
        times.push(t.elapsed());
        anyhow::ensure!(found > 0, "query {i} found nothing");
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(times[n / 2]), ms(times[(n * 99 / 100).min(n - 1)])))
}

fn study_query(keys: Vec<Key>) -> Query {
    let mut q = Query::all(Level::Study, keys);
    q.limit = Some(100);
    q
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.dir)?;
    let location = match &a.url {
        Some(url) => {
            if !a.keep {
                strata_index::postgres_drop_schema(url, strata_index::PG_SCHEMA)?;
            }
            IndexLocation::Postgres(url.clone())
        }
        None => {
            let path = a.dir.join("index.sqlite");
            for suffix in ["", "-wal", "-shm"] {
                if !a.keep {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            IndexLocation::Sqlite(path)
        }
    };
    let engine = if a.url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let index = Index::open_at(&location, Arc::new(strata_core::Metrics::new()), None)?;

    let started = Instant::now();
    let mut done = 0usize;
    let first = match (a.keep, a.from) {
        (false, _) => 0,
        (true, 0) => a.instances,
        (true, from) => from,
    };
    let mut inserts = stream::iter(first..a.instances)
        .map(|i| {
            let index = index.clone();
            async move {
                index
                    .insert_instance(record(i), OnConflict::Reject, vec![])
                    .await
            }
        })
        .buffer_unordered(a.in_flight);
    while let Some(r) = inserts.next().await {
        r?;
        done += 1;
        if done.is_multiple_of(100_000) {
            eprintln!(
                "{done} instances in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let load = started.elapsed().as_secs_f64();
    let studies = a.instances / PER_STUDY;
    println!(
        "{engine}: loaded {} instances in {studies} studies in {load:.1} s ({:.0} instances/s)",
        a.instances - first,
        (a.instances - first) as f64 / load
    );

    let n = a.queries;
    let pick = |i: usize| (i * 7919) % studies;
    let (p50, p99) = timed(n, |i| {
        let q = study_query(vec![
            Key::new(tags::STUDY_INSTANCE_UID, study_uid(pick(i))),
            Key::new(tags::PATIENT_NAME, ""),
        ]);
        let index = index.clone();
        async move { Ok(index.find(q).await?.len()) }
    })
    .await?;
    println!("{engine} study by UID: p50={p50:.3} ms p99={p99:.3} ms");
    let (p50, p99) = timed(n, |i| {
        let s = pick(i);
        let q = study_query(vec![
            Key::new(tags::PATIENT_NAME, format!("{}*", family(s))),
            Key::new(tags::STUDY_INSTANCE_UID, ""),
        ]);
        let index = index.clone();
        async move { Ok(index.find(q).await?.len()) }
    })
    .await?;
    println!("{engine} study by family name prefix (limit 100): p50={p50:.3} ms p99={p99:.3} ms");
    let (p50, p99) = timed(n, |i| {
        let q = study_query(vec![
            Key::new(tags::PATIENT_NAME, name(pick(i))),
            Key::new(tags::STUDY_INSTANCE_UID, ""),
        ]);
        let index = index.clone();
        async move { Ok(index.find(q).await?.len()) }
    })
    .await?;
    println!("{engine} study by whole name (2 matches): p50={p50:.3} ms p99={p99:.3} ms");
    let (p50, p99) = timed(n, |i| {
        let d = date(pick(i));
        let q = study_query(vec![
            Key::new(tags::STUDY_DATE, format!("{d}-{d}")),
            Key::new(tags::STUDY_INSTANCE_UID, ""),
        ]);
        let index = index.clone();
        async move { Ok(index.find(q).await?.len()) }
    })
    .await?;
    println!("{engine} study by date range (limit 100): p50={p50:.3} ms p99={p99:.3} ms");
    let (p50, p99) = timed(n, |i| {
        let uid = study_uid(pick(i));
        let index = index.clone();
        async move {
            Ok(index
                .instances_under(uid, None, None, strata_index::Scope::All)
                .await?
                .len())
        }
    })
    .await?;
    println!("{engine} instances of a study (metadata): p50={p50:.3} ms p99={p99:.3} ms");
    if a.policy {
        policy_scans(&index, engine, n, studies).await?;
    }
    index.close().await?;
    Ok(())
}

/// The tier policy's scan as its worker pages through it, resting after each page as it does
/// (`SCAN_REST` times as long as the page took): every study is a candidate (each instance was
/// received at 1 ms and none was read). Returns the studies found.
async fn tier_scan(index: &Index) -> Result<usize> {
    let (mut after, mut found) = (None, 0);
    loop {
        let started = Instant::now();
        let page = index
            .tier_candidates(strata_index::TierQuery {
                received_before: i64::MAX,
                unread_since: i64::MAX,
                now: i64::MAX,
                after: after.clone(),
                limit: 500,
            })
            .await?;
        tokio::time::sleep(started.elapsed() * strata_services::tiers::SCAN_REST).await;
        let Some(next) = page.scanned_to else {
            return Ok(found);
        };
        after = Some(next);
        found += page.candidates.len();
    }
}

/// The date-range search's p50 and p99 over `n` searches.
async fn date_searches(index: &Index, n: usize, studies: usize) -> Result<(f64, f64)> {
    timed(n, |i| {
        let d = date((i * 7919) % studies);
        let q = study_query(vec![
            Key::new(tags::STUDY_DATE, format!("{d}-{d}")),
            Key::new(tags::STUDY_INSTANCE_UID, ""),
        ]);
        let index = index.clone();
        async move { Ok(index.find(q).await?.len()) }
    })
    .await
}

async fn policy_scans(index: &Index, engine: &str, n: usize, studies: usize) -> Result<()> {
    let t = Instant::now();
    let found = tier_scan(index).await?;
    anyhow::ensure!(
        found == studies,
        "the tier scan found {found} of {studies} studies"
    );
    println!(
        "{engine} tier policy scan: {found} studies in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (mut after, mut seen) = (None, 0);
    loop {
        let page = index.study_facts_page(after.clone(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.study_uid.clone());
        seen += page.len();
    }
    anyhow::ensure!(
        seen == studies,
        "the expiry scan found {seen} of {studies} studies"
    );
    println!(
        "{engine} expiry facts scan: {seen} studies in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (alone50, alone99) = date_searches(index, n, studies).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanner = {
        let (index, stop) = (index.clone(), stop.clone());
        tokio::spawn(async move {
            let mut scans = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tier_scan(&index).await?;
                scans += 1;
            }
            anyhow::Ok(scans)
        })
    };
    let (beside50, beside99) = date_searches(index, n, studies).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scans = scanner.await??;
    println!(
        "{engine} study by date range alone: p50={alone50:.3} ms p99={alone99:.3} ms; beside the tier scan \
         ({scans} scans finished): p50={beside50:.3} ms p99={beside99:.3} ms ({:+.0} % at p99)",
        (beside99 / alone99 - 1.0) * 100.0
    );
    Ok(())
}
