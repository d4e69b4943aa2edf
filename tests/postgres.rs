//! The index on PostgreSQL, end to end with the real binary and a real server: an embedded
//! archive moved onto PostgreSQL answers as before, a reindex rebuilds it in place, the
//! password in its URL never reaches a log, and with its replicas on three Garage servers a
//! kill -9 mid-ingest loses nothing acknowledged. (The query, DICOMweb, person index and
//! patient tests run on both engines in their own files.)

mod common;

use common::{IndexEngine, TestArchive};
use strata_synth::{Modality, SynthOptions};

fn studies() -> SynthOptions {
    SynthOptions {
        seed: 77,
        patients: 3,
        studies: 4,
        series_per_study: 2,
        slices: 3,
        rows: 16,
        cols: 16,
        modality: None,
        noise: false,
    }
}

/// `strata studies` without its header and its count, sorted: what the index answers, row by
/// row.
fn listing(t: &TestArchive) -> Vec<String> {
    let out = t.ok(&["studies"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.last().is_some_and(|l| l.ends_with(" studies")),
        "{out}"
    );
    let mut rows: Vec<String> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l.to_string())
        .collect();
    rows.sort();
    rows
}

/// The studies a QIDO-RS search of `server` finds, as the admin.
fn studies_over_dicomweb(t: &TestArchive, server: &common::Server) -> usize {
    let tok = common::token(t, "admin");
    let answer = common::http(
        "GET",
        &format!("{}/dicomweb/studies", common::base(server)),
        &[("Authorization", &format!("Bearer {tok}"))],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let found: Vec<serde_json::Value> = serde_json::from_slice(&answer.body).unwrap();
    found.len()
}

#[test]
fn an_embedded_archive_moves_to_postgres_and_reindexes_there() {
    let mut t = TestArchive::new();
    t.generate("in", &studies());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let before = listing(&t);
    assert_eq!(before.len(), 4);

    // The database: a new one on the test cluster, reached with a password in its URL (the
    // cluster trusts loopback, so any password is accepted; it must still never be printed).
    let url = strata_testkit::postgres::database().replace("strata@", "strata:s3cret-pw@");
    let out = t.ok(&["index", "migrate", "--to", &url]);
    assert!(out.contains("24 instances indexed"), "{out}");
    assert!(!out.contains("s3cret-pw"), "the password is printed: {out}");
    // A second migration into the same database is refused: it holds instances now.
    let again = t.run(&["index", "migrate", "--to", &url]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds instances"), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password is printed: {err}");

    // From now on the archive runs on PostgreSQL: the same studies, the audit trail intact.
    t.index_url = Some(url.clone());
    assert_eq!(listing(&t), before);
    assert!(t.ok(&["audit", "verify"]).contains("intact"));

    // Served: a search over DICOMweb answers from PostgreSQL, and the log never shows the URL's
    // password.
    let server = t.serve();
    assert_eq!(studies_over_dicomweb(&t, &server), 4);
    let logged = server.log.lock().unwrap().join("\n");
    assert!(
        !logged.contains("s3cret-pw"),
        "the password is logged: {logged}"
    );
    drop(server);

    // A reindex rebuilds the PostgreSQL index from a replica, in place.
    let out = t.ok(&["reindex", "--from-replica", "2"]);
    assert!(out.contains("reindexed from replica 2"), "{out}");
    assert_eq!(listing(&t), before);
    assert!(t.ok(&["audit", "verify"]).contains("intact"));

    // The embedded file is not what answers any more: removing it changes nothing.
    std::fs::remove_file(t.data().join("index.sqlite")).unwrap();
    assert_eq!(listing(&t), before);
}

#[test]
fn kill_9_mid_ingest_on_postgres_and_garage_loses_nothing_acknowledged() {
    let (_garages, env, urls) = common::garage::three_providers();
    let t = TestArchive::on(IndexEngine::Postgres).with_env(env);
    let replicas: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        format!("[store]\nreplicas = [{}]\n", replicas.join(", ")),
    )
    .unwrap();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 12,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 120,
            rows: 128,
            cols: 128,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    let acknowledged = common::import_killed_after(&t, &t.path("in"), 30);
    assert!(
        acknowledged.len() < 120,
        "killed mid-way: {}",
        acknowledged.len()
    );
    // Through the binary (the Garage credentials are in its environment, not this process's):
    // every acknowledged instance comes back byte for byte, and every copy the index knows is
    // on every replica (the write quorum is all three).
    let by_uid: std::collections::HashMap<String, std::path::PathBuf> = files
        .iter()
        .map(|f| (common::sop_uid(f), f.clone()))
        .collect();
    let got = t.path("got.dcm");
    for uid in &acknowledged {
        t.ok(&["get", uid, "-o", got.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(&by_uid[uid]).unwrap(),
            "{uid}"
        );
    }
    // No copy of an indexed blob is missing or corrupt. (A blob whose write the kill cut short
    // may lack a copy: nothing acknowledged it, no index row names it, and the scrub says so.)
    let indexed: std::collections::HashSet<String> =
        postgres::Client::connect(t.index_url.as_ref().unwrap(), postgres::NoTls)
            .unwrap()
            .query("SELECT blob_id FROM strata.instances", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(indexed.len() >= acknowledged.len());
    let scrub = t.run(&["scrub"]);
    let report = String::from_utf8_lossy(&scrub.stdout).to_string();
    for line in report
        .lines()
        .filter(|l| l.trim_start().starts_with("blob "))
    {
        let blob = line.split_whitespace().nth(1).unwrap();
        assert!(
            !indexed.contains(blob),
            "an indexed blob is not whole: {line}"
        );
    }
    // The import run again completes the archive, and then every copy is there.
    let out = t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert!(out.contains("0 refused"), "{out}");
    let listed = t.ok(&["studies"]);
    assert!(listed.contains(" 120 "), "{listed}");
    let scrub = t.ok(&["scrub"]);
    assert!(scrub.contains(" 0 missing, 0 corrupt"), "{scrub}");
}

/// An index reached over TLS, the server's certificate verified against the CA the URL names
/// (libpq's `sslmode` and `sslrootcert`): every connection the archive opens to its database
/// is encrypted, and a server whose certificate that CA did not issue gets no connection.
#[test]
fn the_index_is_reached_over_verified_tls_when_the_url_asks() {
    let mut t = TestArchive::on(IndexEngine::Postgres);
    let plain = t.index_url.clone().unwrap();
    let ca = strata_testkit::postgres::ca_file();
    t.index_url = Some(format!(
        "{plain}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    t.generate("in", &studies());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    assert_eq!(listing(&t).len(), 4);
    let server = t.serve();
    assert_eq!(studies_over_dicomweb(&t, &server), 4);
    // What the server says of the archive's connections (this one, in the clear, left out).
    let mut db = postgres::Client::connect(&plain, postgres::NoTls).unwrap();
    let encrypted: Vec<bool> = db
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        encrypted.len() >= 2 && encrypted.iter().all(|e| *e),
        "every connection of the serving archive is over TLS: {encrypted:?}"
    );
    drop(server);

    // Roots that did not issue the server's certificate (the server's own certificate): refused,
    // and said why.
    let other = ca.with_file_name("server.crt");
    t.index_url = Some(format!(
        "{plain}?sslmode=require&sslrootcert={}",
        other.display()
    ));
    let out = t.run(&["studies"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A mode the archive does not take is named.
    t.index_url = Some(format!("{plain}?sslmode=allow"));
    let out = t.run(&["studies"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sslmode=allow"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
