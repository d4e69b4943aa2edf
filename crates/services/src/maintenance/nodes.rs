//! The node registry's writing side: every serving node writes a heartbeat to the index every
//! [`HEARTBEAT`] (its role, the URL it serves, its version, its load), so an operator sees
//! every node of the archive from any one of them. A node not seen for three heartbeats is
//! taken as down ([`ALIVE_WITHIN`]).

use super::leases::Node;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use strata_core::{now_ms, Load, Metrics};
use strata_index::{Index, NodeRow};

/// How often a serving node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node seen within this long is alive: it missed at most two heartbeats.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());
/// A node not seen for this long is forgotten (its row deleted by any node's heartbeat): it was
/// retired or renamed, and the console lists it as down until then. One that starts again
/// writes its row anew.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The window of the rates a heartbeat reports.
const RATE_WINDOW_MS: i64 = 60_000;

/// A node as the console shows it: its last heartbeat, and whether it is alive.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub row: NodeRow,
    /// Seen within [`ALIVE_WITHIN`].
    pub alive: bool,
    /// The node answering is this one.
    pub this: bool,
}

/// Every node that ever wrote a heartbeat, each said alive or not as of `now` (ms).
pub fn statuses(rows: Vec<NodeRow>, this: &str, now: i64) -> Vec<NodeStatus> {
    rows.into_iter()
        .map(|row| NodeStatus {
            alive: now - row.last_seen <= ALIVE_WITHIN.as_millis() as i64,
            this: row.id == this,
            row,
        })
        .collect()
}

/// One node's heartbeat: what it writes, and the counts it turns into rates.
pub struct Heartbeat {
    index: Index,
    metrics: Arc<Metrics>,
    node: Node,
    started_at: i64,
    /// The URL the node serves, known once its HTTP listener is bound.
    address: Arc<OnceLock<String>>,
    /// Its load at each heartbeat of the last minute (ms, load), oldest first.
    samples: VecDeque<(i64, Load)>,
}

impl Heartbeat {
    pub fn new(
        index: Index,
        metrics: Arc<Metrics>,
        node: Node,
        address: Arc<OnceLock<String>>,
    ) -> Heartbeat {
        Heartbeat {
            index,
            metrics,
            node,
            started_at: now_ms(),
            address,
            samples: VecDeque::new(),
        }
    }

    /// Writes a heartbeat now and every [`HEARTBEAT`] after, until the task is aborted; a
    /// heartbeat the index refuses is logged and the next one tried.
    pub async fn run(mut self) {
        // The first heartbeat names the URL the node serves: its listener is bound in a moment.
        for _ in 0..50 {
            if self.address.get().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_ms();
            let row = self.row(now, self.metrics.load());
            let forget_before = now - FORGET_AFTER.as_millis() as i64;
            if let Err(e) = self.index.heartbeat(row, forget_before).await {
                tracing::warn!("writing the node's heartbeat: {e}");
            }
        }
    }

    /// The row of a heartbeat at `now` with the node's counts `load`: the rates are the counts'
    /// growth over the last minute (since the node started, when that is less).
    fn row(&mut self, now: i64, load: Load) -> NodeRow {
        self.samples.push_back((now, load));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now - at > RATE_WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let (since, first) = self.samples.front().copied().unwrap_or((now, load));
        NodeRow {
            id: self.node.id().to_string(),
            role: self.node.role().as_str().to_string(),
            address: self.address.get().cloned().unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            last_seen: now,
            load: serde_json::json!({
                "stored_last_minute": load.stored.saturating_sub(first.stored),
                "queries_last_minute": load.queries.saturating_sub(first.queries),
                "window_seconds": (now - since) / 1000,
                "http_in_flight": load.http_in_flight,
                "associations": load.associations,
                "stored_total": load.stored,
                "queries_total": load.queries,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::config::NodeRole;

    #[tokio::test]
    async fn rates_are_the_growth_over_the_last_minute_and_aliveness_three_beats() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let node = Node::new(
            index.clone(),
            "n1".into(),
            NodeRole::All,
            Duration::from_secs(30),
        );
        let address = Arc::new(OnceLock::new());
        let mut beat = Heartbeat::new(
            index.clone(),
            Arc::new(Metrics::new()),
            node,
            address.clone(),
        );
        let load = |stored, queries| Load {
            stored,
            queries,
            http_in_flight: 2,
            associations: 1,
        };
        beat.row(0, load(10, 100));
        beat.row(30_000, load(15, 130));
        address.set("http://n1:8042".into()).unwrap();
        let row = beat.row(70_000, load(40, 200));
        // the sample at 0 fell out of the minute: the rates count from 30 s
        assert_eq!(row.load["stored_last_minute"], 25);
        assert_eq!(row.load["queries_last_minute"], 70);
        assert_eq!(row.load["window_seconds"], 40);
        assert_eq!(row.load["http_in_flight"], 2);
        assert_eq!(row.address, "http://n1:8042");
        index.heartbeat(row.clone(), 0).await.unwrap();
        let mut other = row.clone();
        other.id = "n0".into();
        other.last_seen = 70_000 - ALIVE_WITHIN.as_millis() as i64 - 1;
        index.heartbeat(other, 0).await.unwrap();
        let listed = statuses(index.nodes().await.unwrap(), "n1", 70_000);
        let seen: Vec<_> = listed
            .iter()
            .map(|s| (s.row.id.as_str(), s.alive, s.this))
            .collect();
        assert_eq!(seen, [("n0", false, false), ("n1", true, true)]);
        assert_eq!(listed[1].row, row);
    }
}
