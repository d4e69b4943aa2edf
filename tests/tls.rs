//! DICOM TLS: with a certificate configured, dcmtk peers echo and store over TLS on the second
//! port; a plain association on that port fails, and the plain port keeps working.

mod common;

use common::{free_port, text, tool, KillOnDrop, TestArchive};
use strata_synth::SynthOptions;

#[test]
fn echo_and_store_over_tls() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let (key, cert) = (t.path("key.pem"), t.path("cert.pem"));
    let r = tool(
        60,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
    );
    assert!(r.status.success(), "{}", text(&r));
    let tls_port = free_port();
    std::fs::write(
        t.data().join("strata.toml"),
        format!("[dimse]\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n", cert.display(), key.display()),
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
    // the TLS listener announces itself just after the plain ones
    let announced = format!("over TLS as STRATA on 127.0.0.1:{tls_port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log_text().contains(&announced) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        server.log_text().contains(&announced),
        "{}",
        server.log_text()
    );
    assert!(
        server
            .log_text()
            .contains(&format!("over TLS as STRATA on 127.0.0.1:{tls_port}")),
        "{}",
        server.log_text()
    );
    let port = tls_port.to_string();
    let cert = cert.to_str().unwrap();
    let echo = tool(
        30,
        "echoscu",
        &["+tla", "+cf", cert, "-aec", "STRATA", "127.0.0.1", &port],
    );
    assert!(echo.status.success(), "{}", text(&echo));
    let store = tool(
        60,
        "storescu",
        &[
            "+tla",
            "+cf",
            cert,
            "-aec",
            "STRATA",
            "127.0.0.1",
            &port,
            "+sd",
            "+r",
            t.path("in").to_str().unwrap(),
        ],
    );
    assert!(store.status.success(), "{}", text(&store));
    assert!(
        t.ok(&["studies"]).contains(&format!("{:>9}", files.len())),
        "both instances stored over TLS"
    );
    let plain = tool(30, "echoscu", &["-aec", "STRATA", "127.0.0.1", &port]);
    assert!(
        !plain.status.success(),
        "plain DICOM on the TLS port must fail"
    );
    let plain_port = tool(
        30,
        "echoscu",
        &["-aec", "STRATA", "127.0.0.1", &server.port()],
    );
    assert!(plain_port.status.success(), "{}", text(&plain_port));
}

/// Runs openssl, which makes the certificates of these tests.
fn openssl(args: &[&str]) {
    let r = tool(60, "openssl", args);
    assert!(r.status.success(), "openssl {args:?}: {}", text(&r));
}

/// A certificate authority (`<name>.pem`, `<name>-key.pem`) under the test's folder.
fn authority(t: &TestArchive, name: &str) -> (String, String) {
    let (cert, key) = (
        t.path(&format!("{name}.pem")),
        t.path(&format!("{name}-key.pem")),
    );
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let subject = format!("/CN={name}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    (cert.to_string(), key.to_string())
}

/// A certificate for `name` issued by the authority `ca` (cert, key), for a server or a client.
fn issued(t: &TestArchive, ca: &(String, String), name: &str, usage: &str) -> (String, String) {
    let p = |suffix: &str| {
        t.path(&format!("{name}{suffix}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (cert, key, csr, ext) = (p(".pem"), p("-key.pem"), p(".csr"), p(".ext"));
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &format!("/CN={name}"),
    ]);
    std::fs::write(
        &ext,
        format!("basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca.0,
        "-CAkey",
        &ca.1,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (cert, key)
}

#[test]
fn mutual_tls_refuses_a_peer_without_a_trusted_certificate() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let server_ca = authority(&t, "server-ca");
    let client_ca = authority(&t, "modality-ca");
    let stranger_ca = authority(&t, "stranger-ca");
    let server = issued(&t, &server_ca, "archive", "serverAuth");
    let modality = issued(&t, &client_ca, "modality", "clientAuth");
    let stranger = issued(&t, &stranger_ca, "stranger", "clientAuth");
    let tls_port = free_port();
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[dimse]\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\ntls_client_ca = \"{}\"\n",
            server.0, server.1, client_ca.0
        ),
    )
    .unwrap();
    t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 1,
            series_per_study: 1,
            rows: 16,
            cols: 16,
            ..Default::default()
        },
    );
    let running = t.serve();
    let announced = format!("over TLS as STRATA on 127.0.0.1:{tls_port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !running.log_text().contains(&announced) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let port = tls_port.to_string();
    let with = |identity: Option<&(String, String)>| {
        let mut args: Vec<&str> = match identity {
            Some((cert, key)) => vec!["+tls", key, cert],
            None => vec!["+tla"],
        };
        args.extend(["+cf", &server_ca.0, "-aec", "STRATA", "127.0.0.1", &port]);
        tool(30, "echoscu", &args)
    };
    let trusted = with(Some(&modality));
    assert!(trusted.status.success(), "{}", text(&trusted));
    let anonymous = with(None);
    assert!(
        !anonymous.status.success(),
        "a peer without a certificate is refused"
    );
    let foreign = with(Some(&stranger));
    assert!(
        !foreign.status.success(),
        "a certificate from an authority not configured is refused"
    );
    let store = tool(
        60,
        "storescu",
        &[
            "+tls",
            &modality.1,
            &modality.0,
            "+cf",
            &server_ca.0,
            "-aec",
            "STRATA",
            "127.0.0.1",
            &port,
            "+sd",
            "+r",
            t.path("in").to_str().unwrap(),
        ],
    );
    assert!(store.status.success(), "{}", text(&store));
    assert!(t.ok(&["studies"]).contains(&format!("{:>9}", 1)));
}

#[test]
fn c_move_to_a_tls_peer_goes_over_mutual_tls() {
    let t = TestArchive::new();
    std::fs::create_dir_all(t.data()).unwrap();
    let ca = authority(&t, "hospital-ca");
    let archive = issued(&t, &ca, "archive", "serverAuth,clientAuth");
    let workstation = issued(&t, &ca, "workstation", "serverAuth,clientAuth");
    let (tls_port, ws_port) = (free_port(), free_port());
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[dimse]\ntls_listen = \"127.0.0.1:{tls_port}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\ntls_peer_ca = \"{}\"\n\n[[dimse.peers]]\naet = \"WS\"\nhost = \"127.0.0.1\"\nport = {ws_port}\ntls = true\n",
            archive.0, archive.1, ca.0
        ),
    )
    .unwrap();
    let files = t.generate(
        "in",
        &SynthOptions {
            studies: 1,
            patients: 1,
            slices: 3,
            series_per_study: 1,
            rows: 16,
            cols: 16,
            ..Default::default()
        },
    );
    t.ok(&["import", t.path("in").to_str().unwrap()]);
    // The workstation accepts DICOM TLS only, from a peer whose certificate its CA issued.
    let out = t.path("received");
    std::fs::create_dir_all(&out).unwrap();
    let ws = std::process::Command::new("storescp")
        .args([
            "+tls",
            &workstation.1,
            &workstation.0,
            "+cf",
            &ca.0,
            "-aet",
            "WS",
            "-od",
            out.to_str().unwrap(),
            &ws_port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("storescp (dcmtk) is installed by scripts/test.sh");
    let _ws = KillOnDrop(ws);
    common::wait_listening(ws_port);
    let server = t.serve();
    let study = format!("StudyInstanceUID={}", common::uids(&files[0])[0]);
    let moved = tool(
        60,
        "movescu",
        &[
            "-aec",
            "STRATA",
            "-aem",
            "WS",
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study,
            "127.0.0.1",
            &server.port(),
        ],
    );
    assert!(moved.status.success(), "{}", text(&moved));
    let received = common::files_under(&out);
    assert_eq!(
        received.len(),
        files.len(),
        "every instance reached the TLS peer: {}",
        text(&moved)
    );
}
