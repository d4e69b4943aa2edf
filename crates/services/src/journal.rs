//! The decision journal: what the blobs alone cannot tell (replacements, deletions, the AE
//! table, users and tokens by their hashes, manual MPI decisions), one sealed JSON object per
//! decision on every replica, so `reindex` can replay it. A decision is journaled before it
//! takes effect in the index: a failed journal write leaves the decision unmade.

use crate::ServiceError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strata_core::now_ms;
use strata_index::{Index, IndexError};
use strata_store::{Store, StoreError};

/// Where the decision journal lives on every replica: one sealed JSON object per decision,
/// named so that listing order is decision order.
pub const JOURNAL_PREFIX: &str = "journal";

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
    /// The source that named the issuers of the local keys of the instance stored as `blob`
    /// (the door it came through), kept when its keys differ from those the file alone gives:
    /// reindex reads the blob with it. Written with the blob, before the index holds it.
    KeyIssuer {
        blob: String,
        source: strata_mpi::IssuerSource,
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
    /// A legal hold was placed on a person or a study.
    HoldPlaced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        study: Option<String>,
        reason: String,
        by: String,
        at: i64,
    },
    /// The hold placed on `person` or `study` at `placed_at` was released.
    HoldReleased {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        study: Option<String>,
        placed_at: i64,
        by: String,
        at: i64,
    },
    /// A rejection note (`note`, in `study`, titled `code`) took instances out of use: reindex
    /// takes them out of the index again, keeping their blobs for the purge.
    Rejected {
        note: String,
        study: String,
        code: String,
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
        /// The user must choose a new password at the first sign-in (the first administrator).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        must_change_password: bool,
        /// The issuer of the keys of what the user stores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        /// The keys of `person` the binding confirmed (those the person held then); absent
        /// from entries written before they were kept, which confirm every key at replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirmed: Option<Vec<strata_mpi::LocalKey>>,
        at: i64,
    },
    /// The issuer of the keys of what a user stores was set (None: cleared).
    UserIssuerSet {
        name: String,
        issuer: Option<String>,
        at: i64,
    },
    /// A user's password was replaced (the argon2 hash of the new one).
    PasswordChanged {
        name: String,
        password_hash: String,
        /// Set when an administrator chose it: the user must change it again at sign-in.
        #[serde(default)]
        must_change_password: bool,
        at: i64,
    },
    /// A user was disabled (every credential refused) or enabled again.
    UserDisabled {
        name: String,
        disabled: bool,
        at: i64,
    },
    /// A user was removed with their tokens.
    UserRemoved {
        name: String,
        at: i64,
    },
    /// A patient user was bound to another person.
    UserBound {
        name: String,
        person: String,
        /// The keys of `person` the binding confirmed (see `UserAdded`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirmed: Option<Vec<strata_mpi::LocalKey>>,
        at: i64,
    },
    /// An API token was created (its SHA-256, never the token), live until `expires_at`.
    TokenCreated {
        user: String,
        token_hash: String,
        label: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<i64>,
        at: i64,
    },
    TokenRevoked {
        token_hash: String,
        at: i64,
    },
    /// A manual MPI decision (link, unlink, merge, unmerge, review, demographics), stated as
    /// the memberships it left, so replaying it over re-derived links restores it.
    Mpi {
        change: Box<strata_index::MpiChange>,
    },
}

impl JournalEntry {
    /// Whether the entry's place among the others changes what a replay gives. Only the source
    /// of a blob's keys does not: every one is read before the blobs, and two of one blob come
    /// only from the same bytes stored through two doors at once.
    fn is_ordered(&self) -> bool {
        !matches!(self, JournalEntry::KeyIssuer { .. })
    }
}

/// Why a decision could not be journaled (and so was not made).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index could not give the decision its stamp.
    #[error(transparent)]
    Clock(#[from] IndexError),
}

impl From<JournalError> for ServiceError {
    fn from(e: JournalError) -> ServiceError {
        match e {
            JournalError::Store(e) => ServiceError::Store(e),
            JournalError::Clock(e) => ServiceError::Index(e),
        }
    }
}

/// Writes decisions to the replicas.
#[derive(Clone)]
pub struct Journal {
    store: Arc<Store>,
    /// Where decisions are stamped ([`Index::journal_stamp`]); without it, by this machine's
    /// clock alone.
    clock: Option<Index>,
}

impl Journal {
    pub fn new(store: Arc<Store>) -> Journal {
        Journal { store, clock: None }
    }

    /// This journal, its decisions named by the stamps `index` gives: one order for the
    /// decisions of every archive process writing that index.
    pub fn stamped_by(self, index: Index) -> Journal {
        Journal {
            clock: Some(index),
            ..self
        }
    }

    /// Writes a decision to the journal on the write quorum of replicas.
    pub async fn record(&self, entry: JournalEntry) -> Result<(), JournalError> {
        let at = match &self.clock {
            Some(index) if entry.is_ordered() => index.journal_stamp(now_ms()).await?,
            _ => now_ms(),
        };
        Ok(self.record_at(entry, at).await?)
    }

    /// Writes a decision stamped `at` (a stamp the index gave inside the transaction that
    /// makes the decision) to the journal on the write quorum of replicas.
    pub async fn record_at(&self, entry: JournalEntry, at: i64) -> Result<(), StoreError> {
        let name = format!(
            "{JOURNAL_PREFIX}/{at:013}-{:08x}.json",
            rand::random::<u32>()
        );
        let body = serde_json::to_vec(&entry).expect("journal entries serialise");
        self.store.put_record(&name, &body).await?;
        Ok(())
    }

    /// Every decision on replica `replica` (0-based), in decision order.
    pub async fn read_all(
        store: &Store,
        replica: usize,
    ) -> Result<Vec<(String, JournalEntry)>, ServiceError> {
        let mut out = Vec::new();
        for key in store
            .replicas()
            .list_keys(replica, JOURNAL_PREFIX)
            .await
            .map_err(StoreError::from)?
        {
            let entry: JournalEntry = match store.get_record(replica, &key).await {
                Ok(body) => serde_json::from_slice(&body)
                    .map_err(|e| ServiceError::Setup(format!("journal entry {key}: {e}")))?,
                Err(e) => return Err(ServiceError::Setup(format!("journal entry {key}: {e}"))),
            };
            out.push((key, entry));
        }
        Ok(out)
    }
}
