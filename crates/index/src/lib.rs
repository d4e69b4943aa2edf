//! The catalog (layer 1): what the archive holds, indexed for every query — patients, studies,
//! series, instances with their precomputed DICOM JSON, replaced instances, the repair queue,
//! the person index, users and tokens, the audit trail. Everything in it can be rebuilt from
//! the replicas (`strata reindex`).
//!
//! - [`Catalog`] is its interface, the one seam a backend implements; callers hold an
//!   [`Index`], which derefs to `dyn Catalog`.
//! - [`sqlite`] is the embedded backend: one database file (WAL), one writer thread that
//!   commits jobs in groups so concurrent ingests share fsyncs ([`writer`]: each job in its own
//!   savepoint, answered only after COMMIT), a small pool of reader connections. Its SQL lives
//!   in [`records`] (instances and the rows around them), [`repairs`], [`audit`], [`users`],
//!   [`mpi`] (the person index's tables), [`progress`] (the workers' places), [`leases`] (who
//!   does the once-per-archive work), [`nodes`] (the nodes' heartbeats), [`letters`] (patients' access letters), [`lifecycle`] (holds, expiry batches, rejected instances), [`tiers`] (the
//!   studies' reads and tiers, the cold blobs) and [`query`]
//!   (C-FIND and QIDO-RS matching).
//! - [`rows`] and the types re-exported here are what the catalog answers.
//!
//! This crate is the only one that writes SQL.

mod audit;
mod catalog;
pub mod db;
mod layouts;
mod leases;
mod letters;
mod lifecycle;
mod mpi;
mod nodes;
mod pg;
mod pg_tls;
mod progress;
pub mod query;
mod records;
mod repairs;
mod rows;
mod sends;
pub mod sqlite;
mod tiers;
mod users;
mod writer;

pub use catalog::{Catalog, Journal};
pub use leases::{Lease, LeaseClaim};
pub use letters::{LetterHolder, LetterRefusal, LetterRow, NewLetter};
pub use lifecycle::{ExpiryBatch, ExpiryItem, Hold, RejectedInstance, StudyFacts};
pub use mpi::{
    HistoryEntry, Identifier, MatchAnswer, MpiChange, MpiError, MpiOp, PersonSearch, PersonState,
    PersonStudy, PersonSummary, PersonView, ReviewItem,
};
pub use nodes::NodeRow;
pub use rows::*;
pub use sends::{ItemAttempt, NewSend, SendItem, SendJob, Share};
pub use tiers::{ColdBlob, ReadDays, StudyTier, TierCandidate, TierPage, TierQuery, TierTotals};
pub use users::{
    BindRefusal, Credentials, LoginFailures, NewUser, PrincipalRow, SessionRow, TokenRow, UserRow,
    SESSION_NAME_LEN,
};

use std::path::Path;
use std::sync::Arc;
use strata_core::Metrics;

/// A handle on the catalog, cheap to clone; it derefs to the [`Catalog`] interface.
#[derive(Clone)]
pub struct Index(Arc<dyn Catalog>);

impl Index {
    /// Opens (creating and migrating when needed) the embedded index at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        Index::open_measured(path, Arc::new(Metrics::new()))
    }

    /// [`Index::open`], recording every operation's duration in `metrics`.
    pub fn open_measured(path: &Path, metrics: Arc<Metrics>) -> Result<Index, IndexError> {
        Ok(Index(Arc::new(sqlite::SqliteIndex::open(path, metrics)?)))
    }

    /// [`Index::open_measured`], chaining new audit events under the archive's `audit_key`: the
    /// archive opens its index so. An index opened without it chains unkeyed (an engine opened
    /// alone, in tests and tools).
    pub fn open_keyed(
        path: &Path,
        metrics: Arc<Metrics>,
        audit_key: strata_core::audit::AuditKey,
    ) -> Result<Index, IndexError> {
        Ok(Index(Arc::new(sqlite::SqliteIndex::open_keyed(
            path,
            metrics,
            Some(audit_key),
        )?)))
    }
}

impl Index {
    /// Opens the index at `location` (the embedded SQLite file, or a PostgreSQL database),
    /// creating and migrating it when needed, chaining new audit events under `audit_key`.
    pub fn open_at(
        location: &strata_core::config::IndexLocation,
        metrics: Arc<Metrics>,
        audit_key: Option<strata_core::audit::AuditKey>,
    ) -> Result<Index, IndexError> {
        use strata_core::config::IndexLocation;
        Ok(Index(Arc::new(match location {
            IndexLocation::Sqlite(path) => {
                sqlite::SqliteIndex::open_keyed(path, metrics, audit_key)?
            }
            IndexLocation::Postgres(url) => {
                sqlite::SqliteIndex::open_postgres(url, PG_SCHEMA, metrics, audit_key)?
            }
        })))
    }

    /// Opens the PostgreSQL index at `url` in `schema` (a reindex builds in
    /// [`PG_REINDEX_SCHEMA`] beside the archive's [`PG_SCHEMA`]).
    pub fn open_postgres(
        url: &str,
        schema: &str,
        metrics: Arc<Metrics>,
        audit_key: Option<strata_core::audit::AuditKey>,
    ) -> Result<Index, IndexError> {
        Ok(Index(Arc::new(sqlite::SqliteIndex::open_postgres(
            url, schema, metrics, audit_key,
        )?)))
    }
}

/// The schema of the archive's tables in a PostgreSQL index.
pub const PG_SCHEMA: &str = "strata";
/// The schema a reindex of a PostgreSQL index builds in, moved into [`PG_SCHEMA`]'s place at
/// the end.
pub const PG_REINDEX_SCHEMA: &str = "strata_reindex";

/// Drops `schema` and everything in it at `url` (a reindex's leftovers).
pub fn postgres_drop_schema(url: &str, schema: &str) -> Result<(), IndexError> {
    pg::admin(
        url,
        &format!("SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE"),
    )
}

/// Puts the schema `new` in the place of `old` at `url`, in one transaction: readers see the
/// old index or the new one, never neither.
pub fn postgres_replace_schema(url: &str, new: &str, old: &str) -> Result<(), IndexError> {
    pg::admin(
        url,
        &format!(
            "SET client_min_messages = warning;
             BEGIN;
             DROP SCHEMA IF EXISTS {old} CASCADE;
             ALTER SCHEMA {new} RENAME TO {old};
             COMMIT;"
        ),
    )
}

/// `url` without its password, for messages.
pub fn redacted_url(url: &str) -> String {
    pg::redacted(url)
}

/// Whether the PostgreSQL index at `url` (in `schema`) holds no instance.
pub fn postgres_is_empty(url: &str, schema: &str) -> Result<bool, IndexError> {
    pg::schema_is_empty(url, schema)
}

impl std::ops::Deref for Index {
    type Target = dyn Catalog;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Whose data a read may return. Every read of the index that hands patient data to a caller
/// ([`Catalog::find`] through [`query::Query::scope`], [`Catalog::instances_under`],
/// [`Catalog::person`]) takes one, and applies it in its SQL: the scope of a patient user is
/// enforced here, in one place, not by each route, so a new route cannot forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every patient: staff roles, and DIMSE peers (authorised by AE title, never patients).
    All,
    /// Only the local keys a person decided belong to this person (`persons.id`): a patient
    /// user. A key the matcher linked on its own (or on what a file says about itself, such as
    /// OtherPatientIDsSequence) widens no patient's scope until a human confirms it: binding the
    /// user to the person (which confirms the keys the person has then), a link, a merge or an
    /// accepted review. Such keys are the ones marked `mpi_manual`.
    Person(i64),
    /// Only the studies a share names (`shares.id`): a receiving system pulling what was
    /// shared with it, by a read-only token.
    Share(i64),
}

impl Scope {
    /// The person row a read is limited to, as an SQL parameter (NULL: everyone).
    pub(crate) fn person_param(self) -> Option<i64> {
        match self {
            Scope::All => None,
            Scope::Person(id) => Some(id),
            Scope::Share(_) => None,
        }
    }

    /// The share a read is limited to, as an SQL parameter (NULL: no share).
    pub(crate) fn share_param(self) -> Option<i64> {
        match self {
            Scope::Share(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("index: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL's own message (its SQLSTATE, what it says, and where), or the client's.
    #[error("index: {0}")]
    Postgres(String),
    #[error("index: no row for {0}")]
    NoRow(String),
    #[error("index: column {0}: {1}")]
    Column(usize, String),
    #[error("index writer has stopped")]
    WriterGone,
    #[error("index commit failed: {0}")]
    Commit(String),
    #[error(transparent)]
    Mpi(#[from] MpiError),
    #[error("journal: {0}")]
    Journal(String),
    /// A deletion refused in its own transaction: a hold in force covers this study.
    #[error("study {0} is under a legal hold")]
    Held(String),
}

/// The SQLSTATEs of a transaction that lost a race to another writer and may succeed when run
/// again: a serialization failure, a deadlock PostgreSQL broke, a unique key another
/// transaction inserted (and committed) between this one's check and its insert.
const TRANSIENT_STATES: [&str; 3] = ["40001", "40P01", "23505"];

impl IndexError {
    /// Whether the error is PostgreSQL's answer to concurrent writers, which the same work in
    /// a new transaction may not meet ([`TRANSIENT_STATES`]).
    pub fn is_transient(&self) -> bool {
        match self {
            IndexError::Postgres(m) => TRANSIENT_STATES
                .iter()
                .any(|state| m.strip_prefix(state).is_some_and(|r| r.starts_with(' '))),
            _ => false,
        }
    }
}

impl From<postgres::Error> for IndexError {
    fn from(e: postgres::Error) -> Self {
        IndexError::Postgres(match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{} {}", db.code().code(), db.message());
                if let Some(detail) = db.detail() {
                    m.push_str(&format!(" ({detail})"));
                }
                m
            }
            // the cause too: "error performing TLS handshake" alone does not say which check
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests;
