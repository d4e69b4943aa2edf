//! A throwaway PostgreSQL cluster: `initdb` in a temporary folder, `postgres` on a free
//! loopback port, one per test process, shared by its tests; each asks [`database`] for a
//! fresh database of its own.
//!
//! PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres`
//! system user (Debian's package makes it). A small shell watchdog stops the server and removes
//! its folder once the test process is gone: tests end without running destructors of statics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Cluster {
    port: u16,
    /// The CA that issued the server's certificate (PEM), for clients that verify it.
    ca_file: PathBuf,
    /// The watchdog shell: it outlives the test process on purpose, to stop the server after.
    _watchdog: std::sync::Mutex<std::process::Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database on this process's cluster (started on first use).
/// Callable from async tests: the client's own runtime runs on a thread of its own.
pub fn database() -> String {
    std::thread::spawn(create_database)
        .join()
        .expect("creating a test database")
}

fn create_database() -> String {
    let cluster = CLUSTER.get_or_init(start);
    let name = format!(
        "strata_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls)
        .expect("connecting to the test cluster");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("creating a test database");
    cluster.url(&name)
}

/// The URL of the cluster's maintenance database, for tests that look behind the archive.
pub fn admin_url() -> String {
    std::thread::spawn(|| CLUSTER.get_or_init(start).url("postgres"))
        .join()
        .expect("starting the test cluster")
}

/// The PEM file of the CA that issued the cluster's server certificate (for `localhost` and
/// 127.0.0.1): the cluster takes TLS connections beside plain ones.
pub fn ca_file() -> PathBuf {
    std::thread::spawn(|| CLUSTER.get_or_init(start).ca_file.clone())
        .join()
        .expect("starting the test cluster")
}

/// A CA, and a server certificate it issued for this host, written into `dir`: `ca.crt`,
/// `server.crt`, `server.key`.
fn make_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "strata test PostgreSQL CA");
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "strata test PostgreSQL");
    let server_key = KeyPair::generate().expect("a server key");
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("the server certificate");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("writing ca.crt");
    std::fs::write(dir.join("server.crt"), server_cert.pem()).expect("writing server.crt");
    let key = dir.join("server.key");
    std::fs::write(&key, server_key.serialize_pem()).expect("writing server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .expect("making server.key private");
    if is_root() {
        // the server reads its key as its own user
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.join("server.crt"))
            .arg(&key)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "giving the server's key to the postgres user");
    }
}

impl Cluster {
    fn url(&self, db: &str) -> String {
        format!("postgres://strata@127.0.0.1:{}/{db}", self.port)
    }
}

/// The folder of PostgreSQL's server programs: `pg_config --bindir`, else Debian's newest
/// `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server is not installed (scripts/test.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql (scripts/test.sh installs PostgreSQL)")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `program` run as the cluster's owner: `postgres` under root, else the caller.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Cluster {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!("strata-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("making the cluster's folder");
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "giving {} to the postgres user", dir.display());
    }
    let data = dir.join("data");
    let out = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "strata",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .output()
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    make_certificates(&dir);
    let port = crate::ports::free_port();
    // The watchdog: the server runs while the test process does, then stops fast and its
    // folder goes. fsync stays on: the archive's durability is tested as it runs.
    let script = format!(
        "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
           -c max_connections=200 -c shared_buffers=32MB -c ssl=on \
           -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key >{dir}/log 2>&1 &
         pg=$!
         while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    let mut sh = as_owner(Path::new("/bin/sh"));
    sh.arg("-c").arg(script);
    let cluster = Cluster {
        port,
        ca_file: dir.join("ca.crt"),
        _watchdog: std::sync::Mutex::new(sh.spawn().expect("starting postgres")),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls) {
            Ok(_) => return cluster,
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                panic!("PostgreSQL did not start: {e}\n{log}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
