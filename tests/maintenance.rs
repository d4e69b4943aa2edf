//! The background workers as an operator sees them: `GET /api/workers` says how each worker's
//! rounds end and where the scrub has got to in its pass, and `/metrics` carries the duration of
//! every store, index and render operation.

mod common;

use common::{add_user, token, Api, TestArchive};
use std::path::Path;

#[test]
fn workers_report_their_rounds_and_the_scrub_its_pass() {
    let t = TestArchive::new();
    let studies = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/studies");
    t.ok(&["import", studies.to_str().unwrap()]);
    std::fs::write(
        t.data().join("strata.toml"),
        "[scrub]\nblobs_per_second = 1000\ntranquility = 0\n",
    )
    .unwrap();
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    let mut answer = serde_json::Value::Null;
    for _ in 0..300 {
        answer = admin.ok(admin.get("/api/workers"));
        if answer["scrub"]["last_pass_blobs"] == 12 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(answer["scrub"]["last_pass_blobs"], 12, "{answer}");
    assert_eq!(answer["scrub"]["pass"], 1, "{answer}");
    let workers = answer["workers"].as_array().unwrap();
    let names: Vec<&str> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["audit_export", "mpi_estimate", "repair", "scrub"],
        "{answer}"
    );
    let scrub = &workers[3];
    assert!(scrub["rounds"].as_u64().unwrap() >= 1, "{answer}");
    assert_eq!(scrub["failures"], 0, "{answer}");
    assert_eq!(scrub["detail"], "pass 1 done: 12 blobs", "{answer}");
    let repair = &workers[2];
    assert!(
        repair["detail"]
            .as_str()
            .unwrap()
            .contains("0 copies repaired"),
        "{answer}"
    );

    let metrics = admin.get("/metrics").text();
    for series in [
        "strata_operation_seconds_count{engine=\"index\",op=\"worker_progress\"}",
        "strata_operation_seconds_count{engine=\"store\",op=\"verify\"}",
        "strata_worker_runs_total{worker=\"scrub\",outcome=\"ok\"}",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }

    add_user(&t, "rad", "radiologist");
    let rad = Api::new(&server, &token(&t, "rad"));
    assert_eq!(rad.get("/api/workers").status, 403);
    drop(server);

    // The pass's end is kept in the index: a restarted server knows it.
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    let answer = admin.ok(admin.get("/api/workers"));
    assert!(answer["scrub"]["pass"].as_i64().unwrap() >= 1, "{answer}");
    assert!(
        answer["scrub"]["last_pass_finished_at"].as_i64().is_some(),
        "{answer}"
    );
}
