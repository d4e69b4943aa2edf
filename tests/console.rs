//! The operator's console: the node registry and the replicas' health over HTTP, with two
//! `strata serve` nodes sharing one PostgreSQL index and one set of replicas; and the console's
//! pages in Debian's chromium (tests/viewer/console.mjs), screenshots under
//! target/viewer-screenshots/console.

mod common;

use common::{add_user, base, http, text, token, tool, Api, IndexEngine, Server, TestArchive};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `GET /api/nodes` of `server` as `api` sees it, polled until `done` holds (40 s at most).
fn nodes_until(api: &Api, server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = api.ok(api.get("/api/nodes"));
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /api/nodes says {answer:#}\nserver log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn node<'a>(answer: &'a Value, id: &str) -> Option<&'a Value> {
    answer["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
}

fn alive(answer: &Value, id: &str) -> Option<bool> {
    node(answer, id).map(|n| n["alive"].as_bool().unwrap())
}

#[test]
fn two_nodes_on_one_postgres_are_listed_alive_until_one_stops() {
    let first = TestArchive::on(IndexEngine::Postgres)
        .with_env([("STRATA_NODE_ID".to_string(), "node-a".to_string())]);
    add_user(&first, "boss", "admin");
    add_user(&first, "rad", "radiologist");
    let (boss, rad) = (token(&first, "boss"), token(&first, "rad"));
    let mut a = first.serve();
    // The second node: its own data directory, the same index, replicas and master key.
    let replicas = first.config().replica_urls().join(",");
    let second = TestArchive {
        dir: tempfile::tempdir().unwrap(),
        index_url: first.index_url.clone(),
        env: vec![
            ("STRATA_NODE_ID".into(), "node-b".into()),
            ("STRATA_STORE_REPLICAS".into(), replicas),
        ],
    };
    std::fs::create_dir_all(second.data().join("keys")).unwrap();
    std::fs::copy(
        first.data().join("keys/master.key"),
        second.data().join("keys/master.key"),
    )
    .unwrap();
    let mut b = second.serve();
    let (api_a, api_b) = (Api::new(&a, &boss), Api::new(&b, &boss));

    // a DIMSE operation on node a, timed under its node label
    let echo = tool(
        30,
        "echoscu",
        &["-aet", "CONSOLE", "-aec", "STRATA", "127.0.0.1", &a.port()],
    );
    assert!(echo.status.success(), "echoscu: {}", text(&echo));

    // the first heartbeat goes out as the node starts, before it listens: its address comes
    // with the next
    let both = nodes_until(&api_a, &a, "both nodes alive, at their addresses", |v| {
        ["node-a", "node-b"]
            .iter()
            .all(|id| node(v, id).is_some_and(|n| n["alive"] == true && n["address"] != ""))
    });
    assert_eq!(both["this"], "node-a");
    assert_eq!(both["heartbeat_seconds"], 5);
    assert_eq!(both["alive_within_seconds"], 15);
    assert_eq!(both["forget_after_seconds"], 86_400);
    for (id, server) in [("node-a", &a), ("node-b", &b)] {
        let n = node(&both, id).unwrap();
        assert_eq!(n["role"], "all", "{n}");
        assert_eq!(n["address"], base(server), "{n}");
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"), "{n}");
        assert_eq!(n["this"], id == "node-a", "{n}");
        assert!(n["started_at"].as_i64().unwrap() <= n["last_seen"].as_i64().unwrap());
        for k in [
            "stored_last_minute",
            "queries_last_minute",
            "http_in_flight",
            "associations",
        ] {
            assert!(n["load"][k].is_u64(), "{k} in {n}");
        }
    }
    // the other node answers the same registry, itself as `this`
    let from_b = api_b.ok(api_b.get("/api/nodes"));
    assert_eq!(from_b["this"], "node-b");
    assert!(node(&from_b, "node-a").is_some(), "{from_b}");

    // a query answered on node b shows in its load at its next heartbeat
    let qido = api_b.get("/dicomweb/studies?PatientID=NOBODY");
    assert!(qido.status == 200 || qido.status == 204, "{}", qido.text());
    nodes_until(&api_a, &a, "node b's query counted", |v| {
        node(v, "node-b").is_some_and(|n| n["load"]["queries_last_minute"].as_u64() >= Some(1))
    });

    let replicas = api_b.ok(api_b.get("/api/replicas"));
    let list = replicas["replicas"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{replicas}");
    for (i, r) in list.iter().enumerate() {
        assert_eq!(r["replica"], i + 1, "{r}");
        assert_eq!(r["reachable"], true, "{r}");
        assert!(r["url"].as_str().unwrap().starts_with("file:///"), "{r}");
    }
    assert_eq!(replicas["write_quorum"], 3);
    assert_eq!(replicas["repair_queue"], 0);
    assert!(replicas.get("scrub").is_some() && replicas.get("scrub_worker").is_some());

    // administrators only
    let api_rad = Api::new(&a, &rad);
    for path in ["/api/nodes", "/api/replicas"] {
        let refused = api_rad.get(path);
        assert_eq!(refused.status, 403, "{path}: {}", refused.text());
        assert!(refused.content_type.starts_with("application/problem+json"));
        let anonymous = http("GET", &format!("{}{path}", base(&a)), &[], None);
        assert_eq!(anonymous.status, 401, "{path}");
    }

    // every series of /metrics names the node; DIMSE operations are timed
    let metrics = api_a.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_operation_seconds_count{")
                && l.contains("node=\"node-a\"")
                && l.contains("engine=\"dimse\"")
                && l.contains("op=\"c-echo\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with("strata_"))
            .all(|l| l.contains("node=\"node-a\"")),
        "{metrics}"
    );

    // node b dies: within three heartbeats node a lists it down, itself still alive
    b.stop();
    let after = nodes_until(&api_a, &a, "node b down", |v| {
        alive(v, "node-b") == Some(false)
    });
    assert_eq!(alive(&after, "node-a"), Some(true), "{after}");
    assert!(a.alive());
}

/// The console's pages in chromium: nodes, replicas and workers, the AE table (an AE added
/// through the page appears in it), the audit trail (a filter narrows it).
#[test]
fn the_console_shows_the_nodes_replicas_ae_table_and_audit_trail() {
    let t =
        TestArchive::new().with_env([("STRATA_NODE_ID".to_string(), "pacs-console".to_string())]);
    add_user(&t, "boss", "admin");
    let server = t.serve();
    let shots = format!(
        "{}/target/viewer-screenshots/console",
        env!("CARGO_MANIFEST_DIR")
    );
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = std::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer"))
        .envs([
            ("BASE", base(&server).as_str()),
            ("ADMIN_USER", "boss"),
            ("ADMIN_PASSWORD", common::PASSWORD),
            ("NODE", "pacs-console"),
            ("OUT", shots.as_str()),
        ])
        .output()
        .expect("running node (the test command installs it)");
    let log = text(&out);
    assert!(
        out.status.success(),
        "console in chromium:\n{log}\nserver:\n{}",
        server.log_text()
    );
    for step in [
        "ok: the nodes page lists this node alive",
        "ok: the rates list this node",
        "ok: three replicas, all reachable",
        "ok: the workers are listed",
        "ok: an AE added through the page is listed",
        "ok: an AE removed through the page is gone",
        "ok: the audit filter narrows the trail",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 5, "{pngs} screenshots");
    // what the page did reached the archive
    let api = Api::new(&server, &token(&t, "boss"));
    let ae = api.ok(api.get("/api/ae"));
    assert!(
        ae.as_array()
            .unwrap()
            .iter()
            .all(|e| e["aet"] != "CONSOLEAE"),
        "{ae}"
    );
    let set = api.ok(api.get("/api/audit?action=http.ae.set"));
    assert_eq!(set.as_array().unwrap().len(), 1, "{set}");
}
