//! Prometheus metrics, served at `/metrics`: what was ingested and how fast, replica errors, and
//! the repair queue, so an operator sees a failing disk before a second one fails.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    ingest: Family<Labels, Counter>,
    ingest_bytes: Counter,
    ingest_seconds: Histogram,
    replica_errors: Family<Labels, Counter>,
    repair_queue: Gauge,
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
        Metrics {
            registry,
            ingest,
            ingest_bytes,
            ingest_seconds,
            replica_errors,
            repair_queue,
        }
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

    pub fn set_repair_queue(&self, n: i64) {
        self.repair_queue.set(n);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
