//! Access letters end to end: a patient's own copy with credentials the provider hands over.
//! An administrator issues a letter for a person; with its code alone (no account) the holder
//! sees the person's studies and, with the passcode too, downloads them as the media ZIP
//! encrypted in OpenPGP, which GnuPG decrypts with the passcode into the ZIP a patient account
//! of that person exports. A wrong code or passcode is refused and, tried too often, throttled
//! (429, Retry-After); a revoked or expired letter is refused (410); each step is in the audit
//! trail. The page where the code is typed does the same in chromium.

mod common;

use common::{
    add_patient, add_user, audit_events, base, http, text, token, tool, Api, TestArchive,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use strata_synth::{Modality, SynthOptions};

/// Attempts one address may make per minute in this test: enough for the steps before the
/// throttle is tried on purpose.
const ATTEMPTS_PER_MINUTE: u32 = 20;

/// `POST /api/letter/{what}` with `body` as JSON, from no account.
fn holder(base: &str, what: &str, body: serde_json::Value) -> common::Answer {
    let body = body.to_string();
    http(
        "POST",
        &format!("{base}/api/letter/{what}"),
        &[],
        Some(("application/json", body.as_bytes())),
    )
}

/// The files of a ZIP by name, unzipped by unzip.
fn unzipped(zip: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = zip.with_extension("d");
    let out = tool(
        60,
        "unzip",
        &["-q", zip.to_str().unwrap(), "-d", dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "unzip {}: {}",
        zip.display(),
        text(&out)
    );
    walkdir::WalkDir::new(&dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let name = e.path().strip_prefix(&dir).unwrap().to_str().unwrap();
            (name.to_string(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// `gpg --batch --pinentry-mode loopback --passphrase P --decrypt` of `file` into `out`, in a
/// GnuPG home of its own.
fn gpg_decrypt(home: &Path, file: &Path, passphrase: &str, out: &Path) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
    Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
        ])
        .args([
            "--output",
            out.to_str().unwrap(),
            "--decrypt",
            file.to_str().unwrap(),
        ])
        .output()
        .expect("gpg (the test command installs gnupg)")
}

/// Moves letter `id`'s expiry into the past, in the index itself (the archive's clock is the
/// system's, and a letter is valid a day at least).
fn expire(t: &TestArchive, id: i64) {
    let sql = format!(
        "UPDATE access_letters SET expires_at = {} WHERE id = {id}",
        strata_core::now_ms() - 1000
    );
    match &t.index_url {
        None => {
            let c = rusqlite::Connection::open(t.data().join("index.sqlite")).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
            assert_eq!(c.execute(&sql, []).unwrap(), 1);
        }
        Some(url) => {
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            c.batch_execute(&format!("SET search_path TO strata; {sql}"))
                .unwrap();
        }
    }
}

#[test]
fn a_patient_takes_an_encrypted_copy_with_a_letter() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        format!("[http]\nletter_attempts_per_minute = {ATTEMPTS_PER_MINUTE}\n"),
    )
    .unwrap();
    let opts = SynthOptions {
        seed: 2027,
        patients: 1,
        studies: 2,
        series_per_study: 1,
        slices: 3,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: false,
    };
    let files = t.generate("in", &opts);
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let study = common::uids(&files[0])[0].clone();
    add_user(&t, "admin1", "admin");
    add_user(&t, "rad", "radiologist");
    let server = t.serve();
    let base = base(&server);
    let admin = Api::new(&server, &token(&t, "admin1"));
    let person = admin.ok(admin.get(&format!("/api/persons?study={study}")))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // no confirmed patient ID yet: a letter would show nothing, so none is issued
    let refused = admin.post("/api/letters", serde_json::json!({"person": person}));
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.content_type, "application/problem+json");
    // binding a patient account confirms them; what that account exports is the reference
    add_patient(&t, "pat", &person);
    let patient = Api::new(&server, &token(&t, "pat"));
    let reference = patient.get(&format!("/api/export?person={person}"));
    assert_eq!(reference.status, 200, "{}", reference.text());
    std::fs::write(t.path("reference.zip"), &reference.body).unwrap();

    // who may issue: not a radiologist; validity within the retention period
    let rad = Api::new(&server, &token(&t, "rad"));
    let answer = rad.post("/api/letters", serde_json::json!({"person": person}));
    assert_eq!(answer.status, 403, "{}", answer.text());
    for days in [0, 7 * 365 + 1] {
        let answer = admin.post(
            "/api/letters",
            serde_json::json!({"person": person, "valid_days": days}),
        );
        assert_eq!(answer.status, 400, "{days}: {}", answer.text());
    }
    let answer = admin.post("/api/letters", serde_json::json!({"person": "ffff"}));
    assert_eq!(answer.status, 404, "{}", answer.text());

    // the letter: shown once, 90 days by default
    let issued = admin.post("/api/letters", serde_json::json!({"person": person}));
    assert_eq!(issued.status, 201, "{}", issued.text());
    let issued: serde_json::Value = serde_json::from_slice(&issued.body).unwrap();
    let (code, passcode) = (
        issued["code"].as_str().unwrap().to_string(),
        issued["passcode"].as_str().unwrap().to_string(),
    );
    let id = issued["letter"]["id"].as_i64().unwrap();
    let days = (issued["letter"]["expires_at"].as_i64().unwrap()
        - issued["letter"]["issued_at"].as_i64().unwrap())
        / 86_400_000;
    assert_eq!(days, 90);
    assert_eq!(code.len(), 24, "{code}");
    assert!(issued["url"].as_str().unwrap().ends_with("/letter"));
    // the printable letter
    let page = admin.call(
        "POST",
        "/api/letters",
        &[("Accept", "text/html")],
        Some((
            "application/json",
            serde_json::json!({"person": person, "valid_days": 30})
                .to_string()
                .as_bytes(),
        )),
    );
    assert_eq!(page.status, 201, "{}", page.text());
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    let printed = page.text();
    for needle in [
        "class=\"code\"",
        "class=\"passcode\"",
        "/letter</strong>",
        "gpg --decrypt",
    ] {
        assert!(printed.contains(needle), "{needle} in {printed}");
    }
    // the page where the code is typed is open to all
    let letter_page = http("GET", &format!("{base}/letter"), &[], None);
    assert_eq!(letter_page.status, 200);
    assert!(letter_page.text().contains("/app/letter.js"));

    // open with the code (typed in lower case, with spaces): the person's studies
    let typed = code.to_lowercase().replace('-', " ");
    let opened = holder(&base, "open", serde_json::json!({"code": typed}));
    assert_eq!(opened.status, 200, "{}", opened.text());
    let opened: serde_json::Value = serde_json::from_slice(&opened.body).unwrap();
    assert_eq!(opened["studies"].as_array().unwrap().len(), 2, "{opened}");
    assert_eq!(opened["letter"]["id"], id);

    // a wrong passcode is refused before anything is sent
    let wrong = holder(
        &base,
        "download",
        serde_json::json!({"code": code, "passcode": "AAAAAAAAAAAAAAAA"}),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(wrong.content_type, "application/problem+json");

    // the download, as the page's form sends it: GnuPG opens it with the passcode
    let form = format!("code={}&passcode={}", code, passcode.to_lowercase());
    let download = http(
        "POST",
        &format!("{base}/api/letter/download"),
        &[],
        Some(("application/x-www-form-urlencoded", form.as_bytes())),
    );
    assert_eq!(download.status, 200, "{}", download.text());
    assert_eq!(download.content_type, "application/pgp-encrypted");
    let encrypted = t.path("copy.zip.gpg");
    std::fs::write(&encrypted, &download.body).unwrap();
    assert!(
        !download.body.windows(4).any(|w| w == b"DICM"),
        "plain DICOM in the encrypted copy"
    );
    let home = t.path("gnupg");
    let wrong_out = t.path("wrong.zip");
    let out = gpg_decrypt(&home, &encrypted, "NOTTHEPASSCODE23", &wrong_out);
    assert!(
        !out.status.success(),
        "gpg with a wrong passphrase: {}",
        text(&out)
    );
    let copy = t.path("copy.zip");
    let out = gpg_decrypt(&home, &encrypted, &passcode, &copy);
    assert!(out.status.success(), "gpg --decrypt: {}", text(&out));
    // the same ZIP as the patient account's export: every entry, byte for byte, but those
    // that say when they were made (README.TXT, INDEX.HTM) and the DICOMDIR, whose file-set
    // UID is new for every export
    let (got, want) = (unzipped(&copy), unzipped(&t.path("reference.zip")));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    let dicom = want.keys().filter(|k| k.starts_with("DICOM/")).count();
    assert_eq!(dicom, files.len());
    for (name, bytes) in &want {
        if !["README.TXT", "INDEX.HTM", "DICOMDIR"].contains(&name.as_str()) {
            assert!(got[name] == *bytes, "{name} differs");
        }
    }
    // the DICOMDIRs differ in their file-set UIDs (new for every export, of varying length):
    // their records are the same, naming the same files
    let records = |bytes: &[u8], name: &str| -> Vec<String> {
        use dicom_dictionary_std::tags;
        let path = t.path(name);
        std::fs::write(&path, bytes).unwrap();
        let dir = dicom_object::open_file(&path).unwrap();
        let text = |item: &dicom_object::InMemDicomObject, tag| {
            item.element_opt(tag)
                .unwrap()
                .map(|e| e.to_str().unwrap().trim().to_string())
                .unwrap_or_default()
        };
        dir.element(tags::DIRECTORY_RECORD_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .iter()
            .map(|item| {
                let (kind, file) = (
                    text(item, tags::DIRECTORY_RECORD_TYPE),
                    text(item, tags::REFERENCED_FILE_ID),
                );
                format!("{kind} {file}")
            })
            .collect()
    };
    let (got_records, want_records) = (
        records(&got["DICOMDIR"], "got.dicomdir"),
        records(&want["DICOMDIR"], "want.dicomdir"),
    );
    assert!(got_records.len() > dicom, "{got_records:?}");
    assert_eq!(got_records, want_records);

    // the same in a browser, on the page where the code is typed (tests/viewer/letter.mjs)
    let out = Command::new("node")
        .arg("letter.mjs")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/viewer"))
        .env("BASE", &base)
        .env("CODE", &code)
        .env("PASSCODE", &passcode)
        .env("STUDIES", "2")
        .env("OUT", t.path(""))
        .output()
        .expect("running node (the test command installs it)");
    assert!(
        out.status.success(),
        "the letter page in chromium:\n{}",
        text(&out)
    );
    let browser_copy = t.path("browser.zip");
    let out = gpg_decrypt(&home, &t.path("browser.zip.gpg"), &passcode, &browser_copy);
    assert!(
        out.status.success(),
        "gpg --decrypt of the browser's copy: {}",
        text(&out)
    );
    assert_eq!(
        unzipped(&browser_copy).keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );

    // listed, then revoked: refused from then on
    let listed = admin.ok(admin.get(&format!("/api/letters?person={person}")));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mine = listed.iter().find(|l| l["id"] == id).unwrap();
    assert_eq!(mine["downloads"], 2, "{mine}");
    assert!(mine.get("code").is_none() && !mine.to_string().contains(&passcode));
    let revoked = admin.ok(admin.post(&format!("/api/letters/{id}/revoke"), serde_json::json!({})));
    assert!(revoked["revoked_at"].is_i64(), "{revoked}");
    let refused = holder(&base, "open", serde_json::json!({"code": code}));
    assert_eq!(refused.status, 410, "{}", refused.text());
    assert_eq!(refused.content_type, "application/problem+json");

    // an expired letter is refused
    let second = admin.post(
        "/api/letters",
        serde_json::json!({"person": person, "valid_days": 1}),
    );
    assert_eq!(second.status, 201, "{}", second.text());
    let second: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    expire(&t, second["letter"]["id"].as_i64().unwrap());
    let refused = holder(
        &base,
        "download",
        serde_json::json!({"code": second["code"], "passcode": second["passcode"]}),
    );
    assert_eq!(refused.status, 410, "{}", refused.text());

    // a wrong code is refused, and tried again and again, throttled
    let guess = "0000-0000-0000-0000-0000";
    let refused = holder(&base, "open", serde_json::json!({"code": guess}));
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.content_type, "application/problem+json");
    let mut throttled = None;
    for _ in 0..2 * ATTEMPTS_PER_MINUTE {
        let answer = ureq::post(&format!("{base}/api/letter/open"))
            .set("Content-Type", "application/json")
            .send_string(&serde_json::json!({"code": guess}).to_string());
        match answer {
            Err(ureq::Error::Status(429, r)) => {
                throttled = Some(r.header("Retry-After").unwrap_or("").to_string());
                break;
            }
            Err(ureq::Error::Status(401, _)) => {}
            other => panic!("a wrong code: {other:?}"),
        }
    }
    let retry_after = throttled.expect("wrong codes are throttled");
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    // the right code too, from that address, until the wait is over
    let refused = holder(&base, "open", serde_json::json!({"code": second["code"]}));
    assert_eq!(refused.status, 429, "{}", refused.text());

    // every step is in the audit trail
    let issues = audit_events(&t, "letter.issue");
    let ok = |events: &[serde_json::Value], outcome: &str| {
        events.iter().filter(|e| e["outcome"] == outcome).count()
    };
    assert_eq!(ok(&issues, "success"), 3, "{issues:?}");
    assert_eq!(ok(&issues, "failure"), 4, "{issues:?}");
    let opens = audit_events(&t, "letter.open");
    let actor = format!("letter:{id}");
    assert_eq!(
        opens
            .iter()
            .filter(|e| e["outcome"] == "success" && e["actor"] == actor.as_str())
            .filter(|e| e["study_uid"].is_string())
            .count(),
        4,
        "{opens:?}"
    );
    assert!(ok(&opens, "failure") >= 3, "{opens:?}");
    assert_eq!(ok(&opens, "denied"), 1, "{opens:?}");
    let downloads = audit_events(&t, "letter.download");
    assert_eq!(ok(&downloads, "success"), 4, "{downloads:?}");
    assert_eq!(ok(&downloads, "failure"), 1, "{downloads:?}");
    assert_eq!(ok(&downloads, "denied"), 1, "{downloads:?}");
    assert!(downloads
        .iter()
        .filter(|e| e["outcome"] == "success")
        .all(|e| e["study_uid"].is_string() && e["role"] == "letter"));
    let revokes = audit_events(&t, "letter.revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert_eq!(revokes[0]["actor"], "admin1");
}
