//! Supervised background workers: each runs in rounds, and its supervisor records how every
//! round ended. A round that fails or panics is reported in the worker's status and in the
//! metrics, and the worker starts again after a pause; it never ends the process, and it never
//! ends silently.

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
    /// it tries again) or `off` (turned off by the configuration).
    pub state: &'static str,
    /// Rounds finished, however they ended.
    pub rounds: u64,
    pub failures: u64,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// What the worker last said of its work (its progress, what it did).
    pub detail: Option<String>,
}

/// The statuses of every worker of this process.
#[derive(Clone)]
pub struct Workers {
    statuses: Arc<Mutex<BTreeMap<String, WorkerStatus>>>,
    after_failure: Duration,
}

impl Default for Workers {
    fn default() -> Workers {
        Workers {
            statuses: Arc::default(),
            after_failure: AFTER_FAILURE,
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
        workers.update(name, |_| {});
        tokio::spawn(async move {
            tokio::time::sleep(first_wait).await;
            loop {
                workers.update(name, |s| {
                    s.state = "running";
                    s.last_started_at = Some(now_ms());
                });
                let ended = AssertUnwindSafe(round()).catch_unwind().await;
                let pause = match ended {
                    Ok(Ok(done)) => {
                        metrics.worker_ran(name, "ok");
                        workers.update(name, |s| {
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
                        workers.failed(name, &metrics, e.to_string());
                        workers.after_failure
                    }
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "no reason given".into());
                        tracing::error!(worker = name, "the worker panicked: {why}");
                        workers.failed(name, &metrics, format!("panicked: {why}"));
                        workers.after_failure
                    }
                };
                tokio::time::sleep(pause).await;
            }
        });
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
}
