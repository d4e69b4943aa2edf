//! The archive: the store, the index and the metrics opened together from one [`Config`], and
//! the work that needs both — reading an instance with read-repair, the repair worker, the
//! decision journal, scrub and reindex. Every command and every door starts from here.

use crate::config::Config;
use crate::index::{
    BindRefusal, Index, IndexError, InsertOutcome, InstanceRecord, OnConflict, StoredInstance,
};
use crate::metrics::Metrics;
use crate::store::address::BlobId;
use crate::store::crypt::MasterKey;
use crate::store::scrub::{scrub_blob, BadCopyLeft, ScrubReport};
use crate::store::{BadCopy, Replica, Replicas, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the audit trail is copied on every replica: sealed JSON batches named by their first
/// and last event ids, so listing order is trail order.
const AUDIT_PREFIX: &str = "audit";
/// Events per exported batch.
const AUDIT_BATCH: usize = 10_000;
/// How often a serving archive copies new audit events to the replicas: a lost index loses at
/// most this much of the trail.
const AUDIT_EXPORT_PERIOD: Duration = Duration::from_secs(30);
/// A staging file this old is left over from a write a crash cut short: a write in progress
/// changes its file until it renames it, seconds at most.
pub const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Fewest local keys worth estimating MPI weights from; below it the prior weights serve.
const MPI_MIN_ESTIMATE_RECORDS: usize = 1000;
/// How often the MPI checks whether its population grew enough to re-estimate its weights.
const MPI_ESTIMATE_PERIOD: Duration = Duration::from_secs(600);

/// Where the decision journal lives on every replica: one sealed JSON object per decision,
/// named so that listing order is decision order.
const JOURNAL_PREFIX: &str = "journal";

pub struct Archive {
    pub config: Config,
    pub store: Store,
    pub index: Index,
    pub metrics: Metrics,
    /// Render workers and the decoded-frame cache (`render.*`).
    pub render: crate::render::RenderPool,
    /// Where clients reach the HTTP side: `http.public_url`, or set once the listener is bound.
    pub public_url: std::sync::OnceLock<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("no instance with SOP Instance UID {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot convert the instance: {0}")]
    Convert(String),
    #[error("{count} instance(s) must be kept until {until} (retention)")]
    Retained { count: usize, until: String },
    /// A request that cannot be carried out as asked (a user without the person their role
    /// needs, say); nothing was changed.
    #[error("{0}")]
    Invalid(String),
}

/// The day (YYYYMMDD) until which an instance must be kept: `adult_years` after the study (or
/// after it was received, when the study has no date), and for a child at least until the
/// patient is `minor_until_age` years old. DICOM dates compare correctly as text.
pub fn retained_until(
    f: &crate::index::RetentionFacts,
    cfg: &crate::config::RetentionConfig,
) -> String {
    let add_years = |date: &str, years: u32| -> Option<String> {
        let y: u32 = date.get(0..4)?.parse().ok()?;
        let rest = date.get(4..8)?;
        Some(format!("{:04}{rest}", y + years))
    };
    let received = chrono::DateTime::from_timestamp_millis(f.received_at)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    let start = f
        .study_date
        .clone()
        .filter(|d| d.len() == 8)
        .unwrap_or(received);
    let adult = add_years(&start, cfg.adult_years).unwrap_or_default();
    let minor = f
        .birth_date
        .as_deref()
        .and_then(|b| add_years(b, cfg.minor_until_age))
        .unwrap_or_default();
    adult.max(minor)
}

/// Converts a Part-10 instance to another transfer syntax.
pub fn transcode(part10: &[u8], target: &str) -> Result<Vec<u8>, String> {
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_pixeldata::Transcode;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(target)
        .ok_or(format!("unknown transfer syntax {target}"))?;
    let preamble = if part10.get(128..132) == Some(b"DICM") {
        128
    } else {
        0
    };
    let mut obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&part10[preamble..])
        .map_err(|e| e.to_string())?;
    obj.transcode(ts).map_err(|e| format!("to {target}: {e}"))?;
    let mut out = Vec::with_capacity(part10.len());
    obj.write_all(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A decision that the blobs alone cannot tell, kept in the object stores so `reindex` can
/// replay it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// `current` superseded `previous` as the instance under `sop_instance_uid`.
    Replace {
        sop_instance_uid: String,
        previous: String,
        current: String,
        at: i64,
    },
    /// A C-MOVE destination was added or changed.
    PeerSet {
        aet: String,
        host: String,
        port: u16,
        at: i64,
    },
    /// A C-MOVE destination was removed.
    PeerRemoved {
        aet: String,
        at: i64,
    },
    /// Instances deleted by an administrator; reindex must not bring them back.
    Deleted {
        sop_instance_uids: Vec<String>,
        at: i64,
    },
    /// A user was added (with the argon2 hash of the password, never the password), and for
    /// a patient the person they are bound to.
    UserAdded {
        name: String,
        role: String,
        password_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
        at: i64,
    },
    /// A patient user was bound to another person.
    UserBound {
        name: String,
        person: String,
        at: i64,
    },
    /// An API token was created (its SHA-256, never the token).
    TokenCreated {
        user: String,
        token_hash: String,
        label: Option<String>,
        at: i64,
    },
    TokenRevoked {
        token_hash: String,
        at: i64,
    },
    /// A manual MPI decision (link, unlink, merge, unmerge, review, demographics), stated as
    /// the memberships it left, so replaying it over re-derived links restores it.
    Mpi {
        change: Box<crate::index::MpiChange>,
    },
}

/// Held by `strata serve` for as long as it runs, so that `reindex`, which swaps the index file,
/// can refuse to run under a live server. The operating system drops it if the process dies.
pub struct ServeLock(#[allow(dead_code)] std::fs::File);

impl ServeLock {
    pub fn acquire(config: &Config) -> Result<ServeLock, ArchiveError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            ArchiveError::Setup(format!("creating {}: {e}", config.data_dir.display()))
        })?;
        let path = config.data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ArchiveError::Setup(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(ArchiveError::Setup(format!(
                "the archive in {} is being served by another process: stop it first",
                config.data_dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(ArchiveError::Setup(format!("{}: {e}", path.display())))
            }
        }
    }
}

/// Opens the store alone (key and replicas), for commands that must not touch the index.
pub fn open_store(config: &Config) -> Result<Store, ArchiveError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ArchiveError::Setup(format!("creating {}: {e}", config.data_dir.display())))?;
    let env_key = std::env::var("STRATA_MASTER_KEY").ok();
    let (key, created) = MasterKey::load_or_create(&config.data_dir, env_key.as_deref())
        .map_err(|e| ArchiveError::Setup(e.to_string()))?;
    if let Some(path) = created {
        eprintln!(
            "strata: created a new master key at {}: BACK IT UP NOW, somewhere other than the replicas; without it every stored instance is unreadable.",
            path.display()
        );
    }
    let replicas = config
        .replica_urls()
        .iter()
        .map(|u| Replica::open(u))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ArchiveError::Setup(e.to_string()))?;
    Ok(Store::new(
        Arc::new(key),
        Replicas::new(replicas, config.write_quorum()),
    ))
}

impl Archive {
    pub async fn open(config: Config) -> Result<Arc<Archive>, ArchiveError> {
        let store = open_store(&config)?;
        let index = Index::open(&config.index_path())?;
        let render =
            crate::render::RenderPool::new(config.render.workers, config.render.cache_bytes);
        Ok(Arc::new(Archive {
            render,
            config,
            store,
            index,
            metrics: Metrics::new(),
            public_url: std::sync::OnceLock::new(),
        }))
    }

    /// On first start, with no users yet: creates `admin` with a random password, written to
    /// `<data>/initial-admin-password` (0600) and printed once.
    pub async fn ensure_initial_admin(&self) -> Result<(), ArchiveError> {
        if self.index.count_users().await? > 0 {
            return Ok(());
        }
        let password = crate::auth::new_password();
        let path = self.config.data_dir.join("initial-admin-password");
        write_private(&path, &format!("{password}\n"))
            .map_err(|e| ArchiveError::Setup(format!("writing {}: {e}", path.display())))?;
        self.add_user(
            "admin",
            "admin",
            crate::auth::hash_password(&password),
            None,
        )
        .await?;
        eprintln!(
            "strata: created user admin with password {password} (also in {}); sign in and change it",
            path.display()
        );
        Ok(())
    }

    /// Marks each replica as part of this archive (the readiness probe looks for the marker).
    pub async fn write_markers(&self) {
        if let Err(e) = self.store.write_markers().await {
            tracing::warn!("writing replica markers: {e}");
        }
    }

    /// Streams the stored instance `sop_uid` into `sink`, byte for byte as received. Copies found
    /// missing or corrupt on the way are queued for repair.
    pub async fn read_instance<S>(
        &self,
        sop_uid: &str,
        sink: S,
    ) -> Result<StoredInstance, ArchiveError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let stored = self
            .index
            .instance(sop_uid)
            .await?
            .ok_or_else(|| ArchiveError::NotFound(sop_uid.to_string()))?;
        self.read_blob(&stored.blob_id, sink).await?;
        Ok(stored)
    }

    /// Streams a blob's verified plaintext into `sink`, queueing repairs for bad copies.
    pub async fn read_blob<S>(&self, blob: &BlobId, sink: S) -> Result<(), ArchiveError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let bad = self.store.read_to(blob, sink).await?;
        self.queue_repairs(blob, bad).await
    }

    /// Bytes `range` of a stored blob's plaintext, verified; bad copies are queued for repair.
    pub async fn read_blob_range(
        &self,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, ArchiveError> {
        let (bytes, bad) = self.store.read_range(blob, range).await?;
        self.queue_repairs(blob, bad).await?;
        Ok(bytes)
    }

    /// A stored instance as Part-10 bytes: as received when `target` is None or the stored
    /// syntax, else converted to `target` (pixel data decoded by dicom-pixeldata's codecs).
    pub async fn part10(
        &self,
        blob: &BlobId,
        stored_syntax: &str,
        target: Option<&str>,
    ) -> Result<Vec<u8>, ArchiveError> {
        let mut bytes = Vec::new();
        self.read_blob(blob, |c| {
            bytes.extend_from_slice(c);
            Ok(())
        })
        .await?;
        match target {
            Some(t) if t != stored_syntax => {
                tokio::task::block_in_place(|| transcode(&bytes, t)).map_err(ArchiveError::Convert)
            }
            _ => Ok(bytes),
        }
    }

    async fn queue_repairs(&self, blob: &BlobId, bad: Vec<BadCopy>) -> Result<(), ArchiveError> {
        if bad.is_empty() {
            return Ok(());
        }
        let items = bad
            .into_iter()
            .map(|b| {
                self.metrics.replica_error(b.replica, "read");
                tracing::warn!(%blob, replica = b.replica + 1, "bad copy on read: {}; repair queued", b.error);
                (*blob, b.replica, format!("read: {}", b.error))
            })
            .collect();
        self.index.enqueue_repairs(items).await?;
        Ok(())
    }

    /// Carries out the repairs that are due (or, with `only`, those of one blob now).
    /// Returns (repaired, failed).
    pub async fn run_repairs(&self, only: Option<BlobId>) -> Result<(u64, u64), ArchiveError> {
        let items = match only {
            Some(blob) => self.index.repairs_for(blob).await?,
            None => self.index.due_repairs(256).await?,
        };
        let (mut ok, mut failed) = (0, 0);
        for item in items {
            match self.store.repair(&item.blob_id, item.replica).await {
                Ok(()) => {
                    self.index.repair_done(item.blob_id, item.replica).await?;
                    tracing::info!(blob = %item.blob_id, replica = item.replica + 1, "repaired");
                    ok += 1;
                }
                Err(e) => {
                    self.metrics.replica_error(item.replica, "repair");
                    self.index.repair_failed(item, e.to_string()).await?;
                    failed += 1;
                }
            }
        }
        self.metrics
            .set_repair_queue(self.index.repair_queue_len().await?);
        Ok((ok, failed))
    }

    /// Records a replace decision on every replica before it is acknowledged.
    pub async fn journal_replace(
        &self,
        sop_uid: &str,
        previous: &BlobId,
        current: &BlobId,
    ) -> Result<(), StoreError> {
        self.journal(JournalEntry::Replace {
            sop_instance_uid: sop_uid.to_string(),
            previous: previous.to_hex(),
            current: current.to_hex(),
            at: crate::index::now_ms(),
        })
        .await
    }

    /// Writes a decision to the journal on the write quorum of replicas.
    async fn journal(&self, entry: JournalEntry) -> Result<(), StoreError> {
        let at = crate::index::now_ms();
        let name = format!(
            "{JOURNAL_PREFIX}/{at:013}-{:08x}.json",
            rand::random::<u32>()
        );
        let body = serde_json::to_vec(&entry).expect("journal entries serialise");
        self.store.put_record(&name, &body).await?;
        Ok(())
    }

    /// Carries out a manual MPI operation: applied in the index, journaled on the write quorum
    /// inside the same transaction (a failed journal write undoes it), audited.
    pub async fn mpi_op(
        self: &Arc<Self>,
        op: crate::index::MpiOp,
        actor: String,
        audit: crate::audit::AuditEvent,
    ) -> Result<crate::index::MpiChange, ArchiveError> {
        let archive = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let change = self
            .index
            .mpi_op(op, actor, audit, move |change| {
                let entry = JournalEntry::Mpi {
                    change: Box::new(change.clone()),
                };
                runtime
                    .block_on(archive.journal(entry))
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(change)
    }

    /// Deletes instances: refused if any is under retention; else journaled (so reindex leaves
    /// them out), removed from the index, and their blobs removed from every replica.
    /// Returns how many were deleted.
    pub async fn delete_instances(&self, sops: Vec<String>) -> Result<usize, ArchiveError> {
        let today = chrono::Utc::now().format("%Y%m%d").to_string();
        let facts = self.index.retention_facts(sops.clone()).await?;
        let held: Vec<String> = facts
            .iter()
            .map(|f| retained_until(f, &self.config.retention))
            .filter(|until| *until > today)
            .collect();
        if let Some(until) = held.iter().max() {
            return Err(ArchiveError::Retained {
                count: held.len(),
                until: until.clone(),
            });
        }
        self.journal(JournalEntry::Deleted {
            sop_instance_uids: sops.clone(),
            at: crate::index::now_ms(),
        })
        .await?;
        let blobs = self.index.delete_instances(sops).await?;
        for blob in &blobs {
            for bad in self.store.replicas().delete(&blob.object_key()).await {
                tracing::warn!(%blob, replica = bad.replica + 1, "deleting a copy failed: {}", bad.error);
            }
        }
        Ok(facts.len())
    }

    /// Adds a user (journaled, so reindex restores it); false if the name is taken. A patient
    /// user is bound to `person` (a live person of the MPI); no other role takes one. Refused
    /// (nothing stored) otherwise.
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: String,
        person: Option<&str>,
    ) -> Result<bool, ArchiveError> {
        match (role == "patient", person) {
            (true, None) => {
                return Err(ArchiveError::Invalid(
                    "a patient user is bound to a person of the person index: give the person id"
                        .into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ArchiveError::Invalid(format!(
                    "only a patient user is bound to a person, not a user of the {role} role"
                )))
            }
            (true, Some(p)) => self.check_bindable(p).await?,
            (false, None) => {}
        }
        if self
            .index
            .user_credentials(name.to_string())
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let at = crate::index::now_ms();
        let entry = JournalEntry::UserAdded {
            name: name.into(),
            role: role.into(),
            password_hash: password_hash.clone(),
            person: person.map(String::from),
            at,
        };
        self.journal(entry).await?;
        Ok(self
            .index
            .create_user(
                name.into(),
                role.into(),
                password_hash,
                person.map(String::from),
            )
            .await?)
    }

    async fn check_bindable(&self, person: &str) -> Result<(), ArchiveError> {
        match self.index.bindable(person.to_string()).await? {
            Ok(()) => Ok(()),
            Err(BindRefusal::NoPerson | BindRefusal::NoUser) => {
                Err(ArchiveError::Invalid(format!("no person {person}")))
            }
            Err(BindRefusal::Merged(into)) => Err(ArchiveError::Invalid(format!(
                "person {person} was merged into {into}: bind to {into}"
            ))),
        }
    }

    /// Binds a patient user to another person (journaled): how an administrator restores the
    /// access of a patient whose person was merged away.
    pub async fn bind_user(&self, name: &str, person: &str) -> Result<(), ArchiveError> {
        match self.index.user_credentials(name.to_string()).await? {
            None => return Err(ArchiveError::Invalid(format!("no user named {name}"))),
            Some((role, _)) if role != "patient" => {
                return Err(ArchiveError::Invalid(format!(
                    "only a patient user is bound to a person; {name} is of the {role} role"
                )))
            }
            Some(_) => {}
        }
        self.check_bindable(person).await?;
        self.journal(JournalEntry::UserBound {
            name: name.into(),
            person: person.into(),
            at: crate::index::now_ms(),
        })
        .await?;
        match self
            .index
            .bind_user(name.to_string(), person.to_string())
            .await?
        {
            Ok(()) => Ok(()),
            // changed between the check and the write: the journal entry replays to the same
            Err(_) => Err(ArchiveError::Invalid(format!(
                "person {person} or user {name} changed meanwhile; try again"
            ))),
        }
    }

    /// Records a token for a user (journaled); false if there is no such user.
    pub async fn add_token(
        &self,
        user: &str,
        token_hash: String,
        label: Option<String>,
    ) -> Result<bool, ArchiveError> {
        if self
            .index
            .user_credentials(user.to_string())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let at = crate::index::now_ms();
        let entry = JournalEntry::TokenCreated {
            user: user.into(),
            token_hash: token_hash.clone(),
            label: label.clone(),
            at,
        };
        self.journal(entry).await?;
        Ok(self.index.add_token(user.into(), token_hash, label).await?)
    }

    /// Revokes a token (journaled); false if no live token has that hash.
    pub async fn revoke_token(&self, token_hash: String) -> Result<bool, ArchiveError> {
        if self
            .index
            .token_principal(token_hash.clone())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.journal(JournalEntry::TokenRevoked {
            token_hash: token_hash.clone(),
            at: crate::index::now_ms(),
        })
        .await?;
        Ok(self.index.revoke_token(token_hash).await?)
    }

    /// Adds or changes a C-MOVE destination: journaled first, then indexed.
    pub async fn set_peer(&self, peer: crate::config::DimsePeer) -> Result<(), ArchiveError> {
        let at = crate::index::now_ms();
        self.journal(JournalEntry::PeerSet {
            aet: peer.aet.clone(),
            host: peer.host.clone(),
            port: peer.port,
            at,
        })
        .await?;
        self.index.set_peer(peer).await?;
        Ok(())
    }

    /// Removes a C-MOVE destination; false if there was none by that name.
    pub async fn remove_peer(&self, aet: &str) -> Result<bool, ArchiveError> {
        if !self.index.peers().await?.iter().any(|p| p.aet == aet) {
            return Ok(false);
        }
        self.journal(JournalEntry::PeerRemoved {
            aet: aet.to_string(),
            at: crate::index::now_ms(),
        })
        .await?;
        Ok(self.index.remove_peer(aet.to_string()).await?)
    }

    /// The C-MOVE destination `aet`: from strata.toml first, else from the managed table.
    pub async fn peer(&self, aet: &str) -> Result<Option<crate::config::DimsePeer>, ArchiveError> {
        if let Some(p) = self.config.dimse.peers.iter().find(|p| p.aet == aet) {
            return Ok(Some(p.clone()));
        }
        Ok(self.index.peers().await?.into_iter().find(|p| p.aet == aet))
    }

    /// Every blob worth checking: the index's and any a replica holds that the index lacks.
    pub async fn all_blobs(&self) -> Result<Vec<BlobId>, ArchiveError> {
        let mut all: BTreeSet<BlobId> = self.index.blob_ids().await?.into_iter().collect();
        for r in 0..self.store.replicas().len() {
            match self.store.replicas().list_blobs(r).await {
                Ok(list) => all.extend(list.into_iter().map(|(b, _)| b)),
                Err(e) => tracing::warn!(replica = r + 1, "listing failed: {e}"),
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Removes the staging files that writes cut short by a crash left in local replicas, once
    /// they are [`STALE_STAGING`] old; returns how many.
    pub fn remove_stale_staging(&self) -> usize {
        let (removed, problems) = tokio::task::block_in_place(|| {
            self.store.replicas().remove_stale_staging(STALE_STAGING)
        });
        for p in &problems {
            tracing::warn!("removing unfinished writes: {p}");
        }
        for r in &removed {
            tracing::info!("removed {}, left by a write a crash cut short", r.display());
        }
        removed.len()
    }

    /// Verifies every copy of `blobs`; bad copies are repaired (`repair`) or queued.
    pub async fn scrub(
        &self,
        blobs: &[BlobId],
        repair: bool,
    ) -> Result<(ScrubReport, Vec<BadCopyLeft>), ArchiveError> {
        let mut total = ScrubReport::default();
        let mut left_all = Vec::new();
        for blob in blobs {
            let (report, left) = scrub_blob(&self.store, blob, repair).await;
            total.add(&report);
            let queue = left
                .iter()
                .filter(|_| report.lost == 0)
                .map(|l| (l.blob, l.replica, format!("scrub: {}", l.reason)))
                .collect();
            self.index.enqueue_repairs(queue).await?;
            left_all.extend(left);
        }
        Ok((total, left_all))
    }

    /// Copies the audit events not yet on the replicas there, in sealed batches; returns how
    /// many were copied.
    pub async fn export_audit(&self) -> Result<usize, ArchiveError> {
        let mut copied = 0;
        loop {
            // Only durable events leave: a batch on the replicas must never hold an event that
            // a power cut could still take from the index.
            self.index.sync().await?;
            let after = self.index.audit_exported().await?;
            let filter = crate::index::AuditFilter {
                after_id: Some(after),
                limit: Some(AUDIT_BATCH),
                ..Default::default()
            };
            let events = self.index.audit_events(filter).await?;
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                return Ok(copied);
            };
            let name = format!("{AUDIT_PREFIX}/{:012}-{:012}.json", first.id, last.id);
            let body = serde_json::to_vec(&events).expect("audit events serialise");
            self.store.put_record(&name, &body).await?;
            self.index.set_audit_exported(last.id).await?;
            copied += events.len();
        }
    }

    /// Starts the background repair worker, the audit export and the slow background scrub.
    pub fn spawn_background(self: &Arc<Self>) {
        let a = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(AUDIT_EXPORT_PERIOD).await;
                if let Err(e) = a.export_audit().await {
                    tracing::error!("copying the audit trail to the replicas: {e}");
                }
            }
        });
        let a = self.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(a.config.repair.interval_seconds.max(1));
            loop {
                if let Err(e) = a.run_repairs(None).await {
                    tracing::error!("repair worker: {e}");
                }
                tokio::time::sleep(period).await;
            }
        });
        let a = self.clone();
        tokio::spawn(async move {
            // The matcher's weights follow the archive's own population: re-estimated (EM, no
            // labels) whenever the number of local keys has doubled since the last estimate.
            loop {
                match a.index.mpi_estimate(MPI_MIN_ESTIMATE_RECORDS, false).await {
                    Ok(Some(n)) => tracing::info!("MPI weights re-estimated from {n} identities"),
                    Ok(None) => {}
                    Err(e) => tracing::error!("estimating the MPI weights: {e}"),
                }
                tokio::time::sleep(MPI_ESTIMATE_PERIOD).await;
            }
        });
        let rate = self.config.scrub.blobs_per_second;
        if rate > 0.0 {
            let a = self.clone();
            tokio::spawn(async move {
                // Paced so that scrubbing never competes with ingest for the disks: one blob
                // every 1/rate seconds, a full pass, then start over.
                let pause = Duration::from_secs_f64(1.0 / rate);
                loop {
                    a.remove_stale_staging();
                    let blobs = a.index.blob_ids().await.unwrap_or_default();
                    for blob in &blobs {
                        if let Err(e) = a.scrub(std::slice::from_ref(blob), false).await {
                            tracing::error!("background scrub: {e}");
                        }
                        tokio::time::sleep(pause).await;
                    }
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    }
}

#[derive(Debug, Default)]
pub struct ReindexReport {
    pub blobs: u64,
    pub indexed: u64,
    pub superseded: u64,
    pub unreadable: Vec<(BlobId, String)>,
    pub journal_entries: u64,
    pub audit_events: u64,
}

/// Rebuilds the index from one replica alone (1-based `replica_no`): every blob on it, then the
/// decision journal replayed in order. The new index is built beside the old one and moved into
/// place at the end, so a failed reindex leaves the old index untouched. The archive must not be
/// serving while this runs.
pub async fn reindex(config: &Config, replica_no: usize) -> Result<ReindexReport, ArchiveError> {
    let _lock = ServeLock::acquire(config)?;
    let store = open_store(config)?;
    if replica_no == 0 || replica_no > store.replicas().len() {
        return Err(ArchiveError::Setup(format!(
            "--from-replica {replica_no}: the archive has replicas 1 to {}",
            store.replicas().len()
        )));
    }
    let r = replica_no - 1;
    let final_path = config.index_path();
    let tmp_path = final_path.with_extension("sqlite.reindex");
    remove_db(&tmp_path);
    let index = Index::open(&tmp_path)?;
    let mut report = ReindexReport::default();
    let mut blobs = store
        .replicas()
        .list_blobs(r)
        .await
        .map_err(StoreError::from)?;
    blobs.sort_by_key(|(id, at)| (*at, *id)); // first received wins a SOP Instance UID
    report.blobs = blobs.len() as u64;
    let mut superseded: HashMap<BlobId, InstanceRecord> = HashMap::new();
    for (blob, at) in blobs {
        match read_record(&store, config, &blob, r, at).await {
            Ok(rec) => match index
                .insert_instance(rec.clone(), OnConflict::Reject, vec![])
                .await?
            {
                InsertOutcome::Conflict { .. } => {
                    superseded.insert(blob, rec);
                }
                _ => report.indexed += 1,
            },
            Err(e) => report.unreadable.push((blob, e)),
        }
    }
    for key in store
        .replicas()
        .list_keys(r, JOURNAL_PREFIX)
        .await
        .map_err(StoreError::from)?
    {
        let entry: JournalEntry = match store.get_record(r, &key).await {
            Ok(body) => serde_json::from_slice(&body)
                .map_err(|e| ArchiveError::Setup(format!("journal entry {key}: {e}")))?,
            Err(e) => return Err(ArchiveError::Setup(format!("journal entry {key}: {e}"))),
        };
        report.journal_entries += 1;
        match entry {
            JournalEntry::Replace { current, .. } => {
                let current: BlobId = current.parse().map_err(|_| {
                    ArchiveError::Setup(format!("journal entry {key}: bad blob id"))
                })?;
                if let Some(rec) = superseded.remove(&current) {
                    index
                        .insert_instance(rec, OnConflict::Replace, vec![])
                        .await?;
                    report.superseded += 1;
                }
            }
            JournalEntry::PeerSet {
                aet, host, port, ..
            } => {
                index
                    .set_peer(crate::config::DimsePeer { aet, host, port })
                    .await?;
            }
            JournalEntry::PeerRemoved { aet, .. } => {
                index.remove_peer(aet).await?;
            }
            JournalEntry::Deleted {
                sop_instance_uids, ..
            } => {
                index.delete_instances(sop_instance_uids).await?;
            }
            JournalEntry::UserAdded {
                name,
                role,
                password_hash,
                person,
                ..
            } => {
                index.create_user(name, role, password_hash, person).await?;
            }
            JournalEntry::UserBound { name, person, .. } => {
                // a person that is gone leaves the user unbound (refused until bound again)
                let _ = index.bind_user(name, person).await?;
            }
            JournalEntry::TokenCreated {
                user,
                token_hash,
                label,
                ..
            } => {
                index.add_token(user, token_hash, label).await?;
            }
            JournalEntry::TokenRevoked { token_hash, .. } => {
                index.revoke_token(token_hash).await?;
            }
            JournalEntry::Mpi { change } => {
                index.mpi_replay(*change).await?;
            }
        }
    }
    for key in store
        .replicas()
        .list_keys(r, AUDIT_PREFIX)
        .await
        .map_err(StoreError::from)?
    {
        let body = store
            .get_record(r, &key)
            .await
            .map_err(|e| ArchiveError::Setup(format!("audit batch {key}: {e}")))?;
        let events: Vec<crate::audit::StoredEvent> = serde_json::from_slice(&body)
            .map_err(|e| ArchiveError::Setup(format!("audit batch {key}: {e}")))?;
        report.audit_events += events.len() as u64;
        index.restore_audit(events).await?;
    }
    index.close().await?;
    remove_db(&final_path);
    std::fs::rename(&tmp_path, &final_path)
        .map_err(|e| ArchiveError::Setup(format!("moving the new index into place: {e}")))?;
    Ok(report)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn read_record(
    store: &Store,
    config: &Config,
    blob: &BlobId,
    replica: usize,
    at: i64,
) -> Result<InstanceRecord, String> {
    let mut plain = Vec::new();
    let spool = tempfile::NamedTempFile::new_in(&config.data_dir).map_err(|e| e.to_string())?;
    let mut file = spool.as_file().try_clone().map_err(|e| e.to_string())?;
    let threshold = config.ingest.spool_threshold_bytes as usize;
    let mut spooled = false;
    store
        .read_from(blob, replica, |chunk| {
            use std::io::Write;
            if !spooled && plain.len() + chunk.len() <= threshold {
                plain.extend_from_slice(chunk);
                return Ok(());
            }
            if !spooled {
                file.write_all(&plain)?;
                plain = Vec::new();
                spooled = true;
            }
            file.write_all(chunk)
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut rec = if spooled {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let f =
            std::io::BufReader::new(std::fs::File::open(spool.path()).map_err(|e| e.to_string())?);
        crate::ingest::inspect(f, len, "reindex", *blob)
    } else {
        let len = plain.len() as u64;
        crate::ingest::inspect(std::io::Cursor::new(&plain[..]), len, "reindex", *blob)
    }
    .map_err(|e| e.to_string())?;
    rec.instance.received_at = at;
    Ok(rec)
}
