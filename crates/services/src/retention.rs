//! A record's end. Retention says how long a study must be kept; a legal hold keeps it however
//! old it is. Nothing under either is deleted by any path: a DICOMweb DELETE, an expiry batch,
//! the purge of what a rejection note named, a replacement of a held instance.
//!
//! - **Expiry**: a proposal lists the studies past retention and under no hold as a batch; an
//!   administrator approves it (or dismisses it); the expiry worker then deletes each study,
//!   checking retention and holds once more at its turn.
//! - **Rejection notes** (IHE IOCM): a Key Object Selection document with a rejection title
//!   takes the instances it names out of the index at once (no query or retrieval finds them);
//!   they are purged once `retention.rejected_purge_after_days` have passed and neither
//!   retention nor a hold keeps them.
//!
//! A deletion is journaled (so reindex leaves the instances out), then removed from the index,
//! then from every replica and every cold store.

use crate::journal::{Journal, JournalEntry};
use crate::maintenance::workers::RoundDone;
use crate::ServiceError;
use std::sync::Arc;
use std::time::Duration;
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::RetentionConfig;
use strata_core::{BlobId, Clock};
use strata_index::{ExpiryBatch, ExpiryItem, Hold, Index, IndexError, Scope, StudyFacts};
use strata_store::shards::Shards;
use strata_store::Store;

/// The name of the expiry worker and its lease.
pub const WORKER: &str = "expiry";

const DAY_MS: i64 = 86_400_000;
/// Rejected instances the purge looks at per query.
const PURGE_PAGE: usize = 1000;

/// The day (YYYYMMDD) until which a study must be kept: `adult_years` (or the longest of the
/// rules for its modalities and sources) after the person's last study (after the study was
/// received, when no study has a date), and for a child at least until the patient is
/// `minor_until_age` years old. DICOM dates compare correctly as text.
pub fn retained_until(f: &StudyFacts, cfg: &RetentionConfig) -> String {
    let add_years = |date: &str, years: u32| -> Option<String> {
        let y: u32 = date.get(0..4)?.parse().ok()?;
        let rest = date.get(4..8)?;
        Some(format!("{:04}{rest}", y + years))
    };
    let dated = |d: &Option<String>| d.clone().filter(|d| d.len() == 8);
    let received = chrono::DateTime::from_timestamp_millis(f.last_received_at)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    // an undated study counts from when it arrived, and a later study of the person from its date
    let start = dated(&f.study_date)
        .unwrap_or(received)
        .max(dated(&f.last_study_date).unwrap_or_default());
    let years = cfg
        .rules
        .iter()
        .filter(|r| {
            r.modality
                .as_ref()
                .is_some_and(|m| f.modalities.iter().any(|x| x.eq_ignore_ascii_case(m)))
                || r.source.as_ref().is_some_and(|s| f.sources.contains(s))
        })
        .map(|r| r.adult_years)
        .max()
        .unwrap_or(cfg.adult_years);
    let adult = add_years(&start, years).unwrap_or_default();
    let minor = f
        .birth_date
        .as_deref()
        .and_then(|b| add_years(b, cfg.minor_until_age))
        .unwrap_or_default();
    adult.max(minor)
}

/// What an expiry round did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryDone {
    /// Studies deleted from approved batches.
    pub deleted_studies: usize,
    /// Studies of approved batches kept: a hold or retention covered them at their turn.
    pub kept_studies: usize,
    /// Rejected instances purged.
    pub purged_instances: usize,
    /// The batch proposed, if one was.
    pub proposed: Option<i64>,
}

#[derive(Clone)]
pub struct Retention {
    store: Arc<Store>,
    index: Index,
    journal: Journal,
    retention: RetentionConfig,
    clock: Clock,
    shards: Option<Arc<Shards>>,
    /// When this process's expiry worker last proposed (or found nothing to propose).
    last_proposal: Arc<std::sync::Mutex<Option<i64>>>,
}

impl Retention {
    pub fn new(
        store: Arc<Store>,
        index: Index,
        journal: Journal,
        retention: RetentionConfig,
        clock: Clock,
        shards: Option<Arc<Shards>>,
    ) -> Retention {
        Retention {
            store,
            index,
            journal,
            retention,
            clock,
            shards,
            last_proposal: Arc::default(),
        }
    }

    fn today(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.clock.now_ms())
            .unwrap_or_default()
            .format("%Y%m%d")
            .to_string()
    }

    /// Why `f` may not be deleted today, if it may not.
    async fn keeps(&self, f: &StudyFacts) -> Result<Option<ServiceError>, ServiceError> {
        if self
            .index
            .is_held(f.study_uid.clone(), f.patient_fk)
            .await?
        {
            return Ok(Some(ServiceError::Held {
                study: f.study_uid.clone(),
            }));
        }
        let until = retained_until(f, &self.retention);
        Ok((until > self.today()).then(|| ServiceError::Retained {
            count: f.instances as usize,
            until,
        }))
    }

    /// Refuses if any of `studies` is under a hold or retention.
    pub async fn check_deletable(&self, studies: Vec<String>) -> Result<(), ServiceError> {
        for f in self.index.study_facts(studies).await? {
            if let Some(why) = self.keeps(&f).await? {
                return Err(why);
            }
        }
        Ok(())
    }

    /// Deletes instances: refused if a study of theirs is under a hold or retention; else
    /// removed from the index, journaled (so reindex leaves them out), and their blobs removed
    /// from every replica and cold store. Returns how many were deleted.
    pub async fn delete_instances(&self, sops: Vec<String>) -> Result<usize, ServiceError> {
        let studies = self.index.studies_of_instances(sops.clone()).await?;
        self.check_deletable(studies).await?;
        self.remove(sops).await
    }

    async fn remove(&self, sops: Vec<String>) -> Result<usize, ServiceError> {
        if sops.is_empty() {
            return Ok(0);
        }
        let n = sops.len();
        // the index first, which checks the holds again in the deletion's own transaction; a
        // stop before the journal has it leaves the blobs, which a reindex brings back
        let blobs = match self.index.delete_instances(sops.clone(), true).await {
            Err(IndexError::Held(study)) => return Err(ServiceError::Held { study }),
            other => other?,
        };
        self.journal
            .record(JournalEntry::Deleted {
                sop_instance_uids: sops,
                at: self.clock.now_ms(),
            })
            .await?;
        self.remove_blobs(&blobs).await;
        Ok(n)
    }

    /// Removes deleted blobs from every replica and cold store; a copy that could not be
    /// removed is logged and stays (sealed, unreadable without the key, unnamed by the index).
    async fn remove_blobs(&self, blobs: &[BlobId]) {
        for blob in blobs {
            for bad in self.store.replicas().delete(&blob.object_key()).await {
                tracing::warn!(%blob, replica = bad.replica + 1, "deleting a copy failed: {}", bad.error);
            }
            if let Some(shards) = &self.shards {
                for (store, error) in shards.delete(blob).await {
                    tracing::warn!(%blob, store = store + 1, "deleting a shard failed: {error}");
                }
            }
        }
    }

    // ---- legal holds ----

    /// Places a legal hold on a person (its id) or a study: from then on nothing of it can be
    /// deleted. Journaled, so a reindex keeps it.
    pub async fn place_hold(
        &self,
        person: Option<String>,
        study: Option<String>,
        reason: String,
        by: &str,
    ) -> Result<i64, ServiceError> {
        let person = person
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        let study = study
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if person.is_some() == study.is_some() {
            return Err(ServiceError::Invalid(
                "a hold is placed on a person or on a study (one of them)".into(),
            ));
        }
        if reason.trim().is_empty() {
            return Err(ServiceError::Invalid("a hold needs a reason".into()));
        }
        let what = match (&person, &study) {
            (Some(p), _) => format!("person {p}"),
            (_, Some(s)) => format!("study {s}"),
            _ => String::new(),
        };
        let known = match (&person, &study) {
            (Some(p), _) => self.index.person(p.clone(), Scope::All).await?.is_some(),
            (_, Some(s)) => !self.index.study_facts(vec![s.clone()]).await?.is_empty(),
            _ => false,
        };
        if !known {
            return Err(ServiceError::Invalid(format!("no {what} in the archive")));
        }
        let at = self.clock.now_ms();
        self.journal
            .record(JournalEntry::HoldPlaced {
                person: person.clone(),
                study: study.clone(),
                reason: reason.clone(),
                by: by.to_string(),
                at,
            })
            .await?;
        Ok(self
            .index
            .place_hold(person, study, reason, by.to_string(), at)
            .await?)
    }

    /// Releases a hold in force.
    pub async fn release_hold(&self, id: i64, by: &str) -> Result<Hold, ServiceError> {
        let hold = self
            .index
            .holds(true)
            .await?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("hold {id} in force")))?;
        let at = self.clock.now_ms();
        self.journal
            .record(JournalEntry::HoldReleased {
                person: hold.person.clone(),
                study: hold.study_uid.clone(),
                placed_at: hold.placed_at,
                by: by.to_string(),
                at,
            })
            .await?;
        self.index.release_hold(id, by.to_string(), at).await?;
        Ok(hold)
    }

    pub async fn holds(&self, in_force_only: bool) -> Result<Vec<Hold>, ServiceError> {
        Ok(self.index.holds(in_force_only).await?)
    }

    // ---- expiry ----

    /// Proposes a batch of the studies past retention, under no hold and in no pending batch
    /// (at most `retention.batch_studies`); None if there are none. Audited as `expiry.propose`.
    pub async fn propose(&self, actor: &str, role: &str) -> Result<Option<i64>, ServiceError> {
        let pending: std::collections::HashSet<String> =
            self.index.expiry_pending().await?.into_iter().collect();
        let today = self.today();
        let mut items = Vec::new();
        let mut after = None;
        'pages: loop {
            let page = self.index.study_facts_page(after.clone(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.study_uid.clone());
            for f in page {
                if pending.contains(&f.study_uid) {
                    continue;
                }
                let until = retained_until(&f, &self.retention);
                if until > today
                    || self
                        .index
                        .is_held(f.study_uid.clone(), f.patient_fk)
                        .await?
                {
                    continue;
                }
                items.push(ExpiryItem {
                    study_uid: f.study_uid,
                    retained_until: until,
                    instances: f.instances,
                    bytes: f.bytes,
                    outcome: "proposed".into(),
                });
                if items.len() >= self.retention.batch_studies {
                    break 'pages;
                }
            }
        }
        if items.is_empty() {
            if actor == WORKER {
                return Ok(None);
            }
            // a person asked: the answer that nothing is due is on the record too
            self.index
                .audit(
                    AuditEvent::now(actor, role, "expiry.propose", Outcome::Success)
                        .detail("no study is past retention and under no hold"),
                )
                .await?;
            return Ok(None);
        }
        let Some((id, n)) = self
            .index
            .propose_expiry(items, self.clock.now_ms())
            .await?
        else {
            // a proposal beside this one took every study
            return Ok(None);
        };
        self.index
            .audit(
                AuditEvent::now(actor, role, "expiry.propose", Outcome::Success)
                    .detail(format!("batch {id}: {n} studies past retention")),
            )
            .await?;
        Ok(Some(id))
    }

    /// Approves a proposed batch: the expiry worker deletes it. Audited as `expiry.approve`.
    pub async fn approve(&self, id: i64, actor: &str, role: &str) -> Result<(), ServiceError> {
        self.decide(id, "approved", "expiry.approve", actor, role)
            .await
    }

    /// Dismisses a proposed batch: nothing of it is deleted. Audited as `expiry.dismiss`.
    pub async fn dismiss(&self, id: i64, actor: &str, role: &str) -> Result<(), ServiceError> {
        self.decide(id, "dismissed", "expiry.dismiss", actor, role)
            .await
    }

    async fn decide(
        &self,
        id: i64,
        to: &'static str,
        action: &str,
        actor: &str,
        role: &str,
    ) -> Result<(), ServiceError> {
        let Some(batch) = self.index.expiry_batch(id).await? else {
            return Err(ServiceError::NotFound(format!("expiry batch {id}")));
        };
        let decided = self
            .index
            .decide_expiry(id, "proposed", to, actor.to_string(), self.clock.now_ms())
            .await?;
        if !decided {
            return Err(ServiceError::Invalid(format!(
                "expiry batch {id} is {}, not proposed",
                batch.state
            )));
        }
        self.index
            .audit(
                AuditEvent::now(actor, role, action, Outcome::Success)
                    .detail(format!("batch {id}: {} studies", batch.studies)),
            )
            .await?;
        Ok(())
    }

    pub async fn batches(&self) -> Result<Vec<ExpiryBatch>, ServiceError> {
        Ok(self.index.expiry_batches(100).await?)
    }

    pub async fn batch(&self, id: i64) -> Result<(ExpiryBatch, Vec<ExpiryItem>), ServiceError> {
        let batch = self
            .index
            .expiry_batch(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("expiry batch {id}")))?;
        Ok((batch, self.index.expiry_items(id).await?))
    }

    /// Deletes the studies of approved batches, each checked again for holds and retention at
    /// its turn; audited as `expiry.delete` per study. Returns (deleted, kept).
    pub async fn run_approved(&self) -> Result<(usize, usize), ServiceError> {
        let (mut deleted, mut kept) = (0, 0);
        for batch in self.index.expiry_batches(100).await? {
            if batch.state != "approved" {
                continue;
            }
            for item in self.index.expiry_items(batch.id).await? {
                if item.outcome != "proposed" {
                    continue;
                }
                let facts = self.index.study_facts(vec![item.study_uid.clone()]).await?;
                let outcome = match facts.first() {
                    Some(f) if self.keeps(f).await?.is_some() => "kept",
                    Some(f) => {
                        let refs = self
                            .index
                            .instances_under(f.study_uid.clone(), None, None, Scope::All)
                            .await?;
                        let patient = refs.first().map(|r| r.patient_id.clone());
                        let sops: Vec<String> = refs.into_iter().map(|r| r.sop_uid).collect();
                        let n = match self.remove(sops).await {
                            // held since the check above
                            Err(ServiceError::Held { .. }) => {
                                self.index
                                    .expiry_outcome(batch.id, item.study_uid, "kept")
                                    .await?;
                                kept += 1;
                                continue;
                            }
                            other => other?,
                        };
                        self.index
                            .audit(
                                AuditEvent::now(
                                    batch.decided_by.as_deref().unwrap_or("expiry"),
                                    "admin",
                                    "expiry.delete",
                                    Outcome::Success,
                                )
                                .patient(patient, Some(f.study_uid.clone()))
                                .detail(format!("batch {}: {n} instances", batch.id)),
                            )
                            .await?;
                        "deleted"
                    }
                    None => "deleted", // gone already
                };
                if outcome == "kept" {
                    kept += 1;
                } else {
                    deleted += 1;
                }
                self.index
                    .expiry_outcome(batch.id, item.study_uid, outcome)
                    .await?;
            }
            self.index
                .finish_expiry(batch.id, self.clock.now_ms())
                .await?;
        }
        Ok((deleted, kept))
    }

    // ---- rejection notes ----

    /// Purges the rejected instances whose delay has passed and that neither retention nor a
    /// hold keeps, page by page (those kept do not stop the ones behind them); returns how many
    /// were purged.
    pub async fn purge_rejected(&self) -> Result<usize, ServiceError> {
        let before =
            self.clock.now_ms() - i64::from(self.retention.rejected_purge_after_days) * DAY_MS;
        let (mut purged, mut after) = (0, None);
        loop {
            let page = self
                .index
                .rejected_instances(Some(before), after.clone(), PURGE_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(purged);
            };
            after = Some((last.rejected_at, last.sop_uid.clone()));
            let mut due = Vec::new();
            for r in page {
                if self.keeps(&r.facts).await?.is_none() {
                    due.push(r.sop_uid);
                }
            }
            purged += self.purge(due).await?;
        }
    }

    /// Purges `due` (rejected instances retention and holds no longer keep).
    async fn purge(&self, due: Vec<String>) -> Result<usize, ServiceError> {
        if due.is_empty() {
            return Ok(0);
        }
        // the index first, which checks the holds again in its own transaction (as
        // [`Retention::remove`] does)
        let (purged, blobs) = self.index.forget_rejected(due, true).await?;
        if purged.is_empty() {
            return Ok(0);
        }
        let n = purged.len();
        self.journal
            .record(JournalEntry::Deleted {
                sop_instance_uids: purged,
                at: self.clock.now_ms(),
            })
            .await?;
        self.remove_blobs(&blobs).await;
        self.index
            .audit(
                AuditEvent::now("expiry", "system", "rejection.purge", Outcome::Success)
                    .detail(format!("{n} rejected instances purged")),
            )
            .await?;
        Ok(n)
    }

    /// One round of the expiry worker: purge what rejection notes named and is due, delete the
    /// approved batches, and propose a batch when `retention.propose_every_hours` have passed
    /// since the last proposal and none waits for a decision.
    pub async fn round(&self) -> Result<RoundDone, ServiceError> {
        let done = self.tick().await?;
        Ok(RoundDone {
            pause: Duration::from_secs(60),
            detail: Some(format!(
                "{} studies deleted, {} kept by a hold or retention, {} rejected instances purged{}",
                done.deleted_studies,
                done.kept_studies,
                done.purged_instances,
                done.proposed
                    .map(|id| format!(", batch {id} proposed"))
                    .unwrap_or_default()
            )),
        })
    }

    /// [`Retention::round`]'s work, reported.
    pub async fn tick(&self) -> Result<ExpiryDone, ServiceError> {
        let purged_instances = self.purge_rejected().await?;
        let (deleted_studies, kept_studies) = self.run_approved().await?;
        let mut proposed = None;
        if self.retention.propose_every_hours > 0 {
            let now = self.clock.now_ms();
            let every = i64::from(self.retention.propose_every_hours) * 3_600_000;
            let latest = self.index.expiry_batches(1).await?;
            let last = self
                .last_proposal
                .lock()
                .map(|l| *l)
                .unwrap_or_default()
                .into_iter()
                .chain(latest.first().map(|b| b.proposed_at))
                .max();
            let waiting = latest.first().is_some_and(|b| b.state == "proposed");
            if !waiting && last.is_none_or(|at| now - at >= every) {
                proposed = self.propose(WORKER, "system").await?;
                if let Ok(mut l) = self.last_proposal.lock() {
                    *l = Some(now);
                }
            }
        }
        Ok(ExpiryDone {
            deleted_studies,
            kept_studies,
            purged_instances,
            proposed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::config::RetentionRule;

    fn facts(study: &str, last: &str, birth: &str) -> StudyFacts {
        StudyFacts {
            study_uid: "1.2.3".into(),
            study_date: Some(study.into()),
            last_study_date: Some(last.into()),
            birth_date: Some(birth.into()),
            modalities: vec!["CT".into()],
            sources: vec!["dimse:CT1".into()],
            ..StudyFacts::default()
        }
    }

    #[test]
    fn an_adult_is_kept_after_the_persons_last_study_a_child_until_the_age() {
        let cfg = RetentionConfig::default();
        assert_eq!(
            retained_until(&facts("20100105", "20100105", "19600101"), &cfg),
            "20170105"
        );
        // a later study of the same person keeps the earlier one too
        assert_eq!(
            retained_until(&facts("20100105", "20200601", "19600101"), &cfg),
            "20270601"
        );
        // a child: until 25 when that is later
        assert_eq!(
            retained_until(&facts("20100105", "20100105", "20050302"), &cfg),
            "20300302"
        );
        // no date at all: from when it was received
        let undated = StudyFacts {
            last_received_at: 1_262_649_600_000, // 2010-01-05
            ..StudyFacts::default()
        };
        assert_eq!(retained_until(&undated, &cfg), "20170105");
    }

    #[test]
    fn the_longest_matching_rule_replaces_the_adult_years() {
        let rule = |modality: Option<&str>, source: Option<&str>, years| RetentionRule {
            modality: modality.map(String::from),
            source: source.map(String::from),
            adult_years: years,
        };
        let mut cfg = RetentionConfig {
            rules: vec![rule(Some("mg"), None, 20), rule(Some("CT"), None, 10)],
            ..RetentionConfig::default()
        };
        let f = facts("20100105", "20100105", "19600101");
        assert_eq!(retained_until(&f, &cfg), "20200105");
        cfg.rules.push(rule(None, Some("dimse:CT1"), 15));
        assert_eq!(retained_until(&f, &cfg), "20250105");
        // a shorter rule shortens: it replaces the default
        cfg.rules = vec![rule(Some("CT"), None, 2)];
        assert_eq!(retained_until(&f, &cfg), "20120105");
        let mut mg = f.clone();
        mg.modalities = vec!["MG".into()];
        cfg.rules = vec![rule(Some("mg"), None, 20)];
        assert_eq!(retained_until(&mg, &cfg), "20300105");
    }
}
