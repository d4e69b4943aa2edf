//! HTTPS on the HTTP listener: with `http.tls_self_signed` the archive makes its own
//! certificate on first start and serves only HTTPS; curl and dicomweb-client trusting that
//! certificate work end to end, every answer carries HSTS, and the session cookie is `Secure`.

mod common;

use common::{peer_script, python, text, token, tool, TestArchive, PASSWORD};
use strata_synth::SynthOptions;

#[test]
fn self_signed_https_serves_curl_and_dicomweb_client() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        "[http]\ntls_self_signed = true\n",
    )
    .unwrap();
    let files = t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 2,
            series_per_study: 1,
            rows: 32,
            cols: 32,
            ..Default::default()
        },
    );
    let server = t.serve();
    let cert = t.data().join("tls/certificate.pem");
    assert!(cert.exists(), "{}", server.log_text());
    let key = t.data().join("tls/private-key.pem");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is the owner's alone");
    }
    assert!(
        server.log_text().contains("SHA-256"),
        "the fingerprint is printed for pinning: {}",
        server.log_text()
    );
    let base = format!("https://127.0.0.1:{}", server.http.port());
    let cacert = cert.to_str().unwrap();

    // curl trusting the archive's certificate: health, HSTS, and a signed-in session's cookie
    let health = tool(
        30,
        "curl",
        &["-sS", "-i", "--cacert", cacert, &format!("{base}/healthz")],
    );
    assert!(health.status.success(), "{}", text(&health));
    let head = text(&health).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    common::add_user(&t, "reader", "radiologist");
    let login = tool(
        30,
        "curl",
        &[
            "-sS",
            "-i",
            "--cacert",
            cacert,
            "-H",
            "content-type: application/json",
            "--data",
            &serde_json::json!({"user": "reader", "password": PASSWORD}).to_string(),
            &format!("{base}/api/login"),
        ],
    );
    let answer = text(&login);
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    // a client that does not trust the certificate is stopped by TLS, and plain HTTP on the
    // HTTPS port gets no answer from the archive
    let untrusted = tool(30, "curl", &["-sS", &format!("{base}/healthz")]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    let plain = tool(
        30,
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{}/healthz", server.http.port()),
        ],
    );
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // dicomweb-client (requests) with the certificate as its CA bundle: STOW, QIDO, WADO
    let tok = token(&t, "admin");
    let mut args = vec![peer_script("dicomweb.py").display().to_string(), base, tok];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = std::process::Command::new("timeout")
        .args(["-k", "5", "180"])
        .arg(python())
        .args(&args)
        .env("REQUESTS_CA_BUNDLE", cacert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"wado\": \"ok\""), "{}", text(&out));
}
