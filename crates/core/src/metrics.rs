//! Prometheus metrics, served at `/metrics`: what was ingested and how fast, replica errors, the
//! repair queue (so an operator sees a failing disk before a second one fails), how long every
//! operation of the store, the index and the render pool takes, and the background workers.
//! An archive's metrics carry its node's id as the label `node`, so the nodes of one archive
//! scraped into one Prometheus stay apart. The same counters give the node's load, which its
//! heartbeat writes to the index for the operator's console ([`Metrics::load`]).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;
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
    /// Every series already carries the node's id (a label of the registry).
    node_labelled: bool,
    queries: Counter,
    http_in_flight: Gauge,
    associations: Gauge,
}

/// What a node is doing, as counted since it started: what its heartbeat turns into rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Instances stored (or replaced) through the ingest path.
    pub stored: u64,
    /// Searches answered (QIDO-RS and C-FIND).
    pub queries: u64,
    /// HTTP requests being answered now.
    pub http_in_flight: i64,
    /// DIMSE associations open now.
    pub associations: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics without a node label (tools and tests).
    pub fn new() -> Metrics {
        Metrics::with_registry(Registry::with_prefix("strata"), false)
    }

    /// The metrics of node `id`: every series is labelled `node="<id>"`.
    pub fn for_node(id: &str) -> Metrics {
        Metrics::with_registry(
            Registry::with_prefix_and_labels(
                "strata",
                [("node".into(), id.to_string().into())].into_iter(),
            ),
            true,
        )
    }

    fn with_registry(mut registry: Registry, node_labelled: bool) -> Metrics {
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
        let (queries, http_in_flight, associations) =
            (Counter::default(), Gauge::default(), Gauge::default());
        registry.register(
            "queries",
            "Searches answered (QIDO-RS and C-FIND)",
            queries.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered",
            http_in_flight.clone(),
        );
        registry.register(
            "dimse_associations",
            "DIMSE associations open",
            associations.clone(),
        );
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
            "Duration of each store, index, render and DIMSE operation, by engine and operation",
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
            node_labelled,
            queries,
            http_in_flight,
            associations,
        }
    }

    /// Counts one search answered.
    pub fn query_answered(&self) {
        self.queries.inc();
    }

    /// Counts an HTTP request as being answered until the guard is dropped.
    pub fn http_request(&self) -> InFlight {
        InFlight::of(&self.http_in_flight)
    }

    /// Counts a DIMSE association as open until the guard is dropped.
    pub fn association(&self) -> InFlight {
        InFlight::of(&self.associations)
    }

    /// The node's load so far.
    pub fn load(&self) -> Load {
        let stored = ["stored", "replaced"]
            .iter()
            .map(|o| {
                self.ingest
                    .get_or_create(&vec![("outcome".into(), o.to_string())])
                    .get()
            })
            .sum();
        Load {
            stored,
            queries: self.queries.get(),
            http_in_flight: self.http_in_flight.get(),
            associations: self.associations.get(),
        }
    }

    /// Names the node these metrics are of (`strata_node_info{node, role} 1`).
    pub fn set_node(&self, id: &str, role: &str) {
        let mut labels = vec![("role".to_string(), role.to_string())];
        // metrics of a node (`for_node`) label every series with it already
        if !self.node_labelled {
            labels.insert(0, ("node".into(), id.into()));
        }
        self.node.get_or_create(&labels).set(1);
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

/// Something in progress, counted in a gauge until dropped (see [`Metrics::http_request`]).
pub struct InFlight(Gauge<i64, AtomicI64>);

impl InFlight {
    fn of(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
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

    #[test]
    fn a_nodes_series_carry_its_id_and_its_load_is_counted() {
        let m = Metrics::for_node("pacs-2");
        m.set_node("pacs-2", "ingest");
        m.observe("dimse", "c-find", Duration::from_millis(1));
        m.ingested("stored", 10, Duration::from_millis(1));
        m.ingested("duplicate", 10, Duration::from_millis(1));
        m.query_answered();
        let held = m.association();
        let load = m.load();
        assert_eq!((load.stored, load.queries, load.associations), (1, 1, 1));
        drop(held);
        assert_eq!(m.load().associations, 0);
        let text = m.render();
        assert!(
            text.contains("strata_node_info{node=\"pacs-2\",role=\"ingest\"} 1"),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("strata_operation_seconds_count{"))
            .unwrap_or_else(|| panic!("{text}"));
        for label in ["node=\"pacs-2\"", "engine=\"dimse\"", "op=\"c-find\""] {
            assert!(line.contains(label), "{line}");
        }
        assert!(
            text.lines()
                .filter(|l| l.starts_with("strata_"))
                .all(|l| l.contains("node=\"pacs-2\"")),
            "{text}"
        );
    }
}
