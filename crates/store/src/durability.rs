//! Group durability for local replicas. object_store's LocalFileSystem writes a file and renames
//! it into place but never syncs; a write only counts once the file's data and every directory
//! entry leading to it are on disk. Fsyncing each file and each of its folders costs five
//! journal round trips per copy; instead each local replica has a syncer thread that makes
//! everything written so far durable with one `syncfs(2)` on the replica's filesystem, shared by
//! every write that finished while the previous one ran — the same group commit the index's
//! writer does. A writer waits for the first `syncfs` that starts after its write returned.
//!
//! `syncfs` flushes the whole filesystem the replica lives on, including other programs' dirty
//! data: on a filesystem shared with heavy unrelated writes, a sync can take longer. Replicas on
//! one filesystem (the default three folders) share one syncer: one `syncfs` covers them all.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Hands out durability barriers for one local replica.
pub struct Syncer {
    requests: mpsc::Sender<Waiter>,
}

/// The syncer of each filesystem (by device id) in this process.
static SYNCERS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u64, Arc<Syncer>>>> =
    std::sync::OnceLock::new();

/// The syncer for the filesystem holding `root`, shared with other replicas on it.
pub fn for_folder(root: &Path) -> std::io::Result<Arc<Syncer>> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(root)?.dev();
    let mut map = SYNCERS
        .get_or_init(Default::default)
        .lock()
        .expect("syncer registry lock");
    if let Some(s) = map.get(&dev) {
        return Ok(s.clone());
    }
    let s = Arc::new(Syncer::start(root)?);
    map.insert(dev, s.clone());
    Ok(s)
}

impl Syncer {
    /// Starts the syncer thread for the filesystem holding `root`.
    pub fn start(root: &Path) -> std::io::Result<Syncer> {
        let dir = std::fs::File::open(root)?;
        let (tx, rx) = mpsc::channel::<Waiter>();
        let name = format!("syncfs {}", root.display());
        let root: PathBuf = root.to_path_buf();
        std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiters = vec![first];
                waiters.extend(rx.try_iter());
                // SAFETY: `dir` is an open descriptor owned by this thread for its whole life.
                let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
                let result = if rc == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "syncfs {}: {}",
                        root.display(),
                        std::io::Error::last_os_error()
                    ))
                };
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        })?;
        Ok(Syncer { requests: tx })
    }

    /// Returns once everything written to this replica before the call is on disk.
    pub async fn barrier(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| "syncer thread stopped".to_string())?;
        rx.await.map_err(|_| "syncer thread stopped".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_barriers_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = std::sync::Arc::new(Syncer::start(dir.path()).unwrap());
        let jobs = (0..50).map(|i| {
            let s = syncer.clone();
            let p = dir.path().join(format!("{i}"));
            tokio::spawn(async move {
                std::fs::write(&p, b"x").unwrap();
                s.barrier().await
            })
        });
        for j in futures::future::join_all(jobs).await {
            j.unwrap().unwrap();
        }
    }
}
