//! The index on PostgreSQL, end to end with the real binary and a real server: an embedded
//! archive moved onto PostgreSQL answers as before, a reindex rebuilds it in place, and the
//! password in its URL never reaches a log. (The query, DICOMweb, person index and patient tests
//! run on both engines in their own files.)

mod common;

use common::TestArchive;
use strata_synth::SynthOptions;

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
    let tok = common::token(&t, "admin");
    let answer = common::http(
        "GET",
        &format!("{}/dicomweb/studies", common::base(&server)),
        &[("Authorization", &format!("Bearer {tok}"))],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let found: Vec<serde_json::Value> = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(found.len(), 4);
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
