//! Sends: studies pushed to another archive, as a job the archive carries out in the
//! background. A send names its target — an AE of the AE table (C-STORE) or a configured
//! DICOMweb peer (STOW-RS) — and its studies; the instances are listed in the index when it
//! is made, one item each, and each item ends `sent` or `failed` with the reason. A failed
//! attempt is tried again after a pause that doubles each time, [`MAX_ATTEMPTS`] times in
//! all, then reported failed; `retry` puts the failed items back in the queue.
//!
//! The jobs live in the index, so a send survives a restart and carries on; the worker that
//! carries them holds a lease, so one node of a cluster runs them. The protocols themselves
//! are the doors' ([`Carrier`]): this service never speaks one.

use crate::admin::Admin;
use crate::audit::AuditTrail;
use crate::ServiceError;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::{DicomwebPeer, DimsePeer};
use strata_core::now_ms;
use strata_index::{Index, ItemAttempt, NewSend, Scope, SendItem, SendJob};

/// The send worker's name (and its lease's).
pub const WORKER: &str = "send";
/// Attempts of one instance before it is reported failed.
pub const MAX_ATTEMPTS: i64 = 3;
/// Instances sent by one carrier call (one association, one STOW-RS request).
const BATCH: i64 = 25;
/// The pause after a send round with nothing left to do now.
const IDLE_PAUSE: Duration = Duration::from_secs(1);
/// Studies one send may name.
pub const MAX_STUDIES: usize = 1000;

/// Where a send goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A peer of the AE table, by C-STORE.
    Ae(DimsePeer),
    /// A configured DICOMweb peer, by STOW-RS.
    Dicomweb(DicomwebPeer),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Ae(_) => "ae",
            Target::Dicomweb(_) => "dicomweb",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Ae(p) => &p.aet,
            Target::Dicomweb(p) => &p.name,
        }
    }
}

/// What carries instances to a target: each door implements the protocol it speaks.
pub trait Carrier: Send + Sync {
    /// Sends the stored instances `sops` to `target`; one outcome per instance, in order
    /// (Err: why that instance did not arrive).
    fn carry<'a>(
        &'a self,
        target: &'a Target,
        sops: &'a [String],
    ) -> BoxFuture<'a, Vec<Result<(), String>>>;
}

/// The carriers of a serving archive, one per kind of target.
#[derive(Clone)]
pub struct Carriers {
    pub ae: Arc<dyn Carrier>,
    pub dicomweb: Arc<dyn Carrier>,
}

/// A send and its items, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendView {
    #[serde(flatten)]
    pub job: SendJob,
    pub items: Vec<SendItem>,
}

/// Making, reading and carrying out sends.
#[derive(Clone)]
pub struct Sends {
    index: Index,
    admin: Admin,
    audit: AuditTrail,
    dicomweb_peers: Vec<DicomwebPeer>,
    /// The first pause before an instance is tried again; it doubles with each attempt.
    retry_after: Duration,
}

impl Sends {
    pub fn new(
        index: Index,
        admin: Admin,
        audit: AuditTrail,
        dicomweb_peers: Vec<DicomwebPeer>,
        retry_after: Duration,
    ) -> Sends {
        Sends {
            index,
            admin,
            audit,
            dicomweb_peers,
            retry_after,
        }
    }

    /// The configured DICOMweb peers' names and URLs (never their credentials).
    pub fn dicomweb_peers(&self) -> Vec<(String, String)> {
        self.dicomweb_peers
            .iter()
            .map(|p| (p.name.clone(), p.url.clone()))
            .collect()
    }

    /// The target a send names: `kind` `ae` (an AE title of the AE table) or `dicomweb` (a
    /// configured peer's name).
    pub async fn target(&self, kind: &str, name: &str) -> Result<Target, ServiceError> {
        match kind {
            "ae" => self
                .admin
                .peer(name.trim())
                .await?
                .map(Target::Ae)
                .ok_or_else(|| ServiceError::Invalid(format!("{name:?} is not in the AE table"))),
            "dicomweb" => self
                .dicomweb_peers
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .map(Target::Dicomweb)
                .ok_or_else(|| {
                    ServiceError::Invalid(format!("{name:?} is not a configured DICOMweb peer"))
                }),
            other => Err(ServiceError::Invalid(format!(
                "unknown kind of target {other:?}: ae or dicomweb"
            ))),
        }
    }

    /// Makes a send of `studies` to `target` for `user` (of `role`, from `remote`): one
    /// audit event per study before anything is queued, then the job, queued. A study that
    /// is not stored refuses the whole send.
    pub async fn create(
        &self,
        user: &str,
        role: &str,
        remote: &str,
        studies: &[String],
        target: &Target,
    ) -> Result<SendJob, ServiceError> {
        if studies.is_empty() || studies.len() > MAX_STUDIES {
            return Err(ServiceError::Invalid(format!(
                "a send names 1 to {MAX_STUDIES} studies"
            )));
        }
        let mut items = Vec::new();
        let mut per_study = Vec::new();
        for study in studies {
            let found = self
                .index
                .instances_under(study.clone(), None, None, Scope::All)
                .await?;
            let Some(first) = found.first() else {
                return Err(ServiceError::NotInScope);
            };
            per_study.push((first.patient_id.clone(), study.clone(), found.len()));
            items.extend(
                found
                    .into_iter()
                    .map(|i| (i.study_uid.clone(), i.sop_uid.clone())),
            );
        }
        for (patient, study, count) in per_study {
            let event = AuditEvent::now(user, role, "send", Outcome::Success)
                .remote(remote)
                .patient(Some(patient), Some(study))
                .detail(format!(
                    "{count} instances queued to {} {}",
                    target.kind(),
                    target.name()
                ));
            self.audit.record(event).await?;
        }
        let id = self
            .index
            .create_send(NewSend {
                created_by: user.to_string(),
                target_kind: target.kind().to_string(),
                target: target.name().to_string(),
                items,
                now: now_ms(),
            })
            .await?;
        self.index
            .send_job(id)
            .await?
            .ok_or_else(|| ServiceError::Setup(format!("send {id} vanished")))
    }

    /// The most recent sends, at most `limit`.
    pub async fn list(&self, limit: i64) -> Result<Vec<SendJob>, ServiceError> {
        Ok(self.index.send_jobs(limit).await?)
    }

    /// A send with every item's outcome.
    pub async fn get(&self, id: i64) -> Result<Option<SendView>, ServiceError> {
        let Some(job) = self.index.send_job(id).await? else {
            return Ok(None);
        };
        let items = self.index.send_items(id).await?;
        Ok(Some(SendView { job, items }))
    }

    /// Puts a send's failed items back in the queue; None when there is no such send.
    pub async fn retry(&self, id: i64) -> Result<Option<usize>, ServiceError> {
        if self.index.send_job(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.index.retry_send(id, now_ms()).await?))
    }

    /// One round of the send worker: every send not yet over gets its due items carried, a
    /// batch each; a send with nothing left pending ends `done` or `failed`.
    pub async fn round(
        &self,
        carriers: &Carriers,
    ) -> Result<crate::maintenance::workers::RoundDone, ServiceError> {
        let mut carried = 0usize;
        let mut open = 0usize;
        for job in self.index.active_send_jobs().await? {
            carried += self.advance(&job, carriers).await?;
            if self
                .index
                .send_job(job.id)
                .await?
                .is_some_and(|j| j.pending > 0)
            {
                open += 1;
            }
        }
        Ok(crate::maintenance::workers::RoundDone {
            pause: if carried > 0 {
                Duration::ZERO
            } else {
                IDLE_PAUSE
            },
            detail: Some(format!(
                "last round: {carried} instances tried, {open} sends under way"
            )),
        })
    }

    /// Carries one batch of a send's due items; returns how many were tried.
    async fn advance(&self, job: &SendJob, carriers: &Carriers) -> Result<usize, ServiceError> {
        let now = now_ms();
        if job.state == "queued" {
            self.index
                .set_send_state(job.id, "running".into(), now)
                .await?;
        }
        let due = self.index.due_send_items(job.id, now, BATCH).await?;
        if due.is_empty() {
            if job.pending == 0 {
                self.finish(job.id).await?;
            }
            return Ok(0);
        }
        let sops: Vec<String> = due.iter().map(|i| i.sop_uid.clone()).collect();
        let outcomes = match self.target(&job.target_kind, &job.target).await {
            Ok(target) => {
                let carrier = match target {
                    Target::Ae(_) => &carriers.ae,
                    Target::Dicomweb(_) => &carriers.dicomweb,
                };
                carrier.carry(&target, &sops).await
            }
            // the peer was taken out of the AE table or the configuration since
            Err(e) => vec![Err(e.to_string()); sops.len()],
        };
        let attempts = due
            .iter()
            .zip(outcomes.into_iter().chain(std::iter::repeat(Err(
                "the carrier gave no outcome".to_string(),
            ))))
            .map(|(item, outcome)| self.attempt(item, outcome, now))
            .collect::<Vec<_>>();
        for (item, a) in due.iter().zip(&attempts) {
            if let Some(e) = &a.error {
                tracing::warn!(
                    send = job.id,
                    sop_uid = item.sop_uid,
                    attempt = item.attempts + 1,
                    "sending to {} {}: {e}",
                    job.target_kind,
                    job.target
                );
            }
        }
        self.index.record_send_attempts(job.id, attempts).await?;
        if self
            .index
            .send_job(job.id)
            .await?
            .is_some_and(|j| j.pending == 0)
        {
            self.finish(job.id).await?;
        }
        Ok(due.len())
    }

    /// What an attempt made of an item: sent, pending again after a pause that doubles each
    /// time, or failed after [`MAX_ATTEMPTS`].
    fn attempt(&self, item: &SendItem, outcome: Result<(), String>, now: i64) -> ItemAttempt {
        match outcome {
            Ok(()) => ItemAttempt {
                position: item.position,
                outcome: "sent".into(),
                error: None,
                next_at: now,
            },
            Err(e) => {
                let tried = item.attempts + 1;
                let pause = self.retry_after.as_millis() as i64 * (1i64 << (tried - 1).min(16));
                ItemAttempt {
                    position: item.position,
                    outcome: if tried >= MAX_ATTEMPTS {
                        "failed".into()
                    } else {
                        "pending".into()
                    },
                    error: Some(e),
                    next_at: now + pause,
                }
            }
        }
    }

    /// Ends a send with nothing pending: `done` when every item was sent, else `failed`; one
    /// audit event per study says how it ended.
    async fn finish(&self, id: i64) -> Result<(), ServiceError> {
        let Some(job) = self.index.send_job(id).await? else {
            return Ok(());
        };
        let state = if job.failed == 0 { "done" } else { "failed" };
        self.index
            .set_send_state(id, state.into(), now_ms())
            .await?;
        let items = self.index.send_items(id).await?;
        let mut studies: Vec<&str> = items.iter().map(|i| i.study_uid.as_str()).collect();
        studies.dedup();
        for study in studies {
            let of = items.iter().filter(|i| i.study_uid == study);
            let sent = of.clone().filter(|i| i.outcome == "sent").count();
            let failed = of.filter(|i| i.outcome == "failed").count();
            let outcome = if failed == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            let event = AuditEvent::now(&job.created_by, "-", "send.result", outcome)
                .patient(None, Some(study.to_string()))
                .detail(format!(
                    "send {id} to {} {}: {sent} sent, {failed} failed",
                    job.target_kind, job.target
                ));
            self.audit.record(event).await?;
        }
        tracing::info!(
            send = id,
            target = job.target,
            sent = job.sent,
            failed = job.failed,
            "send {state}"
        );
        Ok(())
    }
}
