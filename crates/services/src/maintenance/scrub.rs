//! The background scrub, in garage's manner: it walks every blob the index refers to, in blob
//! order, a batch per round, verifying every copy and queueing the bad ones for repair. Its
//! place in the pass is kept in the index (`worker_progress`), so a restart resumes the pass
//! where it stopped. After each blob it rests `tranquility` times as long as the blob took (and
//! at least `1 / blobs_per_second`), so on a busy disk it slows down by itself and never
//! starves the requests of the disk's time.

use super::workers::RoundDone;
use crate::ServiceError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_core::config::ScrubConfig;
use strata_core::now_ms;
use strata_index::{Index, WorkerProgress};
use strata_store::Store;

/// The name the scrub's progress and status go by.
pub const SCRUB: &str = "scrub";
/// Blobs per round: the progress is saved after each, so a restart redoes at most this many.
const BATCH: usize = 64;
/// Rest between two passes over the archive.
const BETWEEN_PASSES: Duration = Duration::from_secs(60);

/// The scrub worker of one archive.
pub struct Scrubber {
    store: Arc<Store>,
    index: Index,
    config: ScrubConfig,
    batch: usize,
}

impl Scrubber {
    pub fn new(store: Arc<Store>, index: Index, config: ScrubConfig) -> Scrubber {
        Scrubber {
            store,
            index,
            config,
            batch: BATCH,
        }
    }

    /// The rest after a blob whose verification took `took`: `tranquility` times as long, and
    /// at least `1 / blobs_per_second` (the configured rate is a ceiling).
    fn rest_after(&self, took: Duration) -> Duration {
        let least = Duration::from_secs_f64(1.0 / self.config.blobs_per_second.max(1e-3));
        took.mul_f64(self.config.tranquility).max(least)
    }

    /// One round: the next batch of the pass (starting a pass when none is under way), every
    /// copy of each blob verified, bad copies queued for repair, the place in the pass saved.
    pub async fn round(&self) -> Result<RoundDone, ServiceError> {
        let mut p = self
            .index
            .worker_progress(SCRUB.to_string())
            .await?
            .unwrap_or(WorkerProgress {
                worker: SCRUB.to_string(),
                ..WorkerProgress::default()
            });
        if p.pass_started_at.is_none() {
            p.pass += 1;
            p.pass_started_at = Some(now_ms());
            p.cursor = None;
            p.done = 0;
            super::remove_stale_staging(&self.store);
        }
        let batch = self.index.blob_ids_after(p.cursor, self.batch).await?;
        if batch.is_empty() {
            p.last_pass_finished_at = Some(now_ms());
            p.last_pass_blobs = Some(p.done);
            p.pass_started_at = None;
            p.cursor = None;
            let detail = format!("pass {} done: {} blobs", p.pass, p.done);
            self.index.set_worker_progress(p).await?;
            return Ok(RoundDone {
                pause: BETWEEN_PASSES,
                detail: Some(detail),
            });
        }
        let mut bad = 0;
        for blob in &batch {
            let started = Instant::now();
            let (_, left) = super::check_blob(&self.store, &self.index, blob, false).await?;
            bad += left.len();
            p.cursor = Some(*blob);
            p.done += 1;
            tokio::time::sleep(self.rest_after(started.elapsed())).await;
        }
        let detail = format!(
            "pass {}: {} blobs checked so far{}",
            p.pass,
            p.done,
            if bad > 0 {
                format!(", {bad} bad copies queued for repair in the last round")
            } else {
                String::new()
            }
        );
        self.index.set_worker_progress(p).await?;
        Ok(RoundDone {
            pause: Duration::ZERO,
            detail: Some(detail),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingest, Source};
    use crate::journal::Journal;
    use strata_core::config::IngestConfig;
    use strata_core::Metrics;
    use strata_store::crypt::MasterKey;
    use strata_store::{Replica, Replicas};

    /// A store on two local folders and an index, with the project's fixture studies ingested.
    async fn archive(dir: &std::path::Path) -> (Arc<Store>, Index) {
        let replicas = (0..2)
            .map(|i| Replica::open(&format!("file://{}/r{i}", dir.display())).unwrap())
            .collect();
        let store = Arc::new(Store::new(
            Arc::new(MasterKey::from_secret(&[5; 32])),
            Replicas::new(replicas, 2),
        ));
        let index = Index::open(&dir.join("index.sqlite")).unwrap();
        let ingest = Ingest::new(
            store.clone(),
            index.clone(),
            Journal::new(store.clone()),
            Arc::new(Metrics::new()),
            IngestConfig::default(),
            dir.join("spool"),
        );
        let studies =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/studies");
        for entry in std::fs::read_dir(&studies).unwrap() {
            for f in walk(&entry.unwrap().path()) {
                ingest.ingest_file(&f, &Source::Import).await.unwrap();
            }
        }
        (store, index)
    }

    fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
        if p.is_file() {
            return vec![p.to_path_buf()];
        }
        let mut out: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flat_map(|e| walk(&e.unwrap().path()))
            .collect();
        out.sort();
        out
    }

    fn fast() -> ScrubConfig {
        ScrubConfig {
            blobs_per_second: 1000.0,
            tranquility: 0.0,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pass_is_resumed_where_it_stopped_and_bad_copies_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (store, index) = archive(dir.path()).await;
        let all = index.blob_ids().await.unwrap();
        assert_eq!(all.len(), 12);
        // one copy damaged: the pass finds it
        let victim = dir.path().join("r1").join(all[7].object_key());
        let mut bytes = std::fs::read(&victim).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&victim, bytes).unwrap();

        let scrubber = |batch| Scrubber {
            batch,
            ..Scrubber::new(store.clone(), index.clone(), fast())
        };
        scrubber(5).round().await.unwrap();
        let p = index.worker_progress(SCRUB.into()).await.unwrap().unwrap();
        assert_eq!((p.pass, p.done, p.cursor), (1, 5, Some(all[4])));
        // a new scrubber (a restarted server) goes on from there, not from the start
        let done = scrubber(5).round().await.unwrap();
        assert!(done.detail.unwrap().contains("10 blobs checked so far"));
        let p = index.worker_progress(SCRUB.into()).await.unwrap().unwrap();
        assert_eq!((p.done, p.cursor), (10, Some(all[9])));
        let queued = index.repairs_for(all[7]).await.unwrap();
        assert_eq!(queued.len(), 1, "the damaged copy is queued for repair");
        assert_eq!(queued[0].replica, 1);
        scrubber(5).round().await.unwrap();
        let end = scrubber(5).round().await.unwrap();
        assert_eq!(end.pause, BETWEEN_PASSES);
        let p = index.worker_progress(SCRUB.into()).await.unwrap().unwrap();
        assert_eq!((p.last_pass_blobs, p.pass_started_at), (Some(12), None));
        // the next round starts pass 2 from the first blob
        scrubber(3).round().await.unwrap();
        let p = index.worker_progress(SCRUB.into()).await.unwrap().unwrap();
        assert_eq!((p.pass, p.done, p.cursor), (2, 3, Some(all[2])));
    }

    #[test]
    fn the_rest_after_a_blob_follows_its_work_and_the_rate_bounds_it() {
        let dir = tempfile::tempdir().unwrap();
        let replicas = vec![Replica::open(&format!("file://{}", dir.path().display())).unwrap()];
        let store = Arc::new(Store::new(
            Arc::new(MasterKey::from_secret(&[5; 32])),
            Replicas::new(replicas, 1),
        ));
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let s = |blobs_per_second, tranquility| {
            Scrubber::new(
                store.clone(),
                index.clone(),
                ScrubConfig {
                    blobs_per_second,
                    tranquility,
                },
            )
        };
        let ms = Duration::from_millis;
        // tranquility 2: a blob that took 30 ms is followed by 60 ms of rest
        assert_eq!(s(1000.0, 2.0).rest_after(ms(30)), ms(60));
        // a busier disk (the same blob taking longer) makes for a longer rest
        assert_eq!(s(1000.0, 2.0).rest_after(ms(300)), ms(600));
        // the rate is a ceiling: 5 blobs per second rest at least 200 ms
        assert_eq!(s(5.0, 2.0).rest_after(ms(30)), ms(200));
        assert_eq!(s(5.0, 0.0).rest_after(ms(30)), ms(200));
    }
}
