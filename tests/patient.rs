//! The patient role against the running binary: a patient user bound to one person of the
//! person index sees that person's studies from every hospital linked to them — searched with
//! the dicomweb-client package as a patient app would, retrieved byte for byte — and nothing
//! else: someone else's study answers 404 on every retrieval route, stores, deletes and
//! administration answer 403, every access and refusal is in the audit trail, and the scope
//! follows the person index: an unlink takes a hospital's studies away, a merge of the person
//! into another locks the account until it is bound again, an unmerge gives it back.

mod common;

use common::{base, peer_script, python, text, token, tool, Answer, Api, Server, TestArchive};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use strata_synth::{self as synth, Modality, SynthOptions};

/// One study of two instances of the given person under `dir`; returns (study UID, files).
fn study(
    dir: &Path,
    n: usize,
    name: &str,
    key: (&str, &str),
    birth: &str,
    sex: &str,
) -> (String, Vec<PathBuf>) {
    let opts = SynthOptions {
        seed: 500 + n as u64,
        patients: 1,
        studies: 1,
        series_per_study: 1,
        slices: 2,
        rows: 16,
        cols: 16,
        modality: Some(Modality::Ct),
        noise: false,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut files = vec![];
    for (i, mut spec) in synth::plan(&opts).unwrap().into_iter().enumerate() {
        spec.patient_name = name.into();
        spec.issuer_of_patient_id = key.0.into();
        spec.patient_id = key.1.into();
        spec.patient_birth_date = birth.into();
        spec.patient_sex = sex.into();
        spec.study_instance_uid = format!("2.25.8001{n}");
        spec.series_instance_uid = format!("2.25.8002{n}");
        spec.sop_instance_uid = format!("2.25.8003{n}{i}");
        let path = dir.join(format!("{n}-{i}.dcm"));
        std::fs::write(&path, synth::instance_bytes(&spec)).unwrap();
        files.push(path);
    }
    (format!("2.25.8001{n}"), files)
}

fn problem(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text());
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{what}: {}",
        a.content_type
    );
}

/// `strata user <args>` with the test password on standard input.
fn user_cmd(t: &TestArchive, args: &[&str]) -> std::process::Output {
    let mut full = vec!["user"];
    full.extend_from_slice(args);
    common::run_with_input(t, &full, &format!("{}\n", common::PASSWORD))
}

fn sop_and_series(file: &Path) -> (String, String) {
    let obj = dicom_object::open_file(file).unwrap();
    let text = |t| {
        obj.element(t)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    (
        text(dicom_dictionary_std::tags::SOP_INSTANCE_UID),
        text(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
    )
}

/// Every retrieval route for one instance (and its series and study).
fn retrieval_routes(study: &str, file: &Path) -> Vec<String> {
    let (sop, series) = sop_and_series(file);
    let s = format!("/dicomweb/studies/{study}");
    let se = format!("{s}/series/{series}");
    let i = format!("{se}/instances/{sop}");
    vec![
        s.clone(),
        se.clone(),
        i.clone(),
        format!("{s}/metadata"),
        format!("{se}/metadata"),
        format!("{i}/metadata"),
        format!("{i}/frames/1"),
        format!("{i}/bulk/7FE00010"),
        format!("{s}/rendered"),
        format!("{se}/rendered"),
        format!("{i}/rendered"),
        format!("{i}/frames/1/rendered"),
        format!("{s}/thumbnail"),
        format!("{se}/thumbnail"),
        format!("{i}/thumbnail"),
        format!("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom"),
        format!("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=image/png"),
    ]
}

/// Opens a series on `/api/stream` and returns the server's first answer (series metadata or
/// an error).
fn stream_open(server: &Server, token: &str, study: &str, series: &str) -> Value {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut req = format!("ws://{}/api/stream", server.http)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let open = json!({"type": "open", "study": study, "series": series});
        ws.send(Message::Text(open.to_string().into()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
                .await
                .expect("an answer within 30 s")
                .expect("the socket stays open")
                .unwrap();
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    })
}

/// The body of the one part of a multipart/related answer.
fn single_part(a: &Answer) -> Vec<u8> {
    let body = &a.body;
    let start = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&body[..start]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    body[start..start + len].to_vec()
}

#[test]
fn a_patient_sees_exports_and_is_audited_within_their_own_studies_only() {
    let t = TestArchive::new();
    let dir = t.path("in");
    // Person A at two hospitals, person B at two others.
    let (a1, a1_files) = study(&dir, 1, "SMITH^JOHN", ("HOSP_A", "A1"), "19700101", "M");
    let (a2, a2_files) = study(&dir, 2, "SMITH^JOHN", ("HOSP_B", "B7"), "19700101", "M");
    let (b1, b1_files) = study(&dir, 3, "JONES^MARY", ("HOSP_A", "M1"), "19820315", "F");
    let (b2, b2_files) = study(&dir, 4, "JONES^MARY", ("HOSP_C", "M2"), "19820315", "F");
    t.ok(&["import", dir.to_str().unwrap()]);
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));

    // Each person holds both of their hospitals' keys (linked at ingest, or here by hand).
    let pa = admin.person_of("HOSP_A", "A1");
    if admin.person_of("HOSP_B", "B7") != pa {
        admin.ok(admin.post(
            &format!("/api/persons/{pa}/link"),
            json!({"issuer": "HOSP_B", "patient_id": "B7"}),
        ));
    }
    let pb = admin.person_of("HOSP_A", "M1");
    if admin.person_of("HOSP_C", "M2") != pb {
        admin.ok(admin.post(
            &format!("/api/persons/{pb}/link"),
            json!({"issuer": "HOSP_C", "patient_id": "M2"}),
        ));
    }
    assert_eq!(admin.person_of("HOSP_B", "B7"), pa);
    assert_eq!(admin.person_of("HOSP_C", "M2"), pb);
    assert_ne!(pa, pb);

    // Adding a patient user: a person is required, must exist, and binds patients only.
    let refused = |args: &[&str], says: &str| {
        let out = user_cmd(&t, args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    };
    refused(&["add", "nobody", "--role", "patient"], "--person");
    refused(
        &[
            "add",
            "nobody",
            "--role",
            "patient",
            "--person",
            "0123456789abcdef0123",
        ],
        "no person 0123456789abcdef0123",
    );
    refused(
        &["add", "nobody", "--role", "radiologist", "--person", &pa],
        "patient user only",
    );
    let out = user_cmd(&t, &["add", "pat", "--role", "patient", "--person", &pa]);
    assert!(out.status.success(), "{}", text(&out));
    let users = t.ok(&["user", "list"]);
    assert!(
        !users.contains("nobody"),
        "a refused user was stored: {users}"
    );
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("pat ") && l.contains(&pa)),
        "{users}"
    );
    let pat = Api::new(&server, &token(&t, "pat"));
    let me = pat.ok(pat.get("/api/me"));
    assert_eq!(me["role"], "patient");
    assert_eq!(me["person"], pa.as_str());

    // QIDO-RS and WADO-RS with dicomweb-client: exactly A's studies, from both hospitals.
    let mut args = vec![
        peer_script("patient_dicomweb.py").display().to_string(),
        base(&server),
        pat.auth.trim_start_matches("Bearer ").to_string(),
        "M1".to_string(),
        b1.clone(),
    ];
    args.extend(
        a1_files
            .iter()
            .chain(&a2_files)
            .map(|f| f.display().to_string()),
    );
    args.push("--".into());
    args.extend(b1_files.iter().map(|f| f.display().to_string()));
    let out = tool(180, python().to_str().unwrap(), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"wado\": \"ok\""), "{}", text(&out));
    let mut own = vec![a1.clone(), a2.clone()];
    own.sort();
    assert_eq!(pat.studies(""), own);
    assert_eq!(pat.studies("?PatientID=M2"), Vec::<String>::new());
    assert_eq!(pat.studies("?PatientName=JONES*"), Vec::<String>::new());
    assert_eq!(
        pat.studies(&format!("?StudyInstanceUID={b2}")),
        Vec::<String>::new()
    );
    assert_eq!(admin.studies("").len(), 4, "staff see every study");

    // Every retrieval route: A's answers 200, B's 404 (as if absent), never 403.
    for (study, file) in [(&a1, &a1_files[0]), (&a2, &a2_files[1])] {
        for route in retrieval_routes(study, file) {
            let a = pat.call("GET", &route, &[("Accept", "*/*")], None);
            assert_eq!(a.status, 200, "{route}: {}", a.text());
        }
    }
    for (study, file) in [(&b1, &b1_files[0]), (&b2, &b2_files[1])] {
        for route in retrieval_routes(study, file) {
            problem(
                &pat.call("GET", &route, &[("Accept", "*/*")], None),
                404,
                &route,
            );
            let staff = admin.call("GET", &route, &[("Accept", "*/*")], None);
            assert_eq!(staff.status, 200, "{route} exists: {}", staff.text());
        }
    }
    // a study UID that is nobody's answers the same
    problem(
        &pat.get("/dicomweb/studies/2.25.999999/metadata"),
        404,
        "absent",
    );

    // The viewing stream: the own series opens, the other's is refused as if absent.
    let pat_token = pat.auth.trim_start_matches("Bearer ").to_string();
    let (_, a1_series) = sop_and_series(&a1_files[0]);
    let (_, b1_series) = sop_and_series(&b1_files[0]);
    let opened = stream_open(&server, &pat_token, &a1, &a1_series);
    assert_eq!(opened["type"], "series", "{opened}");
    let other = stream_open(&server, &pat_token, &b1, &b1_series);
    let absent = stream_open(&server, &pat_token, &b1, "2.25.999999");
    assert_eq!(other["type"], "error", "{other}");
    assert_eq!(absent["type"], "error", "{absent}");

    // Export: the originals come back byte for byte as stored.
    for (study, file) in [(&a1, &a1_files[0]), (&a2, &a2_files[1])] {
        let stored = std::fs::read(file).unwrap();
        let (sop, series) = sop_and_series(file);
        let one = pat.call(
            "GET",
            &format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}"),
            &[(
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )],
            None,
        );
        assert_eq!(one.status, 200, "{}", one.text());
        assert!(
            single_part(&one) == stored,
            "WADO-RS instance differs from the stored bytes"
        );
        let uri = pat.get(&format!(
            "/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom"
        ));
        assert_eq!(uri.status, 200);
        assert!(uri.body == stored, "WADO-URI differs from the stored bytes");
        let pixels = dicom_object::open_file(file)
            .unwrap()
            .element(dicom_dictionary_std::tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec();
        let bulk = pat.call(
            "GET",
            &format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010"),
            &[("Accept", "application/octet-stream")],
            None,
        );
        assert_eq!(bulk.status, 200);
        assert!(
            bulk.body == pixels,
            "bulk data differs from the stored pixels"
        );
    }

    // Their own person, read-only; nobody else's; nothing else of the person index.
    let view = pat.ok(pat.get(&format!("/api/persons/{pa}")));
    let mut seen: Vec<&str> = view["studies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["study_uid"].as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, own.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(view["history"].as_array().unwrap().is_empty(), "{view}");
    problem(
        &pat.get(&format!("/api/persons/{pb}")),
        404,
        "another person",
    );

    // No store, delete, MPI change, person search, review, audit or metrics: 403.
    let (ctype, body) =
        common::multipart(&[("application/dicom", &std::fs::read(&a1_files[0]).unwrap())]);
    problem(
        &pat.call("POST", "/dicomweb/studies", &[], Some((&ctype, &body))),
        403,
        "STOW",
    );
    problem(
        &pat.call("DELETE", &format!("/dicomweb/studies/{a1}"), &[], None),
        403,
        "delete own",
    );
    problem(
        &pat.call("DELETE", &format!("/dicomweb/studies/{b1}"), &[], None),
        403,
        "delete other",
    );
    problem(&pat.get("/api/persons?name=smith"), 403, "person search");
    problem(
        &pat.post(
            "/api/mpi/match",
            json!({"family_name": "Jones", "birth_date": "19820315"}),
        ),
        403,
        "match",
    );
    problem(
        &pat.post(
            &format!("/api/persons/{pa}/link"),
            json!({"issuer": "HOSP_A", "patient_id": "M1"}),
        ),
        403,
        "link someone else's key to oneself",
    );
    problem(
        &pat.post(&format!("/api/persons/{pa}/merge"), json!({"person": pb})),
        403,
        "merge",
    );
    problem(&pat.get("/api/mpi/review"), 403, "review");
    problem(&pat.get("/api/audit"), 403, "audit");
    problem(&pat.get("/metrics"), 403, "metrics");
    assert_eq!(admin.person_of("HOSP_A", "M1"), pb, "nothing changed");
    assert_eq!(admin.studies("").len(), 4, "nothing deleted");

    // The audit trail holds the patient's accesses and refusals.
    let events = admin.ok(admin.get("/api/audit?actor=pat&limit=100000"));
    let events = events.as_array().unwrap();
    let has = |action: &str, outcome: &str, study: Option<&str>| {
        events.iter().any(|e| {
            e["action"] == action
                && e["outcome"] == outcome
                && study.is_none_or(|s| e["study_uid"] == s)
        })
    };
    assert!(has("http.qido", "success", None));
    assert!(has("http.wado.retrieve", "success", Some(&a2)));
    assert!(has("http.wado.metadata", "success", Some(&a1)));
    assert!(has("http.wado.rendered", "success", Some(&a1)));
    assert!(has("http.wado_uri", "success", Some(&a2)));
    assert!(has("mpi.person", "success", None));
    assert!(has("http.stream.open", "success", Some(&a1)));
    assert!(has("http.stream.open", "denied", Some(&b1)));
    assert!(
        has("http.refused", "denied", Some(&b1)),
        "404 on B's study is audited"
    );
    assert!(has("http.refused", "denied", Some(&b2)));
    assert!(
        events.iter().any(|e| e["action"] == "http.refused"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("POST /dicomweb/studies: 403")),
        "a refused store is audited"
    );
    assert!(events.iter().all(|e| e["role"] == "patient"));
    let verify = t.ok(&["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");

    // Unlink: HOSP_B's key is no longer A's, and its study leaves the patient's scope.
    admin.ok(admin.post(
        &format!("/api/persons/{pa}/unlink"),
        json!({"issuer": "HOSP_B", "patient_id": "B7"}),
    ));
    assert_eq!(pat.studies(""), vec![a1.clone()]);
    problem(
        &pat.get(&format!("/dicomweb/studies/{a2}/metadata")),
        404,
        "unlinked study",
    );
    let view = pat.ok(pat.get(&format!("/api/persons/{pa}")));
    assert_eq!(view["studies"].as_array().unwrap().len(), 1, "{view}");

    // Merge A into B: the account is refused everywhere until bound again ...
    admin.ok(admin.post(&format!("/api/persons/{pb}/merge"), json!({"person": pa})));
    for route in [
        "/dicomweb/studies".to_string(),
        format!("/dicomweb/studies/{a1}/metadata"),
        "/api/me".into(),
    ] {
        let a = pat.get(&route);
        problem(&a, 403, &route);
        assert!(a.text().contains("merged into another"), "{}", a.text());
    }
    let refusals = admin.ok(admin.get("/api/audit?actor=pat&action=http.refused&limit=100000"));
    assert!(
        refusals
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("merged")),
        "{refusals}"
    );
    // ... binding to a merged-away person is refused, to the survivor accepted ...
    let out = user_cmd(&t, &["bind", "pat", "--person", &pa]);
    assert!(
        !out.status.success() && text(&out).contains(&format!("merged into {pb}")),
        "{}",
        text(&out)
    );
    // ... and an unmerge gives the same person, and the same studies, back.
    admin.ok(admin.post(&format!("/api/persons/{pb}/unmerge"), json!({"person": pa})));
    assert_eq!(pat.studies(""), vec![a1.clone()]);

    // Rebinding moves the account to another person's studies.
    let pn = admin.person_of("HOSP_B", "B7");
    let out = user_cmd(&t, &["bind", "pat", "--person", &pn]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(pat.studies(""), vec![a2.clone()]);
    problem(
        &pat.get(&format!("/dicomweb/studies/{a1}/metadata")),
        404,
        "after rebinding",
    );
    let out = user_cmd(&t, &["bind", "admin", "--person", &pn]);
    assert!(
        !out.status.success() && text(&out).contains("only a patient user"),
        "{}",
        text(&out)
    );

    // The binding is journaled: an index rebuilt from one replica keeps it.
    drop(server);
    t.ok(&["reindex", "--from-replica", "1"]);
    let server = t.serve();
    let pat = Api::new(&server, &pat_token);
    assert_eq!(pat.ok(pat.get("/api/me"))["person"], pn.as_str());
    assert_eq!(pat.studies(""), vec![a2.clone()]);
}

#[test]
fn a_patient_scope_widens_only_by_a_human_decision() {
    let t = TestArchive::new();
    let dir = t.path("in");
    let (a1, _) = study(&dir, 1, "SMITH^JOHN", ("HOSP_A", "A1"), "19700101", "M");
    t.ok(&["import", dir.to_str().unwrap()]);
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    let pa = admin.person_of("HOSP_A", "A1");
    let out = user_cmd(&t, &["add", "pat", "--role", "patient", "--person", &pa]);
    assert!(out.status.success(), "{}", text(&out));
    let pat_token = token(&t, "pat");
    let pat = Api::new(&server, &pat_token);
    assert_eq!(pat.studies(""), vec![a1.clone()]);

    // The same demographics under another hospital's key: the matcher may link it to the
    // person, but the patient does not see it.
    let later = t.path("later");
    let (a6, a6_files) = study(&later, 6, "SMITH^JOHN", ("HOSP_D", "D9"), "19700101", "M");
    // Someone else's study whose file claims to be the patient (OtherPatientIDsSequence).
    let (x5, x5_files) = study(&later, 5, "DOE^EVE", ("HOSP_X", "X1"), "19910707", "F");
    for f in &x5_files {
        let r = tool(
            30,
            "dcmodify",
            &[
                "-nb",
                "-i",
                "(0010,1002)[0].(0010,0020)=A1",
                "-i",
                "(0010,1002)[0].(0010,0021)=HOSP_A",
                f.to_str().unwrap(),
            ],
        );
        assert!(r.status.success(), "{}", text(&r));
    }
    for f in a6_files.iter().chain(&x5_files) {
        admin.ok(admin.stow(f));
    }
    assert_eq!(
        pat.studies(""),
        vec![a1.clone()],
        "no automatic link widens a patient's scope"
    );
    for (study, _) in [(&a6, ()), (&x5, ())] {
        problem(
            &pat.get(&format!("/dicomweb/studies/{study}/metadata")),
            404,
            "a study linked by the matcher alone",
        );
    }
    let own = pat.ok(pat.get(&format!("/api/persons/{pa}")));
    assert_eq!(
        own["identifiers"].as_array().unwrap().len(),
        1,
        "the patient's view lists the confirmed key only: {own}"
    );

    assert_eq!(
        admin.person_of("HOSP_D", "D9"),
        pa,
        "the matcher linked the key to the patient's person on its own"
    );

    // A decision about another key of the person (a link by hand) confirms that key alone:
    // the key the matcher linked stays unconfirmed.
    let (e3, e3_files) = study(&later, 3, "ROE^RICHARD", ("HOSP_E", "E3"), "19600202", "M");
    for f in &e3_files {
        admin.ok(admin.stow(f));
    }
    admin.ok(admin.post(
        &format!("/api/persons/{pa}/link"),
        json!({"issuer": "HOSP_E", "patient_id": "E3"}),
    ));
    let mut decided = vec![a1.clone(), e3.clone()];
    decided.sort();
    assert_eq!(pat.studies(""), decided);

    // An index rebuilt from one replica widens nothing either: the binding confirmed the keys
    // the person held then, the link the key it linked, and the matcher's link is again the
    // matcher's alone.
    drop(server);
    t.ok(&["reindex", "--from-replica", "1"]);
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "admin"));
    let pat = Api::new(&server, &pat_token);
    assert_eq!(admin.person_of("HOSP_D", "D9"), pa);
    assert_eq!(
        pat.studies(""),
        decided,
        "a rebuild widens no patient's scope"
    );
    for study in [&a6, &x5] {
        problem(
            &pat.get(&format!("/dicomweb/studies/{study}/metadata")),
            404,
            "after a rebuild, a study linked by the matcher alone",
        );
    }
    let own = pat.ok(pat.get(&format!("/api/persons/{pa}")));
    assert_eq!(
        own["identifiers"].as_array().unwrap().len(),
        2,
        "the patient's view lists the confirmed keys only: {own}"
    );

    // An administrator's link (of a key the matcher already put there) confirms it.
    admin.ok(admin.post(
        &format!("/api/persons/{pa}/link"),
        json!({"issuer": "HOSP_D", "patient_id": "D9"}),
    ));
    let mut all = vec![a1, a6, e3];
    all.sort();
    assert_eq!(pat.studies(""), all);
    assert!(!pat.studies("").contains(&x5));
}
