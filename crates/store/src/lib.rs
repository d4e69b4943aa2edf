//! The store (layer 1): content-addressed, encrypted, replicated blobs. It is the only crate that
//! touches object_store. Callers hand it plaintext (bytes or a spooled file) and get back a
//! [`BlobId`]; they read plaintext back by id. What lies on the replicas is ciphertext under
//! keyed names.
//!
//! - [`address`]: the keyed hash that names a blob.
//! - [`cloud`]: a cloud replica's URL made into a client: its options, its credentials.
//! - [`crypt`]: sealing (AES-256-GCM in segments, keys derived from the master key).
//! - [`direct`]: page-aligned buffers written straight to local disks (`O_DIRECT`).
//! - [`replicas`]: the copies on every replica, the write quorum, reads with fallback.
//! - [`durability`]: one `syncfs` barrier per filesystem shared by concurrent puts.
//! - [`scrub`]: one blob's copies verified, and repaired when asked.
//! - [`shards`]: the cold tier's erasure-coded, sealed shards, one per cold store.
//!
//! The store never writes the index: it reports the replicas whose copy failed (on write or on
//! read) and the caller queues those repairs durably; [`Store::repair`] carries one out.

pub mod address;
pub mod cloud;
pub mod crypt;
pub mod direct;
pub mod durability;
pub mod replicas;
pub mod scrub;
pub mod shards;

use address::{Addresser, BlobId};
use bytes::Bytes;
use crypt::{MasterKey, Sealer};
use direct::Pages;
pub use replicas::{BadCopy, QuorumError, Replica, ReplicaError, Replicas, WriteReport};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use strata_core::Metrics;

/// Plaintext read per step when sealing a spooled file: 128 segments, 8 MiB.
const SEAL_CHUNK_SEGMENTS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("{0}")]
    Replica(#[from] ReplicaError),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Crypt(#[from] crypt::CryptError),
    #[error("no healthy replica to repair from ({0})")]
    NoGoodCopy(String),
}

pub struct Store {
    key: Arc<MasterKey>,
    replicas: Replicas,
    segment_size: u32,
    /// Where every operation's duration goes (`strata_operation_seconds{engine="store"}`).
    metrics: Arc<Metrics>,
}

/// The address an in-memory plaintext is stored under.
pub fn address_of(address_key: &[u8; 32], plain: &[u8]) -> BlobId {
    Addresser::of(address_key, plain)
}

/// Hashes a file as it streams by, never holding it whole.
pub fn address_of_file(address_key: &[u8; 32], path: &Path) -> Result<BlobId, StoreError> {
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut a = Addresser::new(address_key);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
    }
    Ok(a.finish())
}

impl Store {
    pub fn new(key: Arc<MasterKey>, replicas: Replicas) -> Store {
        Store {
            key,
            replicas,
            segment_size: crypt::DEFAULT_SEGMENT_SIZE,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The store, recording every operation's duration in `metrics`.
    pub fn measured(mut self, metrics: Arc<Metrics>) -> Store {
        self.metrics = metrics;
        self
    }

    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// The key the audit trail's hash chain is keyed with (see [`MasterKey::audit_key`]).
    pub fn audit_key(&self) -> &strata_core::audit::AuditKey {
        self.key.audit_key()
    }

    /// The key of the de-identification project `project` (see [`MasterKey::project_key`]).
    pub fn project_key(&self, project: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.key.project_key(project)
    }

    /// The master key, shared with the cold tier's shards ([`shards::Shards`]).
    pub fn master_key(&self) -> Arc<MasterKey> {
        self.key.clone()
    }

    /// The key instance addresses are computed under (for hashing off the async threads).
    pub fn address_key(&self) -> &[u8; 32] {
        self.key.address_key()
    }

    /// Seals and writes an in-memory plaintext whose address the caller already computed.
    pub async fn put(&self, id: &BlobId, plain: &[u8]) -> Result<WriteReport, StoreError> {
        let _timer = self.metrics.time("store", "put");
        // sealing is CPU work: keep it off the threads that serve sockets
        let sealed = tokio::task::block_in_place(|| self.seal(id, plain));
        Ok(self.replicas.put(&id.object_key(), sealed).await?)
    }

    /// `plain` sealed under `id`, in page-aligned pages: local replicas' direct writes take them
    /// as they are.
    fn seal(&self, id: &BlobId, plain: &[u8]) -> Pages {
        let len = crypt::sealed_len(plain.len() as u64, self.segment_size) as usize;
        Pages::build(len, |out| {
            crypt::seal_into(&self.key, id, plain, self.segment_size, out)
        })
    }

    /// Seals a spooled file segment by segment and streams it to every replica.
    pub async fn put_file(&self, id: &BlobId, path: &Path) -> Result<WriteReport, StoreError> {
        let _timer = self.metrics.time("store", "put_file");
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut sealer = Sealer::new(&self.key, id, len, self.segment_size);
        let mut header_sent = false;
        let mut plain = vec![0u8; self.segment_size as usize];
        let next = || -> std::io::Result<Option<Bytes>> {
            let mut out =
                Vec::with_capacity(SEAL_CHUNK_SEGMENTS * (self.segment_size as usize + 16) + 128);
            if !header_sent {
                out.extend_from_slice(sealer.header().bytes());
                header_sent = true;
            }
            for _ in 0..SEAL_CHUNK_SEGMENTS {
                if sealer.is_done() {
                    break;
                }
                let n = sealer.next_segment_len();
                file.read_exact(&mut plain[..n])?;
                sealer.seal_next(&plain[..n], &mut out);
            }
            Ok((!out.is_empty()).then(|| Bytes::from(out)))
        };
        Ok(self.replicas.put_streamed(&id.object_key(), next).await?)
    }

    /// Streams the verified plaintext of `id` into `sink`.
    pub async fn read_to<S>(&self, id: &BlobId, sink: S) -> Result<Vec<BadCopy>, StoreError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let _timer = self.metrics.time("store", "read");
        Ok(self.replicas.read(&self.key, id, sink).await?)
    }

    /// Reads and verifies bytes `range` of `id`'s plaintext (clipped to its length).
    pub async fn read_range(
        &self,
        id: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<(Vec<u8>, Vec<BadCopy>), StoreError> {
        let _timer = self.metrics.time("store", "read_range");
        Ok(self.replicas.read_range(&self.key, id, range).await?)
    }

    /// Streams `id` from one replica only, with no fallback to the others.
    pub async fn read_from<S>(
        &self,
        id: &BlobId,
        replica: usize,
        sink: S,
    ) -> Result<(), ReplicaError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let _timer = self.metrics.time("store", "read_from");
        self.replicas.read_from(&self.key, id, replica, sink).await
    }

    /// Verifies one replica's copy.
    pub async fn verify(&self, id: &BlobId, replica: usize) -> Result<(), ReplicaError> {
        let _timer = self.metrics.time("store", "verify");
        self.replicas.verify(&self.key, id, replica).await
    }

    /// Rewrites replica `target`'s copy of `id` from the first other replica whose copy verifies.
    pub async fn repair(&self, id: &BlobId, target: usize) -> Result<(), StoreError> {
        let _timer = self.metrics.time("store", "repair");
        let mut reasons = Vec::new();
        for from in (0..self.replicas.len()).filter(|&r| r != target) {
            match self
                .replicas
                .copy_verified(&self.key, id, from, target)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => reasons.push(format!("replica {}: {e}", from + 1)),
            }
        }
        Err(StoreError::NoGoodCopy(reasons.join("; ")))
    }

    /// Writes a small sealed record (a journal entry, a marker) under `key` on every replica.
    /// Its address for sealing purposes is the hash of the key name, binding content to name.
    pub async fn put_record(&self, key: &str, plain: &[u8]) -> Result<WriteReport, StoreError> {
        let _timer = self.metrics.time("store", "put_record");
        let id = address_of(self.key.address_key(), key.as_bytes());
        Ok(self.replicas.put(key, self.seal(&id, plain)).await?)
    }

    /// Reads a record written by [`Store::put_record`] from one replica.
    pub async fn get_record(&self, replica: usize, key: &str) -> Result<Vec<u8>, StoreError> {
        let _timer = self.metrics.time("store", "get_record");
        let sealed = self.replicas.get_object(replica, key).await?;
        let id = address_of(self.key.address_key(), key.as_bytes());
        Ok(crypt::open(&self.key, &id, &sealed)?)
    }

    /// Writes the plaintext marker that identifies each replica as part of this archive and is
    /// probed for readiness. It holds no patient data: the archive's key id and the replica's URL.
    pub async fn write_markers(&self) -> Result<WriteReport, StoreError> {
        let body = serde_json::json!({
            "archive": "strata",
            "key_id": self.key.key_id_hex(),
        });
        Ok(self
            .replicas
            .put(
                replicas::MARKER_KEY,
                Pages::copy_of(body.to_string().as_bytes()),
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(s: &Store, id: &BlobId) -> (Vec<u8>, Vec<BadCopy>) {
        let mut out = Vec::new();
        let bad = s
            .read_to(id, |c| {
                out.extend_from_slice(c);
                Ok(())
            })
            .await
            .unwrap();
        (out, bad)
    }

    /// A store on the replicas at `urls`, writes needing `quorum` of them.
    fn store_on(urls: impl Iterator<Item = String>, quorum: usize) -> Store {
        let list = urls.map(|u| Replica::open(&u).unwrap()).collect();
        Store::new(
            Arc::new(MasterKey::from_secret(&[3; 32])),
            Replicas::new(list, quorum),
        )
    }

    fn store(n: usize, quorum: usize) -> Store {
        store_on((0..n).map(|_| "memory://".to_string()), quorum)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn put_get_and_repair() {
        let s = store(3, 3);
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let id = address_of(s.address_key(), &plain);
        assert!(s.put(&id, &plain).await.unwrap().failed.is_empty());
        let (back, bad) = get(&s, &id).await;
        assert_eq!(back, plain);
        assert!(bad.is_empty());
        for r in 0..3 {
            s.verify(&id, r).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn streamed_file_round_trip() {
        let s = store(2, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let plain: Vec<u8> = (0..20_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(&path, &plain).unwrap();
        let id = address_of_file(s.address_key(), &path).unwrap();
        assert_eq!(id, address_of(s.address_key(), &plain));
        s.put_file(&id, &path).await.unwrap();
        let (back, _) = get(&s, &id).await;
        assert!(back == plain, "streamed blob reads back identical");
        s.verify(&id, 1).await.unwrap();
    }

    /// A store on `n` local folders under `dir`, each written in full before a put returns.
    fn local_store(dir: &std::path::Path, n: usize) -> Store {
        store_on((0..n).map(|i| format!("file://{}/r{i}", dir.display())), n)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn byte_ranges_decrypt_only_what_they_need() {
        let dir = tempfile::tempdir().unwrap();
        // object_store's reads (memory) and the local folder's own
        for s in [store(2, 2), local_store(dir.path(), 2)] {
            byte_ranges(&s).await;
        }
        // Only the segments a range covers are read and opened: with segment 5 damaged on
        // every copy, a range in segment 0 still reads cleanly from the first copy, and a
        // range in segment 5 finds no good copy.
        let s = local_store(dir.path(), 2);
        let plain: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
        let id = address_of(s.address_key(), &plain);
        let segment = u64::from(crypt::DEFAULT_SEGMENT_SIZE);
        let sealed_segment = crypt::DEFAULT_SEGMENT_SIZE as usize + crypt::TAG_LEN;
        for r in 0..2 {
            let file = dir.path().join(format!("r{r}")).join(id.object_key());
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[crypt::HEADER_LEN + 5 * sealed_segment + 10] ^= 1;
            std::fs::write(&file, bytes).unwrap();
        }
        let (got, bad) = s.read_range(&id, 0..segment).await.unwrap();
        assert_eq!(got, &plain[..segment as usize]);
        assert!(bad.is_empty(), "segment 5 was not opened: {bad:?}");
        let (got, bad) = s.read_range(&id, 4 * segment..5 * segment).await.unwrap();
        assert_eq!(got, &plain[4 * segment as usize..5 * segment as usize]);
        assert!(bad.is_empty(), "segment 5 was not opened: {bad:?}");
        assert!(
            s.read_range(&id, 5 * segment..5 * segment + 10)
                .await
                .is_err(),
            "the damaged segment fails on every copy"
        );
    }

    async fn byte_ranges(s: &Store) {
        let plain: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
        let id = address_of(s.address_key(), &plain);
        s.put(&id, &plain).await.unwrap();
        for r in [
            0..1,
            0..65536,
            65535..65537,
            100_000..300_000,
            499_990..500_000,
            499_990..600_000,
        ] {
            let (got, bad) = s.read_range(&id, r.clone()).await.unwrap();
            let end = (r.end as usize).min(plain.len());
            assert_eq!(got, &plain[r.start as usize..end], "{r:?}");
            assert!(bad.is_empty());
        }
        assert!(s
            .read_range(&id, 600_000..700_000)
            .await
            .unwrap()
            .0
            .is_empty());
    }

    /// A cloud copy read window by window is opened once and its opener kept; a copy lost
    /// after that is still found missing, the next replica serves, and once the copy is
    /// repaired the first replica serves again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_kept_opener_does_not_hide_a_lost_copy() {
        let s = store(2, 2);
        let plain: Vec<u8> = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
        let id = address_of(s.address_key(), &plain);
        s.put(&id, &plain).await.unwrap();
        let window = 5_000_000..5_100_000;
        let (got, bad) = s.read_range(&id, window.clone()).await.unwrap();
        assert_eq!(got, &plain[5_000_000..5_100_000]);
        assert!(bad.is_empty());
        s.replicas().lose_copy(0, &id).await;
        let (got, bad) = s.read_range(&id, window.clone()).await.unwrap();
        assert_eq!(got, &plain[5_000_000..5_100_000]);
        assert_eq!(bad.len(), 1);
        assert!(matches!(bad[0].error, ReplicaError::Missing), "{bad:?}");
        s.repair(&id, 0).await.unwrap();
        for range in [window, 0..10, 4_190_000..4_200_000] {
            let (got, bad) = s.read_range(&id, range.clone()).await.unwrap();
            assert_eq!(got, &plain[range.start as usize..range.end as usize]);
            assert!(bad.is_empty(), "the repaired copy serves: {bad:?}");
        }
        let (back, bad) = get(&s, &id).await;
        assert!(back == plain && bad.is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_bad_local_copy_is_named_and_the_next_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = local_store(dir.path(), 4);
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        let id = address_of(s.address_key(), &plain);
        s.put(&id, &plain).await.unwrap();
        let file = |r: usize| dir.path().join(format!("r{r}")).join(id.object_key());
        // replica 1: gone; 2: cut short; 3: one ciphertext byte changed; 4: intact
        std::fs::remove_file(file(0)).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file(1))
            .unwrap();
        f.set_len(200_000).unwrap();
        let mut bytes = std::fs::read(file(2)).unwrap();
        bytes[crypt::HEADER_LEN + 70_000] ^= 1;
        std::fs::write(file(2), bytes).unwrap();
        let (got, bad) = s.read_range(&id, 60_000..200_000).await.unwrap();
        assert_eq!(got, &plain[60_000..200_000]);
        let why: Vec<_> = bad
            .iter()
            .map(|b| (b.replica, b.error.to_string()))
            .collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(matches!(bad[0].error, ReplicaError::Missing), "{why:?}");
        assert!(why[1].1.contains("truncated"), "{why:?}");
        assert!(
            why[2].1.contains("segment 1 failed authentication"),
            "{why:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn staging_files_a_crash_left_are_removed_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let s = local_store(dir.path(), 2);
        let plain = vec![7u8; 300_000];
        let id = address_of(s.address_key(), &plain);
        s.put(&id, &plain).await.unwrap();
        let blob = dir.path().join("r1").join(id.object_key());
        let folder = blob.parent().unwrap().to_path_buf();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let make = |name: &str, old: bool| {
            let f = std::fs::File::create(folder.join(name)).unwrap();
            if old {
                f.set_modified(hour_ago).unwrap();
            }
            folder.join(name)
        };
        let stale = make(&format!("{}#123", id.to_hex()), true);
        let in_progress = make(&format!("{}#456", id.to_hex()), false);
        let not_staging = make("notes#draft", true);
        let (removed, problems) = s
            .replicas()
            .remove_stale_staging(std::time::Duration::from_secs(3600));
        assert_eq!((removed, problems), (vec![stale.clone()], vec![]));
        assert!(!stale.exists() && in_progress.exists() && not_staging.exists());
        // the blob itself is untouched, on both replicas
        assert!(blob.exists());
        let (back, bad) = get(&s, &id).await;
        assert!(back == plain && bad.is_empty(), "{bad:?}");
    }

    /// A provider that takes connections and never answers (a hung server, a dropped route)
    /// holds a write only for the grace the quorum allows; its copy is then reported failed,
    /// to be queued for repair.
    #[cfg(feature = "cloud")]
    #[tokio::test(flavor = "multi_thread")]
    async fn a_hung_provider_costs_a_write_its_grace_not_its_timeouts() {
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "s3://b?endpoint=http://{}&region=r&allow_http=true",
            hung.local_addr().unwrap()
        );
        let keys = [("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let list = vec![
            Replica::open("memory://").unwrap(),
            Replica::open_with_env(&url, keys.into_iter()).unwrap(),
            Replica::open("memory://").unwrap(),
        ];
        let s = Store::new(
            Arc::new(MasterKey::from_secret(&[3; 32])),
            Replicas::new(list, 2),
        );
        let plain = vec![9u8; 100_000];
        let id = address_of(s.address_key(), &plain);
        let started = std::time::Instant::now();
        let report = s.put(&id, &plain).await.unwrap();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
        assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
        assert_eq!(report.failed[0].replica, 1);
        assert!(
            matches!(report.failed[0].error, ReplicaError::Straggler(_)),
            "{:?}",
            report.failed
        );
        let (back, _) = get(&s, &id).await;
        assert!(back == plain);
        drop(hung);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_are_bound_to_their_key() {
        let s = store(1, 1);
        s.put_record("journal/1", b"{\"x\":1}").await.unwrap();
        assert_eq!(s.get_record(0, "journal/1").await.unwrap(), b"{\"x\":1}");
        assert!(s.get_record(0, "journal/2").await.is_err());
    }
}
