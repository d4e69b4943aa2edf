//! The archive's upkeep, which no request asks for: the repair worker (copies queued as bad are
//! rewritten from a good one), the scrub (every copy verified; [`scrub`]), the audit export
//! (the trail copied to the replicas), stale staging files removed, and the MPI's weights
//! re-estimated as its population grows. Each runs as a supervised worker ([`workers`]) whose
//! status an operator can read. When several nodes share the index, each of these runs on one
//! node at a time, the one holding its lease ([`leases`]); a `render` node runs none of them.

pub mod leases;
pub mod nodes;
pub mod scrub;
pub mod workers;

use crate::ServiceError;
use leases::Node;
use scrub::{Scrubber, SCRUB};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use strata_core::config::{RepairConfig, ScrubConfig};
use strata_core::{BlobId, Metrics};
use strata_index::{Index, WorkerProgress};
use strata_store::scrub::{scrub_blob, BadCopyLeft, ScrubReport};
use strata_store::Store;
use workers::{RoundDone, WorkerStatus, Workers};

/// Where the audit trail is copied on every replica: sealed JSON batches named by their first
/// and last event ids, so listing order is trail order.
pub const AUDIT_PREFIX: &str = "audit";
/// Events per exported batch.
const AUDIT_BATCH: usize = 10_000;
/// How often a serving archive copies new audit events to the replicas: a lost index loses at
/// most this much of the trail.
const AUDIT_EXPORT_PERIOD: Duration = Duration::from_secs(30);
/// A staging file this old is left over from a write a crash cut short: a write in progress
/// changes its file until it renames it, seconds at most.
pub const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Fewest local keys worth estimating MPI weights from; below it the prior weights serve.
const MPI_MIN_ESTIMATE_RECORDS: usize = 1000;
/// How often the MPI checks whether its population grew enough to re-estimate its weights.
const MPI_ESTIMATE_PERIOD: Duration = Duration::from_secs(600);

/// The workers whose work must happen once per archive, each under the lease of its name.
pub const ONCE_PER_ARCHIVE: [&str; 4] = ["repair", "audit_export", "mpi_estimate", SCRUB];

#[derive(Clone)]
pub struct Maintenance {
    store: Arc<Store>,
    index: Index,
    metrics: Arc<Metrics>,
    scrub: ScrubConfig,
    repair: RepairConfig,
    workers: Workers,
    node: Node,
    /// The heartbeat's task, while the node serves.
    heartbeat: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// The tiers, whose policy worker runs here when a cold tier is configured.
    tiers: Option<Arc<crate::tiers::Tiers>>,
}

impl Maintenance {
    pub fn new(
        store: Arc<Store>,
        index: Index,
        metrics: Arc<Metrics>,
        scrub: ScrubConfig,
        repair: RepairConfig,
        node: Node,
    ) -> Maintenance {
        Maintenance {
            store,
            index,
            metrics,
            scrub,
            repair,
            workers: Workers::default(),
            node,
            heartbeat: Arc::default(),
            tiers: None,
        }
    }

    /// This upkeep, with the tier policy's worker (under the lease `tiers`) when `tiers` has
    /// a cold tier.
    pub fn with_tiers(mut self, tiers: Arc<crate::tiers::Tiers>) -> Maintenance {
        self.tiers = Some(tiers);
        self
    }

    /// This process as a node of the archive: its id, its role, its leases.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Every blob worth checking: the index's and any a replica holds that the index lacks.
    pub async fn all_blobs(&self) -> Result<Vec<BlobId>, ServiceError> {
        let mut all: BTreeSet<BlobId> = self.index.blob_ids().await?.into_iter().collect();
        for r in 0..self.store.replicas().len() {
            match self.store.replicas().list_blobs(r).await {
                Ok(list) => all.extend(list.into_iter().map(|(b, _)| b)),
                Err(e) => tracing::warn!(replica = r + 1, "listing failed: {e}"),
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Removes the staging files that writes cut short by a crash left in local replicas, once
    /// they are [`STALE_STAGING`] old; returns how many.
    pub fn remove_stale_staging(&self) -> usize {
        remove_stale_staging(&self.store)
    }

    /// Verifies every copy of `blobs`; bad copies are repaired (`repair`) or queued.
    pub async fn scrub(
        &self,
        blobs: &[BlobId],
        repair: bool,
    ) -> Result<(ScrubReport, Vec<BadCopyLeft>), ServiceError> {
        let mut total = ScrubReport::default();
        let mut left_all = Vec::new();
        for blob in blobs {
            let (report, left) = check_blob(&self.store, &self.index, blob, repair).await?;
            total.add(&report);
            left_all.extend(left);
        }
        Ok((total, left_all))
    }

    /// Copies the audit events not yet on the replicas there, in sealed batches; returns how
    /// many were copied.
    pub async fn export_audit(&self) -> Result<usize, ServiceError> {
        let mut copied = 0;
        loop {
            // Only durable events leave: a batch on the replicas must never hold an event that
            // a power cut could still take from the index.
            self.index.sync().await?;
            let after = self.index.audit_exported().await?;
            let filter = strata_index::AuditFilter {
                after_id: Some(after),
                limit: Some(AUDIT_BATCH),
                ..Default::default()
            };
            let events = self.index.audit_events(filter).await?;
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                return Ok(copied);
            };
            let name = format!("{AUDIT_PREFIX}/{:012}-{:012}.json", first.id, last.id);
            let body = serde_json::to_vec(&events).expect("audit events serialise");
            self.store.put_record(&name, &body).await?;
            self.index.set_audit_exported(last.id).await?;
            copied += events.len();
        }
    }

    /// Starts the background workers, each under a supervisor that reports how its rounds end
    /// ([`Maintenance::workers`]) and under its lease ([`ONCE_PER_ARCHIVE`]): the repair
    /// worker, the audit export, the MPI's re-estimation and the scrub. A `render` node starts
    /// none: its work is the viewer's, and the other nodes do the upkeep.
    pub fn spawn_workers(&self) {
        let tiers = self.tiers.clone().filter(|t| t.config().enabled());
        if !self.node.role().runs_upkeep() {
            let names = ONCE_PER_ARCHIVE
                .into_iter()
                .chain(tiers.as_ref().map(|_| crate::tiers::TIERS));
            for name in names {
                self.workers
                    .off(name, "node.role = render: the other nodes do the upkeep");
            }
            return;
        }
        if let Some(t) = tiers {
            if t.config().studies_per_minute > 0.0 {
                self.supervise(crate::tiers::TIERS, Duration::from_secs(60), move || {
                    let t = t.clone();
                    async move { t.round().await }
                });
            } else {
                self.workers
                    .off(crate::tiers::TIERS, "tiers.studies_per_minute = 0");
            }
        }
        let m = self.clone();
        self.supervise("repair", Duration::ZERO, move || {
            let m = m.clone();
            async move {
                let (repaired, failed) = m.run_repairs(None).await?;
                Ok(RoundDone {
                    pause: Duration::from_secs(m.repair.interval_seconds.max(1)),
                    detail: Some(format!(
                        "last round: {repaired} copies repaired, {failed} failed"
                    )),
                })
            }
        });
        let m = self.clone();
        self.supervise("audit_export", AUDIT_EXPORT_PERIOD, move || {
            let m = m.clone();
            async move {
                let copied = m.export_audit().await?;
                Ok(RoundDone {
                    pause: AUDIT_EXPORT_PERIOD,
                    detail: Some(format!("last round: {copied} events copied")),
                })
            }
        });
        let m = self.clone();
        self.supervise("mpi_estimate", Duration::ZERO, move || {
            let m = m.clone();
            async move {
                // The matcher's weights follow the archive's own population: re-estimated
                // (EM, no labels) whenever the number of local keys has doubled since the
                // last estimate.
                let detail = match m
                    .index
                    .mpi_estimate(MPI_MIN_ESTIMATE_RECORDS, false)
                    .await?
                {
                    Some(n) => {
                        tracing::info!("MPI weights re-estimated from {n} identities");
                        Some(format!("weights re-estimated from {n} identities"))
                    }
                    None => None,
                };
                Ok(RoundDone {
                    pause: MPI_ESTIMATE_PERIOD,
                    detail,
                })
            }
        });
        if self.scrub.blobs_per_second > 0.0 {
            let scrubber = Arc::new(Scrubber::new(
                self.store.clone(),
                self.index.clone(),
                self.scrub.clone(),
            ));
            self.supervise(SCRUB, Duration::ZERO, move || {
                let s = scrubber.clone();
                async move { s.round().await }
            });
        } else {
            self.workers.off(SCRUB, "scrub.blobs_per_second = 0");
        }
    }

    /// Starts a worker of another service whose work must happen once per archive (the
    /// sends), under its lease and among these workers' statuses; on a `render` node it is
    /// recorded as off.
    pub fn spawn_leased<F, Fut>(&self, name: &'static str, round: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<RoundDone, ServiceError>> + Send,
    {
        if !self.node.role().runs_upkeep() {
            self.workers
                .off(name, "node.role = render: the other nodes do this work");
            return;
        }
        self.supervise(name, Duration::ZERO, round);
    }

    /// Supervises the once-per-archive worker `name` under its lease.
    fn supervise<F, Fut>(&self, name: &'static str, first_wait: Duration, round: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<RoundDone, ServiceError>> + Send,
    {
        self.workers.supervise_leased(
            name,
            self.metrics.clone(),
            first_wait,
            self.node.clone(),
            round,
        );
    }

    /// Starts the node's heartbeat ([`nodes`]), on every role: `address` is the URL it serves,
    /// once known.
    pub fn spawn_heartbeat(&self, address: Arc<std::sync::OnceLock<String>>) {
        let beat = nodes::Heartbeat::new(
            self.index.clone(),
            self.metrics.clone(),
            self.node.clone(),
            address,
        );
        let task = tokio::spawn(beat.run());
        if let Some(old) = self.heartbeat.lock().expect("heartbeat lock").replace(task) {
            old.abort();
        }
    }

    /// Each replica's health (its URL without credentials, whether it answers a probe), the
    /// write quorum, the repair queue's length and where the scrub has got to.
    pub async fn replicas(&self) -> Result<serde_json::Value, ServiceError> {
        let replicas = self.store.replicas();
        let reachable = replicas.probe_each().await;
        let list: Vec<serde_json::Value> = replicas
            .shown_urls()
            .into_iter()
            .zip(reachable)
            .enumerate()
            .map(
                |(i, (url, ok))| serde_json::json!({"replica": i + 1, "url": url, "reachable": ok}),
            )
            .collect();
        let queue = self.index.repair_queue_len().await?;
        self.metrics.set_repair_queue(queue);
        Ok(serde_json::json!({
            "replicas": list,
            "write_quorum": replicas.write_quorum(),
            "repair_queue": queue,
            "scrub": self.scrub_progress().await?,
            "scrub_worker": self.workers().into_iter().find(|w| w.name == SCRUB),
        }))
    }

    /// Every node of the archive as its heartbeats describe it, alive or not.
    pub async fn nodes(&self) -> Result<Vec<nodes::NodeStatus>, ServiceError> {
        let rows = self.index.nodes().await?;
        Ok(nodes::statuses(rows, self.node.id(), strata_core::now_ms()))
    }

    /// Stops the background workers (a round under way is cut short) and frees their leases,
    /// so another node takes the work over at once: the process is stopping.
    /// The node holding the audit export copies the events since its last round first: a
    /// replica alone (a reindex) then holds the trail up to the stop, not up to a round before.
    pub async fn stop_workers(&self) {
        if let Some(beat) = self.heartbeat.lock().expect("heartbeat lock").take() {
            beat.abort();
        }
        let exporting = self
            .workers
            .statuses()
            .iter()
            .any(|w| w.name == "audit_export" && w.lease.as_ref().is_some_and(|l| l.held_here));
        self.workers.stop().await;
        if exporting {
            match self.export_audit().await {
                Ok(n) => tracing::info!("{n} audit events copied to the replicas before stopping"),
                Err(e) => tracing::warn!("copying the last audit events to the replicas: {e}"),
            }
        }
        match self.node.release().await {
            Ok(n) if n > 0 => tracing::info!("{n} leases handed over"),
            Ok(_) => {}
            Err(e) => tracing::warn!("freeing the leases: {e}"),
        }
    }

    /// The background workers' statuses (empty in a process that started none).
    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.workers.statuses()
    }

    /// Where the scrub has got to in its pass over the archive, as the index keeps it.
    pub async fn scrub_progress(&self) -> Result<Option<WorkerProgress>, ServiceError> {
        Ok(self.index.worker_progress(SCRUB.to_string()).await?)
    }

    /// Carries out the repairs that are due (or, with `only`, those of one blob now).
    /// Returns (repaired, failed).
    pub async fn run_repairs(&self, only: Option<BlobId>) -> Result<(u64, u64), ServiceError> {
        let items = match only {
            Some(blob) => self.index.repairs_for(blob).await?,
            None => self.index.due_repairs(256).await?,
        };
        let (mut ok, mut failed) = (0, 0);
        for item in items {
            match self.store.repair(&item.blob_id, item.replica).await {
                Ok(()) => {
                    self.index.repair_done(item.blob_id, item.replica).await?;
                    tracing::info!(blob = %item.blob_id, replica = item.replica + 1, "repaired");
                    ok += 1;
                }
                Err(e) => {
                    self.metrics.replica_error(item.replica, "repair");
                    self.index.repair_failed(item, e.to_string()).await?;
                    failed += 1;
                }
            }
        }
        self.metrics
            .set_repair_queue(self.index.repair_queue_len().await?);
        Ok((ok, failed))
    }
}

/// Removes the staging files that writes cut short by a crash left in `store`'s local replicas,
/// once they are [`STALE_STAGING`] old; returns how many.
fn remove_stale_staging(store: &Store) -> usize {
    let (removed, problems) =
        tokio::task::block_in_place(|| store.replicas().remove_stale_staging(STALE_STAGING));
    for p in &problems {
        tracing::warn!("removing unfinished writes: {p}");
    }
    for r in &removed {
        tracing::info!("removed {}, left by a write a crash cut short", r.display());
    }
    removed.len()
}

/// Verifies every copy of `blob` (repairing bad ones when `repair`), and queues for repair the
/// bad copies left, unless no good copy is left to repair them from.
async fn check_blob(
    store: &Store,
    index: &Index,
    blob: &BlobId,
    repair: bool,
) -> Result<(ScrubReport, Vec<BadCopyLeft>), ServiceError> {
    let (report, left) = scrub_blob(store, blob, repair).await;
    let queue = left
        .iter()
        .filter(|_| report.lost == 0)
        .map(|l| (l.blob, l.replica, format!("scrub: {}", l.reason)))
        .collect();
    index.enqueue_repairs(queue).await?;
    Ok((report, left))
}
