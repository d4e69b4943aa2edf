//! The viewer end to end through the cluster: Debian's chromium, headless, runs
//! tests/viewer/e2e.mjs against HAProxy in front of three nodes (one PostgreSQL index, three
//! Garage replicas). Mid-session the node holding the viewer's stream (its WebSocket, as the
//! proxy's statistics show) is killed with SIGKILL: the viewer reconnects through the proxy to
//! another node and shows the same series, slice and window, settled lossless again, and the
//! signed-in session goes on there (sessions live in the shared index). Screenshots are left
//! under target/viewer-screenshots/cluster.

mod common;

use common::cluster::Cluster;
use common::viewer::{screenshots, EndToEnd};
use std::time::Duration;

#[test]
fn the_viewer_goes_on_on_another_node_when_the_one_holding_its_stream_is_killed() {
    let mut c = Cluster::start();
    let t = &c.nodes[0].archive;
    let e2e = EndToEnd::prepare(t);
    let shots = screenshots("cluster");
    let base = c.proxy.base();
    let mut moves = Vec::new();
    let (ok, log) = e2e.run(&base, &shots, || {
        // the page is at rest (settled lossless): its one connection is the stream's
        let holder = c.proxy.sole_http_holder(Duration::from_secs(20));
        let n: usize = holder.trim_start_matches("node").parse().unwrap();
        c.nodes[n - 1].server().stop();
        // the viewer reconnects by itself, through the proxy, to a node still running
        let next = c.proxy.sole_http_holder(Duration::from_secs(30));
        eprintln!("the stream's node {holder} killed; it went on on {next}");
        moves.push((holder, next));
    });
    let logs: Vec<String> = c
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            n.server
                .as_ref()
                .map(|s| format!("node{}:\n{}", i + 1, s.log_text()))
        })
        .collect();
    assert!(
        ok,
        "viewer end to end through the cluster:\n{log}\n{}",
        logs.join("\n")
    );
    println!("{log}");
    assert_eq!(moves.len(), 1, "{log}");
    let (killed, next) = &moves[0];
    assert_ne!(killed, next, "the stream went on on another node");
    let k: usize = killed.trim_start_matches("node").parse().unwrap();
    assert!(
        !c.nodes[k - 1].server().alive(),
        "{killed} was killed for good"
    );
    for step in [
        "ok: after idle the badge says LOSSLESS",
        "ok: a lost connection is said so",
        "ok: after the server came back the view is where it was",
        "ok: the signed-in session holds after the reconnection (200 rad)",
        "ok: an expired session is said so",
        "ok: once changed, the study list opens",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
}
