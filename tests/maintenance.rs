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
        [
            "audit_export",
            "expiry",
            "mpi_estimate",
            "repair",
            "scrub",
            "send"
        ],
        "{answer}"
    );
    let scrub = &workers[4];
    assert!(scrub["rounds"].as_u64().unwrap() >= 1, "{answer}");
    assert_eq!(scrub["failures"], 0, "{answer}");
    assert_eq!(scrub["detail"], "pass 1 done: 12 blobs", "{answer}");
    let repair = &workers[3];
    assert!(
        repair["detail"]
            .as_str()
            .unwrap()
            .contains("0 copies repaired"),
        "{answer}"
    );

    let metrics = admin.get("/metrics").text();
    // every series names the node first (`{node="...",`), then its own labels
    for (name, labels) in [
        (
            "strata_operation_seconds_count",
            "engine=\"index\",op=\"worker_progress\"}",
        ),
        (
            "strata_operation_seconds_count",
            "engine=\"store\",op=\"verify\"}",
        ),
        (
            "strata_worker_runs_total",
            "worker=\"scrub\",outcome=\"ok\"}",
        ),
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{node=")) && l.contains(labels)),
            "{name}{{..{labels} in:\n{metrics}"
        );
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

/// The audit trail's rows as someone with write access to the index edits them: the guards
/// dropped, rows changed or removed at will, and every hash from `from_id` on recomputed as
/// plain SHA-256 (the chain's key is not theirs to have).
struct Tamper {
    db: rusqlite::Connection,
}

impl Tamper {
    fn open(t: &TestArchive) -> Tamper {
        let db = rusqlite::Connection::open(t.data().join("index.sqlite")).unwrap();
        db.execute_batch(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
        )
        .unwrap();
        Tamper { db }
    }

    fn exec(&self, sql: &str) -> &Self {
        self.db.execute_batch(sql).unwrap();
        self
    }

    fn rechain_from(&self, from_id: i64) {
        use strata_core::audit::{chain_hash, AuditEvent, Outcome, GENESIS};
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, at, actor, role, action, patient_id, study_uid, outcome, remote, detail, hash
                 FROM audit ORDER BY id",
            )
            .unwrap();
        let rows: Vec<(i64, AuditEvent, String)> = stmt
            .query_map([], |r| {
                let outcome: String = r.get(7)?;
                Ok((
                    r.get(0)?,
                    AuditEvent {
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        role: r.get(3)?,
                        action: r.get(4)?,
                        patient_id: r.get(5)?,
                        study_uid: r.get(6)?,
                        outcome: Outcome::parse(&outcome).unwrap(),
                        remote: r.get(8)?,
                        detail: r.get(9)?,
                    },
                    r.get(10)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev = GENESIS.to_string();
        for (id, event, hash) in rows {
            if id < from_id {
                prev = hash;
                continue;
            }
            let new = chain_hash(&prev, &event);
            self.db
                .execute(
                    "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                    rusqlite::params![prev, new, id],
                )
                .unwrap();
            prev = new;
        }
    }
}

/// `strata audit verify`'s verdict line, asserting its exit status.
fn verdict(t: &TestArchive) -> String {
    let out = t.run(&["audit", "verify"]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(out.status.success(), line.contains("intact"), "{line}");
    line
}

#[test]
fn audit_verify_names_a_changed_a_removed_and_a_cut_event_the_key_holder_did_not_write() {
    let t = TestArchive::new();
    let studies = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/studies");
    t.ok(&["import", studies.to_str().unwrap()]);
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    for _ in 0..12 {
        assert_eq!(admin.studies("").len(), 3);
    }
    drop(server);
    let n: i64 = rusqlite::Connection::open(t.data().join("index.sqlite"))
        .unwrap()
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 12, "{n} events");
    let intact = format!("audit trail intact: {n} events");
    assert_eq!(verdict(&t), intact);
    // the index as it was, put back after each attack
    let index = t.data().join("index.sqlite");
    let pristine = t.path("pristine.sqlite");
    rusqlite::Connection::open(&index)
        .unwrap()
        .execute("VACUUM INTO ?1", [pristine.to_str().unwrap()])
        .unwrap();
    let restore = || {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(t.data().join(format!("index.sqlite{suffix}")));
        }
        std::fs::copy(&pristine, &index).unwrap();
        assert_eq!(verdict(&t), intact);
    };

    // Nothing exported yet, and the whole trail rewritten as an unkeyed one: it chains, and the
    // replicas' sealed record says the chain is keyed from the archive's first event.
    assert!(
        !t.replica('a').join("audit").exists(),
        "nothing exported yet"
    );
    Tamper::open(&t)
        .exec("UPDATE audit SET detail = 'nothing to see' WHERE id = 1")
        .rechain_from(1);
    let v = verdict(&t);
    assert!(
        v.contains("BROKEN at event 1") && v.contains("keyed from event 1"),
        "{v}"
    );
    restore();

    let exported = t.ok(&["audit", "export"]);
    assert_eq!(
        exported.trim(),
        format!("copied {n} audit events to the replicas")
    );
    assert_eq!(verdict(&t), intact);

    // An event changed, and the chain recomputed from it in plain SHA-256.
    Tamper::open(&t)
        .exec("UPDATE audit SET actor = 'nobody' WHERE id = 3")
        .rechain_from(3);
    let v = verdict(&t);
    assert!(
        v.contains("BROKEN at event 3") && v.contains("unkeyed"),
        "{v}"
    );
    restore();

    // An event removed from the middle, the chain left as it was, or recomputed.
    Tamper::open(&t).exec("DELETE FROM audit WHERE id = 5");
    let v = verdict(&t);
    assert!(
        v.contains("BROKEN at event 6") && v.contains("removed"),
        "{v}"
    );
    Tamper::open(&t).rechain_from(6);
    assert!(verdict(&t).contains("BROKEN at event 6"));
    restore();

    // The tail cut: what is left chains, but the replicas hold the sealed copies.
    Tamper::open(&t).exec(&format!("DELETE FROM audit WHERE id > {}", n - 3));
    let v = verdict(&t);
    assert!(
        v.contains(&format!("BROKEN at event {}", n - 2)) && v.contains("missing from the index"),
        "{v}"
    );
    restore();

    restore();
}
