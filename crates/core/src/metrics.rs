//! Prometheus metrics, served at `/metrics`: what was ingested and how fast, replica errors, the
//! repair queue (so an operator sees a failing disk before a second one fails), how long every
//! operation of the store, the index and the render pool takes, and the background workers.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;
/// (engine, operation): static names, so recording a duration allocates nothing.
type OpLabels = [(&'static str, &'static str); 2];
type OpHistogram = Family<OpLabels, Histogram, fn() -> Histogram>;

/// Buckets of operation durations: 20 µs to about 21 s, doubling, from a point read of the
/// index to a multi-gigabyte put.
fn op_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00002, 2.0, 21,
    ))
}

pub struct Metrics {
    registry: Registry,
    ingest: Family<Labels, Counter>,
    ingest_bytes: Counter,
    ingest_seconds: Histogram,
    replica_errors: Family<Labels, Counter>,
    repair_queue: Gauge,
    op_seconds: OpHistogram,
    worker_runs: Family<Labels, Counter>,
    node: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strata");
        let ingest = Family::<Labels, Counter>::default();
        let ingest_bytes = Counter::default();
        // 0.5 ms .. ~16 s: an in-memory instance to a multi-gigabyte one.
        let ingest_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16),
        );
        let replica_errors = Family::<Labels, Counter>::default();
        let repair_queue = Gauge::default();
        let op_seconds = OpHistogram::new_with_constructor(op_histogram);
        let worker_runs = Family::<Labels, Counter>::default();
        let node = Family::<Labels, Gauge>::default();
        registry.register(
            "ingest_instances",
            "Instances through the ingest path, by outcome",
            ingest.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Bytes of instances stored",
            ingest_bytes.clone(),
        );
        registry.register(
            "ingest_seconds",
            "Time from bytes received to acknowledgement",
            ingest_seconds.clone(),
        );
        registry.register(
            "replica_errors",
            "Failed replica operations, by replica and operation",
            replica_errors.clone(),
        );
        registry.register(
            "repair_queue_length",
            "Replica copies waiting for repair",
            repair_queue.clone(),
        );
        registry.register(
            "operation_seconds",
            "Duration of each store, index and render operation, by engine and operation",
            op_seconds.clone(),
        );
        registry.register(
            "worker_runs",
            "Rounds of each background worker, by worker and outcome",
            worker_runs.clone(),
        );
        registry.register(
            "node_info",
            "This node of the archive, by id and role (always 1): what every other series of its /metrics is about",
            node.clone(),
        );
        Metrics {
            registry,
            ingest,
            ingest_bytes,
            ingest_seconds,
            replica_errors,
            repair_queue,
            op_seconds,
            worker_runs,
            node,
        }
    }

    /// Names the node these metrics are of (`strata_node_info{node, role} 1`).
    pub fn set_node(&self, id: &str, role: &str) {
        self.node
            .get_or_create(&vec![
                ("node".into(), id.into()),
                ("role".into(), role.into()),
            ])
            .set(1);
    }

    pub fn ingested(&self, outcome: &str, bytes: u64, elapsed: Duration) {
        self.ingest
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
        if outcome == "stored" || outcome == "replaced" {
            self.ingest_bytes.inc_by(bytes);
        }
        self.ingest_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn replica_error(&self, replica: usize, op: &str) {
        self.replica_errors
            .get_or_create(&vec![
                ("replica".into(), (replica + 1).to_string()),
                ("op".into(), op.into()),
            ])
            .inc();
    }

    /// Records that `op` of `engine` took `elapsed`.
    pub fn observe(&self, engine: &'static str, op: &'static str, elapsed: Duration) {
        self.op_seconds
            .get_or_create(&[("engine", engine), ("op", op)])
            .observe(elapsed.as_secs_f64());
    }

    /// A timer of `op` of `engine`: its duration is recorded when it is dropped, however the
    /// operation ended.
    pub fn time(&self, engine: &'static str, op: &'static str) -> OpTimer<'_> {
        OpTimer {
            metrics: self,
            engine,
            op,
            started: std::time::Instant::now(),
        }
    }

    /// Counts one round of a background worker.
    pub fn worker_ran(&self, worker: &str, outcome: &str) {
        self.worker_runs
            .get_or_create(&vec![
                ("worker".into(), worker.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    pub fn set_repair_queue(&self, n: i64) {
        self.repair_queue.set(n);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// See [`Metrics::time`].
pub struct OpTimer<'a> {
    metrics: &'a Metrics,
    engine: &'static str,
    op: &'static str,
    started: std::time::Instant,
}

impl Drop for OpTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .observe(self.engine, self.op, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_timed_by_engine_and_name() {
        let m = Metrics::new();
        {
            let _t = m.time("index", "studies");
        }
        m.observe("store", "put", Duration::from_millis(3));
        m.worker_ran("scrub", "ok");
        m.set_node("pacs-1", "all");
        let text = m.render();
        assert!(
            text.contains("strata_node_info{node=\"pacs-1\",role=\"all\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strata_operation_seconds_count{engine=\"index\",op=\"studies\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strata_operation_seconds_count{engine=\"store\",op=\"put\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strata_worker_runs_total{worker=\"scrub\",outcome=\"ok\"} 1"),
            "{text}"
        );
    }
}
