//! Accounts that can be managed, through the real binary: every account operation of the CLI
//! (`strata user …`, `strata token …`) and of the API (`/api/users`, `/api/tokens`,
//! `/api/sessions`) with the audit event it writes; the first administrator's printed password
//! changed before anything else; tokens that expire; sign-in throttled per user name and per
//! address, unknown names answered as slowly as known ones; names refused before anything is
//! written; and every change restored by `reindex`.

mod common;

use common::{
    add_user, base, http, run_with_input, token, Answer, Api, Server, TestArchive, PASSWORD,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The audit events of `action`, as `strata audit list` prints them.
fn cli_events(t: &TestArchive, action: &str) -> Vec<Value> {
    t.ok(&["audit", "list", "--action", action])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The audit events of `action`, as `GET /api/audit` answers.
fn api_events(admin: &Api, action: &str) -> Vec<Value> {
    let events = admin.ok(admin.get(&format!("/api/audit?action={action}")));
    events.as_array().unwrap().clone()
}

/// A sign-in: the answer, and the session cookie (`name=value`) when one was set.
fn login(server: &Server, user: &str, password: &str) -> (Answer, Option<String>) {
    let body = json!({ "user": user, "password": password }).to_string();
    let r = ureq::post(&format!("{}/api/login", base(server)))
        .set("Content-Type", "application/json")
        .send_string(&body);
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("login: {e}"),
    };
    let cookie = resp
        .header("Set-Cookie")
        .map(|c| c.split(';').next().unwrap().to_string());
    let status = resp.status();
    let content_type = resp.header("Content-Type").unwrap_or("").to_string();
    let body = resp.into_string().unwrap().into_bytes();
    let answer = Answer {
        status,
        content_type,
        body,
    };
    (answer, cookie)
}

/// A request with a session cookie.
fn with_session(
    server: &Server,
    cookie: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let url = format!("{}{path}", base(server));
    let body = body.map(|b| b.to_string());
    let body = body.as_deref().map(|b| ("application/json", b.as_bytes()));
    http(method, &url, &[("Cookie", cookie)], body)
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|_| panic!("not JSON: {}", a.text()))
}

fn assert_problem(a: &Answer, status: u16, says: &str) {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.content_type, "application/problem+json", "{}", a.text());
    assert!(a.text().contains(says), "{}", a.text());
}

/// Every account command of the CLI works and writes its audit event; names are refused
/// before anything is written.
#[test]
fn cli_manages_accounts_and_audits_every_command() {
    let t = TestArchive::new();
    add_user(&t, "boss", "admin");
    add_user(&t, "rad", "radiologist");
    assert_eq!(cli_events(&t, "cli.user.add").len(), 2);

    // a user name that is not one: refused, nothing written
    let bad = run_with_input(&t, &["user", "add", "bad name", "--role", "admin"], "x\n");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a user name"));
    let long = "a".repeat(65);
    assert!(!t.run(&["user", "disable", &long]).status.success());
    assert_eq!(cli_events(&t, "cli.user.add").len(), 2);
    assert!(!t.ok(&["user", "list"]).contains("bad name"));

    // tokens: created with an expiry, listed by id, revoked by id
    let created = t.run(&[
        "token", "create", "--user", "rad", "--label", "ci", "--days", "7",
    ]);
    assert!(created.status.success());
    let rad_token = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(rad_token.starts_with("stk_"));
    let said = String::from_utf8_lossy(&created.stderr).to_string();
    let id = said
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    let listed = t.ok(&["token", "list", "--user", "rad"]);
    assert!(listed.contains(&format!("{id:>6}  rad")), "{listed}");
    assert!(
        listed.contains("ci") && listed.contains("expires"),
        "{listed}"
    );
    assert!(
        !listed.contains("stk_"),
        "a listing never shows a token: {listed}"
    );
    assert!(!t
        .run(&["token", "create", "--user", "rad", "--days", "0"])
        .status
        .success());
    t.ok(&["token", "revoke", &id]);
    assert!(t.ok(&["token", "list"]).contains("revoked"));
    assert!(
        !t.run(&["token", "revoke", &id]).status.success(),
        "a revoked token is not revoked twice"
    );
    assert_eq!(cli_events(&t, "cli.token.create").len(), 1);
    assert_eq!(cli_events(&t, "cli.tokens").len(), 2);
    let revoked = cli_events(&t, "cli.token.revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["detail"], format!("token {id} of user rad"));

    // passwords: set, and set as temporary (to be changed at the next sign-in)
    let short = run_with_input(&t, &["user", "passwd", "rad"], "short\n");
    assert!(!short.status.success());
    let out = run_with_input(&t, &["user", "passwd", "rad"], "another long password\n");
    assert!(out.status.success(), "{out:?}");
    let out = run_with_input(
        &t,
        &["user", "passwd", "rad", "--temporary"],
        "a temporary password\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(t.ok(&["user", "list"]).contains("must change password"));
    assert!(
        !run_with_input(&t, &["user", "passwd", "nobody"], "long enough pw\n")
            .status
            .success()
    );
    assert_eq!(cli_events(&t, "cli.user.passwd").len(), 2);

    // disable and enable; the last enabled administrator is kept
    t.ok(&["user", "disable", "rad"]);
    assert!(t.ok(&["user", "list"]).contains("disabled"));
    t.ok(&["user", "enable", "rad"]);
    assert!(!t.ok(&["user", "list"]).contains("disabled"));
    let last = t.run(&["user", "disable", "boss"]);
    assert!(!last.status.success());
    assert!(String::from_utf8_lossy(&last.stderr).contains("last enabled administrator"));
    assert_eq!(cli_events(&t, "cli.user.disable").len(), 1);
    assert_eq!(cli_events(&t, "cli.user.enable").len(), 1);

    // sessions: listed by a public id, ended by it
    run_with_input(&t, &["user", "passwd", "rad"], &format!("{PASSWORD}\n"));
    let server = t.serve();
    let (ok, cookie) = login(&server, "rad", PASSWORD);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let cookie = cookie.unwrap();
    let sessions = t.ok(&["user", "sessions", "rad"]);
    let session_id = sessions.split_whitespace().next().unwrap().to_string();
    assert_eq!(session_id.len(), 16, "{sessions}");
    assert!(!cookie.contains(&session_id), "the id is not the secret");
    assert_eq!(
        with_session(&server, &cookie, "GET", "/dicomweb/studies", None).status,
        200
    );
    t.ok(&["user", "end-session", &session_id]);
    assert_eq!(
        with_session(&server, &cookie, "GET", "/dicomweb/studies", None).status,
        401,
        "an ended session"
    );
    assert!(t.ok(&["user", "sessions"]).trim().is_empty());
    assert_eq!(cli_events(&t, "cli.sessions").len(), 2);
    assert_eq!(cli_events(&t, "cli.session.end").len(), 1);

    // remove: the user, their tokens and sessions go
    let second = token(&t, "rad");
    let api = Api::new(&server, &second);
    assert_eq!(api.get("/dicomweb/studies").status, 200);
    t.ok(&["user", "remove", "rad"]);
    assert_eq!(api.get("/dicomweb/studies").status, 401);
    assert!(!t.ok(&["user", "list"]).contains("rad"));
    assert!(!t.ok(&["token", "list"]).contains("rad"));
    assert!(!t.run(&["user", "remove", "rad"]).status.success());
    let removed = cli_events(&t, "cli.user.remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["role"], "cli");
    assert_eq!(cli_events(&t, "cli.users").len(), 5);
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
}

/// Every account operation of the API works, is refused to those who may not do it, and
/// writes its audit event.
#[test]
fn api_manages_accounts_and_audits_every_call() {
    let t = TestArchive::new();
    add_user(&t, "boss", "admin");
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "boss"));

    // add a user: the name and role are checked first, the password must be changed
    let add = |body: Value| admin.post("/api/users", body);
    let nurse = json!({"name": "nurse", "role": "radiologist", "password": "first password"});
    assert_eq!(add(nurse.clone()).status, 201);
    assert_problem(&add(nurse.clone()), 409, "exists already");
    let bad = json!({"name": "no/slash", "role": "radiologist", "password": "long enough"});
    assert_problem(&add(bad), 400, "is not a user name");
    let long = json!({"name": "a".repeat(65), "role": "admin", "password": "long enough"});
    assert_problem(&add(long), 400, "is not a user name");
    let role = json!({"name": "x", "role": "root", "password": "long enough"});
    assert_problem(&add(role), 400, "is not a role");
    let short = json!({"name": "x", "role": "admin", "password": "short"});
    assert_problem(&add(short), 400, "at least 8");
    let users = admin.ok(admin.get("/api/users"));
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["boss", "nurse"],
        "nothing of a refused name was written"
    );
    assert_eq!(users[1]["must_change_password"], true);
    assert_eq!(api_events(&admin, "http.user.add").len(), 1);
    assert_eq!(api_events(&admin, "http.users").len(), 1);

    // the new user's session may only change the password until it is changed
    let (signed, cookie) = login(&server, "nurse", "first password");
    assert_eq!(json_of(&signed)["must_change_password"], true);
    let cookie = cookie.unwrap();
    let held = with_session(&server, &cookie, "GET", "/dicomweb/studies", None);
    assert_problem(&held, 403, "must be changed first");
    let me = with_session(&server, &cookie, "GET", "/api/me", None);
    assert_eq!(json_of(&me)["must_change_password"], true);
    let change = |body: Value| {
        with_session(
            &server,
            &cookie,
            "POST",
            "/api/users/nurse/password",
            Some(body),
        )
    };
    let wrong = change(json!({"old_password": "not it", "password": "second password"}));
    assert_problem(&wrong, 403, "old password is wrong");
    let missing = change(json!({"password": "second password"}));
    assert_problem(&missing, 400, "old_password");
    let right = change(json!({"old_password": "first password", "password": "second password"}));
    assert_eq!(right.status, 204, "{}", right.text());
    assert_eq!(
        with_session(&server, &cookie, "GET", "/dicomweb/studies", None).status,
        200,
        "the session that changed the password goes on"
    );
    let other = with_session(
        &server,
        &cookie,
        "POST",
        "/api/users/boss/password",
        Some(json!({"password": "taken over"})),
    );
    assert_eq!(
        other.status, 403,
        "someone else's password is an administrator's"
    );
    assert_eq!(
        with_session(&server, &cookie, "GET", "/api/users", None).status,
        403
    );
    let password_events = api_events(&admin, "http.user.password");
    let outcomes: Vec<&str> = password_events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failure", "success"]);
    assert_eq!(password_events[1]["actor"], "nurse");

    // sessions: a user sees their own, an administrator everyone's; ended by id
    let own = json_of(&with_session(
        &server,
        &cookie,
        "GET",
        "/api/sessions",
        None,
    ));
    assert_eq!(own.as_array().unwrap().len(), 1, "{own}");
    let sid = own[0]["id"].as_str().unwrap().to_string();
    assert!(!cookie.contains(&sid));
    let theirs = with_session(&server, &cookie, "GET", "/api/sessions?user=boss", None);
    assert_eq!(theirs.status, 403);
    let all = admin.ok(admin.get("/api/sessions?user=nurse"));
    assert_eq!(all[0]["id"], sid.as_str());
    assert_problem(
        &admin.call("DELETE", "/api/sessions/zz", &[], None),
        400,
        "hex",
    );
    assert_eq!(
        admin
            .call("DELETE", &format!("/api/sessions/{sid}"), &[], None)
            .status,
        204
    );
    assert_eq!(
        with_session(&server, &cookie, "GET", "/dicomweb/studies", None).status,
        401
    );
    assert_eq!(
        admin
            .call("DELETE", &format!("/api/sessions/{sid}"), &[], None)
            .status,
        404
    );
    assert_eq!(api_events(&admin, "http.sessions").len(), 2);
    assert_eq!(api_events(&admin, "http.session.end").len(), 1);

    // tokens: created with an expiry, listed by id without the secret, revoked by id
    let made = admin.post(
        "/api/tokens",
        json!({"user": "nurse", "label": "pacs", "expires_in_days": 2}),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let made = json_of(&made);
    let nurse_token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_i64().unwrap();
    let two_days = made["expires_at"].as_i64().unwrap() - strata_core::now_ms();
    assert!((two_days - 2 * 86_400_000).abs() < 60_000, "{made}");
    let as_nurse = Api::new(&server, &nurse_token);
    assert_eq!(as_nurse.get("/dicomweb/studies").status, 200);
    assert_eq!(as_nurse.get("/api/tokens").status, 403);
    let label = json!({"user": "nurse", "label": "x".repeat(129)});
    assert_problem(&admin.post("/api/tokens", label), 400, "at most 128");
    let never = admin.post(
        "/api/tokens",
        json!({"user": "nurse", "expires_in_days": 0}),
    );
    assert_problem(&never, 400, "expires_in_days");
    let default = json_of(&admin.post("/api/tokens", json!({"user": "nurse"})));
    let ninety = default["expires_at"].as_i64().unwrap() - strata_core::now_ms();
    assert!((ninety - 90 * 86_400_000).abs() < 60_000, "{default}");
    assert_problem(
        &admin.post("/api/tokens", json!({"user": "ghost"})),
        404,
        "no user",
    );
    let listed = admin.get("/api/tokens?user=nurse");
    assert!(!listed.text().contains("stk_"), "{}", listed.text());
    let listed = admin.ok(listed);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["label"], "pacs");
    let revoke = admin.call("DELETE", &format!("/api/tokens/{id}"), &[], None);
    assert_eq!(revoke.status, 204, "{}", revoke.text());
    assert_eq!(as_nurse.get("/dicomweb/studies").status, 401);
    assert_eq!(
        admin
            .call("DELETE", &format!("/api/tokens/{id}"), &[], None)
            .status,
        404
    );
    assert_problem(
        &admin.call("DELETE", "/api/tokens/abc", &[], None),
        400,
        "number",
    );
    assert_eq!(api_events(&admin, "http.token.create").len(), 2);
    assert_eq!(api_events(&admin, "http.tokens").len(), 1);
    let revoked = api_events(&admin, "http.token.revoke");
    assert_eq!(revoked[0]["detail"], format!("token {id} of user nurse"));

    // an administrator sets a password: the user's sessions end, and it must be changed
    let (_, cookie) = login(&server, "nurse", "second password");
    let cookie = cookie.unwrap();
    let set = admin.post(
        "/api/users/nurse/password",
        json!({"password": "chosen for you"}),
    );
    assert_eq!(set.status, 204, "{}", set.text());
    assert_eq!(
        with_session(&server, &cookie, "GET", "/api/me", None).status,
        401
    );
    let (again, _) = login(&server, "nurse", "chosen for you");
    assert_eq!(json_of(&again)["must_change_password"], true);

    // disable: every credential refused, sign-in says so; enable: back
    let nurse_token = json_of(&admin.post("/api/tokens", json!({"user": "nurse"})))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let as_nurse = Api::new(&server, &nurse_token);
    assert_eq!(
        admin.post("/api/users/nurse/disable", json!({})).status,
        204
    );
    assert_eq!(as_nurse.get("/dicomweb/studies").status, 401);
    let (disabled, none) = login(&server, "nurse", "chosen for you");
    assert_problem(&disabled, 403, "disabled");
    assert!(none.is_none());
    assert_eq!(admin.ok(admin.get("/api/users"))[1]["disabled"], true);
    assert_eq!(admin.post("/api/users/nurse/enable", json!({})).status, 204);
    assert_eq!(as_nurse.get("/dicomweb/studies").status, 200);
    assert_eq!(
        admin.post("/api/users/ghost/disable", json!({})).status,
        404
    );
    assert_problem(
        &admin.post("/api/users/boss/disable", json!({})),
        400,
        "last enabled",
    );
    assert_eq!(api_events(&admin, "http.user.disable").len(), 1);
    assert_eq!(api_events(&admin, "http.user.enable").len(), 1);

    // remove: the user with their tokens and sessions
    let (_, cookie) = login(&server, "nurse", "chosen for you");
    let cookie = cookie.unwrap();
    assert_eq!(
        admin.call("DELETE", "/api/users/nurse", &[], None).status,
        204
    );
    assert_eq!(as_nurse.get("/dicomweb/studies").status, 401);
    assert_eq!(
        with_session(&server, &cookie, "GET", "/api/me", None).status,
        401
    );
    assert_eq!(login(&server, "nurse", "chosen for you").0.status, 401);
    assert_eq!(
        admin.call("DELETE", "/api/users/nurse", &[], None).status,
        404
    );
    assert_problem(
        &admin.call("DELETE", "/api/users/boss", &[], None),
        400,
        "last enabled",
    );
    let removed = api_events(&admin, "http.user.remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["actor"], "boss");
    assert!(removed[0]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1"));
    let logins = api_events(&admin, "http.login");
    assert!(
        logins.iter().any(|e| e["outcome"] == "denied"),
        "the disabled sign-in"
    );
    // newest first: the latest page of the trail, its newest event at the head
    let ids = |a: Answer| -> Vec<i64> {
        admin
            .ok(a)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let newest = ids(admin.get("/api/audit?order=newest&limit=3"));
    let all = ids(admin.get("/api/audit?limit=100000"));
    let latest: Vec<i64> = all
        .iter()
        .rev()
        .filter(|i| **i <= newest[0])
        .take(3)
        .copied()
        .collect();
    assert_eq!(newest, latest, "{all:?}");
    assert_eq!(ids(admin.get("/api/audit?order=oldest&limit=3")), all[..3]);
    assert_problem(
        &admin.get("/api/audit?order=sideways"),
        400,
        "order must be",
    );

    // every change is journaled: reindex brings back the same accounts
    drop(server);
    let before = t.ok(&["user", "list"]);
    t.ok(&["reindex", "--from-replica", "1"]);
    assert_eq!(t.ok(&["user", "list"]), before);
    let server = t.serve();
    let (after, _) = login(&server, "boss", PASSWORD);
    assert_eq!(after.status, 200);
    let revoked_list = t.ok(&["token", "list"]);
    assert!(!revoked_list.contains("nurse"), "{revoked_list}");
}

/// The first administrator's password was printed: the first session must change it before
/// anything else, and afterwards nothing is held back.
#[test]
fn first_admin_changes_the_printed_password_first() {
    let t = TestArchive::new();
    let server = t.serve();
    let printed = std::fs::read_to_string(t.data().join("initial-admin-password")).unwrap();
    let printed = printed.trim();
    assert!(server
        .log_text()
        .contains("must be changed at the first sign-in"));
    assert!(t.ok(&["user", "list"]).contains("must change password"));
    let (signed, cookie) = login(&server, "admin", printed);
    assert_eq!(signed.status, 200, "{}", signed.text());
    assert_eq!(json_of(&signed)["must_change_password"], true);
    let cookie = cookie.unwrap();
    assert_problem(
        &with_session(&server, &cookie, "GET", "/api/audit", None),
        403,
        "POST /api/users/admin/password",
    );
    let me = with_session(&server, &cookie, "GET", "/api/me", None);
    assert_eq!(json_of(&me)["must_change_password"], true);
    let change = with_session(
        &server,
        &cookie,
        "POST",
        "/api/users/admin/password",
        Some(json!({"old_password": printed, "password": "my own password"})),
    );
    assert_eq!(change.status, 204, "{}", change.text());
    let audit = with_session(
        &server,
        &cookie,
        "GET",
        "/api/audit?action=http.user.password",
        None,
    );
    assert_eq!(audit.status, 200, "{}", audit.text());
    assert_eq!(json_of(&audit).as_array().unwrap().len(), 1);
    let refused = with_session(
        &server,
        &cookie,
        "GET",
        "/api/audit?action=http.refused",
        None,
    );
    let refused = json_of(&refused);
    assert_eq!(refused.as_array().unwrap().len(), 1, "{refused}");
    assert_eq!(
        refused[0]["detail"],
        "GET /api/audit: the password must be changed first"
    );
    assert_eq!(login(&server, "admin", printed).0.status, 401);
    assert_eq!(
        json_of(&login(&server, "admin", "my own password").0)["must_change_password"],
        false
    );
    assert!(!t.ok(&["user", "list"]).contains("must change password"));
}

/// Median time of `n` runs of `f`.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

/// An unknown user name costs what a known one does; failures of one name slow that name
/// down, right password included, and failures from one address slow every name from it.
#[test]
fn sign_in_is_throttled_and_unknown_names_cost_the_same() {
    let t = TestArchive::new();
    add_user(&t, "boss", "admin");
    add_user(&t, "rad", "radiologist");
    let server = t.serve();

    // known name, wrong password (2 failures) against unknown names (3 failures, 1 each)
    let known = median(2, || {
        assert_eq!(login(&server, "rad", "wrong").0.status, 401)
    });
    let mut n = 0;
    let unknown = median(3, || {
        n += 1;
        assert_eq!(login(&server, &format!("ghost{n}"), "wrong").0.status, 401);
    });
    assert!(
        unknown * 3 > known,
        "an unknown name is answered much faster ({unknown:?}) than a known one ({known:?})"
    );
    assert_problem(&login(&server, "not a name", "x").0, 400, "not a user name");

    // per name: the 3rd failure of rad is free, the 4th attempt waits, so does the right
    // password after it; another name is not held back
    let start = Instant::now();
    assert_eq!(login(&server, "rad", "wrong").0.status, 401);
    assert!(start.elapsed() < Duration::from_millis(1500));
    let start = Instant::now();
    assert_eq!(login(&server, "rad", "wrong").0.status, 401);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert_eq!(login(&server, "rad", PASSWORD).0.status, 200);
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "a right password waits too"
    );
    let start = Instant::now();
    assert_eq!(login(&server, "boss", PASSWORD).0.status, 200);
    assert!(start.elapsed() < Duration::from_millis(1500));

    // per address: 7 failures so far from 127.0.0.1; from 20 on every name from it waits
    for i in 0..13 {
        assert_eq!(login(&server, &format!("guess{i}"), "wrong").0.status, 401);
    }
    let start = Instant::now();
    assert_eq!(login(&server, "boss", PASSWORD).0.status, 200);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let admin = Api::new(&server, &token(&t, "boss"));
    let failed: Vec<Value> = api_events(&admin, "http.login")
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert_eq!(failed.len(), 20);
    assert_eq!(
        failed.last().unwrap()["detail"],
        "1 failures of this name, 20 from this address, 20 in all in 15 minutes"
    );
}

/// A sign-in with a wrong password sent by curl with `X-Forwarded-For: forwarded`: its status.
fn curl_login_forwarded(server: &Server, user: &str, forwarded: &str) -> String {
    let body = json!({ "user": user, "password": "wrong" }).to_string();
    let out = common::tool(
        30,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("X-Forwarded-For: {forwarded}"),
            "--data",
            &body,
            &format!("{}/api/login", base(server)),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The failed sign-ins of the audit trail, oldest first.
fn failed_logins(t: &TestArchive) -> Vec<Value> {
    cli_events(t, "http.login")
        .into_iter()
        .filter(|e| e["outcome"] == "failure")
        .collect()
}

#[test]
fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
    let t = TestArchive::new();
    let configure = |proxies: &str| {
        std::fs::create_dir_all(t.data()).unwrap();
        std::fs::write(
            t.data().join("strata.toml"),
            format!("[http]\ntrusted_proxies = [{proxies}]\n"),
        )
        .unwrap();
    };
    // 127.0.0.1 is not a trusted proxy: what the client writes in the header is ignored
    configure("\"10.20.0.0/16\"");
    let server = t.serve();
    assert_eq!(curl_login_forwarded(&server, "who1", "203.0.113.9"), "401");
    drop(server);
    let failed = failed_logins(&t);
    assert_eq!(failed.len(), 1);
    let remote = failed[0]["remote"].as_str().unwrap();
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains(", 1 from this address,"),
        "{}",
        failed[0]["detail"]
    );

    // 127.0.0.1 is trusted: the right-most address it did not append is the client, for the
    // audit trail and for the sign-in throttle's count per address; an address the client
    // prepended itself is not believed
    configure("\"10.20.0.0/16\", \"127.0.0.1\"");
    let server = t.serve();
    for i in 0..3 {
        let forwarded = format!("6.6.6.6, 203.0.113.9, 10.20.0.{i}");
        assert_eq!(
            curl_login_forwarded(&server, &format!("who{}", i + 2), &forwarded),
            "401"
        );
    }
    assert_eq!(curl_login_forwarded(&server, "who5", "203.0.113.10"), "401");
    drop(server);
    let failed = failed_logins(&t);
    let remotes: Vec<&str> = failed[1..]
        .iter()
        .map(|e| e["remote"].as_str().unwrap())
        .collect();
    assert_eq!(
        remotes,
        ["203.0.113.9", "203.0.113.9", "203.0.113.9", "203.0.113.10"]
    );
    // counted per client: three from 203.0.113.9, then the first from 203.0.113.10
    for (event, n) in failed[1..].iter().zip([1, 2, 3, 1]) {
        let detail = event["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!(", {n} from this address,")),
            "{detail}"
        );
    }
}

/// A JSON `PUT` through `api`.
fn put(api: &Api, path: &str, body: Value) -> Answer {
    let body = body.to_string();
    api.call(
        "PUT",
        path,
        &[],
        Some(("application/json", body.as_bytes())),
    )
}

#[test]
fn the_ae_table_is_managed_through_the_api_as_through_the_cli() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        "[[dimse.peers]]\naet = \"FIXED\"\nhost = \"10.0.0.9\"\nport = 104\n",
    )
    .unwrap();
    t.ok(&["ae", "add", "BYCLI", "10.0.0.10", "11112"]);
    add_user(&t, "boss", "admin");
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let admin = Api::new(&server, &token(&t, "boss"));
    let rad = Api::new(&server, &token(&t, "rad"));

    // the list: strata.toml's first, then the managed ones
    let list = admin.ok(admin.get("/api/ae"));
    assert_eq!(
        list,
        json!([
            { "aet": "FIXED", "host": "10.0.0.9", "port": 104, "tls": false, "managed": false },
            { "aet": "BYCLI", "host": "10.0.0.10", "port": 11112, "tls": false, "managed": true },
        ])
    );
    // add and change, seen by the CLI at once
    let added = admin.ok(put(
        &admin,
        "/api/ae/BYAPI",
        json!({ "host": "ws.example.org", "port": 104 }),
    ));
    assert_eq!(added["managed"], true);
    admin.ok(put(
        &admin,
        "/api/ae/BYAPI",
        json!({ "host": "ws.example.org", "port": 4242 }),
    ));
    let cli = t.ok(&["ae", "list"]);
    assert!(cli.contains("ws.example.org:4242"), "{cli}");
    // refused before anything is written: not an AE title, a destination of strata.toml, no port
    for (path, body) in [
        (
            "/api/ae/SEVENTEEN_LETTERS",
            json!({ "host": "h", "port": 104 }),
        ),
        ("/api/ae/%20%20", json!({ "host": "h", "port": 104 })),
        ("/api/ae/FIXED", json!({ "host": "h", "port": 104 })),
        ("/api/ae/OTHER", json!({ "host": "h" })),
        ("/api/ae/OTHER", json!({ "host": "two words", "port": 104 })),
    ] {
        let r = put(&admin, path, body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.content_type.contains("problem+json"));
    }
    // remove: a managed one goes, strata.toml's and unknown ones are not found among the managed
    assert_eq!(admin.call("DELETE", "/api/ae/BYAPI", &[], None).status, 204);
    assert_eq!(admin.call("DELETE", "/api/ae/BYAPI", &[], None).status, 404);
    assert_eq!(admin.call("DELETE", "/api/ae/FIXED", &[], None).status, 404);
    let aets: Vec<Value> = admin
        .ok(admin.get("/api/ae"))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["aet"].clone())
        .collect();
    assert_eq!(aets, [json!("FIXED"), json!("BYCLI")]);
    // administrators only, and never without a caller
    assert_eq!(rad.get("/api/ae").status, 403);
    assert_eq!(
        put(&rad, "/api/ae/X", json!({ "host": "h", "port": 1 })).status,
        403
    );
    assert_eq!(rad.call("DELETE", "/api/ae/BYCLI", &[], None).status, 403);
    assert_eq!(
        http("GET", &format!("{}/api/ae", base(&server)), &[], None).status,
        401
    );

    // every call audited, the lists included
    let listed = api_events(&admin, "http.ae.list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["actor"], "boss");
    assert_eq!(listed[0]["detail"], "2 AE titles");
    let set: Vec<Value> = api_events(&admin, "http.ae.set");
    let details: Vec<&str> = set.iter().map(|e| e["detail"].as_str().unwrap()).collect();
    assert_eq!(
        details,
        [
            "BYAPI at ws.example.org:104",
            "BYAPI at ws.example.org:4242"
        ]
    );
    let removed = api_events(&admin, "http.ae.remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["detail"], "BYAPI");
    // and the CLI's changes as well as its list
    t.ok(&["ae", "remove", "BYCLI"]);
    assert_eq!(
        cli_events(&t, "cli.ae.add")[0]["detail"],
        "BYCLI at 10.0.0.10:11112"
    );
    assert_eq!(cli_events(&t, "cli.ae.remove")[0]["detail"], "BYCLI");
    assert_eq!(cli_events(&t, "cli.ae.list").len(), 1);
}
