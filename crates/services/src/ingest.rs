//! The one path in. Every instance, whichever door it came through (`strata import`, DIMSE
//! C-STORE, STOW-RS), takes this path, and is acknowledged only at its end:
//!
//! ```text
//! bytes ─▶ inspect: preamble, file meta, a walk over every element to the end (truncation),
//!          the header parsed up to the pixel data, UIDs and SOP class validated
//!       ─▶ identify: the local patient key (PatientID under the issuer the source names: the
//!          door's own, or the file's from a source trusted for it)
//!       ─▶ address: keyed hash of the bytes; same SOP Instance UID already stored?
//!          same bytes → success without writing; other bytes → conflict, or replace
//!       ─▶ store: seal and write to the replicas (write quorum, fsynced)
//!       ─▶ index: one committed row (group commit) ─▶ Ingested (the acknowledgement)
//! ```
//!
//! An instance at most `spool_threshold` bytes is handled in memory; a larger one is read from
//! its spool file (the imported file itself, or a temporary file a network door wrote) in
//! segments and is never whole in memory.

use crate::journal::{Journal, JournalEntry};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use strata_core::config::{IngestConfig, OnConflict};
use strata_core::{now_ms, BlobId, Metrics};
use strata_dicom::record::InstanceRecord;
use strata_dicom::rejection::{rejection_note, RejectionNote};
use strata_dicom::{inspect, InspectError};
use strata_index::{Index, InsertOutcome};
use strata_store::address::Addresser;
use strata_store::{Store, StoreError, WriteReport};

/// Where an instance came from; recorded with it, and what names the issuers of its local
/// patient keys ([`Source::issuers`]).
#[derive(Debug, Clone)]
pub enum Source {
    Import,
    /// C-STORE; `issuer` and `trust_issuer` are the calling AE's `[[dimse.clients]]` ones.
    Dimse {
        calling_ae: String,
        remote: String,
        issuer: Option<String>,
        trust_issuer: bool,
    },
    /// STOW-RS; `study` is the study the request URL names, which every instance must be of;
    /// `issuer` is the account's.
    Web {
        user: String,
        role: String,
        remote: String,
        study: Option<String>,
        issuer: Option<String>,
    },
    /// A document the archive built for a reader of a stored study (a measurement report, a
    /// key object selection): its patient key is the study's own, `issuer` being the issuer
    /// of that key as the index holds it, so the document joins the study's patient whoever
    /// wrote it.
    Report {
        user: String,
        role: String,
        remote: String,
        study: String,
        issuer: String,
    },
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Import => "import".into(),
            Source::Dimse { calling_ae, .. } => format!("dimse:{calling_ae}"),
            Source::Web { user, .. } => format!("web:{user}"),
            Source::Report { user, .. } => format!("report:{user}"),
        }
    }

    /// Who names the issuers of the local keys of what this source stores. The operator's
    /// import and an administrator's upload are trusted for the file's own issuer: an
    /// administrator may link any key to any person by hand anyway. A DIMSE client is trusted
    /// only when configured so (`trust_issuer`); otherwise its keys are under its configured
    /// issuer, else its AE title. Any other account's keys are under its issuer, else its name.
    pub fn issuers(&self) -> strata_mpi::IssuerSource {
        use strata_mpi::IssuerSource;
        match self {
            Source::Import => IssuerSource::operator(),
            Source::Dimse {
                calling_ae,
                issuer,
                trust_issuer,
                ..
            } => IssuerSource {
                issuer: Some(
                    issuer
                        .clone()
                        .unwrap_or_else(|| calling_ae.trim().to_string()),
                ),
                trusted: *trust_issuer,
            },
            Source::Web { role, issuer, .. } if role == "admin" => IssuerSource {
                issuer: issuer.clone(),
                trusted: true,
            },
            Source::Web { user, issuer, .. } => {
                IssuerSource::untrusted(issuer.as_deref().unwrap_or(user))
            }
            Source::Report { issuer, .. } => IssuerSource::untrusted(issuer),
        }
    }

    /// The audit event a stored instance from this source writes (none for a local import,
    /// which the operator ran); patient, study and instance are filled in by ingest.
    fn audit_event(&self) -> Option<strata_core::audit::AuditEvent> {
        use strata_core::audit::{AuditEvent, Outcome};
        match self {
            Source::Import => None,
            Source::Dimse {
                calling_ae, remote, ..
            } => Some(
                AuditEvent::now(calling_ae, "dimse", "dimse.store", Outcome::Success)
                    .remote(remote),
            ),
            Source::Web {
                user, role, remote, ..
            } => Some(AuditEvent::now(user, role, "http.stow", Outcome::Success).remote(remote)),
            Source::Report {
                user, role, remote, ..
            } => Some(AuditEvent::now(user, role, "http.report", Outcome::Success).remote(remote)),
        }
    }

    /// Whether a rejection note from this source is applied: a DICOM peer's, an import's, an
    /// administrator's or an integrator's, never a patient's or a reader's.
    fn may_reject(&self) -> bool {
        match self {
            Source::Import | Source::Dimse { .. } => true,
            Source::Web { role, .. } => role == "admin" || role == "integrator",
            Source::Report { .. } => false,
        }
    }

    fn expected_study(&self) -> Option<&str> {
        match self {
            Source::Web { study, .. } => study.as_deref(),
            Source::Report { study, .. } => Some(study),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Stored,
    AlreadyPresent,
    Replaced,
}

/// The acknowledgement: the instance is durable on a write quorum and indexed.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub patient_id: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub blob_id: BlobId,
    pub size: u64,
    pub disposition: Disposition,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is not an instance we can accept; the message names the problem.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "instance is {size} bytes, over the limit of {limit} bytes (ingest.max_instance_bytes)"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("conflict: SOP Instance UID {sop_uid} is already stored with different content (blob {stored}); the stored instance was kept")]
    Conflict { sop_uid: String, stored: BlobId },
    #[error("the instance belongs to study {found}, not to study {expected} named in the request")]
    WrongStudy { found: String, expected: String },
    /// Refused by the archive's rules (a rejected instance sent again, a replacement of an
    /// instance under a legal hold, a rejection note from a sender not allowed to send one).
    #[error("{why}")]
    Refused { sop_uid: String, why: String },
    #[error("storage failed, the instance was not stored: {0}")]
    Store(#[from] StoreError),
    #[error("index failed, the instance was not stored: {0}")]
    Index(#[from] strata_index::IndexError),
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::journal::JournalError> for IngestError {
    fn from(e: crate::journal::JournalError) -> IngestError {
        match e {
            crate::journal::JournalError::Store(e) => IngestError::Store(e),
            crate::journal::JournalError::Clock(e) => IngestError::Index(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> IngestError {
    IngestError::Invalid(msg.into())
}

impl From<InspectError> for IngestError {
    fn from(e: InspectError) -> IngestError {
        match e {
            InspectError::Invalid(why) => IngestError::Invalid(why),
            InspectError::Io(e) => IngestError::Io(e),
        }
    }
}

/// The one path in, with what it needs: the store, the index, the journal (for replacements),
/// the metrics and `ingest.*` of the configuration.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<Store>,
    index: Index,
    journal: Journal,
    metrics: Arc<Metrics>,
    config: IngestConfig,
    spool_dir: PathBuf,
}

/// Times a replacement is retried when another instance under the same SOP Instance UID was
/// stored between the check and the index write (each retry journals the decision again).
const REPLACE_ATTEMPTS: usize = 3;

/// An instance arriving over the network: held in memory up to the spool threshold, then
/// written to a temporary file in `<data>/spool`, so a large instance is never whole in memory.
/// Its address is hashed as the bytes arrive, while the rest of it is still on the wire.
pub struct Spool {
    mem: Vec<u8>,
    file: Option<std::io::BufWriter<tempfile::NamedTempFile>>,
    len: u64,
    threshold: u64,
    /// `ingest.max_instance_bytes`: enforced while the bytes arrive, so an instance too large is
    /// refused before it fills the disk, not after.
    limit: u64,
    dir: std::path::PathBuf,
    /// Boxed: the hash state is large, and a spool travels in enums beside small variants.
    address: Box<Addresser>,
}

impl Spool {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`Spool::write_all`] from async code: while the instance fits in memory on the caller's
    /// thread, once it goes to a file in a blocking section.
    ///
    /// More than `ingest.max_instance_bytes` in all is refused with an error of kind
    /// [`std::io::ErrorKind::FileTooLarge`], and nothing of it is kept.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.len + bytes.len() as u64 > self.limit {
            self.mem = Vec::new();
            self.file = None; // the temporary file is removed as it drops
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the instance exceeds the limit of {} bytes (ingest.max_instance_bytes)",
                    self.limit
                ),
            ));
        }
        if self.file.is_none() && self.len + bytes.len() as u64 <= self.threshold {
            self.write_all(bytes)
        } else {
            tokio::task::block_in_place(|| self.write_all(bytes))
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.len += bytes.len() as u64;
        self.address.update(bytes);
        if self.file.is_none() && self.len > self.threshold {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = std::io::BufWriter::with_capacity(
                1 << 20,
                tempfile::NamedTempFile::new_in(&self.dir)?,
            );
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => {
                self.mem.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

impl Ingest {
    pub fn new(
        store: Arc<Store>,
        index: Index,
        journal: Journal,
        metrics: Arc<Metrics>,
        config: IngestConfig,
        spool_dir: PathBuf,
    ) -> Ingest {
        Ingest {
            store,
            index,
            journal,
            metrics,
            config,
            spool_dir,
        }
    }

    /// A new spool for an instance arriving over the network, in `<data>/spool`.
    pub fn spool(&self) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            threshold: self.config.spool_threshold_bytes,
            limit: self.config.max_instance_bytes,
            dir: self.spool_dir.clone(),
            address: Box::new(Addresser::new(self.store.address_key())),
        }
    }

    /// Removes what a previous run left in `<data>/spool`: instances half received when it was
    /// killed or cut off, never acknowledged. Only a serving process spools, and one at a time
    /// (the serve lock), so at its start nothing there belongs to anyone. Returns the number
    /// of files removed.
    pub fn clear_spool(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.spool_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Ingests what a network door spooled (a complete Part-10 instance).
    pub async fn ingest_spool(
        &self,
        spool: Spool,
        source: &Source,
    ) -> Result<Ingested, IngestError> {
        let id = spool.address.finish();
        match spool.file {
            None => self.ingest_in_memory(spool.mem, Some(id), source).await,
            Some(f) => {
                let f = f
                    .into_inner()
                    .map_err(|e| IngestError::Io(e.into_error()))?;
                self.ingest_path(f.path(), Some(id), source).await
                // the temporary file is removed when `f` drops
            }
        }
    }

    /// Ingests a Part-10 file.
    pub async fn ingest_file(&self, path: &Path, source: &Source) -> Result<Ingested, IngestError> {
        self.ingest_path(path, None, source).await
    }

    /// [`ingest_file`], with the file's address when the caller hashed it already.
    async fn ingest_path(
        &self,
        path: &Path,
        address: Option<BlobId>,
        source: &Source,
    ) -> Result<Ingested, IngestError> {
        let size = std::fs::metadata(path)?.len();
        self.check_size(size)?;
        if size <= self.config.spool_threshold_bytes {
            let bytes = tokio::fs::read(path).await?;
            return self.ingest_in_memory(bytes, address, source).await;
        }
        let started = Instant::now();
        let (owned_path, key) = (path.to_path_buf(), *self.store.address_key());
        let (label, issuers) = (source.label(), source.issuers());
        let (record_base, blob_id) =
            tokio::task::spawn_blocking(move || -> Result<_, IngestError> {
                let f =
                    std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&owned_path)?);
                let id = match address {
                    Some(id) => id,
                    None => strata_store::address_of_file(&key, &owned_path)?,
                };
                Ok((inspect(f, size, &label, id, &issuers)?, id))
            })
            .await
            .map_err(|e| invalid(format!("the instance could not be inspected: {e}")))??;
        let path = path.to_path_buf();
        self.finish(record_base, blob_id, size, started, source, |id| {
            let path = path.clone();
            async move { self.store.put_file(&id, &path).await }
        })
        .await
    }

    /// Ingests a Part-10 instance held in memory, hashing it unless its address is given.
    async fn ingest_in_memory(
        &self,
        bytes: Vec<u8>,
        address: Option<BlobId>,
        source: &Source,
    ) -> Result<Ingested, IngestError> {
        let started = Instant::now();
        let size = bytes.len() as u64;
        self.check_size(size)?;
        // CPU work, on this thread in a blocking section: a trip through the blocking pool would
        // cost two thread wake-ups, more than inspecting an instance whose address is known
        let (inspected, blob_id) = tokio::task::block_in_place(|| -> Result<_, IngestError> {
            let id = address
                .unwrap_or_else(|| strata_store::address_of(self.store.address_key(), &bytes));
            let issuers = source.issuers();
            Ok((
                inspect(Cursor::new(&bytes[..]), size, &source.label(), id, &issuers)?,
                id,
            ))
        })?;
        self.finish(inspected, blob_id, size, started, source, |id| {
            let bytes = &bytes;
            async move { self.store.put(&id, bytes).await }
        })
        .await
    }

    /// Stores the blob; when the door named other keys than the file alone gives, the door is
    /// journaled first, so that reindex reads the same keys: a blob is never on the replicas
    /// without the source that named its keys (reindex would read the file's own). Either
    /// failing fails the ingest before the index holds it.
    async fn store_with_issuers<Fut>(
        &self,
        store: Fut,
        record: &InstanceRecord,
        blob_id: BlobId,
    ) -> Result<WriteReport, StoreError>
    where
        Fut: std::future::Future<Output = Result<WriteReport, StoreError>>,
    {
        let Some(issuers) = record.patient.issuer_source.clone() else {
            return store.await;
        };
        let entry = JournalEntry::KeyIssuer {
            blob: blob_id.to_hex(),
            source: issuers,
            at: now_ms(),
        };
        // by this machine's clock: the source of a blob's keys has no place in the order
        // (`JournalEntry::is_ordered`), and asking the index for a stamp would cost a commit
        self.journal.record_at(entry, now_ms()).await?;
        store.await
    }

    fn check_size(&self, size: u64) -> Result<(), IngestError> {
        if size == 0 {
            return Err(invalid("empty file: no DICOM data"));
        }
        let limit = self.config.max_instance_bytes;
        if size > limit {
            return Err(IngestError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Address known, header known: deduplicate, store, index.
    async fn finish<F, Fut>(
        &self,
        record: InstanceRecord,
        blob_id: BlobId,
        size: u64,
        started: Instant,
        source: &Source,
        store: F,
    ) -> Result<Ingested, IngestError>
    where
        F: FnOnce(BlobId) -> Fut,
        Fut: std::future::Future<Output = Result<WriteReport, StoreError>>,
    {
        let on_conflict = self.config.on_conflict;
        let sop_uid = record.instance.sop_uid.clone();
        let ack = |disposition| Ingested {
            patient_id: record.patient.patient_id.clone(),
            sop_instance_uid: record.instance.sop_uid.clone(),
            sop_class_uid: record.instance.sop_class_uid.clone(),
            study_instance_uid: record.study.uid.clone(),
            series_instance_uid: record.series.uid.clone(),
            blob_id,
            size,
            disposition,
        };
        let audit = source.audit_event().map(|e| {
            e.patient(
                Some(record.patient.patient_id.clone()),
                Some(record.study.uid.clone()),
            )
            .detail(record.instance.sop_uid.clone())
        });
        if let Some(expected) = source.expected_study() {
            if expected != record.study.uid {
                return Err(IngestError::WrongStudy {
                    found: record.study.uid.clone(),
                    expected: expected.to_string(),
                });
            }
        }
        let rejection = rejection_note(&record.instance.sop_class_uid, &record.instance.metadata);
        if rejection.is_some() && !source.may_reject() {
            return Err(IngestError::Refused {
                sop_uid,
                why: "a rejection note is accepted from a DICOM peer, an import, an administrator \
                      or an integrator only"
                    .into(),
            });
        }
        // Cheap pre-check so that a resend costs no write and a conflict stores nothing.
        let mut replacing = None;
        let stored = self.index.instance(&sop_uid).await?;
        if stored.is_none() && self.index.is_rejected(sop_uid.clone()).await? {
            self.metrics.ingested("conflict", 0, started.elapsed());
            return Err(IngestError::Refused {
                why: format!(
                    "SOP Instance UID {sop_uid} was rejected by a rejection note; it is not stored again"
                ),
                sop_uid,
            });
        }
        if let Some(stored) = stored {
            if stored.blob_id == blob_id {
                self.metrics
                    .ingested("already_present", size, started.elapsed());
                if let Some(event) = audit {
                    self.index
                        .audit(event.detail(format!("{sop_uid} already present")))
                        .await?;
                }
                return Ok(ack(Disposition::AlreadyPresent));
            }
            if on_conflict == OnConflict::Reject {
                self.metrics.ingested("conflict", 0, started.elapsed());
                return Err(IngestError::Conflict {
                    sop_uid,
                    stored: stored.blob_id,
                });
            }
            self.refuse_if_held(&record).await?;
            replacing = Some(stored.blob_id);
        }
        let report = self
            .store_with_issuers(store(blob_id), &record, blob_id)
            .await
            .inspect_err(|_| self.metrics.ingested("failed", 0, started.elapsed()))?;
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|b| (blob_id, b.replica, format!("write failed: {}", b.error)))
            .collect();
        for (_, replica, reason) in &failed {
            self.metrics.replica_error(*replica, "write");
            tracing::warn!(replica = replica + 1, %blob_id, "{reason}; repair queued");
        }
        let mut attempts = 0;
        let (label, disposition) = loop {
            attempts += 1;
            // A replacement is a decision the blobs cannot tell, so it is journaled before the
            // index holds it, as every decision is: the index never holds a replacement that
            // reindex would not restore, and if the journal write fails the stored instance stays
            // current and the sender hears that nothing was stored. The index replaces only what
            // was journaled: an instance that appeared meanwhile comes back as a conflict.
            if let Some(previous) = replacing {
                self.journal
                    .record(JournalEntry::Replace {
                        sop_instance_uid: sop_uid.clone(),
                        previous: previous.to_hex(),
                        current: blob_id.to_hex(),
                        at: now_ms(),
                    })
                    .await?;
            }
            let mode = if replacing.is_some() {
                OnConflict::Replace
            } else {
                OnConflict::Reject
            };
            let outcome = self
                .index
                .insert_instance_audited(record.clone(), mode, failed.clone(), audit.clone())
                .await?;
            match outcome {
                InsertOutcome::Inserted => break ("stored", Disposition::Stored),
                InsertOutcome::AlreadyPresent => {
                    break ("already_present", Disposition::AlreadyPresent)
                }
                InsertOutcome::Replaced { .. } => break ("replaced", Disposition::Replaced),
                InsertOutcome::Conflict { stored }
                    if on_conflict == OnConflict::Replace && attempts < REPLACE_ATTEMPTS =>
                {
                    self.refuse_if_held(&record).await?;
                    replacing = Some(stored);
                }
                InsertOutcome::Conflict { stored } => {
                    self.metrics.ingested("conflict", 0, started.elapsed());
                    return Err(IngestError::Conflict { sop_uid, stored });
                }
            }
        };
        if let (Some(note), Disposition::Stored) = (&rejection, disposition) {
            let taken = self
                .apply_rejection(&record.study.uid, &sop_uid, note)
                .await?;
            tracing::info!(
                note = sop_uid,
                code = note.code,
                "rejection note: {} of {} named instances taken out of use",
                taken.len(),
                note.instances.len()
            );
            if let Some(mut event) = source.audit_event() {
                event.action = "iocm.reject".into();
                let event = event
                    .patient(
                        Some(record.patient.patient_id.clone()),
                        Some(record.study.uid.clone()),
                    )
                    .detail(format!(
                        "note {sop_uid} ({} {}): {} instances taken out of use",
                        note.code,
                        note.meaning,
                        taken.len()
                    ));
                self.index.audit(event).await?;
            }
        }
        self.metrics.ingested(label, size, started.elapsed());
        Ok(ack(disposition))
    }

    /// Applies a rejection note stored as `note_sop` in study `study`: journaled (so a reindex
    /// applies it again), then the instances it names in that study are taken out of the index
    /// (see [`crate::retention`]); those not stored yet are refused when they come. Returns
    /// those taken. Instances of other studies are left alone: a note rejects only what is in
    /// its own study.
    async fn apply_rejection(
        &self,
        study: &str,
        note_sop: &str,
        note: &RejectionNote,
    ) -> Result<Vec<String>, IngestError> {
        let sops: Vec<String> = note
            .instances
            .iter()
            .filter(|r| r.study_uid == study && r.sop_uid != note_sop)
            .map(|r| r.sop_uid.clone())
            .collect();
        if sops.is_empty() {
            return Ok(Vec::new());
        }
        let at = now_ms();
        self.journal
            .record(JournalEntry::Rejected {
                note: note_sop.to_string(),
                study: study.to_string(),
                code: note.code.clone(),
                sop_instance_uids: sops.clone(),
                at,
            })
            .await?;
        Ok(self
            .index
            .reject_instances(
                study.to_string(),
                sops,
                note_sop.to_string(),
                note.code.clone(),
                at,
            )
            .await?)
    }

    /// Refuses to replace an instance of a study under a legal hold: the study the stored
    /// instance is in, or the one the new one names.
    async fn refuse_if_held(&self, record: &InstanceRecord) -> Result<(), IngestError> {
        let mut studies = vec![record.study.uid.clone()];
        if let Some(stored) = self.index.instance(&record.instance.sop_uid).await? {
            studies.push(stored.study_uid);
        }
        for f in self.index.study_facts(studies).await? {
            if self
                .index
                .is_held(f.study_uid.clone(), f.patient_fk)
                .await?
            {
                return Err(IngestError::Refused {
                    sop_uid: record.instance.sop_uid.clone(),
                    why: format!(
                        "study {} is under a legal hold: its instances are not replaced",
                        f.study_uid
                    ),
                });
            }
        }
        Ok(())
    }
}
