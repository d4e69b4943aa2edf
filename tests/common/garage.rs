//! Garage, a distributed S3 server, on loopback: single-node instances (one per provider) and a
//! three-node cluster that replicates every object to all three nodes, one zone per node. Each
//! has one bucket and one key with read and write rights on it. Every server is killed when its
//! [`Garage`] is dropped.

use super::{free_port, KillOnDrop};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The shared secret of the nodes' RPC (any 32 bytes in hex; the tests' clusters are private).
const RPC_SECRET: &str = "5f3c9b1e2d4a6f8071829304a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e";
/// The S3 region Garage signs for; clients must use the same.
pub const REGION: &str = "garage";
/// How long a node may take to answer its command line after it starts.
const BOOT: Duration = Duration::from_secs(30);

/// The Garage binary: `GARAGE_BIN`, which `scripts/test.sh` builds (once) and exports. Panics if
/// it is missing: the tests fail, never skip.
pub fn binary() -> PathBuf {
    let p = std::env::var_os("GARAGE_BIN")
        .map(PathBuf::from)
        .expect("GARAGE_BIN is not set: bash scripts/test.sh builds Garage and sets it");
    assert!(
        p.exists(),
        "{} is missing: bash scripts/test.sh builds it",
        p.display()
    );
    p
}

/// One Garage server: its configuration file and ports, and its process while it runs.
struct Node {
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    process: Option<KillOnDrop>,
}

impl Node {
    fn new(dir: &Path, replication_factor: usize) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let (s3_port, rpc_port) = (free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "lmdb"
replication_factor = {replication_factor}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
                dir = dir.display(),
            ),
        )
        .unwrap();
        let mut node = Node {
            config,
            log: dir.join("garage.log"),
            s3_port,
            rpc_port,
            process: None,
        };
        node.start();
        node
    }

    /// `garage server`, its output appended to its log; returns once its command line answers.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting garage server");
        self.process = Some(KillOnDrop(child));
        let deadline = Instant::now() + BOOT;
        while !self.try_cli(&["status"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "garage did not answer within {BOOT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn try_cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("running garage")
    }

    /// Runs a `garage` command against this node and insists it succeeded; returns stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = self.try_cli(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `<node id>@127.0.0.1:<rpc port>`.
    fn id(&self) -> String {
        self.cli(&["node", "id", "-q"]).trim().to_string()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A Garage cluster on loopback with one bucket and one key.
pub struct Garage {
    /// Holds every node's configuration, metadata and data; removed last.
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    /// One single-node Garage (replication factor 1): one independent S3 provider.
    pub fn single() -> Garage {
        Garage::cluster(1)
    }

    /// `n` Garage nodes joined into one cluster that keeps `n` copies of every object, each
    /// node in a zone of its own; the bucket and key are made once the layout is applied.
    pub fn cluster(n: usize) -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node::new(&dir.path().join(format!("node{i}")), n))
            .collect();
        let first = &nodes[0];
        let ids: Vec<String> = nodes.iter().map(Node::id).collect();
        for id in &ids[1..] {
            first.cli(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let (short, _) = id.split_once('@').unwrap();
            first.cli(&[
                "layout",
                "assign",
                short,
                "-z",
                &format!("zone{i}"),
                "-c",
                "1G",
            ]);
        }
        first.cli(&["layout", "apply", "--version", "1"]);
        let bucket = "strata".to_string();
        // the bucket table takes writes once every node has the layout: retry until it does
        let deadline = Instant::now() + BOOT;
        loop {
            let out = first.try_cli(&["bucket", "create", &bucket]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "garage bucket create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let key: serde_json::Value =
            serde_json::from_str(&first.cli(&["json-api", "CreateKey", r#"{"name":"strata"}"#]))
                .expect("CreateKey answers JSON");
        let key_id = key["accessKeyId"].as_str().unwrap().to_string();
        let secret = key["secretAccessKey"].as_str().unwrap().to_string();
        first.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", &key_id,
        ]);
        Garage {
            _dir: dir,
            nodes,
            bucket,
            key_id,
            secret,
        }
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The replica URL of this cluster's bucket through node `i`, under `prefix`; with
    /// `env_prefix`, the replica reads its credentials from the variables under that prefix.
    pub fn replica_url(&self, i: usize, env_prefix: Option<&str>) -> String {
        let mut url = format!(
            "s3://{}/archive?endpoint={}&region={REGION}&allow_http=true",
            self.bucket,
            self.endpoint(i)
        );
        if let Some(p) = env_prefix {
            url.push_str(&format!("&env={p}"));
        }
        url
    }

    /// The environment that gives this cluster's key under `prefix` (`AWS_` for the usual).
    pub fn credentials(&self, prefix: &str) -> [(String, String); 2] {
        [
            (format!("{prefix}ACCESS_KEY_ID"), self.key_id.clone()),
            (format!("{prefix}SECRET_ACCESS_KEY"), self.secret.clone()),
        ]
    }

    /// Kills node `i` (as a crash would: no goodbye to its peers).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts node `i` again on its ports, with what it stored.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "--- garage node {i} (rpc {}) ---\n{}",
                    n.rpc_port,
                    n.log_text()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Three single-node Garages started side by side, each a provider with a key of its own: the
/// variables that give the archive their credentials, and their replica URLs (prefixes
/// `PROVIDER_A_`, `PROVIDER_B_`, `PROVIDER_C_`).
pub fn three_providers() -> (Vec<Garage>, Vec<(String, String)>, Vec<String>) {
    let garages: Vec<Garage> = std::thread::scope(|s| {
        let started: Vec<_> = (0..3).map(|_| s.spawn(Garage::single)).collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let prefixes = ["PROVIDER_A_", "PROVIDER_B_", "PROVIDER_C_"];
    let env = garages
        .iter()
        .zip(prefixes)
        .flat_map(|(g, p)| g.credentials(p))
        .collect();
    let urls = garages
        .iter()
        .zip(prefixes)
        .map(|(g, p)| g.replica_url(0, Some(p)))
        .collect();
    (garages, env, urls)
}
