//! The replicas: N independent object stores holding the same sealed blobs. A write goes to all of
//! them in parallel and succeeds when `write_quorum` have it durably; a read goes to the first
//! replica that has a verifiable copy and reports every replica whose copy was missing or corrupt,
//! so the caller can queue a repair. Replicas only ever see ciphertext under keyed names.

use super::address::BlobId;
use super::cloud;
use super::crypt::{self, BlobHeader, CryptError, MasterKey, Opener, HEADER_LEN, TAG_LEN};
use super::direct::{self, Pages, DIRECT_MIN};
use super::durability::Syncer;
use bytes::Bytes;
use futures::future::join_all;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Segments fetched per ranged read when streaming a blob: 64 × 64 KiB = 4 MiB, enough to keep
/// a remote store's per-request latency amortised, small enough to bound memory per reader.
const READ_WINDOW_SEGMENTS: u64 = 64;
/// Part size of multipart uploads for large blobs (S3's minimum part is 5 MiB).
const MULTIPART_CHUNK: usize = 8 * 1024 * 1024;
/// Bytes read with a copy's header when the copy is to be read whole: its first read window of
/// default-sized segments, so a copy of up to 4 MiB is one request.
const FIRST_READ: u64 = HEADER_LEN as u64
    + READ_WINDOW_SEGMENTS * (crypt::DEFAULT_SEGMENT_SIZE as u64 + TAG_LEN as u64);
/// The least time the replicas still writing get once a quorum has a blob (see
/// [`Replicas::put`]): a few of a cloud client's brief retries, and far longer than a local disk
/// or a provider that answers takes.
const STRAGGLER_GRACE: Duration = Duration::from_secs(2);
/// How long a health probe may take before a replica counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The object that marks a replica as belonging to a Strata archive; also the readiness probe.
pub const MARKER_KEY: &str = "strata-replica.json";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("not found")]
    Missing,
    #[error("corrupt: {0}")]
    Corrupt(#[from] CryptError),
    #[error("{0}")]
    Backend(#[from] object_store::Error),
    #[error("fsync: {0}")]
    Sync(#[from] std::io::Error),
    #[error("writing: {0}")]
    Write(std::io::Error),
    #[error("reading: {0}")]
    Read(std::io::Error),
    #[error("still writing {0:?} after the write quorum had the blob")]
    Straggler(Duration),
}

/// What one replica's copy of a blob turned out to be.
#[derive(Debug)]
pub struct BadCopy {
    pub replica: usize,
    pub error: ReplicaError,
}

/// A local folder replica: the syncer that makes its writes durable, and the folder that large
/// blobs are written to directly while its filesystem takes direct I/O.
struct Local {
    syncer: Arc<Syncer>,
    dir: PathBuf,
    direct: std::sync::atomic::AtomicBool,
}

/// One object store and, for a local folder, what its writes need beyond object_store.
pub struct Replica {
    pub url: String,
    store: Arc<dyn ObjectStore>,
    local: Option<Local>,
    openers: Openers,
    /// What every object written carries: the storage class a cloud store's URL names.
    attributes: object_store::Attributes,
}

impl Replica {
    /// Opens a replica from its URL: `file:///abs/path`, `memory://`, and with the `cloud`
    /// feature `s3://`, `gs://`, `az://` (see [`cloud`] for their options and credentials).
    pub fn open(url: &str) -> Result<Replica, ReplicaError> {
        Replica::open_with_env(url, std::env::vars())
    }

    /// [`Replica::open`] with `env` standing for the process's environment (what a cloud
    /// replica's credentials are read from).
    pub fn open_with_env(
        url: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Replica, ReplicaError> {
        let bad = |reason: String| ReplicaError::Url {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir: PathBuf = parsed
                    .to_file_path()
                    .map_err(|_| bad("not an absolute file path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("creating folder: {e}")))?;
                let fs = Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|e| bad(e.to_string()))?
                        .with_automatic_cleanup(true),
                );
                let syncer = super::durability::for_folder(&dir)
                    .map_err(|e| bad(format!("starting its syncer: {e}")))?;
                Ok(Replica {
                    url: url.to_string(),
                    store: fs,
                    local: Some(Local {
                        syncer,
                        dir,
                        direct: true.into(),
                    }),
                    openers: Openers::default(),
                    attributes: object_store::Attributes::new(),
                })
            }
            "memory" => Ok(Replica {
                url: url.to_string(),
                store: Arc::new(InMemory::new()),
                local: None,
                openers: Openers::default(),
                attributes: object_store::Attributes::new(),
            }),
            _ => {
                let (store, storage_class) = cloud::open(&parsed, env).map_err(bad)?;
                let mut attributes = object_store::Attributes::new();
                if let Some(class) = storage_class {
                    attributes.insert(object_store::Attribute::StorageClass, class.into());
                }
                Ok(Replica {
                    url: url.to_string(),
                    store,
                    local: None,
                    openers: Openers::default(),
                    attributes,
                })
            }
        }
    }

    /// The syncer that makes this replica's writes durable (see [`super::durability`]); none for
    /// a cloud store, whose PUT is durable when it returns.
    fn syncer(&self) -> Option<&Arc<Syncer>> {
        self.local.as_ref().map(|l| &l.syncer)
    }

    /// Writes one object; on a local folder it is durable only after a barrier of its syncer.
    async fn write(&self, key: &ObjectPath, sealed: Pages) -> Result<(), ReplicaError> {
        use std::sync::atomic::Ordering::Relaxed;
        let direct_to = self
            .local
            .as_ref()
            .filter(|l| sealed.len() >= DIRECT_MIN && l.direct.load(Relaxed));
        if let Some(local) = direct_to {
            let (dir, name, data) = (local.dir.clone(), key.to_string(), sealed.clone());
            let written = tokio::task::spawn_blocking(move || direct::write(&dir, &name, &data))
                .await
                .expect("direct write panicked")
                .map_err(ReplicaError::Write)?;
            match written {
                direct::Written::Done => return Ok(()),
                // the filesystem will not take it next time either
                direct::Written::Unsupported => local.direct.store(false, Relaxed),
            }
        }
        let options = object_store::PutOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        self.store
            .put_opts(key, PutPayload::from_bytes(sealed.bytes()), options)
            .await?;
        Ok(())
    }

    /// Starts a multipart upload of `path`, in the store's storage class.
    async fn put_multipart(
        &self,
        path: &ObjectPath,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let options = object_store::PutMultipartOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        self.store.put_multipart_opts(path, options).await
    }

    async fn get_range(
        &self,
        key: &ObjectPath,
        r: std::ops::Range<u64>,
    ) -> Result<Bytes, ReplicaError> {
        self.store
            .get_range(key, r)
            .await
            .map_err(not_found_is_missing)
    }

    async fn size(&self, key: &ObjectPath) -> Result<u64, ReplicaError> {
        Ok(self
            .store
            .head(key)
            .await
            .map_err(not_found_is_missing)?
            .size)
    }

    /// Opens this replica's copy of `blob`: checks its size against its header and unwraps its
    /// key. One request, a ranged GET of the copy's first `upto` bytes (the header at least),
    /// which also tells the whole object's size (from S3's `Content-Range`): a HEAD first would
    /// cost a cloud store a round trip per read, and a small GET of the header alone, then
    /// another of the segments, costs Garage a delayed-ACK stall (~40 ms) on the small one.
    /// Returns the opener and the bytes read, from the copy's start (`upto` or the whole copy if
    /// it is shorter).
    async fn open_copy(
        &self,
        key: &MasterKey,
        blob: &BlobId,
        upto: u64,
    ) -> Result<(Opener, Bytes), ReplicaError> {
        let path = ObjectPath::from(blob.object_key());
        let first_bytes = GetOptions {
            range: Some(GetRange::Bounded(0..upto.max(HEADER_LEN as u64))),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(&path, first_bytes).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Err(ReplicaError::Missing),
            // an empty object has no range to give: say what it is, not how the GET failed
            Err(e) => match self.size(&path).await? {
                size if size < HEADER_LEN as u64 => return Err(CryptError::NotABlob.into()),
                _ => return Err(e.into()),
            },
        };
        let size = got.meta.size;
        if size < HEADER_LEN as u64 {
            return Err(CryptError::NotABlob.into());
        }
        let head = got.bytes().await?;
        let header = head.get(..HEADER_LEN).ok_or(CryptError::NotABlob)?;
        Ok((checked_opener(key, blob, header, size)?, head))
    }

    /// This replica's copy of `blob`, opened, and the ciphertext of the segments that `range`
    /// of its plaintext needs (empty when the range is). A cloud copy's opener is kept for the
    /// next windows of the same blob (see [`Openers`]); a range in the first window is read with
    /// the header, in one request.
    async fn window(
        &self,
        key: &Arc<MasterKey>,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<(Arc<Opener>, Bytes), ReplicaError> {
        if let Some(local) = &self.local {
            let (key, blob, file) = (key.clone(), *blob, local.dir.join(blob.object_key()));
            return tokio::task::spawn_blocking(move || local_window(&key, &blob, &file, range))
                .await
                .expect("local read panicked")
                .map(|(opener, window)| (Arc::new(opener), window));
        }
        let (opener, prefix) = match self.openers.get(blob) {
            Some(opener) => (opener, Bytes::new()),
            None => {
                let upto = first_window_end(&range).unwrap_or(HEADER_LEN as u64);
                let (opener, prefix) = self.open_copy(key, blob, upto).await?;
                let opener = Arc::new(opener);
                self.openers.put(*blob, opener.clone());
                (opener, prefix)
            }
        };
        let window = match window_bytes(opener.header(), range) {
            Some(w) if w.end <= prefix.len() as u64 => {
                prefix.slice(w.start as usize..w.end as usize)
            }
            Some(w) => match self
                .get_range(&ObjectPath::from(blob.object_key()), w)
                .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.openers.forget(blob);
                    return Err(e);
                }
            },
            None => Bytes::new(),
        };
        Ok((opener, window))
    }
}

/// The end of the bytes that hold plaintext `range` when the copy has the default segment size
/// and `range` lies in its first read window ([`FIRST_READ`]): what to read with the header.
fn first_window_end(range: &std::ops::Range<u64>) -> Option<u64> {
    let segment = u64::from(crypt::DEFAULT_SEGMENT_SIZE);
    let sealed = segment + TAG_LEN as u64;
    let end = HEADER_LEN as u64 + range.end.div_ceil(segment) * sealed;
    (end <= FIRST_READ).then_some(end)
}

/// The openers of the cloud copies read last, so that reading a large blob window by window
/// opens (and reads the header of) each copy once: a few dozen, each a header and a key.
#[derive(Default)]
struct Openers(std::sync::Mutex<std::collections::VecDeque<(BlobId, Arc<Opener>)>>);

impl Openers {
    const KEPT: usize = 32;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(BlobId, Arc<Opener>)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, blob: &BlobId) -> Option<Arc<Opener>> {
        self.lock()
            .iter()
            .find(|(b, _)| b == blob)
            .map(|(_, o)| o.clone())
    }

    fn put(&self, blob: BlobId, opener: Arc<Opener>) {
        let mut kept = self.lock();
        kept.retain(|(b, _)| *b != blob);
        if kept.len() == Self::KEPT {
            kept.pop_front();
        }
        kept.push_back((blob, opener));
    }

    /// Drops `blob`'s opener: its copy failed a read, and the next read opens it anew.
    fn forget(&self, blob: &BlobId) {
        self.lock().retain(|(b, _)| b != blob);
    }
}

/// An opener for a copy of `size` bytes whose first bytes are `head`, once its size agrees with
/// its header.
fn checked_opener(
    key: &MasterKey,
    blob: &BlobId,
    head: &[u8],
    size: u64,
) -> Result<Opener, ReplicaError> {
    let opener = Opener::new(key, blob, head)?;
    let expected = opener.header().ciphertext_len();
    if size != expected {
        return Err(CryptError::SegmentLength {
            index: opener.header().segment_count() - 1,
            found: size as usize,
            expected: expected as usize,
        }
        .into());
    }
    Ok(opener)
}

/// The bytes of a copy that hold the segments `range` of its plaintext needs, if any.
fn window_bytes(header: &BlobHeader, range: std::ops::Range<u64>) -> Option<std::ops::Range<u64>> {
    let end = range.end.min(header.plaintext_len());
    if range.start >= end {
        return None;
    }
    let segs = header.segments_for(range.start..end);
    Some(header.segment_range(segs.start).start..header.segment_range(segs.end - 1).end)
}

/// [`Replica::window`] for a local folder's file, in one blocking call: object_store would take
/// three trips through the blocking pool for it (size, header, segments).
fn local_window(
    key: &MasterKey,
    blob: &BlobId,
    file: &std::path::Path,
    range: std::ops::Range<u64>,
) -> Result<(Opener, Bytes), ReplicaError> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::FileExt;
    let mut f = match std::fs::File::open(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReplicaError::Missing),
        f => f.map_err(ReplicaError::Read)?,
    };
    let size = f.metadata().map_err(ReplicaError::Read)?.len();
    if size < HEADER_LEN as u64 {
        return Err(CryptError::NotABlob.into());
    }
    let mut head = [0u8; HEADER_LEN];
    f.read_exact_at(&mut head, 0).map_err(ReplicaError::Read)?;
    let opener = checked_opener(key, blob, &head, size)?;
    let window = match window_bytes(opener.header(), range) {
        Some(w) => {
            // read_to_end fills the buffer's spare room as it is: no zeroing first
            let len = (w.end - w.start) as usize;
            let mut bytes = Vec::with_capacity(len);
            f.seek(std::io::SeekFrom::Start(w.start))
                .map_err(ReplicaError::Read)?;
            f.take(len as u64)
                .read_to_end(&mut bytes)
                .map_err(ReplicaError::Read)?;
            if bytes.len() != len {
                return Err(ReplicaError::Read(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    Ok((opener, window))
}

fn sync_error(e: String) -> ReplicaError {
    ReplicaError::Sync(std::io::Error::other(e))
}

fn not_found_is_missing(e: object_store::Error) -> ReplicaError {
    match e {
        object_store::Error::NotFound { .. } => ReplicaError::Missing,
        e => ReplicaError::Backend(e),
    }
}

/// The set of replicas and the write quorum over them.
pub struct Replicas {
    list: Vec<Replica>,
    write_quorum: usize,
}

/// The outcome of a write: which replicas failed (to be queued for repair) — the write as a whole
/// succeeded, or it would have been an error.
#[derive(Debug, Default)]
pub struct WriteReport {
    pub failed: Vec<BadCopy>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("only {ok} of {needed} replicas needed for a durable write took it ({})", describe(.failed))]
    Write {
        ok: usize,
        needed: usize,
        failed: Vec<BadCopy>,
    },
    #[error("no replica holds a verifiable copy ({})", describe(.failed))]
    Read { failed: Vec<BadCopy> },
    #[error("writing the result: {0}")]
    Sink(std::io::Error),
}

fn describe(failed: &[BadCopy]) -> String {
    failed
        .iter()
        .map(|b| format!("replica {}: {}", b.replica + 1, b.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Replicas {
    pub fn new(list: Vec<Replica>, write_quorum: usize) -> Replicas {
        Replicas { list, write_quorum }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn write_quorum(&self) -> usize {
        self.write_quorum
    }

    fn check_quorum(
        &self,
        failed: Vec<BadCopy>,
        targets: usize,
    ) -> Result<WriteReport, QuorumError> {
        let ok = targets - failed.len();
        let needed = self.write_quorum.min(targets);
        if ok >= needed {
            Ok(WriteReport { failed })
        } else {
            Err(QuorumError::Write { ok, needed, failed })
        }
    }

    /// Writes an in-memory sealed blob (or any object) to every replica in parallel. Once a
    /// quorum has written it, the others get as long again as the quorum took (at least
    /// [`STRAGGLER_GRACE`]); one still writing then counts as failed, and its copy is queued for
    /// repair, so a provider that hangs costs each write seconds, not its client's timeouts.
    pub async fn put(&self, key: &str, sealed: Pages) -> Result<WriteReport, QuorumError> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let path = ObjectPath::from(key);
        let started = tokio::time::Instant::now();
        let mut writes: FuturesUnordered<_> = self
            .list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (path, sealed) = (&path, sealed.clone());
                async move { (i, r.write(path, sealed).await) }
            })
            .collect();
        let quorum = self.write_quorum.min(self.list.len());
        let (mut written, mut failed) = (Vec::new(), Vec::new());
        let mut grace = None;
        loop {
            let next = match grace {
                None => writes.next().await,
                Some((until, _)) => match tokio::time::timeout_at(until, writes.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some((replica, result)) = next else { break };
            match result {
                Ok(()) => written.push(replica),
                Err(error) => failed.push(BadCopy { replica, error }),
            }
            if grace.is_none() && written.len() >= quorum {
                let allowed = started.elapsed().max(STRAGGLER_GRACE);
                grace = Some((tokio::time::Instant::now() + allowed, allowed));
            }
        }
        drop(writes);
        if let Some((_, allowed)) = grace {
            let answered: Vec<usize> = written
                .iter()
                .copied()
                .chain(failed.iter().map(|b| b.replica))
                .collect();
            failed.extend(
                (0..self.list.len())
                    .filter(|i| !answered.contains(i))
                    .map(|replica| BadCopy {
                        replica,
                        error: ReplicaError::Straggler(allowed),
                    }),
            );
        }
        failed.sort_by_key(|b| b.replica);
        failed.extend(self.make_durable(&written).await);
        self.check_quorum(failed, self.list.len())
    }

    /// Makes what was just written to `replicas` durable, with one barrier for each syncer they
    /// use: replicas on one filesystem share a syncer, and copies that finish writing at
    /// different moments must not each wait for a `syncfs` of their own. Returns the replicas
    /// whose barrier failed.
    async fn make_durable(&self, replicas: &[usize]) -> Vec<BadCopy> {
        let mut syncers: Vec<(&Arc<Syncer>, Vec<usize>)> = Vec::new();
        for &i in replicas {
            let Some(s) = self.list[i].syncer() else {
                continue;
            };
            match syncers.iter_mut().find(|(t, _)| Arc::ptr_eq(s, t)) {
                Some((_, members)) => members.push(i),
                None => syncers.push((s, vec![i])),
            }
        }
        let results = join_all(syncers.iter().map(|(s, _)| s.barrier())).await;
        let mut failed = Vec::new();
        for ((_, members), r) in syncers.iter().zip(results) {
            if let Err(e) = r {
                failed.extend(members.iter().map(|&replica| BadCopy {
                    replica,
                    error: sync_error(e.clone()),
                }));
            }
        }
        failed
    }

    /// Writes a large sealed blob produced chunk by chunk by `next_chunk` (None at the end) to
    /// every replica at once through multipart uploads, so it is never whole in memory.
    pub async fn put_streamed<F>(
        &self,
        key: &str,
        mut next_chunk: F,
    ) -> Result<WriteReport, QuorumError>
    where
        F: FnMut() -> std::io::Result<Option<Bytes>>,
    {
        let path = ObjectPath::from(key);
        let mut writers: Vec<Option<WriteMultipart>> = Vec::new();
        let mut failed = Vec::new();
        for (i, r) in self.list.iter().enumerate() {
            match r.put_multipart(&path).await {
                Ok(up) => writers.push(Some(WriteMultipart::new_with_chunk_size(
                    up,
                    MULTIPART_CHUNK,
                ))),
                Err(e) => {
                    writers.push(None);
                    failed.push(BadCopy {
                        replica: i,
                        error: e.into(),
                    });
                }
            }
        }
        loop {
            let chunk = match tokio::task::block_in_place(&mut next_chunk) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    for w in writers.into_iter().flatten() {
                        let _ = w.abort().await;
                    }
                    return Err(QuorumError::Sink(e));
                }
            };
            for (i, slot) in writers.iter_mut().enumerate() {
                let Some(w) = slot else { continue };
                if let Err(e) = w.wait_for_capacity(2).await {
                    failed.push(BadCopy {
                        replica: i,
                        error: e.into(),
                    });
                    *slot = None;
                    continue;
                }
                w.put(chunk.clone());
            }
        }
        let mut written = Vec::new();
        for (i, slot) in writers.into_iter().enumerate() {
            let Some(w) = slot else { continue };
            match w.finish().await {
                Ok(_) => written.push(i),
                Err(e) => failed.push(BadCopy {
                    replica: i,
                    error: e.into(),
                }),
            }
        }
        failed.extend(self.make_durable(&written).await);
        self.check_quorum(failed, self.list.len())
    }

    /// Reads and verifies `blob`, handing each verified plaintext segment to `sink` in order.
    /// Replicas are tried in order; when one fails mid-way the next one continues from the same
    /// segment (each copy is opened with its own header, so copies sealed separately still mix).
    /// Returns the copies found missing or corrupt, for the caller to queue repairs.
    pub async fn read<S>(
        &self,
        key: &MasterKey,
        blob: &BlobId,
        mut sink: S,
    ) -> Result<Vec<BadCopy>, QuorumError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let path = ObjectPath::from(blob.object_key());
        let mut bad = Vec::new();
        let mut next_segment = 0u64;
        let mut plain = Vec::new();
        for (i, replica) in self.list.iter().enumerate() {
            // a copy read from its start is read with its header
            let upto = if next_segment == 0 { FIRST_READ } else { 0 };
            let (opener, prefix) = match replica.open_copy(key, blob, upto).await {
                Ok(o) => o,
                Err(error) => {
                    bad.push(BadCopy { replica: i, error });
                    continue;
                }
            };
            match read_segments(
                replica,
                &path,
                &opener,
                &prefix,
                &mut next_segment,
                &mut plain,
                &mut sink,
            )
            .await
            {
                Ok(()) => return Ok(bad),
                Err(ReadStop::Copy(error)) => bad.push(BadCopy { replica: i, error }),
                Err(ReadStop::Sink(e)) => return Err(QuorumError::Sink(e)),
            }
        }
        Err(QuorumError::Read { failed: bad })
    }

    /// Reads and verifies plaintext bytes `range` of `blob`, opening only the segments that hold
    /// them, from the first replica whose copy serves them. Returns the bytes and the copies
    /// found bad on the way.
    pub async fn read_range(
        &self,
        key: &Arc<MasterKey>,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<(Vec<u8>, Vec<BadCopy>), QuorumError> {
        let mut bad = Vec::new();
        for (i, replica) in self.list.iter().enumerate() {
            let attempt = async {
                let (opener, window) = replica.window(key, blob, range.clone()).await?;
                let header = opener.header();
                let end = range.end.min(header.plaintext_len());
                if range.start >= end {
                    return Ok(Vec::new());
                }
                let segs = header.segments_for(range.start..end);
                let first_byte = header.segment_range(segs.start).start;
                let mut plain = Vec::with_capacity(
                    (end - range.start) as usize + header.segment_size() as usize,
                );
                for s in segs.clone() {
                    let r = header.segment_range(s);
                    let slice = window
                        .get((r.start - first_byte) as usize..(r.end - first_byte) as usize)
                        .ok_or(ReplicaError::Corrupt(CryptError::BadSegment(s)))?;
                    opener.open_segment(s, slice, &mut plain)?;
                }
                let skip = (range.start - segs.start * header.segment_size() as u64) as usize;
                plain.truncate(skip + (end - range.start) as usize);
                plain.drain(..skip);
                Ok::<_, ReplicaError>(plain)
            };
            match attempt.await {
                Ok(bytes) => return Ok((bytes, bad)),
                Err(error) => bad.push(BadCopy { replica: i, error }),
            }
        }
        Err(QuorumError::Read { failed: bad })
    }

    /// Reads `blob` from one replica only (no fallback): what `reindex --from-replica` needs.
    pub async fn read_from<S>(
        &self,
        key: &MasterKey,
        blob: &BlobId,
        replica: usize,
        mut sink: S,
    ) -> Result<(), ReplicaError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let r = &self.list[replica];
        let path = ObjectPath::from(blob.object_key());
        let (opener, prefix) = r.open_copy(key, blob, FIRST_READ).await?;
        let (mut next, mut plain) = (0, Vec::new());
        match read_segments(r, &path, &opener, &prefix, &mut next, &mut plain, &mut sink).await {
            Ok(()) => Ok(()),
            Err(ReadStop::Copy(e)) => Err(e),
            Err(ReadStop::Sink(e)) => Err(ReplicaError::Sync(e)),
        }
    }

    /// Checks one replica's copy of `blob` end to end without keeping the plaintext.
    pub async fn verify(
        &self,
        key: &MasterKey,
        blob: &BlobId,
        replica: usize,
    ) -> Result<(), ReplicaError> {
        self.read_from(key, blob, replica, |_| Ok(())).await
    }

    /// Copies `blob` from replica `from` to replica `to`, verifying every segment on the way, so a
    /// repair can never spread a corrupt copy.
    pub async fn copy_verified(
        &self,
        key: &MasterKey,
        blob: &BlobId,
        from: usize,
        to: usize,
    ) -> Result<(), ReplicaError> {
        let src = &self.list[from];
        let dst = &self.list[to];
        let path = ObjectPath::from(blob.object_key());
        // a copy of up to a part is read whole with its header, in one request
        let (opener, prefix) = src.open_copy(key, blob, MULTIPART_CHUNK as u64).await?;
        let header = opener.header().clone();
        let total = header.ciphertext_len();
        if total <= MULTIPART_CHUNK as u64 {
            let all = prefix;
            let mut scratch = Vec::new();
            for i in 0..header.segment_count() {
                let r = header.segment_range(i);
                scratch.clear();
                opener.open_segment(i, &all[r.start as usize..r.end as usize], &mut scratch)?;
            }
            dst.write(&path, Pages::copy_of(&all)).await?;
            return self.made_durable(to).await;
        }
        let mut w =
            WriteMultipart::new_with_chunk_size(dst.put_multipart(&path).await?, MULTIPART_CHUNK);
        w.put(Bytes::copy_from_slice(header.bytes()));
        let mut seg = 0;
        let mut scratch = Vec::new();
        while seg < header.segment_count() {
            let (window, end) = segments_window(src, &path, &header, &prefix, seg).await?;
            let start_byte = header.segment_range(seg).start;
            for i in seg..end {
                let r = header.segment_range(i);
                scratch.clear();
                let slice = &window[(r.start - start_byte) as usize..(r.end - start_byte) as usize];
                if let Err(e) = opener.open_segment(i, slice, &mut scratch) {
                    let _ = w.abort().await;
                    return Err(e.into());
                }
            }
            w.wait_for_capacity(2).await?;
            w.put(window);
            seg = end;
        }
        w.finish().await?;
        self.made_durable(to).await
    }

    /// [`Replicas::make_durable`] for one replica.
    async fn made_durable(&self, replica: usize) -> Result<(), ReplicaError> {
        match self.make_durable(&[replica]).await.pop() {
            Some(bad) => Err(bad.error),
            None => Ok(()),
        }
    }

    /// Deletes an object from every replica; returns the replicas that failed (gone is fine).
    pub async fn delete(&self, key: &str) -> Vec<BadCopy> {
        let path = ObjectPath::from(key);
        let results = join_all(self.list.iter().map(|r| r.store.delete(&path))).await;
        results
            .into_iter()
            .enumerate()
            .filter_map(|(replica, r)| match r {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => Some(BadCopy {
                    replica,
                    error: e.into(),
                }),
            })
            .collect()
    }

    /// Lists the blobs one replica holds.
    pub async fn list_blobs(&self, replica: usize) -> Result<Vec<(BlobId, i64)>, ReplicaError> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from("blobs");
        let metas: Vec<_> = self.list[replica]
            .store
            .list(Some(&prefix))
            .try_collect()
            .await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                BlobId::from_object_key(m.location.as_ref())
                    .map(|id| (id, m.last_modified.timestamp_millis()))
            })
            .collect())
    }

    /// Removes what writes cut short by a crash left in local replicas' blob folders: staging
    /// files (`<key>#<digits>`, which listings skip) last modified more than `older_than` ago.
    /// A write in progress is never that old: it changes its file until it renames it. Returns
    /// the files removed, and what could not be read or removed. Cloud stores leave no such files.
    pub fn remove_stale_staging(&self, older_than: Duration) -> (Vec<PathBuf>, Vec<String>) {
        let (mut removed, mut problems) = (Vec::new(), Vec::new());
        let cutoff = std::time::SystemTime::now() - older_than;
        for local in self.list.iter().filter_map(|r| r.local.as_ref()) {
            let mut folders = vec![(local.dir.join("blobs"), 0)];
            while let Some((folder, depth)) = folders.pop() {
                let entries = match std::fs::read_dir(&folder) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        problems.push(format!("{}: {e}", folder.display()));
                        continue;
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_dir() {
                        // blobs/<ab>/<cd>/<key>: staging files sit two folders down
                        if depth < 2 {
                            folders.push((path, depth + 1));
                        }
                        continue;
                    }
                    let staging = entry.file_name().to_str().is_some_and(|name| {
                        name.rsplit_once('#').is_some_and(|(_, n)| {
                            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                        })
                    });
                    if staging && meta.modified().is_ok_and(|m| m < cutoff) {
                        match std::fs::remove_file(&path) {
                            Ok(()) => removed.push(path),
                            Err(e) => problems.push(format!("{}: {e}", path.display())),
                        }
                    }
                }
            }
        }
        (removed, problems)
    }

    /// Lists keys under `prefix` on one replica (used for the decision journal).
    pub async fn list_keys(
        &self,
        replica: usize,
        prefix: &str,
    ) -> Result<Vec<String>, ReplicaError> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(prefix);
        let metas: Vec<_> = self.list[replica]
            .store
            .list(Some(&prefix))
            .try_collect()
            .await?;
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Reads a small whole object from one replica.
    pub async fn get_object(&self, replica: usize, key: &str) -> Result<Bytes, ReplicaError> {
        let r = &self.list[replica];
        Ok(r.store
            .get(&ObjectPath::from(key))
            .await
            .map_err(not_found_is_missing)?
            .bytes()
            .await?)
    }

    /// Deletes replica `replica`'s copy of `blob` behind the store's back (tests: a provider
    /// that lost a copy).
    #[cfg(test)]
    pub(crate) async fn lose_copy(&self, replica: usize, blob: &BlobId) {
        let path = ObjectPath::from(blob.object_key());
        self.list[replica].store.delete(&path).await.unwrap();
    }

    /// How many replicas hold a copy of `blob` of at least a header's size (a metadata check,
    /// not a verification): what storage commitment promises.
    pub async fn copies_present(&self, blob: &BlobId) -> usize {
        let path = ObjectPath::from(blob.object_key());
        let heads = self
            .list
            .iter()
            .map(|r| tokio::time::timeout(PROBE_TIMEOUT, r.size(&path)));
        join_all(heads)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Ok(size)) if *size >= HEADER_LEN as u64))
            .count()
    }

    /// How many replicas answer a probe within [`PROBE_TIMEOUT`]: the readiness check.
    pub async fn reachable(&self) -> usize {
        self.probe_each().await.into_iter().filter(|ok| *ok).count()
    }

    /// Whether each replica, in order, answers a probe (its marker) within [`PROBE_TIMEOUT`].
    pub async fn probe_each(&self) -> Vec<bool> {
        let path = ObjectPath::from(MARKER_KEY);
        let probes = self
            .list
            .iter()
            .map(|r| tokio::time::timeout(PROBE_TIMEOUT, r.store.head(&path)));
        join_all(probes)
            .await
            .into_iter()
            .map(|r| matches!(r, Ok(Ok(_))))
            .collect()
    }

    /// Each replica's URL, in order, as an operator may see it: without the user, password
    /// and query of the URL, where credentials could be.
    pub fn shown_urls(&self) -> Vec<String> {
        self.list.iter().map(|r| shown_url(&r.url)).collect()
    }
}

/// `url` without its user, password, query and fragment.
fn shown_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Why streaming a copy stopped.
enum ReadStop {
    Copy(ReplicaError),
    Sink(std::io::Error),
}

async fn read_segments<S>(
    replica: &Replica,
    path: &ObjectPath,
    opener: &Opener,
    prefix: &Bytes,
    next_segment: &mut u64,
    plain: &mut Vec<u8>,
    sink: &mut S,
) -> Result<(), ReadStop>
where
    S: FnMut(&[u8]) -> std::io::Result<()>,
{
    let header = opener.header();
    let count = header.segment_count();
    while *next_segment < count {
        let first = *next_segment;
        let (window, end) = segments_window(replica, path, header, prefix, first)
            .await
            .map_err(ReadStop::Copy)?;
        let start_byte = header.segment_range(first).start;
        plain.clear();
        for i in first..end {
            let r = header.segment_range(i);
            let slice = window
                .get((r.start - start_byte) as usize..(r.end - start_byte) as usize)
                .ok_or(ReadStop::Copy(CryptError::BadSegment(i).into()))?;
            let before = plain.len();
            if let Err(e) = opener.open_segment(i, slice, plain) {
                // hand over what verified so far, then let the next replica continue from `i`
                sink(&plain[..before]).map_err(ReadStop::Sink)?;
                *next_segment = i;
                return Err(ReadStop::Copy(e.into()));
            }
        }
        sink(plain).map_err(ReadStop::Sink)?;
        *next_segment = end;
    }
    Ok(())
}

/// The ciphertext of segments `first..end` of a copy (at most [`READ_WINDOW_SEGMENTS`]) and
/// `end`: from `prefix` (the copy's first bytes, read with its header) when it holds `first`
/// whole, else one ranged read.
async fn segments_window(
    replica: &Replica,
    path: &ObjectPath,
    header: &BlobHeader,
    prefix: &Bytes,
    first: u64,
) -> Result<(Bytes, u64), ReplicaError> {
    let mut end = (first + READ_WINDOW_SEGMENTS).min(header.segment_count());
    let start_byte = header.segment_range(first).start;
    let held = prefix.len() as u64;
    if header.segment_range(first).end <= held {
        while header.segment_range(end - 1).end > held {
            end -= 1;
        }
        let end_byte = header.segment_range(end - 1).end;
        return Ok((prefix.slice(start_byte as usize..end_byte as usize), end));
    }
    let window = replica
        .get_range(path, start_byte..header.segment_range(end - 1).end)
        .await?;
    Ok((window, end))
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_shown_url_keeps_no_credentials() {
        assert_eq!(
            shown_url("s3://key:secret@bucket/strata?endpoint=http://garage:3900&env=A_#x"),
            "s3://bucket/strata"
        );
        assert_eq!(shown_url("file:///mnt/a"), "file:///mnt/a");
        assert_eq!(shown_url("not a url"), "(unparsable URL)");
    }
}
