//! Erasure-coded shards: the cold tier's form of a blob. A blob's plaintext is cut into stripes
//! of `k` pieces, and each stripe coded (Reed-Solomon, `reed-solomon-simd`) into `m` parity
//! pieces more; shard `i` holds piece `i` of every stripe and goes to store `i`. Any `k` shards
//! rebuild the blob, so losing `m` stores loses nothing, at `(k + m) / k` times the blob's size
//! instead of a replica's whole copy per store.
//!
//! Each shard is sealed like a blob ([`crate::crypt`]: AES-256-GCM in authenticated segments),
//! so no store sees a usable piece of plaintext and a corrupt shard is known as such. It is
//! named by a keyed hash of the blob's address and its own number, under `blobs/` like any
//! blob: a store's listing tells neither which blob a shard belongs to nor which shards go
//! together. The sealed shard starts with a small header (the blob, `k`, `m`, its number, the
//! blob's length), which is what a reindex from the shard stores alone reads to regroup them.

use super::address::{Addresser, BlobId};
use super::crypt::{self, MasterKey};
use super::direct::Pages;
use super::replicas::{Replica, ReplicaError, Replicas};
use futures::future::join_all;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::sync::Arc;

pub const SHARD_MAGIC: &[u8; 8] = b"STRATA\0S";
const SHARD_VERSION: u8 = 1;
/// magic 8, version 1, k 1, m 1, index 1, reserved 4, blob 32, blob length 8, stripe 4,
/// reserved 4.
pub const SHARD_HEADER_LEN: usize = 64;
/// Bytes of each shard per stripe: the coder works on 1 MiB pieces, a size its SIMD paths run
/// at full speed on and that bounds its working set.
pub const STRIPE_PIECE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("store {store}: {error}")]
    Store { store: usize, error: ReplicaError },
    #[error("store {store}: the shard is not one of this blob's ({0})", .why)]
    Foreign { store: usize, why: String },
    #[error("only {found} of the {needed} shards needed are readable ({})", .reasons.join("; "))]
    TooFew {
        found: usize,
        needed: usize,
        reasons: Vec<String>,
    },
    #[error("erasure coding: {0}")]
    Code(String),
    #[error("the rebuilt blob does not hash to its address: shards of another content")]
    Address,
    #[error("{0}")]
    Setup(String),
}

/// What a shard says of itself, inside its seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub blob: BlobId,
    pub k: u8,
    pub m: u8,
    pub index: u8,
    pub blob_len: u64,
    pub stripe_piece: u32,
}

impl ShardHeader {
    fn bytes(&self) -> [u8; SHARD_HEADER_LEN] {
        let mut h = [0u8; SHARD_HEADER_LEN];
        h[..8].copy_from_slice(SHARD_MAGIC);
        h[8] = SHARD_VERSION;
        h[9] = self.k;
        h[10] = self.m;
        h[11] = self.index;
        h[16..48].copy_from_slice(self.blob.as_bytes());
        h[48..56].copy_from_slice(&self.blob_len.to_le_bytes());
        h[56..60].copy_from_slice(&self.stripe_piece.to_le_bytes());
        h
    }

    pub fn parse(b: &[u8]) -> Option<ShardHeader> {
        if b.len() < SHARD_HEADER_LEN || &b[..8] != SHARD_MAGIC || b[8] != SHARD_VERSION {
            return None;
        }
        let stripe_piece = u32::from_le_bytes(b[56..60].try_into().ok()?);
        if b[9] == 0 || stripe_piece == 0 || stripe_piece % 2 == 1 {
            return None;
        }
        Some(ShardHeader {
            blob: BlobId::from_bytes(b[16..48].try_into().ok()?),
            k: b[9],
            m: b[10],
            index: b[11],
            blob_len: u64::from_le_bytes(b[48..56].try_into().ok()?),
            stripe_piece,
        })
    }
}

/// How a blob of `len` bytes is cut: for each stripe, its offset in the blob, its length and
/// the size of each of its pieces (even, as the coder needs, the stripe padded with zeros).
pub fn stripes(len: u64, k: usize, piece: usize) -> Vec<(u64, usize, usize)> {
    let whole = (k * piece) as u64;
    let count = len.div_ceil(whole).max(1);
    (0..count)
        .map(|j| {
            let start = j * whole;
            let n = (len - start).min(whole) as usize;
            let p = n.div_ceil(k).max(2).next_multiple_of(2);
            (start, n, p)
        })
        .collect()
}

/// The bodies of the `k + m` shards of `plain` (without headers): piece `i` of every stripe.
pub fn encode(plain: &[u8], k: usize, m: usize, piece: usize) -> Result<Vec<Vec<u8>>, ShardError> {
    let code = |e: reed_solomon_simd::Error| ShardError::Code(e.to_string());
    let plan = stripes(plain.len() as u64, k, piece);
    let body: usize = plan.iter().map(|s| s.2).sum();
    let mut shards: Vec<Vec<u8>> = (0..k + m).map(|_| Vec::with_capacity(body)).collect();
    let mut encoder = ReedSolomonEncoder::new(k, m, plan[0].2).map_err(code)?;
    let mut padded = Vec::new();
    for &(start, n, p) in &plan {
        encoder.reset(k, m, p).map_err(code)?;
        let chunk = &plain[start as usize..start as usize + n];
        for (i, shard) in shards.iter_mut().enumerate().take(k) {
            let from = (i * p).min(n);
            let to = ((i + 1) * p).min(n);
            let piece: &[u8] = if to - from == p {
                &chunk[from..to]
            } else {
                padded.clear();
                padded.extend_from_slice(&chunk[from..to]);
                padded.resize(p, 0);
                &padded
            };
            shard.extend_from_slice(piece);
            encoder.add_original_shard(piece).map_err(code)?;
        }
        let result = encoder.encode().map_err(code)?;
        for (r, parity) in result.recovery_iter().enumerate() {
            shards[k + r].extend_from_slice(parity);
        }
    }
    Ok(shards)
}

/// The blob of `len` bytes rebuilt from the shard bodies present (at least `k` of the `k + m`).
pub fn decode(
    shards: &[Option<Vec<u8>>],
    k: usize,
    m: usize,
    len: u64,
    piece: usize,
) -> Result<Vec<u8>, ShardError> {
    let code = |e: reed_solomon_simd::Error| ShardError::Code(e.to_string());
    let plan = stripes(len, k, piece);
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(ShardError::TooFew {
            found: present,
            needed: k,
            reasons: vec![],
        });
    }
    let body: usize = plan.iter().map(|s| s.2).sum();
    if let Some(i) = (0..k + m).find(|&i| shards[i].as_ref().is_some_and(|b| b.len() != body)) {
        return Err(ShardError::Code(format!(
            "shard {} has {} bytes, expected {body}",
            i + 1,
            shards[i].as_ref().map_or(0, Vec::len)
        )));
    }
    let all_data = shards[..k].iter().all(Option::is_some);
    let mut out = Vec::with_capacity(len as usize);
    let mut decoder = ReedSolomonDecoder::new(k, m, plan[0].2).map_err(code)?;
    let mut offset = 0usize;
    for &(_, n, p) in &plan {
        let piece_of = |i: usize| shards[i].as_ref().map(|b| &b[offset..offset + p]);
        if all_data {
            for i in 0..k {
                out.extend_from_slice(piece_of(i).expect("present"));
            }
        } else {
            decoder.reset(k, m, p).map_err(code)?;
            for i in 0..k + m {
                match (piece_of(i), i < k) {
                    (Some(b), true) => decoder.add_original_shard(i, b).map_err(code)?,
                    (Some(b), false) => decoder.add_recovery_shard(i - k, b).map_err(code)?,
                    (None, _) => {}
                }
            }
            let result = decoder.decode().map_err(code)?;
            for i in 0..k {
                match piece_of(i) {
                    Some(b) => out.extend_from_slice(b),
                    None => out.extend_from_slice(
                        result
                            .restored_original(i)
                            .ok_or_else(|| ShardError::Code(format!("piece {i} not restored")))?,
                    ),
                }
            }
        }
        // the stripe's padding goes
        out.truncate(out.len() - (k * p - n));
        offset += p;
    }
    Ok(out)
}

/// One shard's health as a scrub finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    Good,
    Missing,
    Corrupt(String),
}

/// The cold stores: one per shard, each written on its own.
pub struct Shards {
    key: Arc<MasterKey>,
    stores: Vec<Replicas>,
    k: usize,
    m: usize,
}

impl Shards {
    /// The `k + m` stores at `urls`, shard `i` on store `i`.
    pub fn open(
        key: Arc<MasterKey>,
        urls: &[String],
        k: usize,
        m: usize,
    ) -> Result<Shards, ShardError> {
        if urls.len() != k + m || k == 0 || k + m > 255 {
            return Err(ShardError::Setup(format!(
                "{} cold stores for {k} data and {m} parity shards: one store per shard",
                urls.len()
            )));
        }
        let stores = urls
            .iter()
            .map(|u| Replica::open(u).map(|r| Replicas::new(vec![r], 1)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ShardError::Setup(e.to_string()))?;
        Ok(Shards { key, stores, k, m })
    }

    pub fn data_shards(&self) -> usize {
        self.k
    }

    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// The stores' URLs as an operator may see them (no credentials).
    pub fn shown_urls(&self) -> Vec<String> {
        self.stores.iter().flat_map(|s| s.shown_urls()).collect()
    }

    /// The name shard `index` of `blob` is stored under: a keyed hash, so it links to nothing.
    pub fn shard_id(&self, blob: &BlobId, index: usize) -> BlobId {
        let mut a = Addresser::new(self.key.address_key());
        a.update(b"strata shard v1\0");
        a.update(blob.as_bytes());
        a.update(&[index as u8]);
        a.finish()
    }

    /// Codes `plain` (the blob `blob`) into shards and writes each to its store, made durable
    /// there (fsync) before this returns; an error when any store failed: a blob counts as cold
    /// only once every shard is durable.
    pub async fn put(&self, blob: &BlobId, plain: &[u8]) -> Result<(), ShardError> {
        let bodies = tokio::task::block_in_place(|| encode(plain, self.k, self.m, STRIPE_PIECE))?;
        self.put_bodies(blob, plain.len() as u64, bodies, None)
            .await
    }

    /// Seals and writes the shard bodies given (only those in `only`, when given).
    async fn put_bodies(
        &self,
        blob: &BlobId,
        len: u64,
        bodies: Vec<Vec<u8>>,
        only: Option<&[usize]>,
    ) -> Result<(), ShardError> {
        let writes = bodies
            .into_iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
            .map(|(i, body)| {
                let header = ShardHeader {
                    blob: *blob,
                    k: self.k as u8,
                    m: self.m as u8,
                    index: i as u8,
                    blob_len: len,
                    stripe_piece: STRIPE_PIECE as u32,
                };
                let id = self.shard_id(blob, i);
                let sealed = tokio::task::block_in_place(|| self.seal(&id, &header, &body));
                drop(body);
                async move {
                    let r = self.stores[i].put(&id.object_key(), sealed).await;
                    (i, r)
                }
            })
            .collect::<Vec<_>>();
        for (store, r) in join_all(writes).await {
            if let Err(e) = r {
                return Err(ShardError::Setup(format!("store {}: {e}", store + 1)));
            }
        }
        Ok(())
    }

    fn seal(&self, id: &BlobId, header: &ShardHeader, body: &[u8]) -> Pages {
        let mut plain = Vec::with_capacity(SHARD_HEADER_LEN + body.len());
        plain.extend_from_slice(&header.bytes());
        plain.extend_from_slice(body);
        let len = crypt::sealed_len(plain.len() as u64, crypt::DEFAULT_SEGMENT_SIZE) as usize;
        Pages::build(len, |out| {
            crypt::seal_into(&self.key, id, &plain, crypt::DEFAULT_SEGMENT_SIZE, out)
        })
    }

    /// Reads, opens and checks shard `index` of `blob`: its header and its body.
    pub async fn read_shard(
        &self,
        blob: &BlobId,
        index: usize,
    ) -> Result<(ShardHeader, Vec<u8>), ShardError> {
        let id = self.shard_id(blob, index);
        let (header, mut plain) = self.read_object(index, &id).await?;
        let foreign = |why: &str| ShardError::Foreign {
            store: index + 1,
            why: why.to_string(),
        };
        if header.blob != *blob || header.index as usize != index {
            return Err(foreign("another blob or shard number"));
        }
        if header.k as usize != self.k || header.m as usize != self.m {
            return Err(foreign("coded with another number of shards"));
        }
        plain.drain(..SHARD_HEADER_LEN);
        Ok((header, plain))
    }

    /// Reads and opens the sealed shard `id` on store `store`.
    async fn read_object(
        &self,
        store: usize,
        id: &BlobId,
    ) -> Result<(ShardHeader, Vec<u8>), ShardError> {
        let at = |error| ShardError::Store {
            store: store + 1,
            error,
        };
        let sealed = self.stores[store]
            .get_object(0, &id.object_key())
            .await
            .map_err(at)?;
        let plain = tokio::task::block_in_place(|| crypt::open(&self.key, id, &sealed))
            .map_err(|e| at(ReplicaError::Corrupt(e)))?;
        let header = ShardHeader::parse(&plain).ok_or(ShardError::Foreign {
            store: store + 1,
            why: "no shard header".into(),
        })?;
        Ok((header, plain))
    }

    /// Rebuilds `blob` from the first `k` shards that read well (data shards first: they need
    /// no decoding), verifying it against its address. Returns the plaintext and the shards
    /// found missing or corrupt on the way.
    pub async fn get(&self, blob: &BlobId) -> Result<(Vec<u8>, Vec<(usize, String)>), ShardError> {
        let mut bodies: Vec<Option<Vec<u8>>> = vec![None; self.k + self.m];
        let mut bad = Vec::new();
        let mut header = None;
        let mut next = 0;
        while bodies.iter().filter(|b| b.is_some()).count() < self.k && next < self.k + self.m {
            let want = self.k - bodies.iter().filter(|b| b.is_some()).count();
            let batch: Vec<usize> = (next..(next + want).min(self.k + self.m)).collect();
            next += batch.len();
            let reads = join_all(batch.iter().map(|&i| self.read_shard(blob, i))).await;
            for (i, r) in batch.into_iter().zip(reads) {
                match r {
                    Ok((h, body)) => {
                        header = Some(h);
                        bodies[i] = Some(body);
                    }
                    Err(e) => bad.push((i, e.to_string())),
                }
            }
        }
        let found = bodies.iter().filter(|b| b.is_some()).count();
        let Some(header) = header.filter(|_| found >= self.k) else {
            return Err(ShardError::TooFew {
                found,
                needed: self.k,
                reasons: bad
                    .into_iter()
                    .map(|(i, e)| format!("{}: {e}", i + 1))
                    .collect(),
            });
        };
        let plain = tokio::task::block_in_place(|| {
            let plain = decode(
                &bodies,
                self.k,
                self.m,
                header.blob_len,
                header.stripe_piece as usize,
            )?;
            if Addresser::of(self.key.address_key(), &plain) != *blob {
                return Err(ShardError::Address);
            }
            Ok(plain)
        })?;
        Ok((plain, bad))
    }

    /// Each shard of `blob`, checked end to end (read, opened, its header matching).
    pub async fn check(&self, blob: &BlobId) -> Vec<ShardState> {
        let reads = join_all((0..self.k + self.m).map(|i| self.read_shard(blob, i))).await;
        reads
            .into_iter()
            .map(|r| match r {
                Ok(_) => ShardState::Good,
                Err(ShardError::Store {
                    error: ReplicaError::Missing,
                    ..
                }) => ShardState::Missing,
                Err(e) => ShardState::Corrupt(e.to_string()),
            })
            .collect()
    }

    /// Rewrites shards `which` of `blob` from the others: the blob rebuilt from any `k`, coded
    /// again, and only those shards written.
    pub async fn repair(&self, blob: &BlobId, which: &[usize]) -> Result<(), ShardError> {
        let (plain, _) = self.get(blob).await?;
        let bodies = tokio::task::block_in_place(|| encode(&plain, self.k, self.m, STRIPE_PIECE))?;
        self.put_bodies(blob, plain.len() as u64, bodies, Some(which))
            .await
    }

    /// Deletes every shard of `blob` (missing ones are fine); returns the stores that failed.
    pub async fn delete(&self, blob: &BlobId) -> Vec<(usize, String)> {
        let deletes = (0..self.k + self.m).map(|i| {
            let key = self.shard_id(blob, i).object_key();
            async move { (i, self.stores[i].delete(&key).await) }
        });
        join_all(deletes)
            .await
            .into_iter()
            .filter_map(|(i, bad)| bad.first().map(|b| (i, b.error.to_string())))
            .collect()
    }

    /// The blobs whose shards store `store` holds, as their headers say: what a reindex from
    /// the shard stores alone regroups. Shards that cannot be opened are reported, not fatal.
    pub async fn blobs_on(
        &self,
        store: usize,
    ) -> Result<(Vec<(BlobId, i64)>, Vec<String>), ShardError> {
        let listed = self.stores[store]
            .list_blobs(0)
            .await
            .map_err(|error| ShardError::Store {
                store: store + 1,
                error,
            })?;
        let (mut found, mut bad) = (Vec::new(), Vec::new());
        for (id, at) in listed {
            match self.read_object(store, &id).await {
                Ok((h, _)) if self.shard_id(&h.blob, h.index as usize) == id => {
                    found.push((h.blob, at))
                }
                Ok(_) => bad.push(format!("{}: not named as its header says", id.to_hex())),
                Err(e) => bad.push(format!("{}: {e}", id.to_hex())),
            }
        }
        Ok((found, bad))
    }

    /// The bytes the stores hold for `blob`'s shards (sealed), as stored: what the cold tier
    /// costs for it.
    pub fn stored_len(&self, blob_len: u64) -> u64 {
        let body: u64 = stripes(blob_len, self.k, STRIPE_PIECE)
            .iter()
            .map(|s| s.2 as u64)
            .sum();
        let one = crypt::sealed_len(SHARD_HEADER_LEN as u64 + body, crypt::DEFAULT_SEGMENT_SIZE);
        one * (self.k + self.m) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 24) as u8)
            .collect()
    }

    #[test]
    fn any_k_of_k_plus_m_rebuild_the_blob() {
        for len in [0, 1, 7, 1000, 4 * 1024 + 3, 3 * STRIPE_PIECE * 4 + 12345] {
            let plain = data(len, len as u32);
            let shards = encode(&plain, 4, 2, STRIPE_PIECE).unwrap();
            assert_eq!(shards.len(), 6);
            // every pair of shards lost
            for a in 0..6 {
                for b in a + 1..6 {
                    let mut have: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                    have[a] = None;
                    have[b] = None;
                    let back = decode(&have, 4, 2, len as u64, STRIPE_PIECE).unwrap();
                    assert!(back == plain, "len {len}, lost {a} and {b}");
                }
            }
            let mut three_lost: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
            three_lost[0] = None;
            three_lost[2] = None;
            three_lost[5] = None;
            assert!(matches!(
                decode(&three_lost, 4, 2, len as u64, STRIPE_PIECE),
                Err(ShardError::TooFew { found: 3, .. })
            ));
        }
    }

    #[test]
    fn shards_take_k_plus_m_over_k_of_the_blob() {
        let plain = data(10 << 20, 1);
        let shards = encode(&plain, 4, 2, STRIPE_PIECE).unwrap();
        let total: usize = shards.iter().map(Vec::len).sum();
        assert_eq!(total, plain.len() * 6 / 4);
    }

    fn shards_on(dir: &std::path::Path) -> Shards {
        let urls: Vec<String> = (0..6)
            .map(|i| format!("file://{}/s{i}", dir.display()))
            .collect();
        Shards::open(Arc::new(MasterKey::from_secret(&[4; 32])), &urls, 4, 2).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stored_shards_reveal_nothing_and_survive_two_lost_stores() {
        let dir = tempfile::tempdir().unwrap();
        let s = shards_on(dir.path());
        let plain = data(3_000_000, 9);
        let blob = Addresser::of(s.key.address_key(), &plain);
        s.put(&blob, &plain).await.unwrap();
        let mut on_disk = 0;
        for i in 0..6 {
            let id = s.shard_id(&blob, i);
            assert_ne!(id, blob);
            let file = dir.path().join(format!("s{i}")).join(id.object_key());
            let bytes = std::fs::read(&file).unwrap();
            on_disk += bytes.len() as u64;
            // no run of the plaintext appears in any shard
            assert!(!bytes.windows(64).any(|w| w == &plain[100_000..100_064]));
            assert!(!bytes.windows(64).any(|w| w == &plain[..64]));
            // the store's listing names the shard by its keyed name only
            assert!(!file.to_string_lossy().contains(&blob.to_hex()));
        }
        assert_eq!(on_disk, s.stored_len(plain.len() as u64));
        assert!(on_disk < plain.len() as u64 * 6 / 4 + 8192, "{on_disk}");
        // stores 2 and 5 lost: still whole, from shards 1, 3, 4 and 6
        for i in [1, 4] {
            std::fs::remove_dir_all(dir.path().join(format!("s{i}"))).unwrap();
        }
        let (back, bad) = s.get(&blob).await.unwrap();
        assert!(back == plain);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(
            s.check(&blob)
                .await
                .iter()
                .filter(|c| **c == ShardState::Missing)
                .count(),
            2
        );
        s.repair(&blob, &[1, 4]).await.unwrap();
        assert!(s.check(&blob).await.iter().all(|c| *c == ShardState::Good));
        // corrupt one shard: checked as corrupt, repaired
        let file = dir
            .path()
            .join("s0")
            .join(s.shard_id(&blob, 0).object_key());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[5000] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert!(matches!(s.check(&blob).await[0], ShardState::Corrupt(_)));
        let (back, bad) = s.get(&blob).await.unwrap();
        assert!(back == plain && bad.len() == 1);
        s.repair(&blob, &[0]).await.unwrap();
        assert_eq!(s.check(&blob).await[0], ShardState::Good);
        // each store's listing regroups into the blob
        let (found, bad) = s.blobs_on(3).await.unwrap();
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), vec![blob]);
        assert!(bad.is_empty());
        // three stores lost: too few
        for i in [0, 2, 3] {
            std::fs::remove_dir_all(dir.path().join(format!("s{i}"))).unwrap();
        }
        assert!(matches!(s.get(&blob).await, Err(ShardError::TooFew { .. })));
    }
}
