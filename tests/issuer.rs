//! The issuer of a local patient key comes from where an instance came from, not from what the
//! file says: a DIMSE client's configured issuer (its AE title when unset), a STOW-RS account's
//! issuer (its name when unset). The file's IssuerOfPatientID is believed only from a source
//! trusted for it (`trust_issuer`, the operator's import, an administrator). The source is kept
//! with the instance: `strata reindex` from one replica gives the same keys.

mod common;

use common::{add_user, text, token, tool, Api, TestArchive};
use std::path::{Path, PathBuf};
use strata_synth::{self as synth, Modality, SynthOptions};

/// One single-instance study whose file states IssuerOfPatientID `issuer` and PatientID `id`.
fn study(dir: &Path, n: usize, issuer: &str, id: &str) -> (String, PathBuf) {
    let opts = SynthOptions {
        seed: 1600 + n as u64,
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
    spec.issuer_of_patient_id = issuer.into();
    spec.patient_id = id.into();
    spec.study_instance_uid = format!("2.25.16001{n}");
    spec.series_instance_uid = format!("2.25.16002{n}");
    spec.sop_instance_uid = format!("2.25.16003{n}");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{n}.dcm"));
    std::fs::write(&path, synth::instance_bytes(&spec)).unwrap();
    (spec.study_instance_uid, path)
}

/// storescu of one file as `aet`; panics unless it was stored.
fn store(server: &common::Server, aet: &str, file: &Path) {
    let port = server.port();
    let args = [
        "-aet",
        aet,
        "-aec",
        "STRATA",
        "-to",
        "10",
        "-ta",
        "10",
        "-td",
        "20",
        "-v",
        "127.0.0.1",
        &port,
        file.to_str().unwrap(),
    ];
    let out = tool(60, "storescu", &args);
    assert!(
        text(&out).contains("Received Store Response (Success)"),
        "{}",
        text(&out)
    );
}

/// The persons holding local key `issuer`/`id` (0 or 1).
fn holders(api: &Api, issuer: &str, id: &str) -> usize {
    let found = api.ok(api.get(&format!("/api/persons?identifier={issuer}%7C{id}")));
    found.as_array().unwrap().len()
}

/// Adds an OtherPatientIDsSequence item to `file`: the sender's word that its patient is also
/// `id` of `issuer`.
fn claim_other_id(file: &Path, issuer: &str, id: &str) {
    let out = tool(
        30,
        "dcmodify",
        &[
            "-nb",
            "-i",
            &format!("(0010,1002)[0].(0010,0020)={id}"),
            "-i",
            &format!("(0010,1002)[0].(0010,0021)={issuer}"),
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// OtherPatientIDsSequence names a foreign key only from a trusted source: HOSP_B/P2's person
/// gains the trusted client's P8 (the sender's word links it), not the untrusted one's P7.
fn check_other_ids(api: &Api) {
    let p2 = api.person_of("HOSP_B", "P2");
    assert_eq!(api.person_of("HOSP_B", "P8"), p2, "a trusted sender's word");
    assert_ne!(
        api.person_of("HOSP_A", "P7"),
        p2,
        "an untrusted sender's word"
    );
    assert_eq!(api.keys(&p2), ["HOSP_B/P2", "HOSP_B/P8"]);
}

/// The keys each study was filed under, and those it was not, as the archive answers now.
fn check_keys(api: &Api, studies: &[(&str, &str, &str)], stated: &str) {
    for (study, issuer, id) in studies {
        assert_eq!(holders(api, issuer, id), 1, "{issuer}/{id} holds {study}");
        let found = api.studies(&format!("?PatientID={id}&IssuerOfPatientID={issuer}"));
        assert_eq!(found, vec![study.to_string()], "{issuer}/{id}");
        if *issuer != stated {
            assert_eq!(
                holders(api, stated, id),
                0,
                "{stated}/{id}: the file's claim"
            );
        }
    }
}

#[test]
fn the_issuer_of_a_key_is_the_doors_unless_the_door_is_trusted_for_it() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        r#"
[[dimse.clients]]
aet = "CT_A"
issuer = "HOSP_A"

[[dimse.clients]]
aet = "CT_TRUSTED"
issuer = "HOSP_A"
trust_issuer = true

[[dimse.clients]]
aet = "CT_PLAIN"
"#,
    )
    .unwrap();
    // Every file claims to be a patient of HOSP_B.
    let dir = t.path("in");
    let (s1, f1) = study(&dir, 1, "HOSP_B", "P1");
    let (s2, f2) = study(&dir, 2, "HOSP_B", "P2");
    let (s3, f3) = study(&dir, 3, "HOSP_B", "P3");
    let (s4, f4) = study(&dir, 4, "HOSP_B", "P4");
    let (s5, f5) = study(&dir, 5, "HOSP_B", "P5");
    let (s6, f6) = study(&dir, 6, "", "P6");
    // and two claim, besides, to be HOSP_B's P2 (OtherPatientIDsSequence)
    let (_, f7) = study(&dir, 7, "HOSP_B", "P7");
    let (_, f8) = study(&dir, 8, "HOSP_B", "P8");
    claim_other_id(&f7, "HOSP_B", "P2");
    claim_other_id(&f8, "HOSP_B", "P2");

    let server = t.serve();
    // a STOW-RS account with an issuer, and one without (its name is its issuer)
    let out = common::run_with_input(
        &t,
        &[
            "user",
            "add",
            "ris",
            "--role",
            "integrator",
            "--issuer",
            "hosp  c",
        ],
        &format!("{}\n", common::PASSWORD),
    );
    assert!(out.status.success(), "{}", text(&out));
    add_user(&t, "robot", "modality");
    let listed = t.ok(&["user", "list"]);
    assert!(listed.contains("issuer HOSP C"), "{listed}");
    let bad = common::run_with_input(
        &t,
        &["user", "add", "x", "--role", "modality", "--issuer", " "],
        &format!("{}\n", common::PASSWORD),
    );
    assert!(
        !bad.status.success() && text(&bad).contains("is not an issuer"),
        "{}",
        text(&bad)
    );

    store(&server, "CT_A", &f1);
    store(&server, "CT_TRUSTED", &f2);
    store(&server, "CT_PLAIN", &f3);
    store(&server, "CT_TRUSTED", &f6);
    store(&server, "CT_A", &f7);
    store(&server, "CT_TRUSTED", &f8);
    let ris = Api::new(&server, &token(&t, "ris"));
    assert_eq!(ris.stow(&f4).status, 200);
    let robot = Api::new(&server, &token(&t, "robot"));
    assert_eq!(robot.stow(&f5).status, 200);

    let expected = [
        (s1.as_str(), "HOSP_A", "P1"),   // the client's issuer, not the file's
        (s2.as_str(), "HOSP_B", "P2"),   // trusted: the file's
        (s3.as_str(), "CT_PLAIN", "P3"), // no issuer configured: the AE title
        (s4.as_str(), "HOSP C", "P4"),   // the account's issuer
        (s5.as_str(), "ROBOT", "P5"),    // no issuer: the account's name
        (s6.as_str(), "HOSP_A", "P6"),   // trusted, the file has none: the client's
    ];
    let admin = Api::new(&server, &token(&t, "admin"));
    check_keys(&admin, &expected, "HOSP_B");
    check_other_ids(&admin);
    // the account's issuer is shown to administrators
    let users = admin.ok(admin.get("/api/users"));
    let ris_row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ris")
        .unwrap()
        .clone();
    assert_eq!(ris_row["issuer"], "HOSP C", "{users}");
    // an administrator gives one over the API too; a blank one is refused, nothing added
    let added = admin.post(
        "/api/users",
        serde_json::json!({"name": "pacs", "role": "integrator", "password": common::PASSWORD, "issuer": "hosp_e"}),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let added: serde_json::Value = serde_json::from_slice(&added.body).unwrap();
    assert_eq!(added["issuer"], "HOSP_E");
    let blank = admin.post(
        "/api/users",
        serde_json::json!({"name": "pacs2", "role": "integrator", "password": common::PASSWORD, "issuer": "  "}),
    );
    assert_eq!(blank.status, 400, "{}", blank.text());
    assert!(blank.content_type.starts_with("application/problem+json"));
    assert!(!t.ok(&["user", "list"]).contains("pacs2"));
    let event = &common::audit_events(&t, "http.user.add")[0];
    assert!(
        event.to_string().contains("issuer HOSP_E"),
        "the issuer is in the audit trail: {event}"
    );

    // An index rebuilt from one replica reads the same keys from the same blobs.
    drop(server);
    t.ok(&["reindex", "--from-replica", "1"]);
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    check_keys(&admin, &expected, "HOSP_B");
    check_other_ids(&admin);
    drop(server);

    // The issuer is the one of the time of storing: a later change of the account's issuer
    // (journaled too) leaves the keys already given as they are, through a rebuild as well.
    t.ok(&["user", "issuer", "ris", "HOSP_D"]);
    let event = &common::audit_events(&t, "cli.user.issuer")[0];
    assert!(event.to_string().contains("ris: issuer HOSP_D"), "{event}");
    t.ok(&["reindex", "--from-replica", "2"]);
    assert!(t.ok(&["user", "list"]).contains("issuer HOSP_D"));
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    check_keys(&admin, &expected, "HOSP_B");
}
