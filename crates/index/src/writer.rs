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
//! for. A connection the server closed is opened again before the next group.

use super::IndexError;
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

/// A job runs against the connection inside a savepoint and returns what to do once the
/// transaction's fate is known (true: committed).
type Job = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), String>) + Send> + Send>;

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
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), String>| {
                let _ = done_tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(IndexError::Commit(e)),
                });
            })
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
    let result = f(conn);
    match &result {
        Ok(_) => conn.execute("RELEASE job", crate::params![])?,
        Err(_) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
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
    let finish: Vec<_> = group.into_iter().map(|job| job(&db)).collect();
    let committed = execute_cached(conn, "COMMIT").map_err(|e| e.to_string());
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for f in finish {
        f(committed.clone());
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

fn commit_postgres(client: &RefCell<PgClient>, group: Vec<Job>) {
    let db = Connection::postgres(client);
    if let Err(e) = db.execute_batch("BEGIN") {
        tracing::error!(
            "index: cannot begin a transaction, {} writes refused: {e}",
            group.len()
        );
        return;
    }
    let finish: Vec<_> = group.into_iter().map(|job| job(&db)).collect();
    let committed = db.execute_batch("COMMIT").map_err(|e| e.to_string());
    if committed.is_err() {
        let _ = db.execute_batch("ROLLBACK");
    }
    for f in finish {
        f(committed.clone());
    }
}
