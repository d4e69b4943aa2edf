//! The SQLite backend of the catalog: one database (WAL) holding what every query needs, written
//! by one writer thread that commits jobs in groups ([`crate::writer`]) and read through a small
//! pool of connections. The SQL itself is in the modules beside this one: [`crate::records`]
//! (instances and the rows around them), [`crate::users`], [`crate::mpi`] and
//! [`crate::query`] (C-FIND and QIDO-RS matching).

use crate::catalog::{Catalog, Journal};
use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::pg::PgClient;
use crate::users::{principal_row, PRINCIPAL_COLUMNS};
use crate::writer::{Promise, Writer};
use crate::*;
use futures::future::BoxFuture;
use rusqlite::OpenFlags;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use strata_core::config::OnConflict;
use strata_core::{now_ms, BlobId, Metrics};
use strata_dicom::record::InstanceRecord;

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
    (10, "worker_progress", include_str!("../../../schemas/index/0010_worker_progress.sql")),
    (11, "accounts", include_str!("../../../schemas/index/0011_accounts.sql")),
    (13, "confirmed_keys", include_str!("../../../schemas/index/0013_confirmed_keys.sql")),
    (14, "user_issuer", include_str!("../../../schemas/index/0014_user_issuer.sql")),
    (16, "login_failure_ids", include_str!("../../../schemas/index/0016_login_failure_ids.sql")),
    (17, "study_order", include_str!("../../../schemas/index/0017_study_order.sql")),
    (18, "journal_clock", include_str!("../../../schemas/index/0018_journal_clock.sql")),
    (19, "leases", include_str!("../../../schemas/index/0019_leases.sql")),
    (20, "nodes", include_str!("../../../schemas/index/0020_nodes.sql")),
    (25, "study_names", include_str!("../../../schemas/index/0025_study_names.sql")),
    (26, "access_letters", include_str!("../../../schemas/index/0026_access_letters.sql")),
    (27, "sends", include_str!("../../../schemas/index/0027_sends.sql")),
    (28, "tiers", include_str!("../../../schemas/index/0028_tiers.sql")),
    (29, "lifecycle", include_str!("../../../schemas/index/0029_lifecycle.sql")),
    (30, "expiry_waiting", include_str!("../../../schemas/index/0030_expiry_waiting.sql")),
    (31, "rejected_ahead", include_str!("../../../schemas/index/0031_rejected_ahead.sql")),
    (32, "viewer_layouts", include_str!("../../../schemas/index/0032_viewer_layouts.sql")),
];

/// The same migrations in PostgreSQL's dialect, kept beside SQLite's (`NNNN_name.pg.sql`).
#[rustfmt::skip]
const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../schemas/index/0001_init.pg.sql")),
    (2, "audit", include_str!("../../../schemas/index/0002_audit.pg.sql")),
    (3, "ae_peers", include_str!("../../../schemas/index/0003_ae_peers.pg.sql")),
    (4, "auth", include_str!("../../../schemas/index/0004_auth.pg.sql")),
    (5, "name_phonetic", include_str!("../../../schemas/index/0005_name_phonetic.pg.sql")),
    (6, "audit_export", include_str!("../../../schemas/index/0006_audit_export.pg.sql")),
    (7, "mpi", include_str!("../../../schemas/index/0007_mpi.pg.sql")),
    (8, "patient_users", include_str!("../../../schemas/index/0008_patient_users.pg.sql")),
    (9, "name_keys", include_str!("../../../schemas/index/0009_name_keys.pg.sql")),
    (10, "worker_progress", include_str!("../../../schemas/index/0010_worker_progress.pg.sql")),
    (11, "accounts", include_str!("../../../schemas/index/0011_accounts.pg.sql")),
    (13, "confirmed_keys", include_str!("../../../schemas/index/0013_confirmed_keys.pg.sql")),
    (14, "user_issuer", include_str!("../../../schemas/index/0014_user_issuer.pg.sql")),
    (16, "login_failure_ids", include_str!("../../../schemas/index/0016_login_failure_ids.pg.sql")),
    (17, "study_order", include_str!("../../../schemas/index/0017_study_order.pg.sql")),
    (18, "journal_clock", include_str!("../../../schemas/index/0018_journal_clock.pg.sql")),
    (19, "leases", include_str!("../../../schemas/index/0019_leases.pg.sql")),
    (20, "nodes", include_str!("../../../schemas/index/0020_nodes.pg.sql")),
    (25, "study_names", include_str!("../../../schemas/index/0025_study_names.pg.sql")),
    (26, "access_letters", include_str!("../../../schemas/index/0026_access_letters.pg.sql")),
    (27, "sends", include_str!("../../../schemas/index/0027_sends.pg.sql")),
    (28, "tiers", include_str!("../../../schemas/index/0028_tiers.pg.sql")),
    (29, "lifecycle", include_str!("../../../schemas/index/0029_lifecycle.pg.sql")),
    (30, "expiry_waiting", include_str!("../../../schemas/index/0030_expiry_waiting.pg.sql")),
    (31, "rejected_ahead", include_str!("../../../schemas/index/0031_rejected_ahead.pg.sql")),
    (32, "viewer_layouts", include_str!("../../../schemas/index/0032_viewer_layouts.pg.sql")),
];

/// Reader connections kept open for reuse; more are opened under load and closed after.
const READER_POOL: usize = 4;
/// Prepared statements each connection keeps: the writer's jobs, and the readers' searches,
/// whose SQL differs with the attributes a query matches, each prepared once.
const STATEMENT_CACHE: usize = 64;
/// The page cache of the writer connection, and of each reader (KiB).
const WRITER_CACHE_KIB: u32 = 64 * 1024;
const READER_CACHE_KIB: u32 = 16 * 1024;
/// WAL pages after which a commit checkpoints (SQLite's default is 1,000).
const CHECKPOINT_PAGES: u32 = 16_000;
/// How long a connection waits on another process's lock (an import while serving) before failing.
const BUSY_TIMEOUT_MS: u64 = 30_000;

/// The SQLite backend: one database file in WAL mode, one writer thread with group commit,
/// a small pool of reader connections.
pub struct SqliteIndex {
    /// The key new audit events are chained under; none only where the index is opened alone.
    audit_key: Option<Arc<strata_core::audit::AuditKey>>,
    engine: Engine,
    writer: Writer,
    readers: Arc<Mutex<Vec<Reader>>>,
    metrics: Arc<Metrics>,
}

fn open_connection(path: &Path, read_only: bool) -> Result<rusqlite::Connection, IndexError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let err = |source: rusqlite::Error| IndexError::Open {
        path: path.display().to_string(),
        reason: source.to_string(),
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(err)?;
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
    // SQLite's own page cache (2 MB unless told) holds the upper levels of a few B-trees; at a
    // million instances an insert reaches a leaf of each of a dozen indexes, most of them at
    // random places (UIDs, names, dates), and every page not cached is read again from the
    // file and the WAL. A larger cache keeps the upper levels of all of them.
    let cache_kib = if read_only {
        READER_CACHE_KIB
    } else {
        WRITER_CACHE_KIB
    };
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib};"))
        .map_err(err)?;
    if !read_only {
        // A checkpoint copies the WAL's newest version of each page into the database and
        // fsyncs it. The last pages of each table and index are rewritten by every group
        // commit: checkpointing after 16,000 pages (64 MB) rather than 1,000 copies each once
        // where it was copied many times. Every commit is still synced as before.
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES};"))
            .map_err(err)?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The archive's own functions that migrations call: a key the index stores is made by the
/// same Rust code whether a row is written today or rewritten by a migration.
fn register_functions(conn: &rusqlite::Connection) -> Result<(), IndexError> {
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

pub(crate) fn migrate(conn: &mut rusqlite::Connection) -> Result<(), IndexError> {
    register_functions(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    run_migrations(&Connection::sqlite(&tx), MIGRATIONS)?;
    tx.commit()?;
    Ok(())
}

/// Runs, inside the caller's transaction, each migration of `list` not yet recorded.
fn run_migrations(c: &Connection, list: &[(i64, &str, &str)]) -> Result<(), IndexError> {
    for (version, name, sql) in list {
        let done: Option<i64> = c
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            c.execute_batch(sql)?;
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, now_ms()],
            )?;
        }
    }
    Ok(())
}

/// [`migrate`] for PostgreSQL. Nodes starting together take turns (an advisory lock held by
/// the transaction), so each migration runs once.
fn migrate_postgres(client: &RefCell<PgClient>) -> Result<(), IndexError> {
    let c = Connection::postgres(client);
    c.execute_batch(
        "BEGIN;
         SELECT pg_advisory_xact_lock(7449217236);
         SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
    )?;
    match run_migrations(&c, PG_MIGRATIONS) {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Where the index lives.
#[derive(Clone)]
enum Engine {
    Sqlite(PathBuf),
    /// The connection URL (it may hold a password: never logged) and the schema.
    Postgres(String, String),
}

/// A pooled connection for reads.
enum Reader {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<PgClient>>),
}

impl Reader {
    fn open(engine: &Engine) -> Result<Reader, IndexError> {
        Ok(match engine {
            Engine::Sqlite(path) => Reader::Sqlite(open_connection(path, true)?),
            Engine::Postgres(url, schema) => {
                Reader::Postgres(Box::new(RefCell::new(PgClient::connect(url, schema)?)))
            }
        })
    }

    /// False once the server has closed it.
    fn usable(&self) -> bool {
        match self {
            Reader::Sqlite(_) => true,
            Reader::Postgres(c) => !c.borrow().is_closed(),
        }
    }

    fn db(&self) -> Connection<'_> {
        match self {
            Reader::Sqlite(c) => Connection::sqlite(c),
            Reader::Postgres(c) => Connection::postgres(c),
        }
    }
}

/// Runs `f` on a connection from `pool` (or a new one), and puts the connection back.
fn with_reader<T>(
    pool: &Mutex<Vec<Reader>>,
    engine: &Engine,
    f: impl FnOnce(&Connection) -> Result<T, IndexError>,
) -> Result<T, IndexError> {
    let conn = pool.lock().expect("pool lock").pop();
    let conn = match conn {
        Some(c) if c.usable() => c,
        _ => Reader::open(engine)?,
    };
    let out = f(&conn.db());
    let mut pool = pool.lock().expect("pool lock");
    if pool.len() < READER_POOL && conn.usable() {
        pool.push(conn);
    }
    out
}

impl SqliteIndex {
    /// Opens (creating and migrating when needed) the index at `path` and starts its writer;
    /// every operation's duration goes to `metrics`.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<SqliteIndex, IndexError> {
        Self::open_keyed(path, metrics, None)
    }

    /// [`SqliteIndex::open`], chaining new audit events under `audit_key` (see
    /// [`strata_core::audit`]).
    pub fn open_keyed(
        path: &Path,
        metrics: Arc<Metrics>,
        audit_key: Option<strata_core::audit::AuditKey>,
    ) -> Result<SqliteIndex, IndexError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::Commit(e.to_string()))?;
        }
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn)?;
        Ok(SqliteIndex {
            audit_key: audit_key.map(Arc::new),
            engine: Engine::Sqlite(path.to_path_buf()),
            writer: Writer::start(conn, path.to_path_buf()),
            readers: Arc::new(Mutex::new(Vec::new())),
            metrics,
        })
    }

    /// Opens (creating the tables and migrating when needed) the PostgreSQL index at `url`
    /// (`postgres://user:password@host:port/database`), in `schema`, and starts its writer.
    pub fn open_postgres(
        url: &str,
        schema: &str,
        metrics: Arc<Metrics>,
        audit_key: Option<strata_core::audit::AuditKey>,
    ) -> Result<SqliteIndex, IndexError> {
        let client = crate::pg::off_runtime(|| {
            let client = RefCell::new(PgClient::connect(url, schema)?);
            migrate_postgres(&client)?;
            Ok::<_, IndexError>(client.into_inner())
        })?;
        Ok(SqliteIndex {
            audit_key: audit_key.map(Arc::new),
            engine: Engine::Postgres(url.to_string(), schema.to_string()),
            writer: Writer::start_postgres(client, url.to_string(), schema.to_string()),
            readers: Arc::new(Mutex::new(Vec::new())),
            metrics,
        })
    }

    /// Runs `f` (operation `op`) on a pooled read connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let _timer = self.metrics.time("index", op);
        let (pool, engine) = (self.readers.clone(), self.engine.clone());
        let run = move || with_reader(&pool, &engine, f);
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
    /// another thread, as [`SqliteIndex::read`] does, would cost more than the lookup (a thread
    /// wake-up each way).
    pub(crate) fn read_point<T: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, IndexError> + Send,
    ) -> Result<T, IndexError> {
        let _timer = self.metrics.time("index", op);
        let run = || with_reader(&self.readers, &self.engine, f);
        match self.engine {
            Engine::Sqlite(_) => run(),
            Engine::Postgres(..) => crate::pg::off_runtime(run),
        }
    }

    /// Runs `f` (operation `op`) inside the writer's next group transaction; returns once it
    /// is durable. On PostgreSQL `f` may run again in a later transaction, when another
    /// archive process writing the same database won a race it lost.
    pub(crate) async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        self.submit(op, Promise::Durable, f).await
    }

    /// Runs `f` (operation `op`) in the writer's next group transaction; returns once it is
    /// committed as `promise` says.
    async fn submit<T, F>(&self, op: &'static str, promise: Promise, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let _timer = self.metrics.time("index", op);
        self.writer.submit(promise, f).await
    }
}

#[async_trait::async_trait]
impl Catalog for SqliteIndex {
    async fn sync(&self) -> Result<(), IndexError> {
        self.writer.sync().await
    }

    async fn insert_instance(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
    ) -> Result<InsertOutcome, IndexError> {
        self.insert_instance_audited(rec, on_conflict, failed_copies, None)
            .await
    }

    async fn insert_instance_audited(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
        audit: Option<strata_core::audit::AuditEvent>,
    ) -> Result<InsertOutcome, IndexError> {
        let key = self.audit_key.clone();
        self.write("insert_instance_audited", move |c| {
            let outcome = records::insert_instance(c, &rec, on_conflict)?;
            for (blob, replica, reason) in &failed_copies {
                repairs::enqueue_repair(c, blob, *replica, reason)?;
            }
            // the store's event records a store; a conflict stored nothing, and the door that
            // refuses it writes its own event
            if let (Some(event), false) =
                (&audit, matches!(outcome, InsertOutcome::Conflict { .. }))
            {
                audit::append_audit(c, key.as_deref(), event)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn mpi_op(
        &self,
        op: MpiOp,
        actor: String,
        audit: strata_core::audit::AuditEvent,
        journal: Journal,
    ) -> Result<MpiChange, IndexError> {
        let key = self.audit_key.clone();
        let mut journal = journal;
        self.write("mpi_op", move |c| {
            let change = mpi::apply_op(c, &op, &actor)?;
            // stamped after the decisions' lock: decisions list in the order they committed
            let stamp = progress::journal_stamp(c, now_ms())?;
            journal(&change, stamp).map_err(IndexError::Journal)?;
            audit::append_audit(c, key.as_deref(), &audit)?;
            Ok(change)
        })
        .await
    }

    async fn mpi_replay(&self, change: MpiChange) -> Result<(), IndexError> {
        self.write("mpi_replay", move |c| mpi::replay(c, &change))
            .await
    }

    async fn mpi_rematch(&self) -> Result<usize, IndexError> {
        self.write("mpi_rematch", mpi::rematch).await
    }

    async fn mpi_estimate(
        &self,
        min_records: usize,
        force: bool,
    ) -> Result<Option<usize>, IndexError> {
        let (records, estimated) = self.read("mpi_estimate", mpi::model_inputs).await?;
        let n = records.len();
        if !force && (n < min_records || (n as i64) < estimated.max(1) * 2) {
            return Ok(None);
        }
        let model = tokio::task::spawn_blocking(move || strata_mpi::Model::estimate(&records))
            .await
            .map_err(|e| IndexError::Commit(format!("estimating the MPI model: {e}")))?;
        self.write("mpi_estimate", move |c| mpi::set_model(c, &model, n as i64))
            .await?;
        Ok(Some(n))
    }

    async fn mpi_register(
        &self,
        identities: Vec<strata_mpi::Identity>,
    ) -> Result<Vec<Option<strata_mpi::Decision>>, IndexError> {
        self.write("mpi_register", move |c| {
            identities.iter().map(|i| mpi::register(c, i)).collect()
        })
        .await
    }

    async fn persons(&self, q: PersonSearch) -> Result<Vec<PersonSummary>, IndexError> {
        self.read("persons", move |c| mpi::search(c, &q)).await
    }

    async fn person(&self, uid: String, scope: Scope) -> Result<Option<PersonView>, IndexError> {
        if scope.share_param().is_some() {
            // a share names studies, never a person
            return Ok(None);
        }
        self.read("person", move |c| {
            mpi::person(c, &uid, scope.person_param())
        })
        .await
    }

    async fn review_items(&self, all: bool) -> Result<Vec<ReviewItem>, IndexError> {
        self.read("review_items", move |c| mpi::review_items(c, all))
            .await
    }

    async fn mpi_match(&self, identity: strata_mpi::Identity) -> Result<MatchAnswer, IndexError> {
        self.read("mpi_match", move |c| mpi::match_only(c, &identity))
            .await
    }

    async fn instance(&self, sop_uid: &str) -> Result<Option<StoredInstance>, IndexError> {
        self.read_point("instance", |c| records::stored_instance(c, sop_uid))
    }

    async fn instance_sop_class(&self, sop_uid: &str) -> Result<Option<String>, IndexError> {
        self.read_point("instance_sop_class", |c| {
            c.prepare_cached("SELECT sop_class_uid FROM instances WHERE sop_uid = ?1")?
                .query_row([sop_uid], |r| r.get(0))
                .optional()
        })
    }

    async fn studies(&self) -> Result<Vec<StudySummary>, IndexError> {
        self.read("studies", records::study_summaries).await
    }

    async fn counts(&self) -> Result<Counts, IndexError> {
        self.read("counts", records::counts).await
    }

    async fn blob_ids(&self) -> Result<Vec<BlobId>, IndexError> {
        self.read("blob_ids", records::blob_ids).await
    }

    async fn blob_ids_after(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, IndexError> {
        self.read("blob_ids_after", move |c| {
            records::blob_ids_after(c, after.as_ref(), limit)
        })
        .await
    }

    async fn worker_progress(&self, worker: String) -> Result<Option<WorkerProgress>, IndexError> {
        self.read("worker_progress", move |c| {
            progress::worker_progress(c, &worker)
        })
        .await
    }

    async fn set_worker_progress(&self, progress: WorkerProgress) -> Result<(), IndexError> {
        self.write("set_worker_progress", move |c| {
            progress::set_worker_progress(c, &progress)
        })
        .await
    }

    async fn journal_stamp(&self, now: i64) -> Result<i64, IndexError> {
        self.write("journal_stamp", move |c| progress::journal_stamp(c, now))
            .await
    }

    async fn note_reads(&self, studies: Vec<String>, at: i64) -> Result<(), IndexError> {
        self.write("note_reads", move |c| tiers::note_reads(c, &studies, at))
            .await
    }

    async fn tier_candidates(&self, q: TierQuery) -> Result<TierPage, IndexError> {
        self.read("tier_candidates", move |c| tiers::candidates(c, &q))
            .await
    }

    async fn study_modalities(&self, study: String) -> Result<Vec<String>, IndexError> {
        self.read("study_modalities", move |c| {
            tiers::study_modalities(c, &study)
        })
        .await
    }

    async fn study_blobs(&self, study: String) -> Result<Vec<(BlobId, u64)>, IndexError> {
        self.read("study_blobs", move |c| tiers::study_blobs(c, &study))
            .await
    }

    async fn studies_of_blob(&self, blob: BlobId) -> Result<Vec<String>, IndexError> {
        self.read("studies_of_blob", move |c| tiers::studies_of_blob(c, &blob))
            .await
    }

    async fn record_cold_blobs(&self, blobs: Vec<ColdBlob>) -> Result<(), IndexError> {
        self.write("record_cold_blobs", move |c| {
            tiers::record_cold_blobs(c, &blobs)
        })
        .await
    }

    async fn set_blobs_hot(&self, blobs: Vec<BlobId>, hot: bool) -> Result<(), IndexError> {
        self.write("set_blobs_hot", move |c| {
            tiers::set_blobs_hot(c, &blobs, hot)
        })
        .await
    }

    async fn set_study_tier(&self, tier: StudyTier) -> Result<(), IndexError> {
        self.write("set_study_tier", move |c| tiers::set_study_tier(c, &tier))
            .await
    }

    async fn study_tier(&self, study: String) -> Result<Option<StudyTier>, IndexError> {
        self.read("study_tier", move |c| tiers::study_tier(c, &study))
            .await
    }

    async fn restored_expired(&self, now: i64, limit: usize) -> Result<Vec<StudyTier>, IndexError> {
        self.read("restored_expired", move |c| {
            tiers::restored_expired(c, now, limit)
        })
        .await
    }

    async fn cold_blob(&self, blob: BlobId) -> Result<Option<ColdBlob>, IndexError> {
        self.read("cold_blob", move |c| tiers::cold_blob(c, &blob))
            .await
    }

    async fn cold_blobs_after(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> Result<Vec<ColdBlob>, IndexError> {
        self.read("cold_blobs_after", move |c| {
            tiers::cold_blobs_after(c, after.as_ref(), limit)
        })
        .await
    }

    async fn tier_totals(&self) -> Result<TierTotals, IndexError> {
        self.read("tier_totals", tiers::totals).await
    }

    async fn read_days(&self, actions: Vec<String>) -> Result<(Vec<ReadDays>, u64), IndexError> {
        self.read("read_days", move |c| tiers::read_days(c, &actions))
            .await
    }

    async fn study_dates(&self) -> Result<Vec<String>, IndexError> {
        self.read("study_dates", tiers::study_dates).await
    }

    async fn acquire_lease(&self, claim: LeaseClaim) -> Result<Lease, IndexError> {
        self.write("acquire_lease", move |c| leases::acquire(c, &claim))
            .await
    }

    async fn release_leases(
        &self,
        holder: String,
        incarnation: String,
        now: i64,
    ) -> Result<usize, IndexError> {
        self.write("release_leases", move |c| {
            leases::release(c, &holder, &incarnation, now)
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>, IndexError> {
        self.read("leases", leases::all).await
    }

    async fn create_send(&self, new: NewSend) -> Result<i64, IndexError> {
        self.write("create_send", move |c| sends::create_send(c, &new))
            .await
    }

    async fn send_jobs(&self, limit: i64) -> Result<Vec<SendJob>, IndexError> {
        self.read("send_jobs", move |c| sends::send_jobs(c, limit))
            .await
    }

    async fn active_send_jobs(&self) -> Result<Vec<SendJob>, IndexError> {
        self.read("active_send_jobs", sends::active_send_jobs).await
    }

    async fn send_job(&self, id: i64) -> Result<Option<SendJob>, IndexError> {
        self.read("send_job", move |c| sends::send_job(c, id)).await
    }

    async fn send_items(&self, id: i64) -> Result<Vec<SendItem>, IndexError> {
        self.read("send_items", move |c| sends::send_items(c, id))
            .await
    }

    async fn due_send_items(
        &self,
        id: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<SendItem>, IndexError> {
        self.read("due_send_items", move |c| {
            sends::due_send_items(c, id, now, limit)
        })
        .await
    }

    async fn record_send_attempts(
        &self,
        id: i64,
        attempts: Vec<ItemAttempt>,
    ) -> Result<(), IndexError> {
        self.write("record_send_attempts", move |c| {
            sends::record_send_attempts(c, id, &attempts)
        })
        .await
    }

    async fn set_send_state(&self, id: i64, state: String, now: i64) -> Result<(), IndexError> {
        self.write("set_send_state", move |c| {
            sends::set_send_state(c, id, &state, now)
        })
        .await
    }

    async fn retry_send(&self, id: i64, now: i64) -> Result<usize, IndexError> {
        self.write("retry_send", move |c| sends::retry_send(c, id, now))
            .await
    }

    async fn create_share(
        &self,
        token_hash: String,
        created_by: String,
        label: Option<String>,
        expires_at: i64,
        studies: Vec<String>,
    ) -> Result<i64, IndexError> {
        self.write("create_share", move |c| {
            sends::create_share(
                c,
                &token_hash,
                &created_by,
                label.as_deref(),
                now_ms(),
                expires_at,
                &studies,
            )
        })
        .await
    }

    async fn shares(&self) -> Result<Vec<Share>, IndexError> {
        self.read("shares", sends::shares).await
    }

    async fn share_by_token(&self, token_hash: String) -> Result<Option<Share>, IndexError> {
        self.read_point("share_by_token", |c| {
            sends::share_by_token(c, &token_hash, now_ms())
        })
    }

    async fn revoke_share(&self, id: i64) -> Result<bool, IndexError> {
        self.write("revoke_share", move |c| {
            sends::revoke_share(c, id, now_ms())
        })
        .await
    }

    async fn heartbeat(&self, node: NodeRow, forget_before: i64) -> Result<(), IndexError> {
        self.submit("heartbeat", Promise::Committed, move |c| {
            nodes::heartbeat(c, &node, forget_before)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRow>, IndexError> {
        self.read("nodes", nodes::all).await
    }

    async fn create_letter(
        &self,
        letter: NewLetter,
    ) -> Result<Result<LetterRow, LetterRefusal>, IndexError> {
        self.write("create_letter", move |c| {
            letters::create(c, &letter, letter.issued_at)
        })
        .await
    }

    async fn viewer_layouts(&self, user: String) -> Result<Vec<(String, String)>, IndexError> {
        self.read("viewer_layouts", move |c| layouts::of_user(c, &user))
            .await
    }

    async fn put_viewer_layout(
        &self,
        user: String,
        kind: String,
        layout: Option<String>,
    ) -> Result<(), IndexError> {
        self.write("put_viewer_layout", move |c| {
            layouts::put(c, &user, &kind, layout.as_deref(), now_ms())
        })
        .await
    }

    async fn letters(&self, person: Option<String>) -> Result<Vec<LetterRow>, IndexError> {
        self.read("letters", move |c| letters::all(c, person)).await
    }

    async fn revoke_letter(&self, id: i64, by: String) -> Result<Option<LetterRow>, IndexError> {
        self.write("revoke_letter", move |c| {
            letters::revoke(c, id, &by, now_ms())
        })
        .await
    }

    async fn letter_by_code(&self, code_hash: String) -> Result<Option<LetterHolder>, IndexError> {
        self.read_point("letter_by_code", |c| letters::by_code(c, &code_hash))
    }

    async fn letter_used(&self, id: i64, download: bool) -> Result<(), IndexError> {
        self.write("letter_used", move |c| {
            letters::used(c, id, download, now_ms())
        })
        .await
    }

    async fn instance_blobs(&self) -> Result<Vec<(String, BlobId)>, IndexError> {
        self.read("instance_blobs", records::instance_blobs).await
    }

    async fn enqueue_repairs(&self, items: Vec<(BlobId, usize, String)>) -> Result<(), IndexError> {
        if items.is_empty() {
            return Ok(());
        }
        self.write("enqueue_repairs", move |c| {
            for (blob, replica, reason) in &items {
                repairs::enqueue_repair(c, blob, *replica, reason)?;
            }
            Ok(())
        })
        .await
    }

    async fn due_repairs(&self, limit: usize) -> Result<Vec<RepairItem>, IndexError> {
        self.read("due_repairs", move |c| {
            repairs::due_repairs(c, now_ms(), limit)
        })
        .await
    }

    async fn repairs_for(&self, blob: BlobId) -> Result<Vec<RepairItem>, IndexError> {
        self.read("repairs_for", move |c| repairs::repairs_for(c, &blob))
            .await
    }

    async fn repair_done(&self, blob: BlobId, replica: usize) -> Result<(), IndexError> {
        self.write("repair_done", move |c| {
            repairs::repair_done(c, &blob, replica)
        })
        .await
    }

    async fn repair_failed(&self, item: RepairItem, reason: String) -> Result<(), IndexError> {
        self.write("repair_failed", move |c| {
            repairs::repair_failed(c, &item, &reason, now_ms())
        })
        .await
    }

    async fn repair_queue_len(&self) -> Result<i64, IndexError> {
        self.read("repair_queue_len", |c| {
            c.query_row("SELECT count(*) FROM repair_queue", params![], |r| r.get(0))
        })
        .await
    }

    async fn close(&self) -> Result<(), IndexError> {
        self.readers.lock().expect("pool lock").clear();
        self.writer.stop().await;
        Ok(())
    }

    async fn find(
        &self,
        q: query::Query,
    ) -> Result<Vec<dicom_object::InMemDicomObject>, query::QueryError> {
        self.metrics.query_answered();
        if q.is_point() {
            return self.read_point("find", |c| Ok(query::find(c, &q)))?;
        }
        let r = self.read("find", move |c| Ok(query::find(c, &q))).await?;
        r
    }

    async fn audit(&self, event: strata_core::audit::AuditEvent) -> Result<(), IndexError> {
        let key = self.audit_key.clone();
        self.submit("audit", Promise::Durable, move |c| {
            audit::append_audit(c, key.as_deref(), &event)
        })
        .await
    }

    fn audit_read(
        &self,
        event: strata_core::audit::AuditEvent,
    ) -> BoxFuture<'static, Result<(), IndexError>> {
        let key = self.audit_key.clone();
        let job = self.writer.submit(Promise::Committed, move |c| {
            audit::append_audit(c, key.as_deref(), &event)
        });
        let (metrics, started) = (self.metrics.clone(), Instant::now());
        Box::pin(async move {
            let r = job.await;
            metrics.observe("index", "audit_read", started.elapsed());
            r
        })
    }

    async fn audit_last_id(&self) -> Result<i64, IndexError> {
        self.read("audit_last_id", |c| {
            c.query_row("SELECT coalesce(max(id), 0) FROM audit", params![], |r| {
                r.get(0)
            })
        })
        .await
    }

    async fn audit_exported(&self) -> Result<i64, IndexError> {
        self.read("audit_exported", |c| {
            c.query_row(
                "SELECT last_id FROM audit_export WHERE id = 1",
                params![],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn set_audit_exported(&self, last_id: i64) -> Result<(), IndexError> {
        self.write("set_audit_exported", move |c| {
            c.execute(
                "UPDATE audit_export SET last_id = ?1 WHERE id = 1",
                [last_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn restore_audit(
        &self,
        events: Vec<strata_core::audit::StoredEvent>,
    ) -> Result<(), IndexError> {
        self.write("restore_audit", move |c| {
            for e in &events {
                audit::restore_audit(c, e)?;
            }
            if let Some(last) = events.last() {
                c.execute(
                    "UPDATE audit_export SET last_id = CASE WHEN last_id > ?1 THEN last_id ELSE ?1 END
                     WHERE id = 1",
                    [last.id],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn audit_events(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<strata_core::audit::StoredEvent>, IndexError> {
        self.read("audit_events", move |c| audit::audit_events(c, &filter))
            .await
    }

    async fn peers(&self) -> Result<Vec<strata_core::config::DimsePeer>, IndexError> {
        self.read("peers", |c| {
            let mut stmt = c.prepare("SELECT aet, host, port FROM ae_peers ORDER BY aet")?;
            let rows = stmt.query_map(params![], |r| {
                Ok(strata_core::config::DimsePeer {
                    aet: r.get(0)?,
                    host: r.get(1)?,
                    port: r.get(2)?,
                    // peers kept in the index are plain; TLS peers are configured
                    tls: false,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    async fn set_peer(&self, p: strata_core::config::DimsePeer) -> Result<(), IndexError> {
        self.write("set_peer", move |c| {
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

    async fn remove_peer(&self, aet: String) -> Result<bool, IndexError> {
        self.write("remove_peer", move |c| {
            Ok(c.execute("DELETE FROM ae_peers WHERE aet = ?1", [&aet])? > 0)
        })
        .await
    }

    async fn instances_under(
        &self,
        study: String,
        series: Option<String>,
        sop: Option<String>,
        scope: Scope,
    ) -> Result<Vec<InstanceRef>, IndexError> {
        self.read("instances_under", move |c| {
            records::instances_under(
                c,
                &study,
                series.as_deref(),
                sop.as_deref(),
                scope.person_param(),
                scope.share_param(),
            )
        })
        .await
    }

    async fn studies_of_instances(&self, sops: Vec<String>) -> Result<Vec<String>, IndexError> {
        self.read("studies_of_instances", move |c| {
            records::studies_of_instances(c, &sops)
        })
        .await
    }

    async fn study_facts(&self, studies: Vec<String>) -> Result<Vec<StudyFacts>, IndexError> {
        self.read("study_facts", move |c| lifecycle::facts_of(c, &studies))
            .await
    }

    async fn study_facts_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StudyFacts>, IndexError> {
        self.read("study_facts_page", move |c| {
            lifecycle::facts_page(c, after.as_deref(), limit)
        })
        .await
    }

    async fn place_hold(
        &self,
        person: Option<String>,
        study: Option<String>,
        reason: String,
        by: String,
        at: i64,
    ) -> Result<i64, IndexError> {
        self.write("place_hold", move |c| {
            lifecycle::place_hold(c, person.as_deref(), study.as_deref(), &reason, &by, at)
        })
        .await
    }

    async fn release_hold(&self, id: i64, by: String, at: i64) -> Result<bool, IndexError> {
        self.write("release_hold", move |c| {
            lifecycle::release_hold(c, id, &by, at)
        })
        .await
    }

    async fn holds(&self, in_force_only: bool) -> Result<Vec<Hold>, IndexError> {
        self.read("holds", move |c| lifecycle::holds(c, in_force_only))
            .await
    }

    async fn is_held(&self, study: String, patient_fk: i64) -> Result<bool, IndexError> {
        self.read("is_held", move |c| {
            lifecycle::is_held(c, &study, patient_fk)
        })
        .await
    }

    async fn propose_expiry(
        &self,
        items: Vec<ExpiryItem>,
        at: i64,
    ) -> Result<Option<(i64, usize)>, IndexError> {
        self.write("propose_expiry", move |c| {
            lifecycle::propose_batch(c, &items, at)
        })
        .await
    }

    async fn expiry_batches(&self, limit: usize) -> Result<Vec<ExpiryBatch>, IndexError> {
        self.read("expiry_batches", move |c| lifecycle::batches(c, limit))
            .await
    }

    async fn expiry_batch(&self, id: i64) -> Result<Option<ExpiryBatch>, IndexError> {
        self.read("expiry_batch", move |c| lifecycle::batch(c, id))
            .await
    }

    async fn expiry_items(&self, id: i64) -> Result<Vec<ExpiryItem>, IndexError> {
        self.read("expiry_items", move |c| lifecycle::batch_items(c, id))
            .await
    }

    async fn decide_expiry(
        &self,
        id: i64,
        from: &'static str,
        to: &'static str,
        by: String,
        at: i64,
    ) -> Result<bool, IndexError> {
        self.write("decide_expiry", move |c| {
            lifecycle::decide_batch(c, id, from, to, &by, at)
        })
        .await
    }

    async fn expiry_outcome(
        &self,
        id: i64,
        study: String,
        outcome: &'static str,
    ) -> Result<(), IndexError> {
        self.write("expiry_outcome", move |c| {
            lifecycle::item_outcome(c, id, &study, outcome)
        })
        .await
    }

    async fn finish_expiry(&self, id: i64, at: i64) -> Result<(), IndexError> {
        self.write("finish_expiry", move |c| lifecycle::finish_batch(c, id, at))
            .await
    }

    async fn expiry_pending(&self) -> Result<Vec<String>, IndexError> {
        self.read("expiry_pending", lifecycle::studies_pending)
            .await
    }

    async fn reject_instances(
        &self,
        study: String,
        sops: Vec<String>,
        note: String,
        code: String,
        at: i64,
    ) -> Result<Vec<String>, IndexError> {
        self.write("reject_instances", move |c| {
            lifecycle::reject(c, &study, &sops, &note, &code, at)
        })
        .await
    }

    async fn is_rejected(&self, sop: String) -> Result<bool, IndexError> {
        self.read("is_rejected", move |c| lifecycle::is_rejected(c, &sop))
            .await
    }

    async fn rejected_instances(
        &self,
        before: Option<i64>,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<RejectedInstance>, IndexError> {
        self.read("rejected_instances", move |c| {
            lifecycle::rejected(c, before, after, limit)
        })
        .await
    }

    async fn forget_rejected(
        &self,
        sops: Vec<String>,
        unless_held: bool,
    ) -> Result<(Vec<String>, Vec<BlobId>), IndexError> {
        self.write("forget_rejected", move |c| {
            lifecycle::forget_rejected(c, &sops, unless_held)
        })
        .await
    }

    async fn delete_instances(
        &self,
        sops: Vec<String>,
        unless_held: bool,
    ) -> Result<Vec<BlobId>, IndexError> {
        self.write("delete_instances", move |c| {
            records::delete_instances(c, &sops, unless_held)
        })
        .await
    }

    async fn ping(&self) -> bool {
        self.read("ping", |c| {
            c.query_row("SELECT 1", params![], |r| r.get::<i64>(0))
        })
        .await
        .is_ok()
    }

    async fn count_users(&self) -> Result<i64, IndexError> {
        self.read("count_users", |c| {
            c.query_row("SELECT count(*) FROM users", params![], |r| r.get(0))
        })
        .await
    }

    async fn create_user(&self, user: NewUser) -> Result<bool, IndexError> {
        self.write("create_user", move |c| {
            let n = c.execute(
                "INSERT INTO users (name, role, password_hash, created_at, person_fk,
                                   must_change_password, issuer)
                 VALUES (?1, ?2, ?3, ?4,
                         (SELECT id FROM persons WHERE uid = ?5 AND merged_into IS NULL), ?6, ?7)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    user.name,
                    user.role,
                    user.password_hash,
                    now_ms(),
                    user.person,
                    user.must_change_password,
                    user.issuer
                ],
            )?;
            if n == 1 {
                let bound: Option<i64> = c.query_row(
                    "SELECT person_fk FROM users WHERE name = ?1",
                    [&user.name],
                    |r| r.get(0),
                )?;
                if let Some(person) = bound {
                    mpi::confirm_keys(c, person, user.confirmed.as_deref())?;
                }
            }
            Ok(n == 1)
        })
        .await
    }

    async fn set_user_issuer(
        &self,
        name: String,
        issuer: Option<String>,
    ) -> Result<bool, IndexError> {
        self.write("set_user_issuer", move |c| {
            Ok(c.execute(
                "UPDATE users SET issuer = ?2 WHERE name = ?1",
                params![name, issuer],
            )? == 1)
        })
        .await
    }

    async fn person_keys(&self, uid: String) -> Result<Vec<strata_mpi::LocalKey>, IndexError> {
        self.read("person_keys", move |c| mpi::keys_of(c, &uid))
            .await
    }

    async fn bindable(&self, uid: String) -> Result<Result<(), BindRefusal>, IndexError> {
        self.read("bindable", move |c| {
            let row: Option<Option<String>> = c
                .query_row(
                    "SELECT (SELECT m.uid FROM persons m WHERE m.id = ps.merged_into)
                     FROM persons ps WHERE ps.uid = ?1",
                    [uid],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match row {
                None => Err(BindRefusal::NoPerson),
                Some(Some(into)) => Err(BindRefusal::Merged(into)),
                Some(None) => Ok(()),
            })
        })
        .await
    }

    async fn bind_user(
        &self,
        name: String,
        uid: String,
        confirmed: Option<Vec<strata_mpi::LocalKey>>,
    ) -> Result<Result<(), BindRefusal>, IndexError> {
        self.write("bind_user", move |c| {
            let person: Option<(i64, Option<i64>)> = c
                .query_row(
                    "SELECT id, merged_into FROM persons WHERE uid = ?1",
                    [&uid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let id = match person {
                None => return Ok(Err(BindRefusal::NoPerson)),
                Some((_, Some(into))) => {
                    let into: String =
                        c.query_row("SELECT uid FROM persons WHERE id = ?1", [into], |r| {
                            r.get(0)
                        })?;
                    return Ok(Err(BindRefusal::Merged(into)));
                }
                Some((id, None)) => id,
            };
            let n = c.execute(
                "UPDATE users SET person_fk = ?2 WHERE name = ?1",
                params![name, id],
            )?;
            if n == 1 {
                mpi::confirm_keys(c, id, confirmed.as_deref())?;
            }
            Ok(if n == 1 {
                Ok(())
            } else {
                Err(BindRefusal::NoUser)
            })
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRow>, IndexError> {
        self.read("users", |c| {
            let mut stmt = c.prepare(
                "SELECT u.name, u.role, u.created_at, ps.uid, u.disabled, u.must_change_password,
                        u.issuer
                 FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk ORDER BY u.name",
            )?;
            let rows = stmt.query_map(params![], |r| {
                Ok(UserRow {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    person: r.get(3)?,
                    disabled: r.get(4)?,
                    must_change_password: r.get(5)?,
                    issuer: r.get(6)?,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    async fn user_credentials(&self, name: String) -> Result<Option<Credentials>, IndexError> {
        self.read("user_credentials", move |c| {
            c.query_row(
                "SELECT role, password_hash, disabled, must_change_password, issuer
                 FROM users WHERE name = ?1",
                [name],
                |r| {
                    Ok(Credentials {
                        role: r.get(0)?,
                        password_hash: r.get(1)?,
                        disabled: r.get(2)?,
                        must_change_password: r.get(3)?,
                        issuer: r.get(4)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn set_password(
        &self,
        name: String,
        password_hash: String,
        must_change: bool,
        keep_session: Option<String>,
    ) -> Result<bool, IndexError> {
        self.write("set_password", move |c| {
            let n = c.execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3 WHERE name = ?1",
                params![name, password_hash, must_change],
            )?;
            c.execute(
                "DELETE FROM sessions WHERE user_fk = (SELECT id FROM users WHERE name = ?1)
                 AND id_hash IS DISTINCT FROM CAST(?2 AS TEXT)",
                params![name, keep_session],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_disabled(&self, name: String, disabled: bool) -> Result<bool, IndexError> {
        self.write("set_disabled", move |c| {
            let n = c.execute(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                params![name, disabled],
            )?;
            if disabled {
                c.execute(
                    "DELETE FROM sessions WHERE user_fk = (SELECT id FROM users WHERE name = ?1)",
                    [&name],
                )?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn remove_user(&self, name: String) -> Result<bool, IndexError> {
        self.write("remove_user", move |c| {
            let Some(id): Option<i64> = c
                .query_row("SELECT id FROM users WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?
            else {
                return Ok(false);
            };
            c.execute("DELETE FROM sessions WHERE user_fk = ?1", [id])?;
            c.execute("DELETE FROM api_tokens WHERE user_fk = ?1", [id])?;
            c.execute("DELETE FROM viewer_layouts WHERE username = ?1", [&name])?;
            c.execute("DELETE FROM users WHERE id = ?1", [id])?;
            Ok(true)
        })
        .await
    }

    async fn add_token(
        &self,
        user: String,
        token_hash: String,
        label: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<Option<i64>, IndexError> {
        self.write("add_token", move |c| {
            let n = c.execute(
                "INSERT INTO api_tokens (user_fk, token_hash, label, created_at, expires_at)
                 SELECT id, ?2, ?3, ?4, ?5 FROM users WHERE name = ?1",
                params![user, token_hash, label, now_ms(), expires_at],
            )?;
            if n == 1 {
                Ok(Some(c.last_insert_rowid()?))
            } else {
                Ok(None)
            }
        })
        .await
    }

    async fn revoke_token(&self, token_hash: String) -> Result<bool, IndexError> {
        self.write("revoke_token", move |c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![token_hash, now_ms()],
            )? == 1)
        })
        .await
    }

    async fn tokens(&self, user: Option<String>) -> Result<Vec<TokenRow>, IndexError> {
        self.read("tokens", move |c| {
            let mut stmt = c.prepare(
                "SELECT t.id, u.name, t.label, t.created_at, t.expires_at, t.revoked_at
                 FROM api_tokens t JOIN users u ON u.id = t.user_fk
                 WHERE CAST(?1 AS TEXT) IS NULL OR u.name = ?1 ORDER BY t.id",
            )?;
            let rows = stmt.query_map([user], |r| {
                Ok(TokenRow {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    label: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    async fn token_hash(&self, id: i64) -> Result<Option<(String, String)>, IndexError> {
        self.read("token_hash", move |c| {
            c.query_row(
                "SELECT t.token_hash, u.name FROM api_tokens t JOIN users u ON u.id = t.user_fk
                 WHERE t.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .await
    }

    async fn sessions(&self, user: Option<String>) -> Result<Vec<SessionRow>, IndexError> {
        self.read("sessions", move |c| {
            let mut stmt = c.prepare(
                "SELECT substr(s.id_hash, 1, ?3), u.name, s.created_at, s.expires_at
                 FROM sessions s JOIN users u ON u.id = s.user_fk
                 WHERE (CAST(?1 AS TEXT) IS NULL OR u.name = ?1) AND s.expires_at > ?2
                 ORDER BY s.created_at",
            )?;
            let rows = stmt.query_map(params![user, now_ms(), SESSION_NAME_LEN as i64], |r| {
                Ok(SessionRow {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    async fn end_session(
        &self,
        id: String,
        user: Option<String>,
    ) -> Result<Option<String>, IndexError> {
        self.write("end_session", move |c| {
            if id.len() != SESSION_NAME_LEN {
                return Ok(None);
            }
            let found: Option<(String, String)> = c
                .query_row(
                    "SELECT s.id_hash, u.name FROM sessions s JOIN users u ON u.id = s.user_fk
                     WHERE substr(s.id_hash, 1, ?3) = ?1 AND (CAST(?2 AS TEXT) IS NULL OR u.name = ?2)",
                    params![id, user, SESSION_NAME_LEN as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((hash, name)) = found else {
                return Ok(None);
            };
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [hash])?;
            Ok(Some(name))
        })
        .await
    }

    async fn token_principal(
        &self,
        token_hash: String,
    ) -> Result<Option<PrincipalRow>, IndexError> {
        self.read_point("token_principal", |c| {
            // The token as a subquery, not a join: SQLite marks the join's statement to be
            // re-planned whenever its parameter is bound, which would undo the statement cache.
            c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk
                 WHERE u.id = (SELECT t.user_fk FROM api_tokens t
                               WHERE t.token_hash = ?1 AND t.revoked_at IS NULL
                                 AND (t.expires_at IS NULL OR t.expires_at > ?2))
                   AND u.disabled = 0"
            ))?
            .query_row(params![token_hash, now_ms()], principal_row)
            .optional()
        })
    }

    async fn create_session(
        &self,
        id_hash: String,
        user: String,
        expires_at: i64,
    ) -> Result<(), IndexError> {
        self.write("create_session", move |c| {
            c.execute(
                "INSERT INTO sessions (id_hash, user_fk, created_at, expires_at)
                 SELECT ?1, id, ?3, ?4 FROM users WHERE name = ?2",
                params![id_hash, user, now_ms(), expires_at],
            )?;
            // expired sessions go when new ones come
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn session_principal(&self, id_hash: String) -> Result<Option<PrincipalRow>, IndexError> {
        self.read_point("session_principal", |c| {
            // A subquery, as for tokens (token_principal says why).
            c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk
                 WHERE u.id = (SELECT s.user_fk FROM sessions s
                               WHERE s.id_hash = ?1 AND s.expires_at > ?2)
                   AND u.disabled = 0"
            ))?
            .query_row(params![id_hash, now_ms()], principal_row)
            .optional()
        })
    }

    async fn delete_session(&self, id_hash: String) -> Result<(), IndexError> {
        self.write("delete_session", move |c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [&id_hash])?;
            Ok(())
        })
        .await
    }

    async fn login_attempt(
        &self,
        name: String,
        remote: String,
        window_ms: i64,
    ) -> Result<(i64, LoginFailures), IndexError> {
        self.write("login_attempt", move |c| {
            let now = now_ms();
            c.execute(
                "DELETE FROM login_failures WHERE at < ?1",
                [now - window_ms],
            )?;
            let id: i64 = c.query_row(
                "INSERT INTO login_failures (name, remote, at) VALUES (?1, ?2, ?3) RETURNING id",
                params![name, remote, now],
                |r| r.get(0),
            )?;
            Ok((
                id,
                count_login_failures(c, &name, &remote, now - window_ms)?,
            ))
        })
        .await
    }

    async fn login_succeeded(&self, id: i64) -> Result<(), IndexError> {
        self.write("login_succeeded", move |c| {
            c.execute("DELETE FROM login_failures WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }
}

/// Failed logins since `since`: of `name`, from `remote`, in all.
fn count_login_failures(
    c: &Connection,
    name: &str,
    remote: &str,
    since: i64,
) -> Result<LoginFailures, IndexError> {
    c.query_row(
        "SELECT
            (SELECT count(*) FROM login_failures WHERE name = ?1 AND at >= ?3),
            (SELECT count(*) FROM login_failures WHERE remote = ?2 AND at >= ?3),
            (SELECT count(*) FROM login_failures WHERE at >= ?3)",
        params![name, remote, since],
        |r| {
            Ok(LoginFailures {
                name: r.get(0)?,
                remote: r.get(1)?,
                all: r.get(2)?,
            })
        },
    )
}
