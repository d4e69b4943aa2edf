//! Supervised background workers: each runs in rounds, and its supervisor records how every
//! round ended. A round that fails or panics is reported in the worker's status and in the
//! metrics, and the worker starts again after a pause; it never ends the process, and it never
//! ends silently.
//!
//! A worker whose work must happen once per archive ([`Workers::supervise_leased`]) runs its
//! rounds only while its node holds the work's lease ([`super::leases`]); on the other nodes it
//! stands by, saying who holds it until when.

use super::leases::{timestamp, Node};
use crate::ServiceError;
use futures::FutureExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_core::{now_ms, Metrics};

/// Pause after a round that failed, before the worker tries again: long enough not to flood
/// the log when a replica is down, short enough to notice its return.
const AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What one worker reports of itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerStatus {
    pub name: String,
    /// `running` (in a round), `waiting` (between rounds), `failing` (the last round failed;
    /// it tries again), `standby` (another node holds its lease) or `off` (turned off by the
    /// configuration or the node's role).
    pub state: &'static str,
    /// Rounds finished, however they ended.
    pub rounds: u64,
    pub failures: u64,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// What the worker last said of its work (its progress, what it did).
    pub detail: Option<String>,
    /// The lease of a once-per-archive worker, as last seen: who holds it, until when.
    pub lease: Option<LeaseStatus>,
}

/// A worker's lease as its status shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeaseStatus {
    /// The node holding it.
    pub holder: String,
    /// Whether this process is that holder (false on a node started again while its earlier
    /// run's lease lasts).
    pub held_here: bool,
    pub acquired_at: i64,
    pub expires_at: i64,
}

/// The statuses of every worker of this process.
#[derive(Clone)]
pub struct Workers {
    statuses: Arc<Mutex<BTreeMap<String, WorkerStatus>>>,
    after_failure: Duration,
    /// Set once, when the process stops: every worker ends its round there.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Default for Workers {
    fn default() -> Workers {
        Workers {
            statuses: Arc::default(),
            after_failure: AFTER_FAILURE,
            stop: Arc::new(tokio::sync::watch::channel(false).0),
            tasks: Arc::default(),
        }
    }
}

/// What a round says when it ends well: how long to wait before the next one, and what to
/// show of it.
pub struct RoundDone {
    pub pause: Duration,
    pub detail: Option<String>,
}

impl Workers {
    /// Every worker's status, by name.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkerStatus>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut all = self.lock();
        let status = all.entry(name.to_string()).or_insert_with(|| WorkerStatus {
            name: name.to_string(),
            state: "waiting",
            rounds: 0,
            failures: 0,
            last_started_at: None,
            last_finished_at: None,
            last_error: None,
            detail: None,
            lease: None,
        });
        f(status);
    }

    /// Records a worker that the configuration turned off.
    pub fn off(&self, name: &str, why: &str) {
        self.update(name, |s| {
            s.state = "off";
            s.detail = Some(why.to_string());
        });
    }

    /// Runs `round` again and again on its own task, `first_wait` after now, recording how
    /// each round ended in the worker's status and in `metrics`.
    pub fn supervise<F, Fut>(
        &self,
        name: &'static str,
        metrics: Arc<Metrics>,
        first_wait: Duration,
        round: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<RoundDone, ServiceError>> + Send,
    {
        let workers = self.clone();
        self.spawn(name, async move {
            tokio::time::sleep(first_wait).await;
            loop {
                let pause = workers.run_round(name, &metrics, round()).await;
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// [`Workers::supervise`] for work that must happen once per archive: each round (and
    /// the rest after it, and the first wait) runs only while `node` holds the lease named
    /// after the worker, renewed all along. While another node holds it, the worker stands by and asks again
    /// every [`Node::renew_every`]; a round whose lease is lost is cut short.
    pub fn supervise_leased<F, Fut>(
        &self,
        name: &'static str,
        metrics: Arc<Metrics>,
        first_wait: Duration,
        node: Node,
        round: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<RoundDone, ServiceError>> + Send,
    {
        let workers = self.clone();
        self.spawn(name, async move {
            // the first wait is spent holding the lease, so the other nodes see the holder
            let mut wait = first_wait;
            loop {
                let lease = match node.acquire(name).await {
                    Ok((lease, held)) => {
                        workers.saw_lease(name, &lease, held);
                        if held {
                            workers.update(name, |s| {
                                if s.state == "standby" {
                                    s.state = "waiting";
                                    s.detail = Some(format!(
                                        "took the lease at {}",
                                        timestamp(lease.renewed_at)
                                    ));
                                }
                            });
                        } else {
                            workers.update(name, |s| {
                                s.state = "standby";
                                s.detail = Some(format!(
                                    "held by node {} until {}",
                                    lease.holder,
                                    timestamp(lease.expires_at)
                                ));
                            });
                            tokio::time::sleep(node.renew_every()).await;
                            continue;
                        }
                        lease
                    }
                    Err(e) => {
                        tracing::error!(worker = name, "taking the lease: {e}");
                        workers.failed(name, &metrics, format!("taking the lease: {e}"));
                        tokio::time::sleep(node.renew_every()).await;
                        continue;
                    }
                };
                let this_round = round();
                let (w, m) = (&workers, &metrics);
                let work = async move {
                    tokio::time::sleep(wait).await;
                    let pause = w.run_round(name, m, this_round).await;
                    tokio::time::sleep(pause).await;
                };
                wait = Duration::ZERO;
                let renewed = |l: &strata_index::Lease| workers.saw_lease(name, l, true);
                tokio::select! {
                    () = work => {}
                    why = node.keep(name, lease, renewed) => {
                        tracing::warn!(worker = name, "stopped: {why}");
                        workers.update(name, |s| {
                            s.state = "standby";
                            s.detail = Some(format!("stopped: {why}"));
                        });
                    }
                }
            }
        });
    }

    /// Runs `task` as worker `name`'s until the process stops ([`Workers::stop`]).
    fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.update(name, |_| {});
        let mut stop = self.stop.subscribe();
        let handle = tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Ends every worker (a round under way is cut short at its next wait) and returns once
    /// they have all ended: the process is stopping, and its leases may go to another node.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        for s in self.lock().values_mut() {
            if s.state != "off" {
                s.state = "stopped";
            }
        }
    }

    fn saw_lease(&self, name: &str, lease: &strata_index::Lease, held_here: bool) {
        self.update(name, |s| {
            s.lease = Some(LeaseStatus {
                holder: lease.holder.clone(),
                held_here,
                acquired_at: lease.acquired_at,
                expires_at: lease.expires_at,
            })
        });
    }

    /// One round of worker `name`, its end recorded; returns the pause before the next.
    async fn run_round(
        &self,
        name: &'static str,
        metrics: &Metrics,
        round: impl Future<Output = Result<RoundDone, ServiceError>>,
    ) -> Duration {
        self.update(name, |s| {
            s.state = "running";
            s.last_started_at = Some(now_ms());
        });
        let ended = AssertUnwindSafe(round).catch_unwind().await;
        match ended {
            Ok(Ok(done)) => {
                metrics.worker_ran(name, "ok");
                self.update(name, |s| {
                    s.state = "waiting";
                    s.rounds += 1;
                    s.last_finished_at = Some(now_ms());
                    s.last_error = None;
                    if done.detail.is_some() {
                        s.detail = done.detail;
                    }
                });
                done.pause
            }
            Ok(Err(e)) => {
                tracing::error!(worker = name, "{e}");
                self.failed(name, metrics, e.to_string());
                self.after_failure
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no reason given".into());
                tracing::error!(worker = name, "the worker panicked: {why}");
                self.failed(name, metrics, format!("panicked: {why}"));
                self.after_failure
            }
        }
    }

    fn failed(&self, name: &str, metrics: &Metrics, error: String) {
        metrics.worker_ran(name, "failed");
        self.update(name, |s| {
            s.state = "failing";
            s.rounds += 1;
            s.failures += 1;
            s.last_finished_at = Some(now_ms());
            s.last_error = Some(error);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn until(
        workers: &Workers,
        name: &str,
        f: impl Fn(&WorkerStatus) -> bool,
    ) -> WorkerStatus {
        for _ in 0..500 {
            if let Some(s) = workers.statuses().into_iter().find(|s| s.name == name) {
                if f(&s) {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name}: {:?}", workers.statuses());
    }

    #[tokio::test]
    async fn a_failing_or_panicking_round_is_reported_and_the_worker_goes_on() {
        let workers = Workers {
            after_failure: Duration::from_millis(1),
            ..Workers::default()
        };
        let metrics = Arc::new(Metrics::new());
        let calls = Arc::new(AtomicU32::new(0));
        // each round waits for the test to let it run, so the test sees every round's end
        let go = Arc::new(tokio::sync::Semaphore::new(0));
        let (c, g) = (calls.clone(), go.clone());
        workers.supervise("flaky", metrics.clone(), Duration::ZERO, move || {
            let (c, g) = (c.clone(), g.clone());
            async move {
                g.acquire().await.unwrap().forget();
                let n = c.fetch_add(1, Ordering::SeqCst);
                match n {
                    0 => Err(ServiceError::Invalid("the disk is away".into())),
                    1 => panic!("a bug"),
                    _ => Ok(RoundDone {
                        pause: Duration::from_secs(60),
                        detail: Some(format!("round {n}")),
                    }),
                }
            }
        });
        go.add_permits(1);
        let s = until(&workers, "flaky", |s| s.rounds == 1).await;
        // failing until the next round starts a moment later
        assert!(["failing", "running"].contains(&s.state), "{s:?}");
        assert_eq!(s.failures, 1);
        assert_eq!(s.last_error.as_deref(), Some("the disk is away"));
        go.add_permits(1);
        let s = until(&workers, "flaky", |s| s.rounds == 2).await;
        assert_eq!(s.last_error.as_deref(), Some("panicked: a bug"));
        go.add_permits(1);
        let s = until(&workers, "flaky", |s| s.rounds == 3).await;
        assert_eq!((s.state, s.failures), ("waiting", 2));
        assert_eq!(s.detail.as_deref(), Some("round 2"));
        assert!(s.last_error.is_none());
        let text = metrics.render();
        assert!(
            text.contains("worker=\"flaky\",outcome=\"failed\"} 2"),
            "{text}"
        );
        workers.off("scrub", "scrub.blobs_per_second = 0");
        assert_eq!(
            workers
                .statuses()
                .iter()
                .find(|s| s.name == "scrub")
                .unwrap()
                .state,
            "off"
        );
    }

    /// Two nodes on one index run the same once-per-archive worker: one works, the other
    /// stands by naming the holder; when the holder stops without a word (as a killed process
    /// does), the other takes the work over once the lease expires; a release hands it over
    /// at once.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_leased_worker_runs_on_one_node_and_moves_when_its_node_stops() {
        use strata_core::config::NodeRole;
        let dir = tempfile::tempdir().unwrap();
        let index = strata_index::Index::open(&dir.path().join("index.sqlite")).unwrap();
        let lease = Duration::from_millis(600);
        let metrics = Arc::new(Metrics::new());
        let start = |id: &str| {
            let node = Node::new(index.clone(), id.into(), NodeRole::All, lease);
            let workers = Workers::default();
            let rounds = Arc::new(AtomicU32::new(0));
            let r = rounds.clone();
            workers.supervise_leased(
                "job",
                metrics.clone(),
                Duration::ZERO,
                node.clone(),
                move || {
                    let r = r.clone();
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        Ok(RoundDone {
                            pause: Duration::from_millis(20),
                            detail: None,
                        })
                    }
                },
            );
            (node, workers, rounds)
        };
        let (node_a, a, rounds_a) = start("node-a");
        until(&a, "job", |s| s.rounds >= 1).await;
        let (node_b, b, rounds_b) = start("node-b");
        let standby = until(&b, "job", |s| s.state == "standby").await;
        assert!(
            standby
                .detail
                .as_deref()
                .unwrap()
                .starts_with("held by node node-a until "),
            "{standby:?}"
        );
        let seen = standby.lease.unwrap();
        assert_eq!((seen.holder.as_str(), seen.held_here), ("node-a", false));
        // a holder renews it for as long as it lives, well past one lease's length
        tokio::time::sleep(lease * 2).await;
        assert_eq!(rounds_b.load(Ordering::SeqCst), 0);
        let held = until(&a, "job", |s| s.lease.as_ref().is_some_and(|l| l.held_here)).await;
        assert!(held.lease.unwrap().expires_at > now_ms());

        // node a stops without releasing: b takes over once the lease has expired
        a.stop().await;
        let stopped_at = std::time::Instant::now();
        let before = rounds_a.load(Ordering::SeqCst);
        let took = until(&b, "job", |s| s.rounds >= 1).await;
        let after = stopped_at.elapsed();
        assert!(after >= lease / 2 && after < lease * 3, "{after:?}");
        assert_eq!(took.lease.unwrap().holder, "node-b");
        assert_eq!(rounds_a.load(Ordering::SeqCst), before, "a works no more");
        // b releases on stopping: a new node a takes over at once
        b.stop().await;
        assert_eq!(node_b.release().await.unwrap(), 1);
        let (_, a2, rounds_a2) = start("node-a");
        let handed = std::time::Instant::now();
        until(&a2, "job", |s| s.rounds >= 1).await;
        assert!(handed.elapsed() < lease / 2, "{:?}", handed.elapsed());
        assert!(rounds_a2.load(Ordering::SeqCst) >= 1);
        a2.stop().await;
        drop(node_a);
    }
}
