//! DICOM TLS: with a certificate configured, dcmtk peers echo and store over TLS on the second
//! port; a plain association on that port fails, and the plain port keeps working.

mod common;

use common::{text, tool, TestArchive};
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
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
