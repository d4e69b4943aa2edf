//! The cold tier's speed: erasure coding alone (encode, and decode with two data shards lost,
//! one thread), then a study's worth of blobs moved to six local cold stores (read from three
//! local replicas, coded, each shard sealed and made durable, the replicas' copies removed)
//! and restored with two of the six stores gone (rebuilt from four, verified against its
//! address, written back to the replicas durably). The move and the restore are the store's
//! side of `Tiers::move_study` and `Tiers::restore_study`, without the index's few rows per
//! blob.
//!
//! Each is measured beside its bound, the same disk work with nothing else done: the same
//! objects read, as many bytes written to as many stores, made durable as often, and the same
//! copies removed, with no decryption, coding, hashing or sealing. The disk of a virtual machine
//! swings from run to run, so each round measures a bound and its operation back to back (which
//! goes first alternates, with `PAUSE_S` seconds of rest before each), on objects of their own
//! that no read has brought into the page cache. `BOUNDS=0` times the operations alone, to
//! compare builds.
//! Used by `benches/erasure.sh`.
//!
//! ```text
//! CODE_MIB=256 BLOBS=300 BLOB_KIB=513 ROUNDS=7 PAUSE_S=5 DIR=/tmp cargo run --release -p strata-store --example erasure
//! ```

use futures::StreamExt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use strata_store::address::BlobId;
use strata_store::crypt::MasterKey;
use strata_store::direct::Pages;
use strata_store::shards::{decode, encode, Shards, STRIPE_PIECE};
use strata_store::{address_of, Replica, Replicas, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Blobs coded or rebuilt at once, as `Tiers` does.
const AT_ONCE: usize = 8;

/// A knob from the environment, or its default.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// `n` local stores `name-0`.. in `dir`, each a store of its own (one copy).
fn stores(dir: &Path, name: &str, n: usize) -> Result<Vec<Replicas>> {
    (0..n)
        .map(|i| {
            let r = Replica::open(&format!("file://{}/{name}-{i}", dir.display()))?;
            Ok(Replicas::new(vec![r], 1))
        })
        .collect()
}

/// `n` local replicas `name-0`.. in `dir`, one set that writes every copy.
fn replica_set(dir: &Path, name: &str, n: usize) -> Result<Replicas> {
    let list = (0..n)
        .map(|i| Replica::open(&format!("file://{}/{name}-{i}", dir.display())))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Replicas::new(list, n))
}

/// Runs `each` on every blob, `AT_ONCE` at a time as `Tiers` does (each write waits for its
/// barrier, which the writes in flight share); returns the seconds it all took.
async fn timed<F, Fut>(ids: &[BlobId], each: F) -> Result<f64>
where
    F: Fn(BlobId) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    for r in futures::stream::iter(ids.iter().map(|id| each(*id)))
        .buffered(AT_ONCE)
        .collect::<Vec<_>>()
        .await
    {
        r?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One round: a move and its bound, then a restore and its bound, in fresh folders.
struct Round {
    moved: f64,
    move_bound: f64,
    restored: f64,
    restore_bound: f64,
}

async fn round(
    dir: &Path,
    blobs: &[Vec<u8>],
    bound_first: bool,
    pause: f64,
    bounds: bool,
) -> Result<Round> {
    let rest = || tokio::time::sleep(std::time::Duration::from_secs_f64(pause));
    let (k, m) = (4, 2);
    let key = Arc::new(MasterKey::from_secret(&[7; 32]));
    // the operation's replicas and cold stores
    let store = Store::new(key.clone(), replica_set(dir, "replica", 3)?);
    let urls: Vec<String> = (0..k + m)
        .map(|i| format!("file://{}/cold-{i}", dir.display()))
        .collect();
    let cold = Shards::open(key.clone(), &urls, k, m)?;
    // the bound's: objects of the same sizes under names of their own
    let bound_replicas = replica_set(dir, "bound-replica", 3)?;
    let bound_cold = stores(dir, "bound-cold", k + m)?;
    let bound_back = replica_set(dir, "bound-back", 3)?;
    let mut ids = Vec::new();
    for blob in blobs {
        let id = address_of(store.address_key(), blob);
        store.put(&id, blob).await?;
        ids.push(id);
    }
    // each bound object holds what the operation's holds: the sealed blob, by the same name
    for id in &ids {
        let sealed = store.replicas().get_object(0, &id.object_key()).await?;
        bound_replicas
            .put(&id.object_key(), Pages::copy_of(&sealed))
            .await?;
    }
    let blob_len = blobs[0].len();
    let sealed_len = store
        .replicas()
        .get_object(0, &ids[0].object_key())
        .await?
        .len();

    let move_op = || {
        timed(&ids, |id| {
            let (store, cold) = (&store, &cold);
            async move {
                let mut plain = Vec::with_capacity(blob_len);
                store
                    .read_to(&id, |c| {
                        plain.extend_from_slice(c);
                        Ok(())
                    })
                    .await?;
                cold.put(&id, &plain).await?;
                Ok(())
            }
        })
    };
    let move_bound = || {
        timed(&ids, |id| {
            let (from, to) = (&bound_replicas, &bound_cold);
            async move {
                let sealed = from.get_object(0, &id.object_key()).await?;
                // a shard: a quarter of the blob, sealed (as long as the operation's)
                let piece = Pages::copy_of(&sealed[..sealed.len().div_ceil(k) + 128]);
                let writes = to.iter().enumerate().map(|(i, s)| {
                    let piece = piece.clone();
                    async move { s.put(&format!("{}-{i}", id.object_key()), piece).await }
                });
                for r in futures::future::join_all(writes).await {
                    r?;
                }
                Ok(())
            }
        })
    };
    rest().await;
    let (moved, move_bound) = if !bounds {
        (move_op().await?, f64::NAN)
    } else if bound_first {
        let b = move_bound().await?;
        rest().await;
        (move_op().await?, b)
    } else {
        let o = move_op().await?;
        rest().await;
        (o, move_bound().await?)
    };
    // and the copies removed, which the move does last (timed with each)
    let started = Instant::now();
    for id in &ids {
        store.replicas().delete(&id.object_key()).await;
    }
    let moved = moved + started.elapsed().as_secs_f64();
    let started = Instant::now();
    for id in &ids {
        bound_replicas.delete(&id.object_key()).await;
    }
    let move_bound = move_bound + started.elapsed().as_secs_f64();

    // two of the six stores lost, for the operation and for its bound
    for name in ["cold", "bound-cold"] {
        for i in [1, 4] {
            std::fs::remove_dir_all(dir.join(format!("{name}-{i}")))?;
        }
    }
    let restore_op = || {
        timed(&ids, |id| {
            let (store, cold) = (&store, &cold);
            async move {
                let (plain, _) = cold.get(&id).await?;
                store.put(&id, &plain).await?;
                Ok(())
            }
        })
    };
    let restore_bound = || {
        timed(&ids, |id| {
            let (from, to) = (&bound_cold, &bound_back);
            async move {
                let reads = [0, 2, 3, 5].map(|i| async move {
                    from[i]
                        .get_object(0, &format!("{}-{i}", id.object_key()))
                        .await
                });
                let mut whole = Vec::with_capacity(sealed_len + 4096);
                for r in futures::future::join_all(reads).await {
                    whole.extend_from_slice(&r?);
                }
                whole.truncate(sealed_len);
                to.put(&id.object_key(), Pages::copy_of(&whole)).await?;
                Ok(())
            }
        })
    };
    rest().await;
    let (restored, restore_bound) = if !bounds {
        (restore_op().await?, f64::NAN)
    } else if bound_first {
        let b = restore_bound().await?;
        rest().await;
        (restore_op().await?, b)
    } else {
        let o = restore_op().await?;
        rest().await;
        (o, restore_bound().await?)
    };
    Ok(Round {
        moved,
        move_bound,
        restored,
        restore_bound,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let code_mib = knob("CODE_MIB", 256);
    let n_blobs = knob("BLOBS", 300);
    let blob_kib = knob("BLOB_KIB", 513);
    let rounds = knob("ROUNDS", 7);
    let pause = knob("PAUSE_S", 5) as f64;
    // BOUNDS=0: the operations alone (to compare builds)
    let bounds = knob("BOUNDS", 1) != 0;
    let dir = std::env::var_os("DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let (k, m) = (4, 2);

    let plain = data(code_mib << 20, 1);
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
        "code {k}+{m}, {code_mib} MiB, one thread: encode {:.0} MB/s, decode (2 data shards lost) {:.0} MB/s",
        mb_per_s(plain.len(), enc),
        mb_per_s(plain.len(), dec)
    );
    drop((plain, back, have));

    let blobs: Vec<Vec<u8>> = (0..n_blobs)
        .map(|b| data(blob_kib << 10, b as u32 + 7))
        .collect();
    let total = n_blobs * (blob_kib << 10);
    println!(
        "{n_blobs} blobs of {blob_kib} KiB ({:.1} MB) moved to 6 stores and restored from 4, {rounds} rounds; MB/s of data",
        total as f64 / 1e6
    );
    println!("round  first  move  bound  ratio  restore  bound  ratio");
    let (mut moves, mut restores, mut move_ratio, mut restore_ratio) =
        (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let tmp = tempfile::tempdir_in(&dir)?;
        let bound_first = r % 2 == 0;
        let x = round(tmp.path(), &blobs, bound_first, pause, bounds).await?;
        let (mv, mb) = (mb_per_s(total, x.moved), mb_per_s(total, x.move_bound));
        let (rs, rb) = (
            mb_per_s(total, x.restored),
            mb_per_s(total, x.restore_bound),
        );
        println!(
            "{:>5}  {:>5}  {mv:>4.0}  {mb:>5.0}  {:>4.0} %  {rs:>7.0}  {rb:>5.0}  {:>4.0} %",
            r + 1,
            if bound_first { "bound" } else { "op" },
            100.0 * mv / mb,
            100.0 * rs / rb
        );
        moves.push(mv);
        restores.push(rs);
        move_ratio.push(mv / mb);
        restore_ratio.push(rs / rb);
    }
    println!(
        "median: move {:.0} MB/s at {:.0} % of its bound; restore {:.0} MB/s at {:.0} % of its bound",
        median(moves),
        100.0 * median(move_ratio),
        median(restores),
        100.0 * median(restore_ratio)
    );
    Ok(())
}
