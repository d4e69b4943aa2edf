//! Sends to other archives and shares with them, against real peers: dcmtk's storescp
//! receiving by C-STORE, and a second Strata receiving by STOW-RS with its credentials. A send
//! to a peer that is down reports each instance failed with the reason, and a retry once it is
//! up delivers them. A share token reads the shared study by DICOMweb and nothing else.

mod common;

use common::viewer::{node, screenshots};
use common::{
    add_user, assert_same_content, audit_events, free_port, http, sop_uid, text, token, tool, Api,
    TestArchive,
};
use std::path::Path;
use std::time::{Duration, Instant};
use strata_synth::{Modality, SynthOptions};

fn studies(n: usize, seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        patients: n,
        studies: n,
        series_per_study: 2,
        slices: 2,
        rows: 32,
        cols: 32,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

fn study_uid(path: &Path) -> String {
    common::uids(path)[0].clone()
}

/// The archive's configuration file: retries after 1 s (then 2 s), and `extra`.
fn configure(t: &TestArchive, extra: &str) {
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        format!("[send]\nretry_after_seconds = 1\n{extra}"),
    )
    .unwrap();
}

/// Polls a send until it is over (done or failed), 60 s at most; its last view.
fn wait_over(api: &Api, id: i64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let view = api.ok(api.get(&format!("/api/sends/{id}")));
        if view["state"] == "done" || view["state"] == "failed" {
            return view;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{view}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn send(api: &Api, study: &str, to: serde_json::Value) -> i64 {
    let answer = api.post(
        "/api/sends",
        serde_json::json!({"studies": [study], "to": to}),
    );
    assert_eq!(answer.status, 202, "{}", answer.text());
    let job: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    job["id"].as_i64().unwrap()
}

#[test]
fn a_send_to_a_peer_that_is_down_fails_each_instance_and_a_retry_delivers_them_to_storescp() {
    let t = TestArchive::new();
    configure(&t, "");
    let files = t.generate("in", &studies(1, 3));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let port = free_port();
    t.ok(&["ae", "add", "SENDSCP", "127.0.0.1", &port.to_string()]);
    add_user(&t, "sender", "integrator");
    add_user(&t, "reader", "radiologist");
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "sender"));
    let study = study_uid(&files[0]);

    // refused: a radiologist may not send, an unknown peer, an unknown study
    let radiologist = Api::new(&server, &token(&t, "reader"));
    let answer = radiologist.post(
        "/api/sends",
        serde_json::json!({"studies": [study], "to": {"ae": "SENDSCP"}}),
    );
    assert_eq!(answer.status, 403, "{}", answer.text());
    let answer = api.post(
        "/api/sends",
        serde_json::json!({"studies": [study], "to": {"ae": "NOWHERE"}}),
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("AE table"), "{}", answer.text());
    let answer = api.post(
        "/api/sends",
        serde_json::json!({"studies": ["1.2.3.4.5"], "to": {"ae": "SENDSCP"}}),
    );
    assert_eq!(answer.status, 404, "{}", answer.text());

    // nobody listens yet: every instance is tried three times, then reported failed
    let id = send(&api, &study, serde_json::json!({"ae": "SENDSCP"}));
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(view["total"], 4);
    assert_eq!(view["failed"], 4);
    for item in view["items"].as_array().unwrap() {
        assert_eq!(item["outcome"], "failed", "{item}");
        assert_eq!(item["attempts"], 3, "{item}");
        let error = item["error"].as_str().unwrap();
        assert!(error.contains("SENDSCP"), "{error}");
    }

    // the peer is up: a retry delivers every instance, identical
    let out = t.path("received");
    std::fs::create_dir_all(&out).unwrap();
    let scp = common::storescp("SENDSCP", port, &out);
    let retried = api.ok(api.post(&format!("/api/sends/{id}/retry"), serde_json::json!({})));
    assert_eq!(retried["requeued"], 4);
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(
        (view["sent"].as_i64(), view["failed"].as_i64()),
        (Some(4), Some(0))
    );
    drop(scp);
    assert_same_content(&files, &out);

    // the list shows it; a send that does not exist is 404
    let list = api.ok(api.get("/api/sends"));
    assert_eq!(list[0]["id"], id);
    assert_eq!(api.get("/api/sends/999").status, 404);
    drop(server);

    // audited: the send by whom, to where; how each attempt ended
    let made = audit_events(&t, "send");
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["actor"], "sender");
    assert_eq!(made[0]["study_uid"], study.as_str());
    assert_eq!(made[0]["detail"], "4 instances queued to ae SENDSCP");
    let results = audit_events(&t, "send.result");
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0]["outcome"], "failure");
    assert_eq!(results[1]["outcome"], "success");
}

#[test]
fn a_send_by_stow_reaches_a_second_strata_whole_with_its_credentials() {
    // the receiver: a second archive, with a modality's token to store and a reader's
    let b = TestArchive::new();
    add_user(&b, "inbound", "modality");
    add_user(&b, "reader", "integrator");
    let inbound = token(&b, "inbound");
    let receiver = b.serve();
    let reader = Api::new(&receiver, &token(&b, "reader"));

    let t = TestArchive::new();
    configure(
        &t,
        &format!(
            "[[dicomweb_peers]]\nname = \"second\"\nurl = \"http://{}/dicomweb\"\ntoken = \"{inbound}\"\n\n\
             [[dicomweb_peers]]\nname = \"wrong\"\nurl = \"http://{}/dicomweb\"\ntoken = \"stk_not-a-token\"\n",
            receiver.http, receiver.http
        ),
    );
    let files = t.generate("in", &studies(1, 11));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    add_user(&t, "sender", "integrator");
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "sender"));
    let study = study_uid(&files[0]);

    // the peers as a send may name them, without their credentials
    let peers = api.ok(api.get("/api/dicomweb-peers"));
    assert_eq!(peers[0]["name"], "second");
    assert!(!peers.to_string().contains(&inbound), "{peers}");

    // wrong credentials: the peer's refusal is each instance's failure
    let id = send(&api, &study, serde_json::json!({"dicomweb": "wrong"}));
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "failed", "{view}");
    let error = view["items"][0]["error"].as_str().unwrap();
    assert!(error.contains("wrong answered HTTP 401"), "{error}");
    assert!(reader.studies("").is_empty());

    // the receiver already holds other bytes under one of the SOP Instance UIDs: it refuses
    // that instance alone (Failed SOP Sequence), the others arrive
    let other = t.path("other.dcm");
    std::fs::copy(&files[1], &other).unwrap();
    let out = tool(
        30,
        "dcmodify",
        &[
            "-nb",
            "-m",
            "StudyDescription=CHANGED",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let upload = Api::new(&receiver, &inbound);
    assert_eq!(upload.stow(&other).status, 200);
    let id = send(&api, &study, serde_json::json!({"dicomweb": "second"}));
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(
        (view["sent"].as_i64(), view["failed"].as_i64()),
        (Some(3), Some(1))
    );
    let refused = sop_uid(&files[1]);
    for item in view["items"].as_array().unwrap() {
        if item["sop_uid"] == refused.as_str() {
            assert_eq!(item["outcome"], "failed", "{item}");
            assert_eq!(item["attempts"], 3, "{item}");
            let error = item["error"].as_str().unwrap();
            assert!(
                error.starts_with("second refused it (failure reason"),
                "{error}"
            );
        } else {
            assert_eq!(item["outcome"], "sent", "{item}");
            assert_eq!(item["attempts"], 1, "{item}");
        }
    }
    // once the receiver replaces what it holds (restarted, same address), a retry sends it
    let address = receiver.http.to_string();
    drop(receiver);
    std::fs::write(
        b.data().join("strata.toml"),
        "[ingest]\non_conflict = \"replace\"\n",
    )
    .unwrap();
    let receiver = b.serve_http_on(&address);
    let reader = Api::new(&receiver, &token(&b, "reader"));
    let retried = api.ok(api.post(&format!("/api/sends/{id}/retry"), serde_json::json!({})));
    assert_eq!(retried["requeued"], 1);
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["sent"], 4);
    // every instance is there, byte for byte as stored here (which is as it was imported)
    assert_eq!(reader.studies(""), vec![study.clone()]);
    for f in &files {
        let [st, se, sop] = common::uids(f);
        let got = reader.call(
            "GET",
            &format!("/dicomweb/studies/{st}/series/{se}/instances/{sop}"),
            &[("Accept", "multipart/related; type=\"application/dicom\"")],
            None,
        );
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(
            got.only_part() == std::fs::read(f).unwrap().as_slice(),
            "{sop} differs"
        );
    }
}

#[test]
fn a_share_token_reads_the_shared_study_by_dicomweb_only_until_it_expires_or_is_revoked() {
    let t = TestArchive::new();
    let files = t.generate("in", &studies(2, 21));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    add_user(&t, "sender", "integrator");
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "sender"));
    let shared = study_uid(&files[0]);
    let other = files
        .iter()
        .map(|f| study_uid(f))
        .find(|s| *s != shared)
        .unwrap();
    let made = api.post(
        "/api/shares",
        serde_json::json!({"studies": [shared], "valid_hours": 2, "label": "to the clinic"}),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let made: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    let share_token = made["token"].as_str().unwrap().to_string();
    let share_id = made["id"].as_i64().unwrap();
    let puller = Api::new(&server, &share_token);

    // the shared study: searched, read, byte for byte
    assert_eq!(puller.studies(""), vec![shared.clone()]);
    let f = files.iter().find(|f| study_uid(f) == shared).unwrap();
    let [st, se, sop] = common::uids(f);
    let got = puller.call(
        "GET",
        &format!("/dicomweb/studies/{st}/series/{se}/instances/{sop}"),
        &[("Accept", "multipart/related; type=\"application/dicom\"")],
        None,
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.only_part() == std::fs::read(f).unwrap().as_slice());
    let series = puller.ok(puller.get(&format!("/dicomweb/studies/{shared}/series")));
    assert_eq!(series.as_array().unwrap().len(), 2);
    // another study does not exist for it; nothing but DICOMweb reads is allowed
    assert_eq!(
        puller
            .get(&format!("/dicomweb/studies/{other}/metadata"))
            .status,
        404
    );
    let search = puller.get(&format!("/dicomweb/studies/{other}/series"));
    assert!(
        search.status == 404 || (search.status == 200 && search.text().trim() == "[]"),
        "{} {}",
        search.status,
        search.text()
    );
    assert_eq!(puller.get("/api/sends").status, 403);
    assert_eq!(puller.get("/api/me").status, 403);
    assert_eq!(puller.stow(f).status, 403);
    let delete = puller.call("DELETE", &format!("/dicomweb/studies/{shared}"), &[], None);
    assert_eq!(delete.status, 403);

    // listed without its token; revoked, it opens nothing
    let list = api.ok(api.get("/api/shares"));
    assert_eq!(list[0]["id"], share_id);
    assert_eq!(list[0]["studies"], serde_json::json!([shared]));
    assert!(!list.to_string().contains(&share_token));
    let revoked = api.call("DELETE", &format!("/api/shares/{share_id}"), &[], None);
    assert_eq!(revoked.status, 204, "{}", revoked.text());
    assert_eq!(puller.get("/dicomweb/studies").status, 401);

    // a share that expires: good at first, refused after
    let made = api.post(
        "/api/shares",
        serde_json::json!({"studies": [shared], "valid_hours": 0.003}),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let made: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    let brief = Api::new(&server, made["token"].as_str().unwrap());
    let created = Instant::now();
    assert_eq!(brief.get("/dicomweb/studies").status, 200);
    std::thread::sleep(Duration::from_millis(11_000).saturating_sub(created.elapsed()));
    assert_eq!(brief.get("/dicomweb/studies").status, 401);
    // bad requests
    let bad = api.post(
        "/api/shares",
        serde_json::json!({"studies": [shared], "valid_hours": 0}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(
        http(
            "GET",
            &format!("{}/dicomweb/studies", api.base),
            &[("Authorization", "Bearer shr_00")],
            None
        )
        .status,
        401
    );
    drop(server);

    // audited: the share made, each read by the share, and the refusals
    let shares = audit_events(&t, "http.share");
    assert_eq!(shares.len(), 2, "{shares:?}");
    assert_eq!(shares[0]["study_uid"], shared.as_str());
    let reads = audit_events(&t, "http.wado.retrieve");
    let actor = format!("share:{share_id}");
    assert!(
        reads
            .iter()
            .any(|e| e["actor"] == actor.as_str() && e["study_uid"] == shared.as_str()),
        "{reads:?}"
    );
    let refused = audit_events(&t, "http.refused");
    assert!(
        refused.iter().any(|e| e["actor"] == actor.as_str()),
        "{refused:?}"
    );
}

#[test]
fn a_send_cut_by_a_restart_carries_on_when_the_archive_serves_again() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    // an instance not sent is tried again 6 s later; a killed node's lease lapses in 3 s
    std::fs::write(
        t.data().join("strata.toml"),
        "[send]\nretry_after_seconds = 6\n[node]\nlease_seconds = 3\n",
    )
    .unwrap();
    let files = t.generate("in", &studies(1, 31));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let port = free_port();
    t.ok(&["ae", "add", "LATESCP", "127.0.0.1", &port.to_string()]);
    add_user(&t, "sender", "integrator");
    let sender = token(&t, "sender");
    let mut server = t.serve();
    let api = Api::new(&server, &sender);
    let id = send(
        &api,
        &study_uid(&files[0]),
        serde_json::json!({"ae": "LATESCP"}),
    );
    // the first attempt failed (nobody listens): the archive stops with the send under way
    let start = Instant::now();
    loop {
        let view = api.ok(api.get(&format!("/api/sends/{id}")));
        if view["items"][0]["attempts"] == 1 {
            assert_eq!(view["state"], "running", "{view}");
            assert_eq!(view["pending"], 4, "{view}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{view}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop(); // killed: no orderly hand-over
    let out = t.path("received");
    std::fs::create_dir_all(&out).unwrap();
    let scp = common::storescp("LATESCP", port, &out);
    // served again, it carries the send on by itself, with no retry asked
    let server = t.serve();
    let api = Api::new(&server, &sender);
    let view = wait_over(&api, id);
    assert_eq!(view["state"], "done", "{view}");
    for item in view["items"].as_array().unwrap() {
        assert_eq!(item["attempts"], 2, "{item}");
    }
    drop(scp);
    assert_same_content(&files, &out);
}

/// From a person's page in chromium (tests/viewer/send.mjs): the person's studies sent to
/// dcmtk's storescp arrive whole, the page following the send until it is done; a share made
/// there reads the studies by DICOMweb.
#[test]
fn a_person_page_sends_to_storescp_and_shares_with_a_token() {
    let t = TestArchive::new();
    configure(&t, "");
    let files = t.generate("in", &studies(1, 17));
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let port = free_port();
    t.ok(&["ae", "add", "PAGESCP", "127.0.0.1", &port.to_string()]);
    add_user(&t, "sender", "integrator");
    let out = t.path("received");
    std::fs::create_dir_all(&out).unwrap();
    let _scp = common::storescp("PAGESCP", port, &out);
    let server = t.serve();
    let api = Api::new(&server, &token(&t, "sender"));
    let study = study_uid(&files[0]);
    let person = api.ok(api.get(&format!("/api/persons?study={study}")))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let shots = screenshots("send");
    let (ok, log) = node(
        "send.mjs",
        &[
            ("BASE", common::base(&server).as_str()),
            ("USER", "sender"),
            ("PASSWORD", common::PASSWORD),
            ("OUT", shots.as_str()),
            ("PERSON", person.as_str()),
            ("AE", "PAGESCP"),
            ("STUDIES", "1"),
        ],
        || {},
    );
    assert!(
        ok,
        "send in chromium:\n{log}\nserver:\n{}",
        server.log_text()
    );
    for step in [
        "ok: every study of the person is picked",
        "ok: the page follows the send until it is done",
        "ok: a share token is shown once",
    ] {
        assert!(log.contains(step), "{step}:\n{log}");
    }
    assert_same_content(&files, &out);
    let result = common::viewer::result(&log);
    let shared = Api::new(&server, result["token"].as_str().unwrap());
    let found = shared.ok(shared.get(&format!("/dicomweb/studies/{study}/instances")));
    assert_eq!(found.as_array().unwrap().len(), files.len());
    assert_eq!(audit_events(&t, "send").len(), 1);
}
