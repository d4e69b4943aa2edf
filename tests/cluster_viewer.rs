//! The viewer end to end through the cluster: Debian's chromium, headless, runs
//! tests/viewer/e2e.mjs against HAProxy in front of three nodes (one PostgreSQL index, three
//! Garage replicas). Mid-session the node holding the viewer's stream (its WebSocket, as the
//! proxy's statistics show) is killed with SIGKILL: the viewer reconnects through the proxy to
//! another node and shows the same series, slice and window, settled lossless again, and the
//! signed-in session goes on there (sessions live in the shared index). Screenshots are left
//! under target/viewer-screenshots/cluster.

mod common;

use common::cluster::Cluster;
use common::viewer::{node, screenshots, two_hospitals};
use common::{add_user, broken_jpeg};
use std::time::Duration;

#[test]
fn the_viewer_goes_on_on_another_node_when_the_one_holding_its_stream_is_killed() {
    let mut c = Cluster::start();
    let t = &c.nodes[0].archive;
    let (family, study) = two_hospitals(t);
    let broken = "1.2.826.0.1.3680043.8.498.77001";
    std::fs::create_dir_all(t.path("broken")).unwrap();
    broken_jpeg(&t.path("broken/broken.dcm"), broken);
    t.ok(&["import", t.path("broken").to_str().unwrap()]);
    add_user(t, "rad", "radiologist");
    add_user(t, "boss", "admin");
    let shots = screenshots("cluster");
    let base = c.proxy.base();
    let mut moves = Vec::new();
    let (ok, log) = node(
        "e2e.mjs",
        &[
            ("BASE", &base),
            ("RAD_USER", "rad"),
            ("RAD_PASSWORD", common::PASSWORD),
            ("ADMIN_USER", "boss"),
            ("ADMIN_PASSWORD", common::PASSWORD),
            ("PATIENT", &family),
            ("STUDY", &study),
            ("BROKEN_STUDY", broken),
            ("OUT", &shots),
        ],
        || {
            // the page is at rest (settled lossless): its one connection is the stream's
            let holder = c.proxy.sole_http_holder(Duration::from_secs(20));
            let n: usize = holder.trim_start_matches("node").parse().unwrap();
            c.nodes[n - 1].server().stop();
            // the viewer reconnects by itself, through the proxy, to a node still running
            let next = c.proxy.sole_http_holder(Duration::from_secs(30));
            eprintln!("the stream's node {holder} killed; it went on on {next}");
            moves.push((holder, next));
        },
    );
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
