//! The index: one SQLite database (WAL) holding what every query needs — patients, studies,
//! series, instances with their precomputed DICOM JSON, the history of replaced instances and the
//! repair queue. It is the only module that writes SQL, and everything in it can be rebuilt from
//! the replicas (`strata reindex`).
//!
//! Writes go through one writer thread that commits jobs in groups: every job that arrived while
//! the previous transaction was committing shares the next one, so concurrent ingests share
//! fsyncs instead of queueing behind each other. Each job runs in its own savepoint, so one
//! failing job never spoils the others, and its answer is sent only after COMMIT returned:
//! nothing is acknowledged before its row is durable. Reads use a small pool of connections.

mod mpi;
pub mod query;
mod records;
mod users;
mod writer;

pub use mpi::{
    HistoryEntry, Identifier, MatchAnswer, MpiChange, MpiError, MpiOp, PersonSearch, PersonState,
    PersonStudy, PersonSummary, PersonView, ReviewItem,
};
pub use records::*;
pub use users::{BindRefusal, PrincipalRow, UserRow};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strata_core::config::OnConflict;
use strata_core::{now_ms, BlobId};
use strata_dicom::record::InstanceRecord;
use writer::{Promise, Writer};

/// The migrations, in order; each runs once, recorded in `schema_migrations`.
#[rustfmt::skip]
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../schemas/index/0001_init.sql")),
    (2, "audit", include_str!("../../../schemas/index/0002_audit.sql")),
    (3, "ae_peers", include_str!("../../../schemas/index/0003_ae_peers.sql")),
    (4, "auth", include_str!("../../../schemas/index/0004_auth.sql")),
    (5, "name_phonetic", include_str!("../../../schemas/index/0005_name_phonetic.sql")),
    (6, "audit_export", include_str!("../../../schemas/index/0006_audit_export.sql")),
    (7, "mpi", include_str!("../../../schemas/index/0007_mpi.sql")),
    (8, "patient_users", include_str!("../../../schemas/index/0008_patient_users.sql")),
    (9, "name_keys", include_str!("../../../schemas/index/0009_name_keys.sql")),
];

/// Whose data a read may return. Every read of the index that hands patient data to a caller
/// ([`Index::find`] through [`query::Query::scope`], [`Index::instances_under`],
/// [`Index::person`]) takes one, and applies it in its SQL: the scope of a patient user is
/// enforced here, in one place, not by each route, so a new route cannot forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every patient: staff roles, and DIMSE peers (authorised by AE title, never patients).
    All,
    /// Only the local keys that belong to this person (`persons.id`) now: a patient user.
    Person(i64),
}

impl Scope {
    /// The person row a read is limited to, as an SQL parameter (NULL: everyone).
    fn person_param(self) -> Option<i64> {
        match self {
            Scope::All => None,
            Scope::Person(id) => Some(id),
        }
    }
}

/// Reader connections kept open for reuse; more are opened under load and closed after.
const READER_POOL: usize = 4;
/// Prepared statements each connection keeps: the writer's jobs, and the readers' searches,
/// whose SQL differs with the attributes a query matches, each prepared once.
const STATEMENT_CACHE: usize = 64;
/// How long a connection waits on another process's lock (an import while serving) before failing.
const BUSY_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("index: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("index writer has stopped")]
    WriterGone,
    #[error("index commit failed: {0}")]
    Commit(String),
    #[error(transparent)]
    Mpi(#[from] MpiError),
    #[error("journal: {0}")]
    Journal(String),
}

#[derive(Clone)]
pub struct Index {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, IndexError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let err = |source| IndexError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(err)?;
    // FULL: a commit is on disk when COMMIT returns, which is what an acknowledgement promises.
    // temp_store MEMORY: the statement journal of each writer job's savepoint stays in memory
    // instead of spilling into a new temporary file every group transaction.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(err)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = ON;").map_err(err)?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The archive's own functions that migrations call: a key the index stores is made by the
/// same Rust code whether a row is written today or rewritten by a migration.
fn register_functions(conn: &Connection) -> Result<(), IndexError> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("strata_name_key", 1, flags, |ctx| {
        Ok(ctx
            .get::<Option<String>>(0)?
            .map(|n| strata_mpi::name_key(&n)))
    })?;
    conn.create_scalar_function("strata_phonetic_key", 1, flags, |ctx| {
        Ok(ctx
            .get::<Option<String>>(0)?
            .map(|n| strata_mpi::phonetic_key(&n)))
    })?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), IndexError> {
    register_functions(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (version, name, sql) in MIGRATIONS {
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, now_ms()],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs `f` on a connection from `pool` (or a new one), and puts the connection back.
fn with_reader<T>(
    pool: &Mutex<Vec<Connection>>,
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<T, IndexError>,
) -> Result<T, IndexError> {
    let conn = pool.lock().expect("pool lock").pop();
    let conn = match conn {
        Some(c) => c,
        None => open_connection(path, true)?,
    };
    let out = f(&conn);
    let mut pool = pool.lock().expect("pool lock");
    if pool.len() < READER_POOL {
        pool.push(conn);
    }
    out
}

impl Index {
    /// Opens (creating and migrating when needed) the index at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::Commit(e.to_string()))?;
        }
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn)?;
        Ok(Index {
            path: path.to_path_buf(),
            writer: Writer::start(conn, path.to_path_buf()),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let (pool, path) = (self.readers.clone(), self.path.clone());
        let run = move || with_reader(&pool, &path, f);
        // On a multi-threaded runtime the read runs on the calling thread, which hands its other
        // tasks to another worker while it blocks: a request's lookups then cost no round trip
        // through the blocking pool (two thread wake-ups each). Elsewhere (a current-thread
        // runtime, as in some tests) it goes to the blocking pool.
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            tokio::task::block_in_place(run)
        } else {
            tokio::task::spawn_blocking(run)
                .await
                .expect("index reader panicked")
        }
    }

    /// Runs `f` on a pooled read connection on the calling thread, as it is: only for a lookup
    /// by key that reads a few rows, which takes microseconds. Handing the worker's tasks to
    /// another thread, as [`Index::read`] does, would cost more than the lookup (a thread
    /// wake-up each way).
    pub fn read_point<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        with_reader(&self.readers, &self.path, f)
    }

    /// Runs `f` inside the writer's next group transaction; returns once it is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        self.writer.submit(Promise::Durable, f).await
    }

    /// Returns once everything committed before the call is durable (audit events are committed
    /// before their answer goes out and fsynced just after).
    pub async fn sync(&self) -> Result<(), IndexError> {
        self.writer.sync().await
    }

    /// Records an ingested instance (and the replica copies that failed while storing it) in one
    /// committed transaction. `on_conflict` decides what a different blob under an existing
    /// SOP Instance UID does.
    pub async fn insert_instance(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
    ) -> Result<InsertOutcome, IndexError> {
        self.insert_instance_audited(rec, on_conflict, failed_copies, None)
            .await
    }

    /// [`Index::insert_instance`], with the audit event of the store committed in the same
    /// transaction: one fsync for both.
    pub async fn insert_instance_audited(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
        audit: Option<strata_core::audit::AuditEvent>,
    ) -> Result<InsertOutcome, IndexError> {
        self.write(move |c| {
            let outcome = records::insert_instance(c, &rec, on_conflict)?;
            for (blob, replica, reason) in &failed_copies {
                records::enqueue_repair(c, blob, *replica, reason)?;
            }
            if let Some(event) = &audit {
                records::append_audit(c, event)?;
            }
            Ok(outcome)
        })
        .await
    }

    /// Carries out a manual MPI operation by `actor`; `journal` records the resulting change
    /// durably before the transaction commits (if it fails, nothing changes), and `audit` is
    /// committed with it.
    pub async fn mpi_op<J>(
        &self,
        op: MpiOp,
        actor: String,
        audit: strata_core::audit::AuditEvent,
        journal: J,
    ) -> Result<MpiChange, IndexError>
    where
        J: FnOnce(&MpiChange) -> Result<(), String> + Send + 'static,
    {
        self.write(move |c| {
            let change = mpi::apply_op(c, &op, &actor)?;
            journal(&change).map_err(IndexError::Journal)?;
            records::append_audit(c, &audit)?;
            Ok(change)
        })
        .await
    }

    /// Applies a journaled MPI change (reindex).
    pub async fn mpi_replay(&self, change: MpiChange) -> Result<(), IndexError> {
        self.write(move |c| mpi::replay(c, &change)).await
    }

    /// Re-runs the matcher over the keys no person decided; returns how many moved.
    pub async fn mpi_rematch(&self) -> Result<usize, IndexError> {
        self.write(mpi::rematch).await
    }

    /// Re-estimates the matcher's weights (EM, no labels) when the number of local keys has
    /// at least doubled since the last estimate (and is at least `min_records`). Returns the
    /// number of records the new model was estimated from.
    pub async fn mpi_estimate(
        &self,
        min_records: usize,
        force: bool,
    ) -> Result<Option<usize>, IndexError> {
        let (records, estimated) = self.read(mpi::model_inputs).await?;
        let n = records.len();
        if !force && (n < min_records || (n as i64) < estimated.max(1) * 2) {
            return Ok(None);
        }
        let model = tokio::task::spawn_blocking(move || strata_mpi::Model::estimate(&records))
            .await
            .map_err(|e| IndexError::Commit(format!("estimating the MPI model: {e}")))?;
        self.write(move |c| mpi::set_model(c, &model, n as i64))
            .await?;
        Ok(Some(n))
    }

    /// Registers local keys from demographics alone (a migrated patient master file), each
    /// matched as at ingest, in one transaction. None for a key already known.
    pub async fn mpi_register(
        &self,
        identities: Vec<strata_mpi::Identity>,
    ) -> Result<Vec<Option<strata_mpi::Decision>>, IndexError> {
        self.write(move |c| identities.iter().map(|i| mpi::register(c, i)).collect())
            .await
    }

    pub async fn persons(&self, q: PersonSearch) -> Result<Vec<PersonSummary>, IndexError> {
        self.read(move |c| mpi::search(c, &q)).await
    }

    /// A person as the MPI sees it; None if there is no such person or it is outside `scope`
    /// (a patient reads their own person only).
    pub async fn person(
        &self,
        uid: String,
        scope: Scope,
    ) -> Result<Option<PersonView>, IndexError> {
        self.read(move |c| mpi::person(c, &uid, scope.person_param()))
            .await
    }

    pub async fn review_items(&self, all: bool) -> Result<Vec<ReviewItem>, IndexError> {
        self.read(move |c| mpi::review_items(c, all)).await
    }

    /// Scores demographics against stored persons without storing anything.
    pub async fn mpi_match(
        &self,
        identity: strata_mpi::Identity,
    ) -> Result<MatchAnswer, IndexError> {
        self.read(move |c| mpi::match_only(c, &identity)).await
    }

    /// The stored instance under a SOP Instance UID (a point read: on the calling thread).
    pub async fn instance(&self, sop_uid: &str) -> Result<Option<StoredInstance>, IndexError> {
        self.read_point(|c| records::stored_instance(c, sop_uid))
    }

    /// The SOP Class UID of a stored instance (a point read: on the calling thread).
    pub async fn instance_sop_class(&self, sop_uid: &str) -> Result<Option<String>, IndexError> {
        self.read_point(|c| {
            Ok(
                c.prepare_cached("SELECT sop_class_uid FROM instances WHERE sop_uid = ?1")?
                    .query_row([sop_uid], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    pub async fn studies(&self) -> Result<Vec<StudySummary>, IndexError> {
        self.read(records::study_summaries).await
    }

    pub async fn counts(&self) -> Result<Counts, IndexError> {
        self.read(records::counts).await
    }

    /// Every blob the index refers to, current or superseded.
    pub async fn blob_ids(&self) -> Result<Vec<BlobId>, IndexError> {
        self.read(records::blob_ids).await
    }

    /// Every SOP Instance UID with its blob, for checks that walk the whole archive.
    pub async fn instance_blobs(&self) -> Result<Vec<(String, BlobId)>, IndexError> {
        self.read(records::instance_blobs).await
    }

    pub async fn enqueue_repairs(
        &self,
        items: Vec<(BlobId, usize, String)>,
    ) -> Result<(), IndexError> {
        if items.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            for (blob, replica, reason) in &items {
                records::enqueue_repair(c, blob, *replica, reason)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn due_repairs(&self, limit: usize) -> Result<Vec<RepairItem>, IndexError> {
        self.read(move |c| records::due_repairs(c, now_ms(), limit))
            .await
    }

    pub async fn repairs_for(&self, blob: BlobId) -> Result<Vec<RepairItem>, IndexError> {
        self.read(move |c| records::repairs_for(c, &blob)).await
    }

    pub async fn repair_done(&self, blob: BlobId, replica: usize) -> Result<(), IndexError> {
        self.write(move |c| records::repair_done(c, &blob, replica))
            .await
    }

    pub async fn repair_failed(&self, item: RepairItem, reason: String) -> Result<(), IndexError> {
        self.write(move |c| records::repair_failed(c, &item, &reason, now_ms()))
            .await
    }

    pub async fn repair_queue_len(&self) -> Result<i64, IndexError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM repair_queue", [], |r| r.get(0))?))
            .await
    }

    /// Closes every connection (so the WAL is folded into the database file) and stops the
    /// writer. The index is unusable afterwards.
    pub async fn close(self) -> Result<(), IndexError> {
        self.readers.lock().expect("pool lock").clear();
        self.writer.stop().await;
        Ok(())
    }

    /// Matches `q` against the index (C-FIND, QIDO-RS).
    pub async fn find(
        &self,
        q: query::Query,
    ) -> Result<Vec<dicom_object::InMemDicomObject>, query::QueryError> {
        if q.is_point() {
            return self.read_point(|c| Ok(query::find(c, &q)))?;
        }
        let r = self.read(move |c| Ok(query::find(c, &q))).await?;
        r
    }

    /// Appends an event to the audit trail, chained to the last one; returns once it is
    /// durable. For events of changes, administration and refusals.
    pub async fn audit(&self, event: strata_core::audit::AuditEvent) -> Result<(), IndexError> {
        self.writer
            .submit(Promise::Durable, move |c| records::append_audit(c, &event))
            .await
    }

    /// The audit event of a read of patient data (a search, a retrieval, a rendered view),
    /// handed to the writer at once: the caller prepares its answer while the event commits,
    /// and awaits the future before sending anything. The future resolves once the event is
    /// committed, or fails; the answer must not go out unless it resolved `Ok`. Committed
    /// means in the index's WAL: from then on the event survives the archive process crashing,
    /// and the writer's WAL thread starts its fsync within half a millisecond (a power cut in
    /// between can lose it). Waiting for the fsync was most of a small search's time, and a read
    /// changes nothing stored.
    pub fn audit_read(
        &self,
        event: strata_core::audit::AuditEvent,
    ) -> impl std::future::Future<Output = Result<(), IndexError>> + Send + 'static {
        self.writer.submit(Promise::Committed, move |c| {
            records::append_audit(c, &event)
        })
    }

    /// The id of the last audit event copied to the replicas.
    pub async fn audit_exported(&self) -> Result<i64, IndexError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT last_id FROM audit_export WHERE id = 1", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    pub async fn set_audit_exported(&self, last_id: i64) -> Result<(), IndexError> {
        self.write(move |c| {
            c.execute(
                "UPDATE audit_export SET last_id = ?1 WHERE id = 1",
                [last_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Puts back audit events exactly as they were (ids and hashes), for reindex.
    pub async fn restore_audit(
        &self,
        events: Vec<strata_core::audit::StoredEvent>,
    ) -> Result<(), IndexError> {
        self.write(move |c| {
            for e in &events {
                records::restore_audit(c, e)?;
            }
            if let Some(last) = events.last() {
                c.execute(
                    "UPDATE audit_export SET last_id = max(last_id, ?1) WHERE id = 1",
                    [last.id],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Audit events matching the filter, oldest first.
    pub async fn audit_events(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<strata_core::audit::StoredEvent>, IndexError> {
        self.read(move |c| records::audit_events(c, &filter)).await
    }

    /// The C-MOVE destinations managed at run time.
    pub async fn peers(&self) -> Result<Vec<strata_core::config::DimsePeer>, IndexError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT aet, host, port FROM ae_peers ORDER BY aet")?;
            let rows = stmt.query_map([], |r| {
                Ok(strata_core::config::DimsePeer {
                    aet: r.get(0)?,
                    host: r.get(1)?,
                    port: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn set_peer(&self, p: strata_core::config::DimsePeer) -> Result<(), IndexError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO ae_peers (aet, host, port, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (aet) DO UPDATE SET host = excluded.host, port = excluded.port,
                    updated_at = excluded.updated_at",
                params![p.aet, p.host, p.port, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn remove_peer(&self, aet: String) -> Result<bool, IndexError> {
        self.write(move |c| Ok(c.execute("DELETE FROM ae_peers WHERE aet = ?1", [aet])? > 0))
            .await
    }

    /// The instances under a study (and series, and instance) within `scope`, in series and
    /// instance order. Empty when there are none, or none the scope may see: the caller cannot
    /// tell the two apart, so an answer never confirms that someone else's study exists.
    pub async fn instances_under(
        &self,
        study: String,
        series: Option<String>,
        sop: Option<String>,
        scope: Scope,
    ) -> Result<Vec<InstanceRef>, IndexError> {
        self.read(move |c| {
            records::instances_under(
                c,
                &study,
                series.as_deref(),
                sop.as_deref(),
                scope.person_param(),
            )
        })
        .await
    }

    pub async fn retention_facts(
        &self,
        sops: Vec<String>,
    ) -> Result<Vec<RetentionFacts>, IndexError> {
        self.read(move |c| records::retention_facts(c, &sops)).await
    }

    /// Removes instances and their history from the index, returning the blobs they used.
    pub async fn delete_instances(&self, sops: Vec<String>) -> Result<Vec<BlobId>, IndexError> {
        self.write(move |c| records::delete_instances(c, &sops))
            .await
    }

    /// True when the database answers: part of readiness.
    pub async fn ping(&self) -> bool {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests;
