//! DICOMweb, authentication and the audit trail against the running binary: the
//! `dicomweb-client` package as an integrator would use it; every protected route refusing
//! callers without credentials; roles; sessions; and bad requests answered with problem+json.

mod common;

use common::{
    add_user, base, files_under, http, multipart, peer_script, python, sop_uid, text, token, tool,
    Answer, TestArchive,
};
use std::path::PathBuf;
use strata_synth::{Modality, SynthOptions};

fn study() -> SynthOptions {
    SynthOptions {
        seed: 21,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices: 3,
        rows: 32,
        cols: 32,
        modality: Some(Modality::Ct),
        noise: false,
    }
}

#[test]
fn dicomweb_client_stores_searches_and_retrieves() {
    let t = TestArchive::new();
    let files = t.generate("in", &study());
    let server = t.serve();
    let tok = token(&t, "admin");
    let mut args = vec![
        peer_script("dicomweb.py").display().to_string(),
        base(&server),
        tok,
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = tool(180, python().to_str().unwrap(), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"wado\": \"ok\""), "{}", text(&out));
    // what STOW-RS stored is what was sent, byte for byte
    for f in &files {
        let got = t.path("got.dcm");
        t.ok(&["get", &sop_uid(f), "-o", got.to_str().unwrap()]);
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(f).unwrap());
    }
    // and every access is in the audit trail, which verifies
    let audit = http(
        "GET",
        &format!("{}/api/audit?actor=admin", base(&server)),
        &[("Authorization", &format!("Bearer {}", token(&t, "admin")))],
        None,
    );
    assert_eq!(audit.status, 200);
    for action in [
        "http.stow",
        "http.qido",
        "http.wado.retrieve",
        "http.wado.metadata",
        "http.wado.bulkdata",
        "http.wado.frames",
    ] {
        assert!(
            audit.text().contains(action),
            "{action} missing from the audit trail"
        );
    }
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
    drop(server);
    // Someone with write access to the database drops the guard and edits one event.
    match &t.index_url {
        None => {
            let db = rusqlite::Connection::open(t.data().join("index.sqlite")).unwrap();
            assert!(
                db.execute("UPDATE audit SET actor = 'nobody' WHERE id = 3", [])
                    .is_err(),
                "append-only"
            );
            db.execute_batch(
                "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'nobody' WHERE id = 3;",
            )
            .unwrap();
        }
        Some(url) => {
            let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
            assert!(
                db.execute("UPDATE strata.audit SET actor = 'nobody' WHERE id = 3", &[])
                    .is_err(),
                "append-only"
            );
            db.batch_execute(
                "ALTER TABLE strata.audit DISABLE TRIGGER audit_no_change;
                 UPDATE strata.audit SET actor = 'nobody' WHERE id = 3;",
            )
            .unwrap();
        }
    }
    let verdict = t.run(&["audit", "verify"]);
    assert_eq!(verdict.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&verdict.stdout).contains("BROKEN at event 3"),
        "{}",
        String::from_utf8_lossy(&verdict.stdout)
    );
}

#[test]
fn every_protected_route_needs_credentials_and_the_right_role() {
    let t = TestArchive::new();
    let files = t.generate("in", &study());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let b = base(&server);
    let obj = dicom_object::open_file(&files[0]).unwrap();
    let uid = |tag| {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let (st, se, sop) = (
        uid(dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
        uid(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
        sop_uid(&files[0]),
    );
    let instance = format!("{b}/dicomweb/studies/{st}/series/{se}/instances/{sop}");
    let routes = [
        format!("{b}/dicomweb/studies"),
        format!("{b}/dicomweb/series"),
        format!("{b}/dicomweb/instances"),
        format!("{b}/dicomweb/studies/{st}"),
        format!("{b}/dicomweb/studies/{st}/metadata"),
        format!("{b}/dicomweb/studies/{st}/series"),
        format!("{b}/dicomweb/studies/{st}/series/{se}"),
        format!("{b}/dicomweb/studies/{st}/series/{se}/metadata"),
        instance.clone(),
        format!("{instance}/metadata"),
        format!("{instance}/frames/1"),
        format!("{instance}/bulk/7FE00010"),
        format!("{b}/api/me"),
        format!("{b}/api/audit"),
        format!("{b}/metrics"),
    ];
    for r in &routes {
        let a = http("GET", r, &[], None);
        assert_eq!(a.status, 401, "{r} without credentials");
        assert_eq!(a.content_type, "application/problem+json", "{r}");
        assert_eq!(
            http("GET", r, &[("Authorization", "Bearer stk_forged")], None).status,
            401,
            "{r} with a forged token"
        );
    }
    assert_eq!(
        http(
            "POST",
            &format!("{b}/dicomweb/studies"),
            &[],
            Some(("multipart/related; boundary=x", b""))
        )
        .status,
        401
    );
    assert_eq!(
        http("POST", &format!("{b}/api/logout"), &[], None).status,
        401
    );
    assert_eq!(http("GET", &format!("{b}/healthz"), &[], None).status, 200);
    assert_eq!(http("GET", &format!("{b}/readyz"), &[], None).status, 200);

    add_user(&t, "rad", "radiologist");
    let rad = token(&t, "rad");
    let as_rad = [("Authorization", format!("Bearer {rad}"))];
    let as_rad: Vec<(&str, &str)> = as_rad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for pixels in [
        format!("{b}/dicomweb/studies/{st}"),
        instance.clone(),
        format!("{instance}/frames/1"),
        format!("{instance}/bulk/7FE00010"),
    ] {
        assert_eq!(
            http("GET", &pixels, &as_rad, None).status,
            403,
            "a radiologist gets no original pixels: {pixels}"
        );
    }
    for allowed in [
        format!("{b}/dicomweb/studies"),
        format!("{b}/dicomweb/studies/{st}/metadata"),
        format!("{instance}/metadata"),
    ] {
        assert_eq!(
            http("GET", &allowed, &as_rad, None).status,
            200,
            "{allowed}"
        );
    }
    assert_eq!(
        http("GET", &format!("{b}/metrics"), &as_rad, None).status,
        403
    );
    assert_eq!(
        http("GET", &format!("{b}/api/audit"), &as_rad, None).status,
        403
    );
    t.ok(&["token", "revoke", &rad]);
    assert_eq!(
        http("GET", &format!("{b}/dicomweb/studies"), &as_rad, None).status,
        401,
        "a revoked token"
    );

    // sessions: a wrong password is refused and audited; a right one gives an HttpOnly cookie
    let login = |pw: &str| {
        http(
            "POST",
            &format!("{b}/api/login"),
            &[],
            Some((
                "application/json",
                format!("{{\"user\":\"rad\",\"password\":\"{pw}\"}}").as_bytes(),
            )),
        )
    };
    assert_eq!(login("wrong").status, 401);
    let ok = ureq::post(&format!("{b}/api/login"))
        .set("Content-Type", "application/json")
        .send_string("{\"user\":\"rad\",\"password\":\"a long enough password\"}")
        .unwrap();
    let cookie = ok.header("Set-Cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let me = http("GET", &format!("{b}/api/me"), &[("Cookie", &session)], None);
    assert!(me.text().contains("radiologist"), "{}", me.text());
    let cross = http(
        "POST",
        &format!("{b}/api/logout"),
        &[("Cookie", &session), ("Origin", "http://evil.example")],
        None,
    );
    assert_eq!(
        cross.status, 403,
        "a cross-site write riding on the session"
    );
    assert_eq!(
        http(
            "POST",
            &format!("{b}/api/logout"),
            &[("Cookie", &session)],
            None
        )
        .status,
        204
    );
    assert_eq!(
        http("GET", &format!("{b}/api/me"), &[("Cookie", &session)], None).status,
        401,
        "logged out"
    );
    let audit = t.ok(&["audit", "list", "--actor", "rad"]);
    assert!(audit.contains("\"action\":\"http.login\",\"patient_id\":null,\"study_uid\":null,\"outcome\":\"failure\""), "{audit}");
}

#[test]
fn bad_requests_get_problems_and_change_nothing() {
    let t = TestArchive::new();
    let files = t.generate("in", &study());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    std::fs::write(
        t.data().join("strata.toml"),
        "[http]\nmax_body_bytes = 200000\n",
    )
    .unwrap();
    let server = t.serve();
    let b = base(&server);
    let tok = token(&t, "admin");
    let auth = format!("Bearer {tok}");
    let h = [("Authorization", auth.as_str())];
    let snapshot = || {
        let mut v: Vec<(PathBuf, Vec<u8>)> = files_under(&t.replica('a'))
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot();
    let problem = |a: &Answer, status: u16, what: &str| {
        assert_eq!(a.status, status, "{what}: {}", a.text());
        assert_eq!(a.content_type, "application/problem+json", "{what}");
        assert!(a.text().contains("\"detail\""), "{what}");
    };
    let (ctype, _) = multipart(&[]);
    problem(
        &http(
            "POST",
            &format!("{b}/dicomweb/studies"),
            &h,
            Some((
                &ctype,
                b"--testboundary42\r\nContent-Type: application/dicom\r\n\r\nabc",
            )),
        ),
        400,
        "malformed multipart",
    );
    problem(
        &http(
            "POST",
            &format!("{b}/dicomweb/studies"),
            &h,
            Some(("application/json", b"{}")),
        ),
        415,
        "not multipart",
    );
    let (ctype, body) = multipart(&[("application/dicom", b"this is not DICOM at all")]);
    let refused = http(
        "POST",
        &format!("{b}/dicomweb/studies"),
        &h,
        Some((&ctype, &body)),
    );
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(
        refused.text().contains("00081198"),
        "FailedSOPSequence: {}",
        refused.text()
    );
    let big = vec![0u8; 300_000];
    let (ctype, body) = multipart(&[("application/dicom", &big)]);
    // The server may refuse before the body is sent in full: write what it takes, then read.
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    let head = format!("POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    use std::io::{Read, Write};
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(&body);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "oversized body: {answer}"
    );
    assert!(
        answer.contains("application/problem+json") && answer.contains("max_body_bytes"),
        "{answer}"
    );
    let other = std::fs::read(&files[0]).unwrap();
    let (ctype, body) = multipart(&[("application/dicom", &other)]);
    let mismatch = http(
        "POST",
        &format!("{b}/dicomweb/studies/1.2.3.4"),
        &h,
        Some((&ctype, &body)),
    );
    assert_eq!(
        mismatch.status,
        409,
        "an instance of another study than the URL names: {}",
        mismatch.text()
    );
    problem(
        &http(
            "GET",
            &format!("{b}/dicomweb/studies/1.2.abc/metadata"),
            &h,
            None,
        ),
        400,
        "invalid UID in the path",
    );
    problem(
        &http(
            "GET",
            &format!("{b}/dicomweb/studies/..%2F..%2Fetc%2Fpasswd"),
            &h,
            None,
        ),
        400,
        "path traversal",
    );
    problem(
        &http(
            "GET",
            &format!(
                "{b}/dicomweb/studies?PatientName=x%27%3B%20DROP%20TABLE%20studies%3B--&Bogus=1"
            ),
            &h,
            None,
        ),
        400,
        "unknown parameter",
    );
    let injection = http(
        "GET",
        &format!("{b}/dicomweb/studies?PatientName=x%27%3B%20DROP%20TABLE%20studies%3B--"),
        &h,
        None,
    );
    assert_eq!(
        injection.status,
        200,
        "SQL in a value is just a value: {}",
        injection.text()
    );
    assert_eq!(injection.text(), "[]");
    problem(
        &http(
            "GET",
            &format!("{b}/dicomweb/studies?StudyDate=yesterday"),
            &h,
            None,
        ),
        400,
        "bad date",
    );
    problem(
        &http("GET", &format!("{b}/dicomweb/studies?limit=many"), &h, None),
        400,
        "bad limit",
    );
    problem(
        &http(
            "GET",
            &format!("{b}/dicomweb/studies"),
            &[h[0], ("Accept", "image/png")],
            None,
        ),
        406,
        "wrong Accept",
    );
    problem(
        &http(
            "GET",
            &format!("{b}/dicomweb/studies/1.2.3/metadata"),
            &h,
            None,
        ),
        404,
        "unknown study",
    );
    problem(
        &http("GET", &format!("{b}/nothing/here"), &h, None),
        404,
        "unknown route",
    );
    problem(
        &http(
            "POST",
            &format!("{b}/api/login"),
            &[],
            Some(("application/json", b"{not json")),
        ),
        400,
        "malformed login",
    );
    assert!(before == snapshot(), "nothing stored changed");
    let studies = t.ok(&["studies"]);
    assert!(
        studies.contains("1 studies") && studies.contains(&format!("{:>9}", files.len())),
        "{studies}"
    );
}

#[test]
fn delete_is_for_admins_refused_under_retention_and_stays_deleted() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 31,
            patients: 2,
            studies: 2,
            series_per_study: 1,
            slices: 2,
            rows: 16,
            cols: 16,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    // Study one is from 2010 for an adult born in 1950: past retention. Study two is from today.
    let today = chrono_today();
    let study_of = |f: &PathBuf| {
        dicom_object::open_file(f)
            .unwrap()
            .element(tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let old = study_of(&files[0]);
    for f in &files {
        let mut obj = dicom_object::open_file(f).unwrap();
        let date = if study_of(f) == old {
            "20100101"
        } else {
            today.as_str()
        };
        obj.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from(date),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            PrimitiveValue::from("19500101"),
        ));
        obj.write_to_file(f).unwrap();
    }
    let recent = files.iter().map(study_of).find(|s| *s != old).unwrap();
    let old_files: Vec<&PathBuf> = files.iter().filter(|f| study_of(f) == old).collect();
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    // Keep replica a's copies of the old study, to play a replica that missed the deletion.
    let a = replica_a_copies(&t, &old_files);
    let server = t.serve();
    let b = base(&server);
    add_user(&t, "integ", "integrator");
    let integ = format!("Bearer {}", token(&t, "integ"));
    let admin = format!("Bearer {}", token(&t, "admin"));
    assert_eq!(
        http(
            "DELETE",
            &format!("{b}/dicomweb/studies/{old}"),
            &[("Authorization", &integ)],
            None
        )
        .status,
        403
    );
    let held = http(
        "DELETE",
        &format!("{b}/dicomweb/studies/{recent}"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(held.status, 409, "{}", held.text());
    assert!(held.text().contains("retention"), "{}", held.text());
    let gone = http(
        "DELETE",
        &format!("{b}/dicomweb/studies/{old}"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(gone.status, 204, "{}", gone.text());
    let search = http(
        "GET",
        &format!("{b}/dicomweb/studies?StudyInstanceUID={old}"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(search.text(), "[]");
    for (path, _) in &a {
        assert!(!path.exists(), "the blob {} was removed", path.display());
    }
    let audit = t.ok(&["audit", "list", "--action", "http.delete"]);
    assert!(
        audit.contains("\"outcome\":\"success\"") && audit.contains("\"outcome\":\"denied\""),
        "{audit}"
    );

    // WADO-URI of the remaining study
    let f = files.iter().find(|f| study_of(f) == recent).unwrap();
    let obj = dicom_object::open_file(f).unwrap();
    let se = obj
        .element(tags::SERIES_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    let uri = format!("{b}/wado?requestType=WADO&studyUID={recent}&seriesUID={se}&objectUID={}&contentType=application/dicom", sop_uid(f));
    let got = http("GET", &uri, &[("Authorization", &admin)], None);
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        std::fs::read(f).unwrap(),
        "WADO-URI returns the stored instance"
    );
    add_user(&t, "rad", "radiologist");
    let rad = format!("Bearer {}", token(&t, "rad"));
    assert_eq!(
        http("GET", &uri, &[("Authorization", &rad)], None).status,
        403
    );
    // a picture is rendered (tests/rendered.rs checks it); a type we cannot produce is 406
    let jpeg = http(
        "GET",
        &uri.replace("application/dicom", "image/jpeg"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(
        (jpeg.status, jpeg.content_type.as_str()),
        (200, "image/jpeg"),
        "{}",
        jpeg.text()
    );
    let gif = http(
        "GET",
        &uri.replace("application/dicom", "image/gif"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(gif.status, 406, "{}", gif.text());
    drop(server);

    // A replica that missed the deletion still has the blobs; reindex from it must not bring
    // the deleted study back: the deletion is in the journal.
    for (path, bytes) in &a {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    t.ok(&["reindex", "--from-replica", "1"]);
    let studies = t.ok(&["studies"]);
    assert!(
        !studies.contains(&old) && studies.contains(&recent),
        "{studies}"
    );
}

fn chrono_today() -> String {
    let out = std::process::Command::new("date")
        .arg("+%Y%m%d")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Replica a's files (path and bytes) holding the given instances.
fn replica_a_copies(t: &TestArchive, files: &[&PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let archive = t.open().await;
        let mut out = Vec::new();
        for f in files {
            let blob = archive
                .index
                .instance(&sop_uid(f))
                .await
                .unwrap()
                .unwrap()
                .blob_id;
            let path = t.blob_file('a', &blob);
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
        out
    })
}

#[test]
fn a_large_instance_streams_back_byte_identical() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 3,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 1700,
            cols: 1700,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    let original = std::fs::read(&files[0]).unwrap();
    assert!(original.len() > 5 << 20, "larger than one streaming window");
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let obj = dicom_object::open_file(&files[0]).unwrap();
    let st = obj
        .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    let auth = format!("Bearer {}", token(&t, "admin"));
    let a = http(
        "GET",
        &format!("{}/dicomweb/studies/{st}", base(&server)),
        &[
            ("Authorization", &auth),
            (
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            ),
        ],
        None,
    );
    assert_eq!(a.status, 200);
    assert!(
        a.only_part() == &original[..],
        "the streamed part is the stored instance"
    );
}

#[test]
fn fuzzy_matching_finds_names_that_sound_alike() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 41,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 16,
            cols: 16,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    obj.put(DataElement::new(
        dicom_dictionary_std::tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("Smith^John"),
    ));
    obj.write_to_file(&files[0]).unwrap();
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let auth = format!("Bearer {}", token(&t, "admin"));
    let count = |query: &str| {
        let a = http(
            "GET",
            &format!("{}/dicomweb/studies?{query}", base(&server)),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(a.status, 200, "{query}: {}", a.text());
        serde_json::from_slice::<Vec<serde_json::Value>>(&a.body)
            .unwrap()
            .len()
    };
    assert_eq!(
        count("PatientName=Smyth"),
        0,
        "exact matching does not forgive spelling"
    );
    assert_eq!(
        count("PatientName=Smyth&fuzzymatching=true"),
        1,
        "sounds alike"
    );
    assert_eq!(
        count("PatientName=smyth%5Ejon&fuzzymatching=true"),
        1,
        "family and given alike"
    );
    assert_eq!(
        count("PatientName=smi%5Ejo&fuzzymatching=true"),
        1,
        "prefixes of each component"
    );
    assert_eq!(
        count("PatientName=Jones&fuzzymatching=true"),
        0,
        "another name"
    );
    assert_eq!(
        count("PatientName=Smith%5EMary&fuzzymatching=true"),
        0,
        "another given name"
    );
}

#[test]
fn frames_of_a_compressed_instance_are_decoded_unless_asked_as_stored() {
    let t = TestArchive::new();
    let files = t.generate(
        "in",
        &SynthOptions {
            seed: 51,
            patients: 1,
            studies: 1,
            series_per_study: 1,
            slices: 1,
            rows: 32,
            cols: 32,
            modality: Some(Modality::Ct),
            noise: false,
        },
    );
    let jpeg = t.path("jpeg.dcm");
    let r = tool(
        60,
        "dcmcjpeg",
        &["+e1", files[0].to_str().unwrap(), jpeg.to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", text(&r));
    t.ok(&["import", jpeg.to_str().unwrap()]);
    let server = t.serve();
    let obj = dicom_object::open_file(&files[0]).unwrap();
    let uid = |tag| {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let (st, se) = (
        uid(dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
        uid(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
    );
    let url = format!(
        "{}/dicomweb/studies/{st}/series/{se}/instances/{}/frames/1",
        base(&server),
        sop_uid(&files[0])
    );
    let auth = format!("Bearer {}", token(&t, "admin"));
    let part = |a: &Answer| {
        let start = a.body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let end = a.body.windows(4).rposition(|w| w == b"\r\n--").unwrap();
        a.body[start..end].to_vec()
    };
    let native = http("GET", &url, &[("Authorization", &auth)], None);
    assert_eq!(native.status, 200, "{}", native.text());
    let pixels = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    assert!(
        part(&native) == pixels,
        "the default is the decoded, native frame (lossless: the original pixels)"
    );
    let stored = http(
        "GET",
        &url,
        &[
            ("Authorization", &auth),
            (
                "Accept",
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
            ),
        ],
        None,
    );
    assert_eq!(stored.status, 200);
    assert_eq!(
        &part(&stored)[..2],
        &[0xFF, 0xD8],
        "as stored: a JPEG bit stream"
    );
}

#[test]
fn the_audit_trail_and_the_accounts_survive_the_loss_of_the_index() {
    let t = TestArchive::new();
    t.generate("in", &study());
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    let server = t.serve();
    let auth = format!("Bearer {}", token(&t, "admin"));
    let old = token(&t, "admin");
    t.ok(&["token", "revoke", &old]);
    let revoked = format!("Bearer {old}");
    for q in [
        "PatientName=a*",
        "ModalitiesInStudy=CT",
        "StudyDate=20000101-",
    ] {
        assert_eq!(
            http(
                "GET",
                &format!("{}/dicomweb/studies?{q}", base(&server)),
                &[("Authorization", &auth)],
                None
            )
            .status,
            200
        );
    }
    drop(server);
    let exported = t.ok(&["audit", "export"]);
    assert!(!exported.contains("copied 0 "), "{exported}");
    let before = t.ok(&["audit", "list"]);
    assert!(before.matches("http.qido").count() == 3, "{before}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(t.data().join(format!("index.sqlite{suffix}")));
    }
    let out = t.ok(&["reindex", "--from-replica", "2"]);
    assert!(
        out.contains(&format!("{} audit events restored", before.lines().count())),
        "{out}"
    );
    assert_eq!(
        t.ok(&["audit", "list"]),
        before,
        "the trail is back, event for event"
    );
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
    assert!(
        t.ok(&["audit", "export"]).contains("copied 0 "),
        "nothing new to copy"
    );
    // users and tokens come back from the journal: the old token works, a revoked one does not;
    // and new events chain on from the restored ones
    let server = t.serve();
    assert_eq!(
        http(
            "GET",
            &format!("{}/dicomweb/studies", base(&server)),
            &[("Authorization", &auth)],
            None
        )
        .status,
        200
    );
    assert_eq!(
        http(
            "GET",
            &format!("{}/dicomweb/studies", base(&server)),
            &[("Authorization", &revoked)],
            None
        )
        .status,
        401
    );
    drop(server);
    assert_eq!(t.ok(&["audit", "list"]).matches("http.qido").count(), 4);
    assert!(t.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn binary_values_leave_only_as_bulk_data_for_those_allowed_originals() {
    let t = TestArchive::new();
    let files = t.generate("in", &study());
    // An instance carrying a small binary attribute of its own besides the pixel data.
    let f = &files[0];
    let r = tool(
        30,
        "dcmodify",
        &[
            "-nb",
            "-i",
            "(0042,0011)=01\\02\\03\\04",
            "-i",
            "(0042,0012)=application/pdf",
            f.to_str().unwrap(),
        ],
    );
    assert!(r.status.success(), "{}", text(&r));
    let server = t.serve();
    add_user(&t, "reader", "radiologist");
    let admin = common::Api::new(&server, &token(&t, "admin"));
    let reader = common::Api::new(&server, &token(&t, "reader"));
    admin.ok(admin.stow(f));
    let [study_uid, series_uid, sop] = common::uids(f);
    // a search never returns the binary value, even when asked for it by name
    let found = reader.ok(reader.get(&format!(
        "/dicomweb/instances?SOPInstanceUID={sop}&includefield=00420011&includefield=00420012"
    )));
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert!(
        found[0].get("00420012").is_some(),
        "text still answered: {found}"
    );
    assert!(found[0].get("00420011").is_none(), "{found}");
    // metadata names it as bulk data, which a radiologist may not fetch and an integrator may
    let metadata = reader.ok(reader.get(&format!(
        "/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}/metadata"
    )));
    let element = &metadata[0]["00420011"];
    assert!(element.get("InlineBinary").is_none(), "{element}");
    let uri = element["BulkDataURI"].as_str().expect("a BulkDataURI");
    let path = uri.trim_start_matches(&base(&server)).to_string();
    let refused = reader.call("GET", &path, &[("Accept", "*/*")], None);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let served = admin.call("GET", &path, &[("Accept", "*/*")], None);
    assert_eq!(served.status, 200, "{}", served.text());
    assert!(
        served.body.windows(4).any(|w| w == [1, 2, 3, 4]),
        "the value itself, to one allowed originals"
    );
}
