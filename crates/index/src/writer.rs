//! The single writer thread and its group commit.
//!
//! A job asks for one of two promises. [`Promise::Durable`]: its transaction is on disk
//! (`synchronous = FULL`, the WAL fsynced) before the job's caller hears of it; this is what an
//! acknowledged store needs. [`Promise::Committed`]: its transaction is in the WAL, so it
//! survives the archive process crashing, and a second thread starts an fsync of the WAL within
//! half a millisecond after the caller is told, while the writer goes on; this is what a read's
//! audit event needs before its answer goes out. A group holding any durable job is committed
//! durably, which also makes every earlier committed group durable.
//!
//! On PostgreSQL every group commits durably (`synchronous_commit` on): the server's own WAL
//! flush is the fsync, so both promises are kept at COMMIT and a sync has nothing left to wait
//! for. A connection the server closed is opened again before the next group. Other archive
//! processes may write the same database at once: a job that lost a race to one of them (a
//! deadlock broken, a serialization failure, a row it meant to insert inserted meanwhile) is run
//! again in a new transaction after its group commits, as PostgreSQL's documentation advises;
//! by then the other's writes are visible to it. Audit events are chained at the end of each
//! group ([`crate::audit::append_queued`]).

use super::IndexError;
use crate::audit::AuditQueue;
use crate::db::Connection;
use crate::pg::PgClient;
use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most jobs committed in one transaction; bounds how long the first job of a group waits.
const MAX_GROUP: usize = 512;

/// Times a job is run when it keeps losing races to other writers of a PostgreSQL index;
/// the last attempt's error is its caller's.
const ATTEMPTS: usize = 8;

/// A job: run against the connection inside a savepoint (again, if a PostgreSQL transaction
/// must be retried), then told how its transaction ended.
trait Work: Send {
    /// Runs the job; true when it failed in a way a new transaction may not
    /// ([`IndexError::is_transient`]).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: the job's result once its transaction committed, else the commit's
    /// error.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

type Job = Box<dyn Work>;

struct Task<T, F> {
    f: F,
    result: Option<Result<T, IndexError>>,
    done: oneshot::Sender<Result<T, IndexError>>,
}

impl<T, F> Work for Task<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, IndexError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = in_savepoint(conn, &mut self.f);
        let transient = matches!(&result, Err(e) if e.is_transient());
        self.result = Some(result);
        transient
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let _ = self.done.send(match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(IndexError::Commit("the job did not run".into())),
            (Err(e), _) => Err(IndexError::Commit(e)),
        });
    }
}

/// When a job's caller hears that it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Once the transaction is fsynced.
    Durable,
    /// Once the transaction is in the WAL; its fsync starts within [`SYNC_GATHER`].
    Committed,
}

enum Message {
    Run(Job, Promise),
    /// Answer once everything committed before is durable.
    Sync(oneshot::Sender<Result<(), String>>),
    /// Close the connection (checkpointing the WAL into the database file) and stop.
    Stop(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the writer on `conn`, the connection to the index at `path`.
    pub fn start(conn: rusqlite::Connection, path: PathBuf) -> Writer {
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || run(conn, path, rx))
            .expect("spawning the index writer");
        Writer { jobs: tx }
    }

    /// Starts the writer on `client`, connected to the PostgreSQL index at `url` (`schema`).
    pub fn start_postgres(client: PgClient, url: String, schema: String) -> Writer {
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || run_postgres(client, url, schema, rx))
            .expect("spawning the index writer");
        Writer { jobs: tx }
    }

    /// Queues `f` for the next group transaction now, not when the answer is first awaited, so
    /// the caller can work while it commits. The future resolves once the transaction has
    /// committed as `promise` says (or failed); dropping it does not withdraw the job.
    pub fn submit<T, F>(
        &self,
        promise: Promise,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, IndexError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(Task {
            f,
            result: None,
            done: done_tx,
        });
        let sent = self.jobs.send(Message::Run(job, promise));
        async move {
            sent.map_err(|_| IndexError::WriterGone)?;
            done_rx.await.map_err(|_| IndexError::WriterGone)?
        }
    }

    /// Returns once everything committed before the call is durable.
    pub async fn sync(&self) -> Result<(), IndexError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Message::Sync(tx))
            .map_err(|_| IndexError::WriterGone)?;
        rx.await
            .map_err(|_| IndexError::WriterGone)?
            .map_err(IndexError::Commit)
    }

    /// Stops the writer once the jobs sent before have committed; returns when its connection
    /// is closed.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Message::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, IndexError>,
) -> Result<T, IndexError> {
    // Cached statements: a job as small as one audit event costs little more than its fsync.
    conn.execute("SAVEPOINT job", crate::params![])?;
    let queued = conn.audit_queue().map(|q| (q, q.len()));
    let result = f(conn);
    match &result {
        Ok(_) => conn.execute("RELEASE job", crate::params![])?,
        Err(_) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            if let Some((queue, mark)) = queued {
                queue.truncate(mark);
            }
            0
        }
    };
    result
}

/// Runs one statement without rows through the connection's statement cache.
fn execute_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// How long the WAL thread gathers requests before one fsync covers them all: a request's
/// commit is durable at most this long plus one fsync after its caller heard "committed".
/// One fsync per read would cost the disk's flush and a core's worth of kernel time under a
/// stream of small searches.
const SYNC_GATHER: Duration = Duration::from_micros(500);

/// Fsyncs the index's write-ahead log on its own thread, after groups the writer committed
/// without, so the writer goes on committing meanwhile. A request is sent only after the
/// commits it covers, and each fsync starts after the requests it answers were received.
/// The file handle stays open for the thread's life: SQLite takes no locks on this file, and
/// keeping it avoids any close beside SQLite's own.
struct Syncer {
    requests: mpsc::Sender<Option<oneshot::Sender<Result<(), String>>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    fn start(db: PathBuf) -> Syncer {
        let mut path = db.into_os_string();
        path.push("-wal");
        let path = PathBuf::from(path);
        let (tx, rx) = mpsc::channel::<Option<oneshot::Sender<Result<(), String>>>>();
        let thread = std::thread::Builder::new()
            .name("index-wal-sync".into())
            .spawn(move || {
                let mut file: Option<File> = None;
                while let Ok(first) = rx.recv() {
                    let mut waiting: Vec<_> = first.into_iter().collect();
                    let until = Instant::now() + SYNC_GATHER;
                    while let Some(left) = until.checked_duration_since(Instant::now()) {
                        match rx.recv_timeout(left) {
                            Ok(done) => waiting.extend(done),
                            Err(_) => break,
                        }
                    }
                    let why = |e: std::io::Error| format!("fsync of {}: {e}", path.display());
                    let synced = match &file {
                        Some(f) => f.sync_data().map_err(why),
                        None => File::open(&path)
                            .map_err(why)
                            .and_then(|f| f.sync_data().map_err(why).map(|()| f))
                            .map(|f| file = Some(f)),
                    };
                    if let Err(e) = &synced {
                        // Callers were told "committed"; the next durable commit fsyncs again.
                        tracing::error!("index: {e}");
                    }
                    for done in waiting {
                        let _ = done.send(synced.clone());
                    }
                }
            })
            .expect("spawning the index WAL syncer");
        Syncer {
            requests: tx,
            thread,
        }
    }

    /// Fsyncs soon; `done` hears when.
    fn request(&self, done: Option<oneshot::Sender<Result<(), String>>>) {
        // The thread lives as long as this handle.
        let _ = self.requests.send(done);
    }

    /// Fsyncs once more and waits for the thread to end.
    fn finish(self) {
        let (tx, rx) = oneshot::channel();
        self.request(Some(tx));
        drop(self.requests);
        let _ = rx.blocking_recv();
        let _ = self.thread.join();
    }
}

/// Sets `synchronous` for the next commit: FULL fsyncs the WAL at COMMIT, NORMAL does not.
fn set_synchronous(conn: &rusqlite::Connection, full: bool) -> rusqlite::Result<()> {
    execute_cached(
        conn,
        if full {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        },
    )
}

/// What the writer took from its queue for one round.
#[derive(Default)]
struct Round {
    group: Vec<Job>,
    /// Some job in the group asked to be durable.
    durable: bool,
    syncs: Vec<oneshot::Sender<Result<(), String>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Round {
    /// The next round: the first message waited for, then whatever is queued behind it (up to
    /// [`MAX_GROUP`] jobs, or a stop). None once every sender is gone.
    fn next(rx: &mpsc::Receiver<Message>) -> Option<Round> {
        let mut round = Round::default();
        round.take(rx.recv().ok()?);
        while round.stop.is_none() && round.group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => round.take(m),
                Err(_) => break,
            }
        }
        Some(round)
    }

    fn take(&mut self, m: Message) {
        match m {
            Message::Run(job, promise) => {
                self.durable |= promise == Promise::Durable;
                self.group.push(job);
            }
            Message::Sync(done) => self.syncs.push(done),
            Message::Stop(done) => self.stop = Some(done),
        }
    }
}

fn run(conn: rusqlite::Connection, db: PathBuf, rx: mpsc::Receiver<Message>) {
    let syncer = Syncer::start(db);
    let mut full = true;
    let mut stop = None;
    while let Some(round) = Round::next(&rx) {
        if !round.group.is_empty() {
            commit(&conn, &syncer, &mut full, round.durable, round.group);
        }
        for done in round.syncs {
            syncer.request(Some(done));
        }
        if round.stop.is_some() {
            stop = round.stop;
            break;
        }
    }
    syncer.finish();
    drop(conn);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Runs `group` in one transaction and tells each job's caller how it ended: after the fsync
/// when `durable`, else after the commit, with the fsync requested from the syncer.
fn commit(
    conn: &rusqlite::Connection,
    syncer: &Syncer,
    full: &mut bool,
    durable: bool,
    group: Vec<Job>,
) {
    if *full != durable {
        if let Err(e) = set_synchronous(conn, durable) {
            tracing::error!(
                "index: cannot set synchronous: {e}, {} writes refused",
                group.len()
            );
            return;
        }
        *full = durable;
    }
    // busy_timeout already waited for any other process; a failure here drops the group,
    // and each caller sees the writer's error rather than a silent success.
    if let Err(e) = execute_cached(conn, "BEGIN IMMEDIATE") {
        tracing::error!(
            "index: cannot begin a transaction, {} writes refused: {e}",
            group.len()
        );
        return;
    }
    let db = Connection::sqlite(conn);
    let mut group = group;
    for job in &mut group {
        job.run(&db);
    }
    let committed = execute_cached(conn, "COMMIT").map_err(|e| e.to_string());
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in group {
        job.finish(committed.clone());
    }
    if committed.is_ok() && !durable {
        syncer.request(None);
    }
}

/// [`run`] for PostgreSQL: each round one transaction, committed durably.
fn run_postgres(client: PgClient, url: String, schema: String, rx: mpsc::Receiver<Message>) {
    let client = RefCell::new(client);
    let mut stop = None;
    while let Some(round) = Round::next(&rx) {
        if !round.group.is_empty() {
            if client.borrow().is_closed() {
                match PgClient::connect(&url, &schema) {
                    Ok(c) => *client.borrow_mut() = c,
                    Err(e) => tracing::error!("index: reconnecting the writer: {e}"),
                }
            }
            commit_postgres(&client, round.group);
        }
        // every commit was durable when it returned
        for done in round.syncs {
            let _ = done.send(Ok(()));
        }
        if round.stop.is_some() {
            stop = round.stop;
            break;
        }
    }
    drop(client);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Runs `group` in one transaction, its audit events chained at the end, and answers each
/// job; the jobs that lost a race to another writer run again in the next transaction, after
/// this one committed and released its locks (a whole group again if COMMIT itself lost one).
fn commit_postgres(client: &RefCell<PgClient>, group: Vec<Job>) {
    let queue = AuditQueue::default();
    let db = Connection::postgres_writer(client, &queue);
    let mut group = group;
    for attempt in 1..=ATTEMPTS {
        let last = attempt == ATTEMPTS;
        if let Err(e) = db.execute_batch("BEGIN") {
            tracing::error!(
                "index: cannot begin a transaction, {} writes refused: {e}",
                group.len()
            );
            return;
        }
        let (mut done, mut again) = (Vec::new(), Vec::new());
        for mut job in group {
            if job.run(&db) && !last {
                again.push(job);
            } else {
                done.push(job);
            }
        }
        let committed = crate::audit::append_queued(&db).and_then(|()| db.execute_batch("COMMIT"));
        match committed {
            Err(e) if e.is_transient() && !last => {
                let _ = db.execute_batch("ROLLBACK");
                queue.clear();
                done.append(&mut again);
                group = done;
            }
            committed => {
                let committed = committed.map_err(|e| e.to_string());
                if committed.is_err() {
                    let _ = db.execute_batch("ROLLBACK");
                    queue.clear();
                }
                for job in done {
                    job.finish(committed.clone());
                }
                if again.is_empty() {
                    return;
                }
                group = again;
            }
        }
        // the other writer is committing: a moment for it, longer at each attempt
        let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=5u64) * attempt as u64;
        std::thread::sleep(Duration::from_millis(pause));
    }
}
