//! The single writer thread and its group commit.

use super::IndexError;
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs committed in one transaction; bounds how long the first job of a group waits.
const MAX_GROUP: usize = 512;

/// A job runs against the connection inside a savepoint and returns what to do once the
/// transaction's fate is known (true: committed).
type Job = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), String>) + Send> + Send>;

enum Message {
    Run(Job),
    /// Close the connection (checkpointing the WAL into the database file) and stop.
    Stop(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Message>,
}

impl Writer {
    pub fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawning the index writer");
        Writer { jobs: tx }
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        self.submit(f).await
    }

    /// Queues `f` for the next group transaction now, not when the answer is first awaited, so
    /// the caller can work while it commits. The future resolves once the transaction has
    /// committed (or failed); dropping it does not withdraw the job.
    pub fn submit<T, F>(
        &self,
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
        let sent = self.jobs.send(Message::Run(job));
        async move {
            sent.map_err(|_| IndexError::WriterGone)?;
            done_rx.await.map_err(|_| IndexError::WriterGone)?
        }
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
    execute_cached(conn, "SAVEPOINT job")?;
    let result = f(conn);
    match &result {
        Ok(_) => execute_cached(conn, "RELEASE job")?,
        Err(_) => conn.execute_batch("ROLLBACK TO job; RELEASE job")?,
    }
    result
}

/// Runs one statement without rows through the connection's statement cache.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn run(conn: Connection, rx: mpsc::Receiver<Message>) {
    let mut stop = None;
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        match first {
            Message::Run(job) => group.push(job),
            Message::Stop(done) => stop = Some(done),
        }
        while stop.is_none() && group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Message::Run(job)) => group.push(job),
                Ok(Message::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if group.is_empty() {
            break;
        }
        // busy_timeout already waited for any other process; a failure here drops the group,
        // and each caller sees the writer's error rather than a silent success.
        if let Err(e) = execute_cached(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(
                "index: cannot begin a transaction, {} writes refused: {e}",
                group.len()
            );
            continue;
        }
        let finish: Vec<_> = group.into_iter().map(|job| job(&conn)).collect();
        let committed = execute_cached(&conn, "COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for f in finish {
            f(committed.clone());
        }
        if stop.is_some() {
            break;
        }
    }
    drop(conn);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}
