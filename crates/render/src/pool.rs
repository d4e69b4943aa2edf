//! The render pool: a fixed set of worker threads (`render.workers`, one per core by default)
//! taking jobs by priority — interactive streams before HTTP renders before thumbnails and
//! prefetches — and the decoded-frame cache they share, bounded by `render.cache_bytes`.
//!
//! Decoding and windowing are CPU work that must not run on the async runtime's threads; a pool
//! of its own bounds how much of the machine rendering takes, and the priority queue keeps a
//! reader scrolling through a series responsive while thumbnails are being made. A job whose
//! requester has gone (a stale stream request, a closed connection) is dropped unstarted.

use super::pipeline::Presentation;
use super::{DecodedFrame, Priority};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use strata_core::Metrics;

/// A decoded frame with what its dataset says about presenting it: everything a render needs,
/// so a cached frame renders without reading its instance again.
#[derive(Debug)]
pub struct CachedFrame {
    pub frame: DecodedFrame,
    pub presentation: Presentation,
}

impl CachedFrame {
    fn bytes(&self) -> usize {
        let luts = self
            .presentation
            .voi_luts
            .iter()
            .map(|l| l.data.len() * 2)
            .sum::<usize>();
        self.frame.byte_size() + luts + 256
    }
}

/// (SOP Instance UID, 0-based frame).
type Key = (String, u32);

/// Decoded frames, least recently used evicted first once their bytes exceed the budget.
struct FrameCache {
    budget: usize,
    used: usize,
    frames: hashlink::LruCache<Key, Arc<CachedFrame>>,
}

impl FrameCache {
    fn get(&mut self, key: &Key) -> Option<Arc<CachedFrame>> {
        self.frames.get(key).cloned()
    }

    fn insert(&mut self, key: Key, frame: Arc<CachedFrame>) {
        let size = frame.bytes();
        if size > self.budget {
            return; // larger than the whole cache: caching it would only empty the cache
        }
        if let Some(old) = self.frames.insert(key, frame) {
            self.used -= old.bytes();
        }
        self.used += size;
        while self.used > self.budget {
            match self.frames.remove_lru() {
                Some((_, old)) => self.used -= old.bytes(),
                None => break,
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One queue per priority, served highest first.
#[derive(Default)]
struct Queues {
    queues: [VecDeque<Job>; 3],
    started: bool,
}

impl Queues {
    fn pop(&mut self) -> Option<Job> {
        self.queues.iter_mut().find_map(VecDeque::pop_front)
    }
}

fn rank(p: Priority) -> usize {
    match p {
        Priority::Interactive => 0,
        Priority::Http => 1,
        Priority::Thumbnail => 2,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the render job failed without an answer (the decoder panicked)")]
    WorkerLost,
}

pub struct RenderPool {
    workers: usize,
    shared: Arc<(Mutex<Queues>, Condvar)>,
    cache: Mutex<FrameCache>,
    /// Frames being decoded now: whoever asks for one of them waits for that decode (and then
    /// finds it cached) instead of decoding it a second time — a prefetch and the viewer's own
    /// request for the same slice, say.
    decoding: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Where each job's duration goes (`strata_operation_seconds{engine="render"}`).
    metrics: Arc<Metrics>,
}

/// A caller's exclusive turn at decoding one frame (see [`RenderPool::decode_turn`]).
pub struct DecodeTurn {
    key: Key,
    guard: tokio::sync::OwnedMutexGuard<()>,
}

impl RenderPool {
    /// A pool of `workers` threads (started on first use, so commands that never render start
    /// none) and a cache of `cache_bytes`.
    pub fn new(workers: usize, cache_bytes: u64) -> RenderPool {
        RenderPool {
            workers: workers.max(1),
            shared: Arc::new((Mutex::new(Queues::default()), Condvar::new())),
            cache: Mutex::new(FrameCache {
                budget: usize::try_from(cache_bytes).unwrap_or(usize::MAX),
                used: 0,
                frames: hashlink::LruCache::new_unbounded(),
            }),
            decoding: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Worker threads: how many jobs run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The pool, recording every job's duration in `metrics`.
    pub fn measured(mut self, metrics: Arc<Metrics>) -> RenderPool {
        self.metrics = metrics;
        self
    }

    fn start(&self, q: &mut Queues) {
        if q.started {
            return;
        }
        q.started = true;
        for i in 0..self.workers {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("render-{i}"))
                .spawn(move || loop {
                    let job = {
                        let (lock, ready) = &*shared;
                        let mut q = lock.lock().expect("render queue lock");
                        loop {
                            if let Some(job) = q.pop() {
                                break job;
                            }
                            q = ready.wait(q).expect("render queue lock");
                        }
                    };
                    // A decoder that panics on a malformed file must not take the worker
                    // with it; the job's requester sees its answer channel close.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a render job panicked; the worker carries on");
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("starting render worker {i}: {e}");
            }
        }
    }

    /// Runs `job` on a worker at `priority` and returns its result. If the returned future is
    /// dropped before a worker takes the job, the job is skipped.
    pub async fn run<T, F>(
        &self,
        priority: Priority,
        op: &'static str,
        job: F,
    ) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let metrics = self.metrics.clone();
        let wrapped: Job = Box::new(move || {
            if tx.is_closed() {
                return; // nobody waits for it any more
            }
            let _timer = metrics.time("render", op);
            let _ = tx.send(job());
        });
        {
            let (lock, ready) = &*self.shared;
            let mut q = lock.lock().expect("render queue lock");
            self.start(&mut q);
            q.queues[rank(priority)].push_back(wrapped);
            ready.notify_one();
        }
        rx.await.map_err(|_| PoolError::WorkerLost)
    }

    /// The cached decoded frame `frame` of `sop_uid`, if any.
    pub fn cached(&self, sop_uid: &str, frame: u32) -> Option<Arc<CachedFrame>> {
        self.cache
            .lock()
            .expect("frame cache lock")
            .get(&(sop_uid.to_string(), frame))
    }

    pub fn remember(&self, sop_uid: &str, frame: u32, decoded: Arc<CachedFrame>) {
        self.cache
            .lock()
            .expect("frame cache lock")
            .insert((sop_uid.to_string(), frame), decoded);
    }

    /// Waits until no one else is decoding frame `frame` of `sop_uid`, then holds the turn:
    /// the caller looks in the cache again (the previous holder has usually just put the frame
    /// there) and decodes only if it is still missing, then hands the turn back with
    /// [`RenderPool::end_turn`].
    pub async fn decode_turn(&self, sop_uid: &str, frame: u32) -> DecodeTurn {
        let key = (sop_uid.to_string(), frame);
        let gate = self
            .decoding
            .lock()
            .expect("decoding lock")
            .entry(key.clone())
            .or_default()
            .clone();
        DecodeTurn {
            key,
            guard: gate.lock_owned().await,
        }
    }

    /// Ends a turn; the frame's gate goes once no one else waits at it.
    pub fn end_turn(&self, turn: DecodeTurn) {
        let DecodeTurn { key, guard } = turn;
        drop(guard);
        let mut decoding = self.decoding.lock().expect("decoding lock");
        if decoding
            .get(&key)
            .is_some_and(|gate| Arc::strong_count(gate) == 1)
        {
            decoding.remove(&key);
        }
    }

    /// Bytes the cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().expect("frame cache lock").used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pixels;

    fn frame(n: usize) -> Arc<CachedFrame> {
        Arc::new(CachedFrame {
            frame: DecodedFrame {
                rows: 1,
                columns: n as u32,
                pixels: Pixels::Rgb(vec![0; n * 3]),
            },
            presentation: Presentation::default(),
        })
    }

    #[test]
    fn the_cache_keeps_within_its_budget_dropping_the_least_recent() {
        let pool = RenderPool::new(1, 3 * (300 + 256));
        pool.remember("a", 0, frame(100));
        pool.remember("b", 0, frame(100));
        pool.remember("c", 0, frame(100));
        assert!(pool.cached("a", 0).is_some(), "a is now the most recent");
        pool.remember("d", 0, frame(100));
        assert!(pool.cached("b", 0).is_none(), "b was the least recent");
        assert!(pool.cached("a", 0).is_some() && pool.cached("d", 0).is_some());
        assert!(pool.cached_bytes() <= 3 * (300 + 256));
        pool.remember("huge", 0, frame(10_000));
        assert!(pool.cached("huge", 0).is_none() && pool.cached("a", 0).is_some());
    }

    #[tokio::test]
    async fn one_frame_is_decoded_by_one_caller_at_a_time() {
        let pool = Arc::new(RenderPool::new(1, 1 << 20));
        let first = pool.decode_turn("a", 0).await;
        let second = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let turn = pool.decode_turn("a", 0).await;
                // the first caller cached the frame before handing over
                let found = pool.cached("a", 0).is_some();
                pool.end_turn(turn);
                found
            })
        };
        // another frame is not held up
        let other = pool.decode_turn("b", 0).await;
        pool.end_turn(other);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !second.is_finished(),
            "the second caller waits for the first"
        );
        pool.remember("a", 0, frame(10));
        pool.end_turn(first);
        assert!(second.await.unwrap());
        assert!(
            pool.decoding.lock().unwrap().is_empty(),
            "no gate is left behind"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = RenderPool::new(1, 0);
        let failed = pool
            .run(Priority::Http, "test", || -> u32 {
                panic!("a malformed file")
            })
            .await;
        assert!(matches!(failed, Err(PoolError::WorkerLost)));
        assert_eq!(pool.run(Priority::Http, "test", || 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn higher_priorities_are_served_first() {
        let pool = Arc::new(RenderPool::new(1, 0));
        // hold the only worker while the queue fills
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(Priority::Http, "test", move || hold_rx.recv().ok())
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for p in [Priority::Thumbnail, Priority::Http, Priority::Interactive] {
            let (pool, order) = (pool.clone(), order.clone());
            waits.push(tokio::spawn(async move {
                pool.run(p, "test", move || order.lock().unwrap().push(p))
                    .await
                    .unwrap()
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        hold_tx.send(()).unwrap();
        busy.await.unwrap();
        for w in waits {
            w.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec![Priority::Interactive, Priority::Http, Priority::Thumbnail]
        );
    }
}
