//! Reindex: the index rebuilt from one replica alone, every blob on it, then the decision
//! journal replayed in order, then the audit trail restored. This is the answer to lock-in: any
//! replica, on any provider, is the archive.

use crate::journal::{Journal, JournalEntry};
use crate::maintenance::AUDIT_PREFIX;
use crate::ServiceError;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use strata_core::audit::StoredEvent;
use strata_core::config::{DimsePeer, OnConflict};
use strata_core::BlobId;
use strata_dicom::record::InstanceRecord;
use strata_index::{Index, InsertOutcome, NewUser};
use strata_mpi::IssuerSource;
use strata_store::{Store, StoreError};

/// Blobs read at once: a remote replica's round trips overlap (one blob at a time from S3 is
/// one request's latency per instance, ~40 ms for a small object from Garage), while the
/// records are indexed one by one, in order.
const READS_AT_ONCE: usize = 16;
/// The most of one blob a reindex read keeps in memory (larger ones go through a spool file):
/// with [`READS_AT_ONCE`] reads, 128 MiB at most.
const IN_MEMORY: u64 = 8 << 20;

#[derive(Debug, Default)]
pub struct ReindexReport {
    pub blobs: u64,
    pub indexed: u64,
    pub superseded: u64,
    pub unreadable: Vec<(BlobId, String)>,
    pub journal_entries: u64,
    pub audit_events: u64,
    /// Blobs the cold stores hold, and of them those the replica lacked, indexed from shards.
    pub cold_blobs: u64,
    pub cold_indexed: u64,
}

/// Applies again the journal's removals (instances deleted, instances a rejection note took
/// out) from replica `r` (0-based): after the cold stores' blobs were indexed, which the first
/// replay came before.
pub async fn reapply_removals(store: &Store, index: &Index, r: usize) -> Result<(), ServiceError> {
    for (_, entry) in Journal::read_all(store, r).await? {
        apply_removal(index, entry).await?;
    }
    Ok(())
}

/// Applies `entry` when it removes instances from the index (a deletion, a rejection note);
/// any other entry is left alone.
async fn apply_removal(index: &Index, entry: JournalEntry) -> Result<(), ServiceError> {
    match entry {
        JournalEntry::Deleted {
            sop_instance_uids, ..
        } => {
            // an instance purged after a rejection note is among the rejected by now
            index
                .forget_rejected(sop_instance_uids.clone(), false)
                .await?;
            // as it was: a hold placed after the deletion does not undo it
            index.delete_instances(sop_instance_uids, false).await?;
        }
        JournalEntry::Rejected {
            note,
            study,
            code,
            sop_instance_uids,
            at,
        } => {
            index
                .reject_instances(study, sop_instance_uids, note, code, at)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Fills `index` (new and empty) from replica `r` (0-based) of `store`. Instances larger than
/// `spool_threshold` bytes are inspected from a temporary file in `spool_dir`.
pub async fn rebuild(
    store: &Store,
    index: &Index,
    r: usize,
    spool_dir: &Path,
    spool_threshold: u64,
) -> Result<ReindexReport, ServiceError> {
    let mut report = ReindexReport::default();
    let mut blobs = store
        .replicas()
        .list_blobs(r)
        .await
        .map_err(StoreError::from)?;
    blobs.sort_by_key(|(id, at)| (*at, *id)); // first received wins a SOP Instance UID
    report.blobs = blobs.len() as u64;
    // The journal is read first: the sources that named the keys of some blobs are needed to
    // read those blobs; the rest is replayed after every blob is indexed.
    let journal = Journal::read_all(store, r).await?;
    let issuers = key_issuers(&journal);
    let mut superseded: HashMap<BlobId, InstanceRecord> = HashMap::new();
    let threshold = spool_threshold.min(IN_MEMORY);
    let issuers = &issuers;
    let mut records = futures::stream::iter(blobs)
        .map(|(blob, at)| async move {
            let source = issuers
                .get(&blob)
                .cloned()
                .unwrap_or_else(IssuerSource::operator);
            let read = read_record(store, spool_dir, threshold, &blob, r, at, &source).await;
            (blob, read)
        })
        .buffered(READS_AT_ONCE);
    while let Some((blob, read)) = records.next().await {
        match read {
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
    for (key, entry) in journal {
        report.journal_entries += 1;
        match entry {
            // applied while the blobs were read
            JournalEntry::KeyIssuer { .. } => {}
            JournalEntry::Replace { current, .. } => {
                let current: BlobId = current.parse().map_err(|_| {
                    ServiceError::Setup(format!("journal entry {key}: bad blob id"))
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
                    .set_peer(DimsePeer {
                        aet,
                        host,
                        port,
                        tls: false,
                    })
                    .await?;
            }
            JournalEntry::PeerRemoved { aet, .. } => {
                index.remove_peer(aet).await?;
            }
            removal @ (JournalEntry::Deleted { .. } | JournalEntry::Rejected { .. }) => {
                apply_removal(index, removal).await?;
            }
            JournalEntry::HoldPlaced {
                person,
                study,
                reason,
                by,
                at,
            } => {
                index.place_hold(person, study, reason, by, at).await?;
            }
            JournalEntry::HoldReleased {
                person,
                study,
                placed_at,
                by,
                at,
            } => {
                let placed = index.holds(true).await?.into_iter().find(|h| {
                    h.person == person && h.study_uid == study && h.placed_at == placed_at
                });
                if let Some(h) = placed {
                    index.release_hold(h.id, by, at).await?;
                }
            }
            JournalEntry::UserAdded {
                name,
                role,
                password_hash,
                person,
                must_change_password,
                issuer,
                confirmed,
                ..
            } => {
                index
                    .create_user(NewUser {
                        name,
                        role,
                        password_hash,
                        person,
                        must_change_password,
                        issuer,
                        confirmed,
                    })
                    .await?;
            }
            JournalEntry::UserIssuerSet { name, issuer, .. } => {
                index.set_user_issuer(name, issuer).await?;
            }
            JournalEntry::PasswordChanged {
                name,
                password_hash,
                must_change_password,
                ..
            } => {
                index
                    .set_password(name, password_hash, must_change_password, None)
                    .await?;
            }
            JournalEntry::UserDisabled { name, disabled, .. } => {
                index.set_disabled(name, disabled).await?;
            }
            JournalEntry::UserRemoved { name, .. } => {
                index.remove_user(name).await?;
            }
            JournalEntry::UserBound {
                name,
                person,
                confirmed,
                ..
            } => {
                // a person that is gone leaves the user unbound (refused until bound again)
                let _ = index.bind_user(name, person, confirmed).await?;
            }
            JournalEntry::TokenCreated {
                user,
                token_hash,
                label,
                expires_at,
                ..
            } => {
                index.add_token(user, token_hash, label, expires_at).await?;
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
            .map_err(|e| ServiceError::Setup(format!("audit batch {key}: {e}")))?;
        let events: Vec<StoredEvent> = serde_json::from_slice(&body)
            .map_err(|e| ServiceError::Setup(format!("audit batch {key}: {e}")))?;
        report.audit_events += events.len() as u64;
        index.restore_audit(events).await?;
    }
    Ok(report)
}

/// The source that named the keys of each blob whose door was journaled; the first entry of
/// a blob wins, as the first arrival of its bytes was the one stored.
fn key_issuers(journal: &[(String, JournalEntry)]) -> HashMap<BlobId, IssuerSource> {
    let mut out = HashMap::new();
    for (_, entry) in journal {
        if let JournalEntry::KeyIssuer { blob, source, .. } = entry {
            if let Ok(id) = blob.parse::<BlobId>() {
                out.entry(id).or_insert_with(|| source.clone());
            }
        }
    }
    out
}

async fn read_record(
    store: &Store,
    spool_dir: &Path,
    spool_threshold: u64,
    blob: &BlobId,
    replica: usize,
    at: i64,
    issuers: &IssuerSource,
) -> Result<InstanceRecord, String> {
    let mut plain = Vec::new();
    let spool = tempfile::NamedTempFile::new_in(spool_dir).map_err(|e| e.to_string())?;
    let mut file = spool.as_file().try_clone().map_err(|e| e.to_string())?;
    let threshold = spool_threshold as usize;
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
        strata_dicom::inspect(f, len, "reindex", *blob, issuers)
    } else {
        let len = plain.len() as u64;
        strata_dicom::inspect(
            std::io::Cursor::new(&plain[..]),
            len,
            "reindex",
            *blob,
            issuers,
        )
    }
    .map_err(|e| e.to_string())?;
    rec.instance.received_at = at;
    Ok(rec)
}
