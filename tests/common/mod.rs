//! Helpers shared by the integration tests: run the real `strata` binary on a fresh data
//! directory, make studies with the project's generator, and open the archive in-process to check
//! what the binary left behind.

#![allow(dead_code)] // each test file uses its own subset

pub mod cluster;
pub mod garage;
pub mod viewer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::config::Config;
use strata_synth::{self as synth, SynthOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_strata");

/// The engines of an archive, as the tests inspect them.
pub struct Engines {
    pub index: strata_index::Index,
    pub store: strata_store::Store,
}

pub struct TestArchive {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database of the index (`STRATA_INDEX_URL`); none: the embedded SQLite.
    pub index_url: Option<String>,
    /// Environment variables every `strata` this archive runs is given (cloud credentials).
    pub env: Vec<(String, String)>,
}

/// The engine a test archive's index runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexEngine {
    Sqlite,
    /// A new database on this test process's PostgreSQL cluster (`strata_testkit::postgres`).
    Postgres,
}

impl TestArchive {
    /// An archive on the embedded index; `TEST_INDEX_ENGINE=postgres` puts every such archive on
    /// PostgreSQL instead, to run the whole suite against the second engine by hand.
    pub fn new() -> TestArchive {
        match std::env::var("TEST_INDEX_ENGINE").as_deref() {
            Ok("postgres") => TestArchive::on(IndexEngine::Postgres),
            _ => TestArchive::on(IndexEngine::Sqlite),
        }
    }

    /// An archive whose index runs on `engine`.
    pub fn on(engine: IndexEngine) -> TestArchive {
        TestArchive {
            dir: tempfile::tempdir().expect("temp dir"),
            index_url: match engine {
                IndexEngine::Sqlite => None,
                IndexEngine::Postgres => Some(strata_testkit::postgres::database()),
            },
            env: Vec::new(),
        }
    }

    /// This archive, its commands given the variables `vars` too.
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> TestArchive {
        self.env.extend(vars);
        self
    }

    /// The archive's configuration as the binary reads it (the data directory's file, and the
    /// index URL and variables the tests give it through the environment).
    pub fn config(&self) -> Config {
        let env: Vec<(String, String)> = self
            .index_url
            .iter()
            .map(|u| ("STRATA_INDEX_URL".to_string(), u.clone()))
            .chain(self.env.iter().cloned())
            .collect();
        Config::load(&self.data(), None, env).expect("config")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(self.data());
        c.env_remove("STRATA_MASTER_KEY").env("STRATA_LOG", "warn");
        match &self.index_url {
            Some(url) => c.env("STRATA_INDEX_URL", url),
            None => c.env_remove("STRATA_INDEX_URL"),
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Loses the index (the binary must not be running): the SQLite file is deleted, the
    /// PostgreSQL schema dropped. Everything in it must come back from the replicas.
    pub fn lose_index(&self) {
        match &self.index_url {
            None => std::fs::remove_file(self.data().join("index.sqlite")).expect("the index file"),
            Some(url) => postgres::Client::connect(url, postgres::NoTls)
                .and_then(|mut c| c.batch_execute("DROP SCHEMA strata CASCADE"))
                .expect("dropping the index schema"),
        }
    }

    /// Runs `strata <args>` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running strata")
    }

    /// Runs `strata <args>`; returns its output and its peak resident memory in KiB (from the
    /// kernel's accounting when it is reaped).
    // the child is reaped by wait4, which also gives its peak memory; std's wait would not
    #[allow(clippy::zombie_processes)]
    pub fn run_measured(&self, args: &[&str]) -> (Output, u64) {
        use std::io::Read;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running strata");
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            out.read_to_end(&mut b).map(|_| b)
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            err.read_to_end(&mut b).map(|_| b)
        });
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 reaps this child, which nothing
        // else waits for.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        assert_eq!(pid, child.id() as i32, "wait4 failed");
        let output = Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(status),
            stdout: out.join().unwrap().unwrap(),
            stderr: err.join().unwrap().unwrap(),
        };
        (output, usage.ru_maxrss as u64)
    }

    /// Runs `strata <args>` and insists it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Generates studies under `<tmp>/<name>` with the project's generator.
    pub fn generate(&self, name: &str, opts: &SynthOptions) -> Vec<PathBuf> {
        synth::generate(&self.path(name), opts).expect("generating studies")
    }

    pub fn replica(&self, letter: char) -> PathBuf {
        self.data().join(format!("replica-{letter}"))
    }

    /// The object file of `blob` on one replica.
    pub fn blob_file(&self, letter: char, blob: &strata_core::BlobId) -> PathBuf {
        self.replica(letter).join(blob.object_key())
    }

    /// Opens the archive's engines in this process, to check what the binary left behind (the
    /// binary must not be running).
    pub async fn open(&self) -> Engines {
        let config = self.config();
        Engines {
            index: strata_index::Index::open_at(
                &config.index_location(),
                Arc::new(strata_core::Metrics::new()),
                None,
            )
            .expect("opening the index"),
            store: strata_archive::open_store(&config).expect("opening the store"),
        }
    }

    /// Opens the whole archive in this process (the binary must not be running).
    pub async fn open_archive(&self) -> Arc<Archive> {
        let config = self.config();
        Archive::open(config).await.expect("opening the archive")
    }
}

/// The SOP Instance UID of a Part-10 file.
pub fn sop_uid(path: &Path) -> String {
    let obj = dicom_object::open_file(path).expect("a DICOM file");
    obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .expect("SOP Instance UID")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string()
}

/// Every original arrived in `received` with its content (the data set; storescp writes its
/// own file meta header) unchanged, and nothing else.
pub fn assert_same_content(originals: &[PathBuf], received: &Path) {
    let got = files_under(received);
    assert_eq!(got.len(), originals.len(), "instances received");
    for r in &got {
        let uid = sop_uid(r);
        let o = originals
            .iter()
            .find(|o| sop_uid(o) == uid)
            .unwrap_or_else(|| panic!("{uid} was not sent"));
        let a = dicom_object::open_file(o).unwrap();
        let b = dicom_object::open_file(r).unwrap();
        let (a, b): (
            &dicom_object::InMemDicomObject,
            &dicom_object::InMemDicomObject,
        ) = (&a, &b);
        assert!(a == b, "{uid}: received content differs from the original");
    }
}

/// dcmtk's storescp as `aet` on `port`, writing what it receives into `out`, once it listens;
/// stopped on drop.
pub fn storescp(aet: &str, port: u16, out: &Path) -> KillOnDrop {
    let scp = std::process::Command::new("storescp")
        .args(["-aet", aet, "-od", out.to_str().unwrap(), &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("storescp (dcmtk) is installed by scripts/test.sh");
    let scp = KillOnDrop(scp);
    wait_listening(port);
    scp
}

/// The Study, Series and SOP Instance UIDs of a Part-10 file.
pub fn uids(path: &Path) -> [String; 3] {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::open_file(path).expect("a DICOM file");
    [
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
    ]
    .map(|tag| {
        obj.element(tag)
            .expect("a UID")
            .to_str()
            .expect("text")
            .trim_end_matches('\0')
            .to_string()
    })
}

/// The files of each study, by Study Instance UID, in order of the studies' first file.
pub fn by_study(files: &[PathBuf]) -> Vec<(String, Vec<PathBuf>)> {
    let mut out: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for f in files {
        let study = uids(f)[0].clone();
        match out.iter_mut().find(|(s, _)| *s == study) {
            Some((_, list)) => list.push(f.clone()),
            None => out.push((study, vec![f.clone()])),
        }
    }
    out
}

/// dcmtk's getscu of a study into `t`'s folder `folder` (study root, verbose); asserts it ended
/// well. Returns the folder and what getscu said.
pub fn getscu_study(
    t: &TestArchive,
    server: &Server,
    study: &str,
    folder: &str,
) -> (PathBuf, String) {
    let out = t.path(folder);
    std::fs::create_dir_all(&out).unwrap();
    let key = format!("StudyInstanceUID={study}");
    let args = [
        "-v",
        "-aec",
        "STRATA",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        &key,
        "-od",
        out.to_str().unwrap(),
        "127.0.0.1",
        &server.port(),
    ];
    let res = tool(120, "getscu", &args);
    let said = text(&res);
    assert!(res.status.success(), "{said}");
    (out, said)
}

/// The blobs of a study's instances, as the index of the archive open in-process holds them.
pub async fn blobs_of(a: &Archive, study: &str) -> Vec<strata_core::BlobId> {
    a.index()
        .study_blobs(study.to_string())
        .await
        .unwrap()
        .into_iter()
        .map(|(b, _)| b)
        .collect()
}

/// How many of the three local replicas hold a copy of `blob`.
pub fn on_replicas(t: &TestArchive, blob: &strata_core::BlobId) -> usize {
    ['a', 'b', 'c']
        .iter()
        .filter(|r| t.blob_file(**r, blob).exists())
        .count()
}

/// The DICOMweb path of the instance in a Part-10 file:
/// `/dicomweb/studies/{study}/series/{series}/instances/{instance}`.
pub fn instance_path(path: &Path) -> String {
    let [study, series, sop] = uids(path);
    format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}")
}

/// Every regular file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// `strata serve` on free ports (HTTP and DIMSE), killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub http: std::net::SocketAddr,
    pub dimse: std::net::SocketAddr,
    /// Everything the server wrote to stderr so far (drained by a thread, so it never blocks).
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestArchive {
    /// Starts `strata serve --http 127.0.0.1:0 --dimse 127.0.0.1:0` and waits (30 s at most)
    /// for it to print both addresses.
    pub fn serve(&self) -> Server {
        self.serve_http_on("127.0.0.1:0")
    }

    /// As [`TestArchive::serve`], with HTTP on the given address (to restart a server where
    /// its clients expect it).
    pub fn serve_http_on(&self, http: &str) -> Server {
        self.serve_on(http, "127.0.0.1:0")
    }

    /// As [`TestArchive::serve`], with HTTP and DIMSE on the given addresses.
    pub fn serve_on(&self, http: &str, dimse: &str) -> Server {
        self.start_serving(http, dimse, true)
    }

    /// `strata serve` on a free HTTP port and DIMSE on `dimse` (a port given, so that a node
    /// with no DIMSE listener can be shown to have none); waits (30 s at most) for the HTTP
    /// address, and for the DIMSE one when `expect_dimse`. Its `dimse` is that address either
    /// way.
    pub fn serve_node(&self, dimse: u16, expect_dimse: bool) -> Server {
        self.start_serving("127.0.0.1:0", &format!("127.0.0.1:{dimse}"), expect_dimse)
    }

    /// `strata serve` on `http` and `dimse`, once it has printed the addresses it serves (the
    /// DIMSE one only when `expect_dimse`; else `dimse` as given), 30 s at most.
    fn start_serving(&self, http: &str, dimse: &str, expect_dimse: bool) -> Server {
        use std::io::BufRead;
        let given_dimse: std::net::SocketAddr = dimse.parse().expect("a DIMSE address");
        let mut child = self
            .cmd()
            .env("STRATA_LOG", "info")
            .args(["serve", "--http", http, "--dimse", dimse])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting strata serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mut http, mut dimse) = (None, (!expect_dimse).then_some(given_dimse));
        while http.is_none() || dimse.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "strata serve did not print its addresses:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            };
            let served = line
                .strip_prefix("strata: serving http://")
                .or_else(|| line.strip_prefix("strata: serving https://"));
            if let Some(rest) = served {
                let addr = rest.split_whitespace().next().unwrap_or("");
                http = Some(addr.trim_end_matches('/').parse().expect("HTTP address"));
            } else if let Some(rest) = line.strip_prefix("strata: serving DIMSE as ") {
                let addr = rest.rsplit(" on ").next().unwrap_or("").trim();
                dimse = Some(addr.parse().expect("DIMSE address"));
            }
        }
        Server {
            child,
            http: http.unwrap(),
            dimse: dimse.unwrap(),
            log,
        }
    }
}

impl Server {
    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    pub fn port(&self) -> String {
        self.dimse.port().to_string()
    }

    /// True while the server process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("polling strata serve")
            .is_none()
    }

    /// Kills the server and waits for it to exit (a restart on the same address follows).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an external tool (dcmtk, gdcmconv, the venv's python) under `timeout`, so no test can
/// hang on it; panics if the tool is missing (the tests fail, never skip: `bash scripts/test.sh`
/// installs everything) or if it ran out of time.
pub fn tool<S: AsRef<std::ffi::OsStr>>(secs: u64, program: &str, args: &[S]) -> Output {
    let out = Command::new("timeout")
        .args(["-k", "5", &secs.to_string(), program])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run timeout(1) for {program}: {e}"));
    match out.status.code() {
        Some(126) | Some(127) => panic!(
            "{program} is not installed or not runnable (bash scripts/test.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Some(124) | Some(137) | None => panic!(
            "{program} {:?} did not finish within {secs} s:\nstdout: {}\nstderr: {}",
            args.iter()
                .map(|a| a.as_ref().to_owned())
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        _ => out,
    }
}

/// Both output streams of a tool, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The venv python holding pynetdicom: `PYNETDICOM_PYTHON`, else `.venv/bin/python` in the
/// crate. Panics if it is missing.
pub fn python() -> PathBuf {
    let p = std::env::var_os("PYNETDICOM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: bash scripts/test.sh makes the venv with pynetdicom",
        p.display()
    );
    p
}

/// A script of `tests/peers/`.
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// Writes a JPEG Baseline instance of `study` whose pixel data is not a JPEG stream
/// (tests/peers/broken_jpeg.py); returns its series and SOP instance UIDs.
pub fn broken_jpeg(path: &Path, study: &str) -> (String, String) {
    let script = peer_script("broken_jpeg.py");
    let out = tool(
        60,
        python().to_str().unwrap(),
        &[script.to_str().unwrap(), path.to_str().unwrap(), study],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut ids = stdout.split_whitespace().map(str::to_string);
    (ids.next().unwrap(), ids.next().unwrap())
}

/// One HTTP answer, whatever its status.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// The content of a multipart answer's one part (after its headers, before the closing
    /// boundary).
    pub fn only_part(&self) -> &[u8] {
        let boundary = self
            .content_type
            .split("boundary=")
            .nth(1)
            .expect("a multipart answer")
            .trim_matches('"');
        let body = &self.body;
        let start = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let end_marker = format!("\r\n--{boundary}--");
        let end = body
            .windows(end_marker.len())
            .rposition(|w| w == end_marker.as_bytes())
            .unwrap();
        &body[start..end]
    }
}

/// One HTTP request; any status comes back as an answer (never an error).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Answer {
    let mut req = ureq::request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some((ctype, bytes)) => req.set("Content-Type", ctype).send_bytes(bytes),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let content_type = resp.header("Content-Type").unwrap_or("").to_string();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    Answer {
        status,
        content_type,
        body,
    }
}

pub fn base(server: &Server) -> String {
    format!("http://{}", server.http)
}

pub fn token(t: &TestArchive, user: &str) -> String {
    t.ok(&["token", "create", "--user", user])
        .trim()
        .to_string()
}

/// The password of every user the tests add.
pub const PASSWORD: &str = "a long enough password";

pub fn add_user(t: &TestArchive, name: &str, role: &str) {
    user_add(t, &[name, "--role", role]);
}

/// Adds a patient user bound to `person` (its id in the person index).
pub fn add_patient(t: &TestArchive, name: &str, person: &str) {
    user_add(t, &[name, "--role", "patient", "--person", person]);
}

/// Runs `strata ARGS` with `stdin` on its standard input. A command that refuses may exit
/// before it reads its input: that is not an error here.
pub fn run_with_input(t: &TestArchive, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = t
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// `strata user add ARGS` with the tests' password; panics if it fails.
fn user_add(t: &TestArchive, args: &[&str]) {
    let mut full = vec!["user", "add"];
    full.extend_from_slice(args);
    let out = run_with_input(t, &full, &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", text(&out));
}

/// The events of one action in the audit trail, oldest first.
pub fn audit_events(t: &TestArchive, action: &str) -> Vec<serde_json::Value> {
    t.ok(&["audit", "list", "--action", action])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A multipart/related body of the given (content type, bytes) parts, and its content type.
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let b = "testboundary42";
    let mut body = Vec::new();
    for (ctype, bytes) in parts {
        body.extend_from_slice(format!("--{b}\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={b}"),
        body,
    )
}

/// An authenticated HTTP client of one running server (bearer token).
pub struct Api {
    pub base: String,
    pub auth: String,
}

impl Api {
    pub fn new(server: &Server, token: &str) -> Api {
        Api {
            base: base(server),
            auth: format!("Bearer {token}"),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Answer {
        let mut h = vec![("Authorization", self.auth.as_str())];
        h.extend_from_slice(headers);
        http(method, &format!("{}{path}", self.base), &h, body)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        let body = body.to_string();
        self.call(
            "POST",
            path,
            &[],
            Some(("application/json", body.as_bytes())),
        )
    }

    /// STOW-RS of one file.
    pub fn stow(&self, file: &Path) -> Answer {
        let (ctype, body) = multipart(&[("application/dicom", &std::fs::read(file).unwrap())]);
        self.call("POST", "/dicomweb/studies", &[], Some((&ctype, &body)))
    }

    /// A Measurement Report (`study`, `series`, `instance`) retrieved by WADO-RS into `dir`,
    /// then read by pydicom (`tests/peers/sr_tid1500.py`) against `expected`; what it printed,
    /// once it passed.
    pub fn report_read_by_pydicom(
        &self,
        dir: &Path,
        [study, series, instance]: [&str; 3],
        expected: &serde_json::Value,
    ) -> String {
        let got = self.call(
            "GET",
            &format!("/dicomweb/studies/{study}/series/{series}/instances/{instance}"),
            &[("Accept", "multipart/related; type=\"application/dicom\"")],
            None,
        );
        assert_eq!(got.status, 200, "{}", got.text());
        let report = dir.join(format!("{instance}.dcm"));
        std::fs::write(&report, got.only_part()).unwrap();
        let wanted = dir.join(format!("{instance}.expected.json"));
        std::fs::write(&wanted, expected.to_string()).unwrap();
        let script = peer_script("sr_tid1500.py");
        let out = tool(
            60,
            python().to_str().unwrap(),
            &[
                script.to_str().unwrap(),
                report.to_str().unwrap(),
                wanted.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    }

    /// The JSON of a 200 answer; panics with the answer otherwise.
    pub fn ok(&self, answer: Answer) -> serde_json::Value {
        assert_eq!(answer.status, 200, "{}", answer.text());
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// The one person holding local key `issuer`/`id`.
    pub fn person_of(&self, issuer: &str, id: &str) -> String {
        let found = self.ok(self.get(&format!("/api/persons?identifier={issuer}%7C{id}")));
        assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
        found[0]["id"].as_str().unwrap().to_string()
    }

    pub fn person(&self, id: &str) -> serde_json::Value {
        self.ok(self.get(&format!("/api/persons/{id}")))
    }

    /// The person's local keys as "ISSUER/ID", sorted.
    pub fn keys(&self, id: &str) -> Vec<String> {
        let p = self.person(id);
        let mut keys: Vec<String> = p["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["issuer"].as_str().unwrap(),
                    i["patient_id"].as_str().unwrap()
                )
            })
            .collect();
        keys.sort();
        keys
    }

    /// Study Instance UIDs a study-level search finds, sorted.
    pub fn studies(&self, query: &str) -> Vec<String> {
        let found = self.ok(self.get(&format!("/dicomweb/studies{query}")));
        let mut uids: Vec<String> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_string())
            .collect();
        uids.sort();
        uids
    }
}

/// Kills a peer process (storescp, ...) when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nobody listens on right now, below the ephemeral range.
pub use strata_testkit::ports::free_port;

/// Waits (10 s at most) until something accepts TCP connections on 127.0.0.1:`port`: a peer
/// started as a child process is listening before the server is asked to reach it.
pub fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port} after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Imports the folder `dir` with `strata import -v -j 4` and kills the process with SIGKILL
/// (no destructor, no flush, no goodbye) once `kill_after` instances were acknowledged; returns
/// the SOP Instance UIDs acknowledged, those printed before the kill took included.
pub fn import_killed_after(t: &TestArchive, dir: &Path, kill_after: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut child = t
        .cmd()
        .args(["import", "-v", "-j", "4", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("running strata import");
    let mut acknowledged = Vec::new();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut killed = false;
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("stored ") {
            acknowledged.push(rest.split(' ').next().unwrap().to_string());
        }
        if acknowledged.len() == kill_after && !killed {
            let status = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed && !status.success(),
        "the import was killed, not finished"
    );
    assert!(acknowledged.len() >= kill_after);
    acknowledged
}

/// Every instance `acknowledged` is in the index, every index row's blob is on a write quorum
/// of replicas, and each acknowledged instance reads back byte for byte as in `files`.
pub async fn assert_nothing_acknowledged_lost(
    t: &TestArchive,
    files: &[PathBuf],
    acknowledged: &[String],
) {
    let a = t.open().await;
    let indexed = a.index.instance_blobs().await.unwrap();
    let indexed_uids: std::collections::HashSet<&str> =
        indexed.iter().map(|(u, _)| u.as_str()).collect();
    for uid in acknowledged {
        assert!(
            indexed_uids.contains(uid.as_str()),
            "acknowledged {uid} is not in the index"
        );
    }
    let quorum = a.store.replicas().write_quorum();
    for (uid, blob) in &indexed {
        let mut good = 0;
        for r in 0..a.store.replicas().len() {
            if a.store.verify(blob, r).await.is_ok() {
                good += 1;
            }
        }
        assert!(good >= quorum, "{uid}: {good} good copies, quorum {quorum}");
    }
    drop(a);
    let by_uid: std::collections::HashMap<String, PathBuf> =
        files.iter().map(|f| (sop_uid(f), f.clone())).collect();
    let archive = t.open_archive().await;
    for uid in acknowledged {
        let mut got = Vec::new();
        archive
            .reads()
            .read_instance(uid, |c| {
                got.extend_from_slice(c);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(got, std::fs::read(&by_uid[uid]).unwrap(), "{uid}");
    }
}

impl TestArchive {
    /// Another node of this archive: a data directory of its own, the same index database and
    /// the same variables (a cluster's nodes share the master key and the replicas through
    /// them: `STRATA_MASTER_KEY`, `STRATA_STORE_REPLICAS`).
    pub fn node(&self) -> TestArchive {
        TestArchive {
            dir: tempfile::tempdir().expect("temp dir"),
            index_url: self.index_url.clone(),
            env: self.env.clone(),
        }
    }
}

impl Server {
    /// The server's process id (to signal it).
    pub fn process_id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (the server drains, then exits) and waits `within` at most for its exit;
    /// panics, with its log, if it is still running then.
    pub fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.wait_exit(within)
    }

    /// Waits `within` at most for the server to exit; panics, with its log, if it has not.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling strata serve") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "strata serve still runs after {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends a signal (`-TERM`, `-INT`...) to the server and returns at once.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} strata serve");
    }
}
