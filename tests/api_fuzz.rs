//! The published API describes the server: schemathesis (pinned in scripts/test.sh) generates
//! requests for every operation of schemas/openapi.yaml, valid and invalid, and sends them with
//! an administrator's token to a real `strata serve` holding studies. No answer may be a server
//! error (bad input is a 4xx with problem details), and every answer must match the schema the
//! spec gives for its status. Deletions run last, so every other operation meets stored data.

mod common;

use common::{http, peer_script, python, text, token, tool, uids, TestArchive};
use std::process::Command;
use strata_synth::{Modality, SynthOptions};

/// Test cases per operation and phase: enough to reach every parameter's edge cases, few
/// enough that the whole run stays within a few minutes on two cores.
const MAX_EXAMPLES: &str = "100";
/// What every answer is checked for: no server error, a documented status, the documented
/// media type, and a body that matches the documented schema.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";
/// The fixed seed: a failure found once is found again.
const SEED: &str = "20261205";

#[test]
fn schemathesis_finds_no_server_error() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 7,
            patients: 2,
            studies: 2,
            series_per_study: 2,
            slices: 3,
            rows: 32,
            cols: 32,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let [study, series, instance] = uids(&files[0]);
    let server = t.serve();
    let tok = token(&t, "admin");
    let base = format!("http://{}", server.http);
    let auth = format!("Bearer {tok}");
    let found = http(
        "GET",
        &format!("{base}/api/persons?study={study}"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(found.status, 200, "{}", found.text());
    let persons: serde_json::Value = serde_json::from_slice(&found.body).unwrap();
    let person = persons[0]["id"]
        .as_str()
        .expect("the study's person")
        .to_string();
    // what axum refuses itself (here a query it cannot read) is answered as problem details too
    let bad = http(
        "GET",
        &format!("{base}/api/mpi/review?all=perhaps"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.content_type, "application/problem+json");
    let detail: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(detail["status"], 400);
    assert!(
        detail["detail"].as_str().unwrap().contains("all"),
        "{detail}"
    );
    // an offset past anything SQLite counts is no match, not a failure of the index
    let far = http(
        "GET",
        &format!("{base}/dicomweb/studies?offset={}", u64::MAX),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!((far.status, far.text().as_str()), (200, "[]"));

    // the spec, with the stored UIDs as the examples of the UID parameters
    let spec = t.path("openapi.json");
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[
            peer_script("openapi.py").to_str().unwrap(),
            "examples",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.yaml"),
            spec.to_str().unwrap(),
            &study,
            &series,
            &instance,
            &person,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let header = format!("Authorization: {auth}");
    let hooks = peer_script("schemathesis_hooks.py");
    let config = peer_script("schemathesis.toml");
    let run = |methods: &[&str]| {
        let mut args = vec![
            "-m",
            "schemathesis.cli",
            "--config-file",
            config.to_str().unwrap(),
            "run",
            spec.to_str().unwrap(),
            "--url",
            &base,
            "--header",
            &header,
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-with-security-parameters",
            "false",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ];
        args.extend_from_slice(methods);
        let out = Command::new("timeout")
            .args(["-k", "5", "600"])
            .arg(python())
            .args(&args)
            .env("SCHEMATHESIS_HOOKS", &hooks)
            .env("API_FUZZ_DICOM", &files[0])
            // its crash cache stays with the throwaway archive, so no run replays another's
            .current_dir(t.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running schemathesis");
        let log = text(&out);
        println!("{log}");
        assert!(
            out.status.success(),
            "schemathesis found failures (its report is above)\n--- server log ---\n{}",
            server.log_text()
        );
        log
    };
    // Deletions last: the instance, then its series, then its study with any other deletion,
    // so each meets something to delete and nothing before them finds the archive emptied.
    let instance_op = "DELETE /dicomweb/studies/{study}/series/{series}/instances/{instance}";
    let series_op = "DELETE /dicomweb/studies/{study}/series/{series}";
    let logs = [
        run(&["--exclude-method", "DELETE"]),
        run(&["--include-name", instance_op]),
        run(&["--include-name", series_op]),
        run(&[
            "--include-method",
            "DELETE",
            "--exclude-name",
            instance_op,
            "--exclude-name",
            series_op,
        ]),
    ];
    // together the runs tested every operation of the spec, and none errored (an operation
    // schemathesis cannot send is an error)
    let (mut selected, mut total) = (0, 0);
    for log in &logs {
        let (n, of) = operations(log);
        selected += n;
        total = of;
        assert!(!log.contains("errored"), "{log}");
        assert!(log.contains("passed"), "{log}");
    }
    assert_eq!(selected, total, "operations left untested");
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
}

/// "Operations: N selected / M total" of a schemathesis report.
fn operations(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .unwrap_or_else(|| panic!("no operation count in\n{log}"));
    let numbers: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 2, "{line}");
    (numbers[0], numbers[1])
}
