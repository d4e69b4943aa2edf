//! Hot and cold tiers. A study is hot while the replicas hold its blobs; the tier policy moves
//! a study that is old and unread to the cold tier, where each blob is erasure-coded into
//! `k + m` sealed shards on as many cold stores ([`strata_store::shards`]), and the replicas'
//! copies are removed only once every shard is durable and the index records it.
//!
//! A cold study read again (DICOMweb, C-GET, C-MOVE, the viewer: every door reads through
//! [`crate::reads`]) is rebuilt from any `k` shards, written back to the replicas and served;
//! it stays hot for `tiers.restored_for_days`, then goes back to cold (its shards were kept,
//! so only the replicas' copies go).
//!
//! The index keeps when each study was last read (noted at most once an hour per study, so a
//! busy viewer costs no write per request); the policy reads that. The background worker
//! applies the policy a study at a time, at most `tiers.studies_per_minute`, under its lease;
//! a study is moved blob by blob and marked cold only at the end, so a worker stopped midway
//! takes the study up again where it stood (blobs already coded are not coded again).

use crate::ServiceError;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::config::TiersConfig;
use strata_core::{BlobId, Clock};
use strata_index::{ColdBlob, Index, StudyTier, TierCandidate, TierQuery};
use strata_store::shards::{ShardState, Shards};
use strata_store::{QuorumError, ReplicaError, Store, StoreError};

/// An average month (365.2425 / 12 days), in ms.
pub const MONTH_MS: i64 = 2_629_746_000;
const DAY_MS: i64 = 86_400_000;
/// A study's reads are noted in the index at most this often.
const NOTE_READS_EVERY_MS: i64 = 3_600_000;
/// After each page of its scan, the policy rests this many times as long as the page took: the
/// scan takes a fifth of a core at most, so the searches beside it keep their pace (a scan of
/// 1,000,000 instances: under a second of work, about four seconds in all).
pub const SCAN_REST: u32 = 4;
/// Studies the policy's scan looks at per query.
const SCAN_PAGE: usize = 500;
/// Blobs coded or rebuilt at once.
const AT_ONCE: usize = 8;
/// The name the tier worker's status and lease go by.
pub const TIERS: &str = "tiers";

/// What the policy would move (a dry run) or moved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TierPlan {
    pub studies: Vec<TierCandidate>,
    pub instances: u64,
    /// The instances' bytes.
    pub bytes: u64,
    /// What the replicas hold of them now (every replica a whole copy, sealed).
    pub hot_bytes: u64,
    /// What the cold stores will hold of them (the shards, sealed).
    pub cold_bytes: u64,
}

impl TierPlan {
    /// Bytes the move frees.
    pub fn saved_bytes(&self) -> i64 {
        self.hot_bytes as i64 - self.cold_bytes as i64
    }
}

/// One study's move to cold.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Moved {
    pub blobs: u64,
    /// Blobs coded into shards now (the others had shards already).
    pub coded: u64,
    pub bytes: u64,
    /// Blobs left hot: larger than `tiers.max_blob_bytes`, or shared with a hot study.
    pub left_hot: u64,
}

/// One store's shards as a scrub found them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreHealth {
    pub store: usize,
    pub url: String,
    pub good: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub repaired: u64,
}

/// The shard scrub's findings, per store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardScrub {
    pub blobs: u64,
    pub stores: Vec<StoreHealth>,
    /// Blobs with fewer than `k` good shards: not rebuildable.
    pub lost: u64,
}

pub struct Tiers {
    store: Arc<Store>,
    index: Index,
    shards: Option<Arc<Shards>>,
    config: TiersConfig,
    clock: Clock,
    /// One restore at a time: a second reader of the study waits, then finds it hot.
    restoring: tokio::sync::Mutex<()>,
    /// When each study's reads were last noted in the index.
    noted: Mutex<HashMap<String, i64>>,
    /// The studies being restored in the background (or waiting their turn), and those whose
    /// restore failed lately.
    progress: Mutex<HashMap<String, Restore>>,
}

/// A background restore of a study.
#[derive(Debug, Clone)]
enum Restore {
    /// Blobs restored so far, and in all (0 in all: not started).
    Running(u64, u64),
    /// It failed at `at` (ms), for `why`: not tried again for [`RETRY_RESTORE_MS`].
    Failed { why: String, at: i64 },
}

/// A study whose restore failed is not tried again by a reader's request sooner than this.
const RETRY_RESTORE_MS: i64 = 60_000;

/// Where a study stands for a reader: on the replicas, coming back from the cold tier, or
/// neither.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Availability {
    Hot,
    /// Being rebuilt from its shards: `done` of `total` blobs (0 of 0 while it waits its turn).
    Restoring {
        done: u64,
        total: u64,
    },
    /// In the cold tier, and not being restored.
    Cold,
    /// Its restore failed lately.
    Failed {
        why: String,
    },
}

impl Tiers {
    /// The tiers of an archive; `shards` is None when no cold tier is configured.
    pub fn new(
        store: Arc<Store>,
        index: Index,
        shards: Option<Arc<Shards>>,
        config: TiersConfig,
        clock: Clock,
    ) -> Tiers {
        Tiers {
            store,
            index,
            shards,
            config,
            clock,
            restoring: tokio::sync::Mutex::new(()),
            noted: Mutex::default(),
            progress: Mutex::default(),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &TiersConfig {
        &self.config
    }

    pub fn shards(&self) -> Option<&Arc<Shards>> {
        self.shards.as_ref()
    }

    fn cold(&self) -> Result<&Arc<Shards>, ServiceError> {
        self.shards.as_ref().ok_or_else(|| {
            ServiceError::Invalid("no cold tier is configured (tiers.stores)".into())
        })
    }

    /// Notes that `studies` are being read, at most once an hour per study.
    pub async fn note_reads(&self, studies: &[String]) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        let due: Vec<String> = {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.len() > 100_000 {
                noted.retain(|_, at| now - *at < NOTE_READS_EVERY_MS);
            }
            studies
                .iter()
                .filter(|s| {
                    let fresh = noted
                        .get(s.as_str())
                        .is_some_and(|at| now - at < NOTE_READS_EVERY_MS);
                    if !fresh {
                        noted.insert(s.to_string(), now);
                    }
                    !fresh
                })
                .cloned()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect()
        };
        if !due.is_empty() {
            self.index.note_reads(due, now).await?;
        }
        Ok(())
    }

    /// The studies the policy would move now, and what moving them saves.
    pub async fn plan(&self, limit: usize) -> Result<TierPlan, ServiceError> {
        let shards = self.cold()?;
        let now = self.clock.now_ms();
        let c = &self.config;
        let mut plan = TierPlan::default();
        let mut after = None;
        while plan.studies.len() < limit {
            let started = std::time::Instant::now();
            let page = self
                .index
                .tier_candidates(TierQuery {
                    received_before: now - i64::from(c.older_than_months) * MONTH_MS,
                    unread_since: now - i64::from(c.unread_for_months) * MONTH_MS,
                    now,
                    after: after.clone(),
                    limit: SCAN_PAGE,
                })
                .await?;
            tokio::time::sleep(started.elapsed() * SCAN_REST).await;
            let Some(next) = page.scanned_to else { break };
            after = Some(next);
            for cand in page.candidates {
                if plan.studies.len() >= limit {
                    break;
                }
                if !c.modalities.is_empty() {
                    let of = self.index.study_modalities(cand.study_uid.clone()).await?;
                    if !of.iter().any(|m| c.modalities.contains(m)) {
                        continue;
                    }
                }
                for (_, size) in self.index.study_blobs(cand.study_uid.clone()).await? {
                    plan.hot_bytes += strata_store::crypt::sealed_len(
                        size,
                        strata_store::crypt::DEFAULT_SEGMENT_SIZE,
                    ) * self.store.replicas().len() as u64;
                    plan.cold_bytes += shards.stored_len(size);
                }
                plan.instances += cand.instances;
                plan.bytes += cand.bytes;
                plan.studies.push(cand);
            }
        }
        Ok(plan)
    }

    /// Moves `study` to the cold tier: every blob coded into shards, durable on every cold
    /// store, recorded in the index; the study marked cold; only then the replicas' copies
    /// removed.
    pub async fn move_study(&self, study: &str) -> Result<Moved, ServiceError> {
        let shards = self.cold()?;
        let _one = self.restoring.lock().await;
        let mut moved = Moved::default();
        let blobs = self.index.study_blobs(study.to_string()).await?;
        // blobs coded a few at once: their shards' fsyncs are shared ([`strata_store::durability`])
        let coded =
            futures::stream::iter(blobs.clone().into_iter().map(|(blob, size)| async move {
                if self.index.cold_blob(blob).await?.is_some() {
                    return Ok::<_, ServiceError>(Some(false));
                }
                if size > self.config.max_blob_bytes {
                    return Ok(None);
                }
                self.code_blob(shards, &blob, size).await?;
                Ok(Some(true))
            }))
            .buffered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut going = Vec::new();
        for ((blob, size), outcome) in blobs.iter().zip(coded) {
            moved.blobs += 1;
            moved.bytes += size;
            match outcome? {
                None => moved.left_hot += 1,
                Some(now) => {
                    moved.coded += u64::from(now);
                    going.push(*blob);
                }
            }
        }
        // a blob another (hot) study refers to stays on the replicas
        let mut only_here = Vec::new();
        for blob in going {
            let studies = self.index.studies_of_blob(blob).await?;
            let mut shared_hot = false;
            for s in studies.iter().filter(|s| *s != study) {
                let t = self.index.study_tier(s.clone()).await?;
                shared_hot |= t.is_none_or(|t| t.tier != "cold");
            }
            if shared_hot {
                moved.left_hot += 1;
            } else {
                only_here.push(blob);
            }
        }
        let before = self.index.study_tier(study.to_string()).await?;
        self.index
            .set_study_tier(StudyTier {
                study_uid: study.to_string(),
                tier: "cold".into(),
                last_read_at: None,
                reads: 0,
                cold_since: Some(self.clock.now_ms()),
                restored_until: None,
            })
            .await?;
        self.index.set_blobs_hot(only_here.clone(), false).await?;
        for blob in &only_here {
            for bad in self.store.replicas().delete(&blob.object_key()).await {
                // the copy stays behind; the blob is cold all the same
                tracing::warn!(%blob, replica = bad.replica + 1, "removing a moved copy: {}", bad.error);
            }
        }
        tracing::info!(
            study,
            blobs = moved.blobs,
            coded = moved.coded,
            was = before.map(|t| t.tier).unwrap_or_else(|| "hot".into()),
            "moved to the cold tier"
        );
        Ok(moved)
    }

    /// Reads `blob` from the replicas, writes its shards durably, records it as a cold blob.
    async fn code_blob(
        &self,
        shards: &Shards,
        blob: &BlobId,
        size: u64,
    ) -> Result<(), ServiceError> {
        let mut plain = Vec::with_capacity(size as usize);
        self.store
            .read_to(blob, |c| {
                plain.extend_from_slice(c);
                Ok(())
            })
            .await?;
        shards
            .put(blob, &plain)
            .await
            .map_err(|e| ServiceError::Setup(format!("coding {blob}: {e}")))?;
        self.index
            .record_cold_blobs(vec![ColdBlob {
                blob_id: *blob,
                size,
                k: shards.data_shards() as u8,
                m: shards.parity_shards() as u8,
                stored_at: self.clock.now_ms(),
                hot: true,
            }])
            .await?;
        Ok(())
    }

    /// Whether `error` (a read from the replicas) may mean that the blob is in the cold tier:
    /// no replica has it at all.
    pub fn all_missing(error: &StoreError) -> bool {
        matches!(error, StoreError::Quorum(QuorumError::Read { failed })
            if !failed.is_empty() && failed.iter().all(|b| matches!(b.error, ReplicaError::Missing)))
    }

    /// Restores the studies `blob` belongs to when the cold stores alone hold it; returns
    /// whether it now is on the replicas (false: it is not a cold blob).
    pub async fn restore_blob(&self, blob: &BlobId) -> Result<bool, ServiceError> {
        let Some(cold) = self.index.cold_blob(*blob).await? else {
            return Ok(false);
        };
        if self.shards.is_none() {
            return Err(ServiceError::Setup(format!(
                "blob {blob} is in the cold tier, and no cold stores are configured"
            )));
        }
        let studies = self.index.studies_of_blob(*blob).await?;
        for s in &studies {
            self.restore_study(s).await?;
        }
        if studies.is_empty() || !cold.hot {
            // a superseded version, or a study already marked hot: this blob alone
            let _one = self.restoring.lock().await;
            self.restore_blobs(&[*blob], None).await?;
        }
        Ok(true)
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<String, Restore>> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `study` stands for a reader. A cold study is restored in the background when
    /// `start` says so (once, however many ask; after a failure, not again for a minute); the
    /// answer says how far it has come.
    pub async fn availability(
        self: &Arc<Self>,
        study: &str,
        start: bool,
    ) -> Result<Availability, ServiceError> {
        let now = self.clock.now_ms();
        match self.progress().get(study) {
            Some(Restore::Running(done, total)) => {
                return Ok(Availability::Restoring {
                    done: *done,
                    total: *total,
                })
            }
            Some(Restore::Failed { why, at }) if now - at < RETRY_RESTORE_MS => {
                return Ok(Availability::Failed { why: why.clone() })
            }
            _ => {}
        }
        let cold = self
            .index
            .study_tier(study.to_string())
            .await?
            .is_some_and(|t| t.tier == "cold");
        if !cold {
            return Ok(Availability::Hot);
        }
        if !start {
            return Ok(Availability::Cold);
        }
        let started = {
            let mut progress = self.progress();
            let running = matches!(progress.get(study), Some(Restore::Running(..)));
            if !running {
                progress.insert(study.to_string(), Restore::Running(0, 0));
            }
            !running
        };
        if started {
            let (tiers, study) = (self.clone(), study.to_string());
            tokio::spawn(async move {
                use futures::FutureExt;
                let outcome = std::panic::AssertUnwindSafe(tiers.restore_study(&study))
                    .catch_unwind()
                    .await;
                let failed = match outcome {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the restore panicked".to_string()),
                };
                let mut progress = tiers.progress();
                match failed {
                    None => {
                        progress.remove(&study);
                    }
                    Some(e) => {
                        // the reader hears that it failed; the operator's log says why
                        tracing::error!(study, "restoring from the cold tier: {e}");
                        let at = tiers.clock.now_ms();
                        let why = "the study could not be rebuilt from the cold stores".into();
                        progress.insert(study, Restore::Failed { why, at });
                    }
                }
            });
        }
        Ok(Availability::Restoring { done: 0, total: 0 })
    }

    /// Rebuilds a cold study's blobs from their shards onto the replicas, and keeps it hot for
    /// `tiers.restored_for_days`. Nothing to do for a study that is not cold.
    pub async fn restore_study(&self, study: &str) -> Result<u64, ServiceError> {
        let _one = self.restoring.lock().await;
        let Some(tier) = self.index.study_tier(study.to_string()).await? else {
            return Ok(0);
        };
        if tier.tier != "cold" {
            return Ok(0);
        }
        let blobs: Vec<BlobId> = self
            .index
            .study_blobs(study.to_string())
            .await?
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        if let Some(Restore::Running(_, total)) = self.progress().get_mut(study) {
            *total = blobs.len() as u64;
        }
        let restored = self.restore_blobs(&blobs, Some(study)).await?;
        self.index
            .set_study_tier(StudyTier {
                tier: "hot".into(),
                restored_until: Some(
                    self.clock.now_ms() + i64::from(self.config.restored_for_days) * DAY_MS,
                ),
                ..tier
            })
            .await?;
        tracing::info!(study, blobs = restored, "restored from the cold tier");
        Ok(restored)
    }

    /// Writes the cold-only blobs among `blobs` back to the replicas, rebuilt from any `k`
    /// shards (shards found bad on the way are rewritten); counts them done in the progress of
    /// `study`, if one is given.
    async fn restore_blobs(
        &self,
        blobs: &[BlobId],
        study: Option<&str>,
    ) -> Result<u64, ServiceError> {
        let shards = self.cold()?;
        let mut results = futures::stream::iter(blobs.iter().copied().map(|blob| async move {
            match self.index.cold_blob(blob).await? {
                Some(c) if !c.hot => {}
                _ => return Ok::<_, ServiceError>(None),
            }
            let blob = &blob;
            let (plain, bad) = shards
                .get(blob)
                .await
                .map_err(|e| ServiceError::Setup(format!("rebuilding {blob}: {e}")))?;
            if !bad.is_empty() {
                let which: Vec<usize> = bad.iter().map(|b| b.0).collect();
                if let Err(e) = shards.repair(blob, &which).await {
                    tracing::warn!(%blob, "rewriting bad shards: {e}");
                }
            }
            self.store.put(blob, &plain).await?;
            Ok(Some(*blob))
        }))
        .buffered(AT_ONCE);
        let mut restored = Vec::new();
        while let Some(r) = results.next().await {
            restored.extend(r?);
            if let Some(s) = study {
                if let Some(Restore::Running(done, _)) = self.progress().get_mut(s) {
                    *done += 1;
                }
            }
        }
        let n = restored.len() as u64;
        self.index.set_blobs_hot(restored, true).await?;
        Ok(n)
    }

    /// Moves back to cold the restored studies whose time in the hot tier is over; returns
    /// how many.
    pub async fn return_expired(&self) -> Result<usize, ServiceError> {
        let expired = self
            .index
            .restored_expired(self.clock.now_ms(), SCAN_PAGE)
            .await?;
        for t in &expired {
            self.move_study(&t.study_uid).await?;
        }
        Ok(expired.len())
    }

    /// Applies the policy: restored studies whose time is over go back to cold, then up to
    /// `limit` studies past the policy move, resting between them as the rate asks. Returns
    /// what moved.
    pub async fn apply(&self, limit: usize, rest: Duration) -> Result<TierPlan, ServiceError> {
        self.return_expired().await?;
        let plan = self.plan(limit).await?;
        for s in &plan.studies {
            self.move_study(&s.study_uid).await?;
            tokio::time::sleep(rest).await;
        }
        Ok(plan)
    }

    /// One round of the background worker: the policy applied to a batch of studies at the
    /// configured pace.
    pub async fn round(&self) -> Result<crate::maintenance::workers::RoundDone, ServiceError> {
        let per_minute = self.config.studies_per_minute.max(1e-3);
        let rest = Duration::from_secs_f64(60.0 / per_minute);
        let batch = (per_minute.ceil() as usize).clamp(1, 100);
        let moved = self.apply(batch, rest).await?;
        let pause = if moved.studies.len() < batch {
            Duration::from_secs(600)
        } else {
            Duration::ZERO
        };
        Ok(crate::maintenance::workers::RoundDone {
            pause,
            detail: Some(format!(
                "last round: {} studies moved to cold, {} bytes freed",
                moved.studies.len(),
                moved.saved_bytes()
            )),
        })
    }

    /// Checks every shard of every cold blob, per store; with `repair`, rewrites the missing
    /// and corrupt ones from the others.
    pub async fn scrub_shards(&self, repair: bool) -> Result<ShardScrub, ServiceError> {
        let shards = self.cold()?;
        let urls = shards.shown_urls();
        let mut report = ShardScrub {
            stores: urls
                .into_iter()
                .enumerate()
                .map(|(i, url)| StoreHealth {
                    store: i + 1,
                    url,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut after = None;
        loop {
            let batch = self.index.cold_blobs_after(after, 256).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.blob_id);
            for cold in batch {
                report.blobs += 1;
                let states = shards.check(&cold.blob_id).await;
                let mut bad = Vec::new();
                for (i, s) in states.iter().enumerate() {
                    let h = &mut report.stores[i];
                    match s {
                        ShardState::Good => h.good += 1,
                        ShardState::Missing => {
                            h.missing += 1;
                            bad.push(i);
                        }
                        ShardState::Corrupt(why) => {
                            tracing::warn!(blob = %cold.blob_id, store = i + 1, "bad shard: {why}");
                            h.corrupt += 1;
                            bad.push(i);
                        }
                    }
                }
                if states.len() - bad.len() < shards.data_shards() {
                    report.lost += 1;
                    continue;
                }
                if repair && !bad.is_empty() {
                    match shards.repair(&cold.blob_id, &bad).await {
                        Ok(()) => bad.iter().for_each(|&i| report.stores[i].repaired += 1),
                        Err(e) => tracing::warn!(blob = %cold.blob_id, "shard repair: {e}"),
                    }
                }
            }
        }
        Ok(report)
    }
}

/// What indexing the cold stores' blobs found.
#[derive(Debug, Default)]
pub struct ColdReindex {
    /// Blobs the cold stores hold.
    pub blobs: u64,
    /// Of them, indexed now (the replicas did not have them).
    pub indexed: u64,
    pub unreadable: Vec<(BlobId, String)>,
}

/// Indexes the blobs the cold stores hold that `known` (what the replicas gave) lacks, each
/// rebuilt from its shards, and records the cold tier: every blob with shards is a cold blob,
/// held by the replicas too when in `known`; a study whose blobs only the cold stores hold is
/// cold. What a reindex adds to the replica's blobs, or does alone from the cold stores.
pub async fn reindex_cold(
    shards: &Shards,
    index: &Index,
    known: &HashSet<BlobId>,
    now: i64,
) -> Result<ColdReindex, ServiceError> {
    let mut report = ColdReindex::default();
    // every store's listing: a store lost still leaves the blobs on the others
    let mut found: BTreeMap<BlobId, i64> = BTreeMap::new();
    for s in 0..shards.data_shards() + shards.parity_shards() {
        match shards.blobs_on(s).await {
            Ok((list, bad)) => {
                for b in bad {
                    tracing::warn!(store = s + 1, "unreadable shard: {b}");
                }
                for (blob, at) in list {
                    let e = found.entry(blob).or_insert(at);
                    *e = (*e).min(at);
                }
            }
            Err(e) => tracing::warn!(store = s + 1, "listing the cold store: {e}"),
        }
    }
    report.blobs = found.len() as u64;
    let mut by_time: Vec<(BlobId, i64)> = found.into_iter().collect();
    by_time.sort_by_key(|(b, at)| (*at, *b));
    let mut cold_studies = HashSet::new();
    for (blob, at) in by_time {
        let hot = known.contains(&blob);
        let plain = match shards.get(&blob).await {
            Ok((p, _)) => p,
            Err(e) => {
                report.unreadable.push((blob, e.to_string()));
                continue;
            }
        };
        if !hot {
            let len = plain.len() as u64;
            let rec = tokio::task::block_in_place(|| {
                strata_dicom::inspect(
                    std::io::Cursor::new(&plain[..]),
                    len,
                    "reindex",
                    blob,
                    &strata_mpi::IssuerSource::operator(),
                )
            });
            match rec {
                Ok(mut rec) => {
                    rec.instance.received_at = at;
                    cold_studies.insert(rec.study.uid.clone());
                    index
                        .insert_instance(rec, strata_core::config::OnConflict::Reject, vec![])
                        .await?;
                    report.indexed += 1;
                }
                Err(e) => {
                    report.unreadable.push((blob, e.to_string()));
                    continue;
                }
            }
        }
        index
            .record_cold_blobs(vec![ColdBlob {
                blob_id: blob,
                size: plain.len() as u64,
                k: shards.data_shards() as u8,
                m: shards.parity_shards() as u8,
                stored_at: at,
                hot,
            }])
            .await?;
    }
    for study in cold_studies {
        index
            .set_study_tier(StudyTier {
                study_uid: study,
                tier: "cold".into(),
                last_read_at: None,
                reads: 0,
                cold_since: Some(now),
                restored_until: None,
            })
            .await?;
    }
    Ok(report)
}

/// Opens the cold stores the configuration names (None: no cold tier).
pub fn open_shards(
    config: &TiersConfig,
    key: Arc<strata_store::crypt::MasterKey>,
) -> Result<Option<Arc<Shards>>, ServiceError> {
    if !config.enabled() {
        return Ok(None);
    }
    Shards::open(
        key,
        &config.stores,
        config.data_shards,
        config.parity_shards,
    )
    .map(|s| Some(Arc::new(s)))
    .map_err(|e| ServiceError::Setup(format!("tiers.stores: {e}")))
}
