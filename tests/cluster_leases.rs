//! Several `strata serve` nodes making one archive, end to end with the real binary: two nodes
//! on one PostgreSQL index (their own data directories, the same master key and replica
//! folders) share the once-per-archive work through leases — exactly one holds each, both say
//! who, a holder killed with SIGKILL is replaced within the lease's expiry and the scrub goes
//! on from its saved place, a holder stopped with SIGTERM hands its leases over at once — and
//! each node role serves what it says and refuses the rest.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_synth::{Modality, SynthOptions};

/// The work that runs once per archive, each under the lease of its name.
const ONCE: [&str; 6] = [
    "audit_export",
    "expiry",
    "mpi_estimate",
    "repair",
    "scrub",
    "send",
];
/// The test nodes' lease: short, so a takeover is quick to see.
const LEASE_SECONDS: u64 = 3;

fn master_key() -> String {
    "5a".repeat(32)
}

/// Node `id` of the archive whose index is at `url` and whose replicas are in `shared`.
fn node(url: &str, shared: &Path, id: &str, role: &str) -> TestArchive {
    let replicas = ["r-a", "r-b"]
        .map(|r| format!("file://{}", shared.join(r).display()))
        .join(",");
    let mut t = TestArchive::on(IndexEngine::Sqlite).with_env(
        [
            ("STRATA_MASTER_KEY", master_key()),
            ("STRATA_STORE_REPLICAS", replicas),
            ("STRATA_NODE_ID", id.to_string()),
            ("STRATA_NODE_ROLE", role.to_string()),
            ("STRATA_NODE_LEASE_SECONDS", LEASE_SECONDS.to_string()),
            // a pass over 192 blobs takes about ten seconds, saved every 64
            ("STRATA_SCRUB_BLOBS_PER_SECOND", "20".to_string()),
            ("STRATA_SCRUB_TRANQUILITY", "0".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    t.index_url = Some(url.to_string());
    t
}

fn studies(slices: usize) -> SynthOptions {
    SynthOptions {
        seed: 19,
        patients: 2,
        studies: 4,
        series_per_study: 2,
        slices,
        rows: 16,
        cols: 16,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

/// `GET /api/workers` of a node.
fn workers(api: &Api) -> Value {
    api.ok(api.get("/api/workers"))
}

/// The once-per-archive workers of a `/api/workers` answer, by name.
fn once_workers(v: &Value) -> BTreeMap<String, Value> {
    v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| ONCE.contains(&w["name"].as_str().unwrap()))
        .map(|w| (w["name"].as_str().unwrap().to_string(), w.clone()))
        .collect()
}

/// Polls `f` every 100 ms until it answers, for `secs` at most.
fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every once-per-archive worker of the answer runs here under its own lease.
fn holds_all(v: &Value, id: &str) -> bool {
    let w = once_workers(v);
    w.len() == ONCE.len()
        && w.values().all(|w| {
            w["state"] != "standby" && w["lease"]["holder"] == id && w["lease"]["held_here"] == true
        })
}

/// The leases as the index holds them (read straight from PostgreSQL): name to (holder,
/// expires_at).
fn leases_in_index(url: &str) -> BTreeMap<String, (String, i64)> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query("SELECT name, holder, expires_at FROM strata.leases", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn two_nodes_share_the_upkeep_through_leases_and_a_dead_holder_is_replaced() {
    let url = strata_testkit::postgres::database();
    let shared = tempfile::tempdir().unwrap();
    let a = node(&url, shared.path(), "node-a", "all");
    let b = node(&url, shared.path(), "node-b", "all");
    a.generate("in", &studies(24));
    a.ok(&["import", a.path("in").to_str().unwrap()]);

    // node a starts first and takes every lease; node b then stands by
    let mut server_a = a.serve_node(free_port(), true);
    let api_a = Api::new(&server_a, &token(&a, "admin"));
    until("node a holds every lease", 20, || {
        holds_all(&workers(&api_a), "node-a").then_some(())
    });
    let server_b = b.serve_node(free_port(), true);
    let api_b = Api::new(&server_b, &token(&b, "admin"));
    let seen_by_b = until("node b stands by for every lease", 20, || {
        let v = workers(&api_b);
        let w = once_workers(&v);
        (w.len() == ONCE.len() && w.values().all(|w| w["state"] == "standby")).then_some(v)
    });
    assert_eq!(seen_by_b["node"]["id"], "node-b");
    assert_eq!(seen_by_b["node"]["role"], "all");
    for (name, w) in once_workers(&seen_by_b) {
        assert_eq!(w["lease"]["holder"], "node-a", "{name}: {w}");
        assert_eq!(w["lease"]["held_here"], false, "{name}: {w}");
        let detail = w["detail"].as_str().unwrap();
        assert!(detail.starts_with("held by node node-a until "), "{detail}");
    }
    // both nodes read the same leases: exactly one holder each, node a
    let seen_by_a = workers(&api_a);
    assert!(holds_all(&seen_by_a, "node-a"), "{seen_by_a}");
    for v in [&seen_by_a, &seen_by_b] {
        let holders: BTreeMap<&str, &str> = v["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["name"].as_str().unwrap(), l["holder"].as_str().unwrap()))
            .collect();
        assert_eq!(
            holders,
            ONCE.iter().map(|n| (*n, "node-a")).collect(),
            "{v}"
        );
    }
    let metrics = api_b.get("/metrics").text();
    assert!(
        metrics.contains("strata_node_info{node=\"node-b\",role=\"all\"} 1"),
        "{metrics}"
    );
    let ready = http("GET", &format!("{}/readyz", base(&server_b)), &[], None);
    let ready: Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(
        (&ready["node"], &ready["role"]),
        (&"node-b".into(), &"all".into())
    );

    // node a's scrub saves its place after its first batch of 64 blobs
    let before = until("node a's scrub saved its place", 30, || {
        let s = workers(&api_a)["scrub"].clone();
        (s["done"].as_i64().unwrap_or(0) >= 64).then_some(s)
    });
    assert_eq!(before["pass"], 1, "{before}");
    let done_before = before["done"].as_i64().unwrap();
    assert!(done_before < 192, "the pass is under way: {before}");

    // node a dies without a word: node b takes every lease over within the lease's expiry
    server_a.stop();
    let killed = Instant::now();
    let mut last = Value::Null;
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        until("node b holds every lease", 15, || {
            last = workers(&api_b);
            holds_all(&last, "node-b").then_some(())
        })
    }));
    assert!(held.is_ok(), "node b's workers: {last:#}");
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(2500),
        "took over after {took:?}"
    );
    // and its scrub goes on from node a's place: the same pass, finished over 192 blobs
    let after = until("node b's scrub goes on", 30, || {
        let s = workers(&api_b)["scrub"].clone();
        (s["done"].as_i64().unwrap_or(0) > done_before || s["last_pass_blobs"] == 192).then_some(s)
    });
    assert_eq!(after["pass"], 1, "the pass was not started over: {after}");
    let finished = until("node b finishes the pass", 30, || {
        let s = workers(&api_b)["scrub"].clone();
        (s["last_pass_blobs"] == 192).then_some(s)
    });
    assert_eq!(finished["pass"], 1, "{finished}");
    let scrub_b = &once_workers(&workers(&api_b))["scrub"];
    assert!(
        scrub_b["detail"]
            .as_str()
            .unwrap()
            .contains("pass 1 done: 192 blobs"),
        "{scrub_b}"
    );

    // node a again (a new process): it stands by, as node b holds every lease
    let server_a2 = a.serve_node(free_port(), true);
    let api_a2 = Api::new(&server_a2, &token(&a, "admin"));
    until("node a stands by", 20, || {
        let w = once_workers(&workers(&api_a2));
        (w.len() == ONCE.len()
            && w.values()
                .all(|w| w["state"] == "standby" && w["lease"]["holder"] == "node-b"))
        .then_some(())
    });
    // node b stops cleanly (SIGTERM): it frees its leases on the way out, and node a takes
    // them over without waiting for them to expire
    let mut server_b = server_b;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server_b.process_id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        server_b
            .wait_exit(std::time::Duration::from_secs(30))
            .success(),
        "{}",
        server_b.log_text()
    );
    let exited = now_ms();
    let freed = leases_in_index(&url);
    for name in ONCE {
        let (holder, expires_at) = &freed[name];
        // node a may have taken it already; if not, node b's lease ended when it stopped
        assert!(
            holder == "node-a" || *expires_at <= exited,
            "{name}: {holder} until {expires_at}, stopped at {exited}"
        );
    }
    assert!(
        server_b.log_text().contains("6 leases handed over"),
        "{}",
        server_b.log_text()
    );
    until("node a takes every lease over", 10, || {
        holds_all(&workers(&api_a2), "node-a").then_some(())
    });
}

#[test]
fn a_render_node_serves_the_viewer_and_refuses_stores() {
    let t = TestArchive::new().with_env([
        ("STRATA_NODE_ROLE".to_string(), "render".to_string()),
        ("STRATA_NODE_ID".to_string(), "viewer-1".to_string()),
    ]);
    let files = t.generate("in", &studies(2));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let port = free_port();
    let server = t.serve_node(port, false);
    add_user(&t, "rad", "radiologist");
    until("the render node says it has no DIMSE listener", 10, || {
        let log = server.log_text();
        log.contains("no DIMSE listener (node.role = render)")
            .then_some(())
    });
    // no DIMSE: nothing listens on its port, and storescu cannot store
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let out = tool(
        30,
        "storescu",
        &[
            "-aet",
            "SCU",
            "-aec",
            "STRATA",
            "-to",
            "5",
            "127.0.0.1",
            &port.to_string(),
            files[0].to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));

    let api = Api::new(&server, &token(&t, "admin"));
    // STOW-RS: 421, a problem naming the node and its role
    let stow = api.stow(&files[0]);
    assert_eq!(stow.status, 421, "{}", stow.text());
    assert_eq!(stow.content_type, "application/problem+json");
    let detail = serde_json::from_slice::<Value>(&stow.body).unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("node viewer-1 has node.role = render") && detail.contains("ingest"),
        "{detail}"
    );
    let [study, _, _] = uids(&files[0]);
    let delete = api.call("DELETE", &format!("/dicomweb/studies/{study}"), &[], None);
    assert_eq!(delete.status, 421, "{}", delete.text());

    // what the viewer needs: sign-in, QIDO-RS, metadata, rendered pictures
    let login = http(
        "POST",
        &format!("{}/api/login", base(&server)),
        &[],
        Some((
            "application/json",
            serde_json::json!({"user": "rad", "password": PASSWORD})
                .to_string()
                .as_bytes(),
        )),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let rad = Api::new(&server, &token(&t, "rad"));
    let found = rad.ok(rad.get("/dicomweb/studies"));
    assert_eq!(found.as_array().unwrap().len(), 4, "{found}");
    let metadata = rad.get(&format!("{}/metadata", instance_path(&files[0])));
    assert_eq!(metadata.status, 200, "{}", metadata.text());
    let picture = rad.call(
        "GET",
        &format!("{}/rendered", instance_path(&files[0])),
        &[("Accept", "image/png")],
        None,
    );
    assert_eq!(picture.status, 200, "{}", picture.text());
    assert_eq!(picture.content_type, "image/png");

    // it runs no upkeep, and says so
    let v = workers(&api);
    assert_eq!(v["node"]["role"], "render");
    for (name, w) in once_workers(&v) {
        assert_eq!(w["state"], "off", "{name}: {w}");
    }
    let ready = http("GET", &format!("{}/readyz", base(&server)), &[], None);
    let ready: Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(
        (&ready["node"], &ready["role"]),
        (&"viewer-1".into(), &"render".into())
    );
}

#[test]
fn an_ingest_node_stores_over_dimse_and_stow_and_does_not_render() {
    let t = TestArchive::new().with_env([
        ("STRATA_NODE_ROLE".to_string(), "ingest".to_string()),
        ("STRATA_NODE_ID".to_string(), "intake-1".to_string()),
    ]);
    let files = t.generate("in", &studies(2));
    let port = free_port();
    let server = t.serve_node(port, true);
    let out = tool(
        60,
        "storescu",
        &[
            "-v",
            "-aet",
            "SCU",
            "-aec",
            "STRATA",
            "-to",
            "10",
            "127.0.0.1",
            &port.to_string(),
            files[0].to_str().unwrap(),
        ],
    );
    let log = text(&out);
    assert!(
        out.status.success() && log.contains("Received Store Response (Success)"),
        "{log}"
    );
    let api = Api::new(&server, &token(&t, "admin"));
    let stow = api.stow(&files[1]);
    assert_eq!(stow.status, 200, "{}", stow.text());
    for f in &files[..2] {
        let metadata = api.get(&format!("{}/metadata", instance_path(f)));
        assert_eq!(metadata.status, 200, "{}", metadata.text());
    }
    // no rendering: rendered pictures, thumbnails and the render stream are refused
    for path in [
        format!("{}/rendered", instance_path(&files[0])),
        format!("{}/thumbnail", instance_path(&files[0])),
        "/api/stream".to_string(),
    ] {
        let a = api.get(&path);
        assert_eq!(a.status, 421, "{path}: {}", a.text());
        assert!(
            a.text().contains("node intake-1 has node.role = ingest"),
            "{}",
            a.text()
        );
    }
    // it runs the upkeep (alone here: every lease is its own)
    until("the ingest node holds every lease", 20, || {
        holds_all(&workers(&api), "intake-1").then_some(())
    });
}
