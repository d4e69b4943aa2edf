//! The master person index against the running binary: local keys from several hospitals
//! linked at ingest, every manual operation and its history (link, unlink, merge, unmerge,
//! review accept, demographics), a manual unlink surviving a later re-match, roles, bad
//! requests, and every decision surviving `reindex` from one replica.

mod common;

use common::{add_user, http, token, Answer, Api, TestArchive};
use serde_json::json;
use strata_synth::{self as synth, Modality, SynthOptions};

/// Writes one single-instance study of the given person under `dir`; returns its study UID.
fn study(
    dir: &std::path::Path,
    n: usize,
    name: &str,
    key: (&str, &str),
    birth: &str,
    sex: &str,
) -> String {
    let opts = SynthOptions {
        seed: 900 + n as u64,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: 1,
        rows: 16,
        cols: 16,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let mut spec = synth::plan(&opts).unwrap().remove(0);
    spec.patient_name = name.into();
    spec.issuer_of_patient_id = key.0.into();
    spec.patient_id = key.1.into();
    spec.patient_birth_date = birth.into();
    spec.patient_sex = sex.into();
    spec.study_instance_uid = format!("2.25.7001{n}");
    spec.series_instance_uid = format!("2.25.7002{n}");
    spec.sop_instance_uid = format!("2.25.7003{n}");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{n}.dcm")), synth::instance_bytes(&spec)).unwrap();
    spec.study_instance_uid
}

fn problem(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}", a.text());
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{}",
        a.content_type
    );
}

#[test]
fn persons_are_linked_operated_on_with_history_and_survive_reindex() {
    let t = TestArchive::new();
    let first = t.path("first");
    let john_a = study(&first, 1, "SMITH^JOHN", ("HOSP_A", "A1"), "19700101", "M");
    let john_b = study(&first, 2, "Smith^John", ("HOSP_B", "B1"), "19700101", "M");
    study(&first, 3, "JONES^MARY", ("HOSP_A", "C1"), "19820315", "F");
    t.ok(&["import", first.to_str().unwrap()]);

    let server = t.serve();
    let api = Api::new(&server, &token(&t, "admin"));

    // One person across two hospitals, with both studies and how they were linked.
    let p = api.person_of("HOSP_A", "A1");
    assert_eq!(api.person_of("HOSP_B", "B1"), p);
    let view = api.person(&p);
    let studies: Vec<&str> = view["studies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["study_uid"].as_str().unwrap())
        .collect();
    assert!(
        studies.contains(&john_a.as_str()) && studies.contains(&john_b.as_str()),
        "{view}"
    );
    let actions: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["new", "auto_link"], "{view}");
    let q = api.person_of("HOSP_A", "C1");
    assert_ne!(p, q);

    // Search by name is accent- and case-insensitive; match scores without storing.
    let found = api.ok(api.get("/api/persons?name=smith&birthdate=19700101"));
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let m = api.ok(api.post(
        "/api/mpi/match",
        json!({"family_name": "Smith", "given_name": "John", "birth_date": "19700101", "sex": "M"}),
    ));
    assert_eq!(m["decision"], "linked", "{m}");
    assert_eq!(m["person"], p.as_str(), "{m}");

    // Unlink: B1 becomes a person of its own, and a re-match does not undo it.
    let change = api.ok(api.post(
        &format!("/api/persons/{p}/unlink"),
        json!({"issuer": "HOSP_B", "patient_id": "B1"}),
    ));
    assert_eq!(change["action"], "unlink");
    let r = api.person_of("HOSP_B", "B1");
    assert_ne!(r, p);
    assert_eq!(api.keys(&p), ["HOSP_A/A1"]);
    let re = api.ok(api.post("/api/mpi/rematch", json!({})));
    assert_eq!(re["moved"], 0, "{re}");
    assert_eq!(api.person_of("HOSP_B", "B1"), r);
    assert_eq!(api.keys(&p), ["HOSP_A/A1"]);

    // A third hospital's record matching both goes to review, never auto-merges them.
    let second = t.path("second");
    study(&second, 4, "SMITH^JOHN", ("HOSP_C", "E1"), "19700101", "M");
    let stored = api.stow(&second.join("4.dcm"));
    assert_eq!(stored.status, 200, "{}", stored.text());
    let review = api.ok(api.get("/api/mpi/review"));
    let items = review.as_array().unwrap();
    assert_eq!(items.len(), 1, "{review}");
    assert_eq!(items[0]["identifier"]["patient_id"], "E1");
    let candidates: Vec<&str> = items[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["person"].as_str().unwrap())
        .collect();
    assert!(
        candidates.contains(&p.as_str()) && candidates.contains(&r.as_str()),
        "{review}"
    );
    let id = items[0]["id"].as_i64().unwrap();
    api.ok(api.post(
        &format!("/api/mpi/review/{id}"),
        json!({"decision": "accept", "person": p}),
    ));
    assert_eq!(api.keys(&p), ["HOSP_A/A1", "HOSP_C/E1"]);
    assert!(api
        .ok(api.get("/api/mpi/review"))
        .as_array()
        .unwrap()
        .is_empty());
    problem(
        &api.post(
            &format!("/api/mpi/review/{id}"),
            json!({"decision": "reject"}),
        ),
        409,
    );

    // Merge then unmerge restores both persons exactly.
    let before_p = api.keys(&p);
    let before_q = api.keys(&q);
    api.ok(api.post(&format!("/api/persons/{p}/merge"), json!({"person": q})));
    assert_eq!(api.keys(&p), ["HOSP_A/A1", "HOSP_A/C1", "HOSP_C/E1"]);
    assert_eq!(api.person(&q)["merged_into"], p.as_str());
    problem(
        &api.post(
            &format!("/api/persons/{q}/link"),
            json!({"issuer": "HOSP_A", "patient_id": "C1"}),
        ),
        409,
    );
    api.ok(api.post(&format!("/api/persons/{p}/unmerge"), json!({"person": q})));
    assert_eq!(api.keys(&p), before_p);
    assert_eq!(api.keys(&q), before_q);
    assert!(api.person(&q)["merged_into"].is_null());

    // A corrected name sticks, even when the old spelling arrives again.
    api.ok(api.post(
        "/api/mpi/demographics",
        json!({"issuer": "HOSP_A", "patient_id": "C1", "family_name": "JONES", "given_name": "MARIE", "birth_date": "19820315", "sex": "F"}),
    ));
    let third = t.path("third");
    study(&third, 5, "JONES^MARY", ("HOSP_A", "C1"), "19820315", "F");
    let stored = api.stow(&third.join("5.dcm"));
    assert_eq!(stored.status, 200, "{}", stored.text());
    let view = api.person(&q);
    assert_eq!(view["identifiers"][0]["name"], "JONES^MARIE", "{view}");
    assert_eq!(view["studies"].as_array().unwrap().len(), 2, "{view}");
    let history: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["new", "merge", "unmerge", "demographics"],
        "{view}"
    );

    // Bad requests are problems, and change nothing.
    problem(
        &api.post(
            "/api/persons/0123abcd/link",
            json!({"issuer": "HOSP_A", "patient_id": "A1"}),
        ),
        404,
    );
    problem(
        &api.post(
            &format!("/api/persons/{p}/link"),
            json!({"issuer": "HOSP_A"}),
        ),
        400,
    );
    problem(
        &api.post(&format!("/api/persons/{p}/merge"), json!({"person": p})),
        409,
    );
    problem(
        &api.post(
            &format!("/api/persons/{p}/unlink"),
            json!({"issuer": "HOSP_Z", "patient_id": "Z"}),
        ),
        404,
    );
    problem(&api.get("/api/persons/not-hex!"), 400);
    problem(&api.get("/api/persons"), 400);
    assert_eq!(api.keys(&p), before_p);

    // Radiologists search and read persons; only administrators decide links.
    add_user(&t, "rad", "radiologist");
    let rad = Api::new(&server, &token(&t, "rad"));
    rad.ok(rad.get(&format!("/api/persons/{p}")));
    problem(
        &rad.post(
            &format!("/api/persons/{p}/unlink"),
            json!({"issuer": "HOSP_A", "patient_id": "A1"}),
        ),
        403,
    );
    problem(&rad.get("/api/mpi/review"), 403);
    let anonymous = http("GET", &format!("{}/api/persons/{p}", api.base), &[], None);
    assert_eq!(anonymous.status, 401);

    // Every operation is in the audit trail, the refused one too.
    let audit = api.ok(api.get("/api/audit?action=mpi.operation"));
    let outcomes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "success").count(),
        5,
        "{audit}"
    );
    assert!(
        outcomes.contains(&"denied") && outcomes.contains(&"failure"),
        "{audit}"
    );

    // Everything survives the loss of the index: rebuilt from one replica.
    let snapshot: Vec<(String, Vec<String>)> = [&p, &q, &r]
        .iter()
        .map(|id| (id.to_string(), api.keys(id)))
        .collect();
    let name = api.person(&q)["identifiers"][0]["name"].clone();
    drop(server);
    t.lose_index();
    t.ok(&["reindex", "--from-replica", "2"]);
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "admin"));
    for (id, keys) in &snapshot {
        assert_eq!(&api.keys(id), keys, "person {id} after reindex");
    }
    assert_eq!(api.person(&q)["identifiers"][0]["name"], name);
    assert!(api
        .ok(api.get("/api/mpi/review"))
        .as_array()
        .unwrap()
        .is_empty());
    let re = api.ok(api.post("/api/mpi/rematch", json!({})));
    assert_eq!(re["moved"], 0, "{re}");
    assert_eq!(api.person_of("HOSP_B", "B1"), r);
}
