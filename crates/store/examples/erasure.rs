//! The cold tier's speed: erasure coding alone (encode, and decode with two data shards lost,
//! one thread), then a study's worth of blobs moved to six local cold stores (read from three
//! local replicas, coded, each shard sealed and fsynced, the replicas' copies removed) and
//! restored with two of the six stores gone (rebuilt from four, verified against its address,
//! written back to the replicas). The move and the restore are the store's side of
//! `Tiers::move_study` and `Tiers::restore_study`, without the index's few rows per blob.
//! Then the bounds durability sets on each, in the same run: the same bytes sealed and fsynced
//! with nothing else done — the shards' bytes (a quarter of each blob, six times) to six fresh
//! stores, and each blob to three fresh replicas — eight blobs at once, as the move and the
//! restore go. Used by `benches/erasure.sh`.
//!
//! ```text
//! CODE_MIB=256 BLOBS=300 BLOB_KIB=513 DIR=/tmp cargo run --release -p strata-store --example erasure
//! ```

use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use strata_store::crypt::MasterKey;
use strata_store::shards::{decode, encode, Shards, STRIPE_PIECE};
use strata_store::{address_of, Replica, Replicas, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A knob from the environment, or its default.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Args {
    code_mib: usize,
    blobs: usize,
    blob_kib: usize,
    dir: Option<std::path::PathBuf>,
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args {
        code_mib: knob("CODE_MIB", 256),
        blobs: knob("BLOBS", 300),
        blob_kib: knob("BLOB_KIB", 513),
        dir: std::env::var_os("DIR").map(Into::into),
    };
    let (k, m) = (4, 2);

    let plain = data(args.code_mib << 20, 1);
    let started = Instant::now();
    let shards = encode(&plain, k, m, STRIPE_PIECE)?;
    let enc = started.elapsed().as_secs_f64();
    let mut have: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
    have[0] = None;
    have[2] = None;
    let started = Instant::now();
    let back = decode(&have, k, m, plain.len() as u64, STRIPE_PIECE)?;
    let dec = started.elapsed().as_secs_f64();
    if back != plain {
        return Err("decoded data differs".into());
    }
    println!(
        "code {k}+{m}, {} MiB, one thread: encode {:.0} MB/s, decode (2 data shards lost) {:.0} MB/s",
        args.code_mib,
        mb_per_s(plain.len(), enc),
        mb_per_s(plain.len(), dec)
    );
    drop((plain, back, have));

    let tmp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let key = Arc::new(MasterKey::from_secret(&[7; 32]));
    let replicas = (0..3)
        .map(|i| Replica::open(&format!("file://{}/replica-{i}", tmp.path().display())))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let store = Store::new(key.clone(), Replicas::new(replicas, 3));
    let urls: Vec<String> = (0..k + m)
        .map(|i| format!("file://{}/cold-{i}", tmp.path().display()))
        .collect();
    let cold = Shards::open(key, &urls, k, m)?;
    let mut ids = Vec::new();
    for b in 0..args.blobs {
        let blob = data(args.blob_kib << 10, b as u32 + 7);
        let id = address_of(store.address_key(), &blob);
        store.put(&id, &blob).await?;
        ids.push(id);
    }
    let total = args.blobs * (args.blob_kib << 10);

    // a few blobs at once, as `Tiers::move_study` codes them: their fsyncs are shared
    let started = Instant::now();
    let moves = ids.iter().map(|id| {
        let (store, cold) = (&store, &cold);
        async move {
            let mut plain = Vec::with_capacity(args.blob_kib << 10);
            store
                .read_to(id, |c| {
                    plain.extend_from_slice(c);
                    Ok(())
                })
                .await?;
            cold.put(id, &plain).await?;
            store.replicas().delete(&id.object_key()).await;
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    });
    for r in futures::stream::iter(moves)
        .buffered(8)
        .collect::<Vec<_>>()
        .await
    {
        r?;
    }
    let moved = started.elapsed().as_secs_f64();
    println!(
        "move to cold: {} blobs, {:.1} MB in {moved:.2} s: {:.0} MB/s",
        ids.len(),
        total as f64 / 1e6,
        mb_per_s(total, moved)
    );

    for i in [1, 4] {
        std::fs::remove_dir_all(tmp.path().join(format!("cold-{i}")))?;
    }
    let started = Instant::now();
    let restores = ids.iter().map(|id| {
        let (store, cold) = (&store, &cold);
        async move {
            let (plain, _) = cold.get(id).await?;
            store.put(id, &plain).await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    });
    for r in futures::stream::iter(restores)
        .buffered(8)
        .collect::<Vec<_>>()
        .await
    {
        r?;
    }
    let restored = started.elapsed().as_secs_f64();
    println!(
        "restore from 4 of 6 stores: {:.1} MB in {restored:.2} s: {:.0} MB/s",
        total as f64 / 1e6,
        mb_per_s(total, restored)
    );

    // the bounds: the same bytes made durable, and nothing else
    let fresh = |name: &str, n: usize| {
        let replicas = (0..n)
            .map(|i| Replica::open(&format!("file://{}/{name}-{i}", tmp.path().display())))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok::<_, Box<dyn std::error::Error>>(Store::new(
            Arc::new(MasterKey::from_secret(&[9; 32])),
            Replicas::new(replicas, n),
        ))
    };
    let blobs: Vec<Vec<u8>> = (0..args.blobs)
        .map(|b| data(args.blob_kib << 10, b as u32 + 7))
        .collect();
    let bound = |store: Store, part: usize| {
        let blobs = &blobs;
        async move {
            let started = Instant::now();
            let writes = blobs.iter().map(|blob| {
                let store = &store;
                async move {
                    let piece = &blob[..blob.len().div_ceil(part)];
                    let id = address_of(store.address_key(), piece);
                    store.put(&id, piece).await?;
                    Ok::<_, Box<dyn std::error::Error>>(())
                }
            });
            for r in futures::stream::iter(writes)
                .buffered(8)
                .collect::<Vec<_>>()
                .await
            {
                r?;
            }
            Ok::<_, Box<dyn std::error::Error>>(started.elapsed().as_secs_f64())
        }
    };
    let shard_bound = bound(fresh("bound-shards", k + m)?, k).await?;
    let replica_bound = bound(fresh("bound-replicas", 3)?, 1).await?;
    println!(
        "bounds: the shards' bytes fsynced to 6 stores {:.0} MB/s of data (move at {:.0} % of it); \
         the blobs fsynced to 3 replicas {:.0} MB/s (restore at {:.0} % of it)",
        mb_per_s(total, shard_bound),
        100.0 * shard_bound / moved,
        mb_per_s(total, replica_bound),
        100.0 * replica_bound / restored
    );
    Ok(())
}
