//! A cluster on loopback for the tests: three real `strata serve` nodes, each with its own data
//! folder, on one PostgreSQL index and three Garage replicas, with one master key, behind a real
//! HAProxy running `examples/cluster/haproxy.cfg`.

use super::garage::{three_providers, Garage};
use super::{free_port, wait_listening, KillOnDrop, Server, TestArchive};
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One node: its archive (own data folder, the shared index and replicas), its fixed ports, and
/// its process while it runs.
pub struct Node {
    pub archive: TestArchive,
    pub http: u16,
    pub dimse: u16,
    pub server: Option<Server>,
}

impl Node {
    pub fn start(&mut self) {
        self.server = Some(self.archive.serve_on(
            &format!("127.0.0.1:{}", self.http),
            &format!("127.0.0.1:{}", self.dimse),
        ));
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn server(&mut self) -> &mut Server {
        self.server.as_mut().expect("the node runs")
    }
}

/// HAProxy on `examples/cluster/haproxy.cfg`, its ports given through the environment.
pub struct Proxy {
    _process: KillOnDrop,
    pub http: u16,
    pub dimse: u16,
    pub stats: u16,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts HAProxy with its HTTP side on `http` (the nodes' public URL names it).
    pub fn start(dir: &Path, nodes: &[Node], http: u16) -> Proxy {
        let (dimse, stats) = (free_port(), free_port());
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/haproxy.cfg");
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(&config)
            .env("CLUSTER_PROXY_HTTP_PORT", http.to_string())
            .env("CLUSTER_PROXY_DIMSE_PORT", dimse.to_string())
            .env("CLUSTER_PROXY_STATS_PORT", stats.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (i, n) in nodes.iter().enumerate() {
            cmd.env(
                format!("CLUSTER_NODE{}_HTTP_PORT", i + 1),
                n.http.to_string(),
            )
            .env(
                format!("CLUSTER_NODE{}_DIMSE_PORT", i + 1),
                n.dimse.to_string(),
            );
        }
        let child = cmd
            .spawn()
            .expect("haproxy is not installed (bash scripts/test.sh installs it)");
        let proxy = Proxy {
            _process: KillOnDrop(child),
            http,
            dimse,
            stats,
            log,
        };
        wait_listening(stats);
        proxy
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The proxy's statistics (its CSV page): one map of column to value for each node's row
    /// of each backend.
    fn node_rows(&self) -> Vec<std::collections::HashMap<String, String>> {
        let csv = super::http(
            "GET",
            &format!("http://127.0.0.1:{}/stats;csv", self.stats),
            &[],
            None,
        )
        .text();
        let mut lines = csv.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .map(String::from)
            .collect();
        lines
            .map(|l| {
                header
                    .iter()
                    .cloned()
                    .zip(l.split(',').map(String::from))
                    .collect::<std::collections::HashMap<_, _>>()
            })
            .filter(|row| row.get("svname").is_some_and(|s| s.starts_with("node")))
            .collect()
    }

    /// (backend, server, status) of every node as the proxy's health checks see it.
    pub fn states(&self) -> Vec<(String, String, String)> {
        self.node_rows()
            .into_iter()
            .map(|r| {
                (
                    r["pxname"].clone(),
                    r["svname"].clone(),
                    r["status"].clone(),
                )
            })
            .collect()
    }

    /// The connections the proxy holds open to each node's HTTP side right now (`scur`),
    /// by node name: a request under way, or an upgraded WebSocket for as long as it lasts.
    pub fn http_sessions(&self) -> std::collections::BTreeMap<String, u32> {
        self.node_rows()
            .into_iter()
            .filter(|r| r["pxname"] == "nodes_http")
            .map(|r| (r["svname"].clone(), r["scur"].parse().unwrap_or(0)))
            .collect()
    }

    /// The one node holding an HTTP connection through the proxy, once it alone does for a
    /// second on end (the page at rest holds only its stream's WebSocket), `within` at most.
    pub fn sole_http_holder(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let (mut holder, mut since) = (None::<String>, Instant::now());
        loop {
            let sessions = self.http_sessions();
            let busy: Vec<&String> = sessions
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(name, _)| name)
                .collect();
            let now = match busy.as_slice() {
                [one] if sessions[*one] == 1 => Some(one.to_string()),
                _ => None,
            };
            if now != holder {
                (holder, since) = (now, Instant::now());
            } else if let Some(h) = &holder {
                if since.elapsed() >= Duration::from_secs(1) {
                    return h.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no one node holds the only connection after {within:?}: {sessions:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the proxy sees node `name` (node1...) as up on both backends.
    pub fn wait_up(&self, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let states = self.states();
            let up = states
                .iter()
                .filter(|(_, s, st)| s == name && st.starts_with("UP"))
                .count();
            if up == 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not up at the proxy after {within:?}: {states:?}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Three nodes on one index and three Garage replicas, and the proxy in front of them.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub proxy: Proxy,
    pub token: String,
    /// Kept for the replicas' lifetime; dropped last.
    _garages: Vec<Garage>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (garages, credentials, urls) = three_providers();
        let index = strata_testkit::postgres::database();
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let proxy_http = free_port();
        let replicas: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        let mut nodes: Vec<Node> = (1..=3)
            .map(|n| {
                let mut env = credentials.to_vec();
                env.push(("STRATA_MASTER_KEY".into(), key.clone()));
                let archive = TestArchive {
                    dir: tempfile::tempdir().unwrap(),
                    index_url: Some(index.clone()),
                    env,
                };
                std::fs::create_dir_all(archive.data()).unwrap();
                std::fs::write(
                    archive.data().join("strata.toml"),
                    format!(
                        "[store]\nreplicas = [{}]\n\n\
                         [http]\npublic_url = \"http://127.0.0.1:{proxy_http}\"\n\
                         trusted_proxies = [\"127.0.0.1\"]\n\n\
                         [node]\nid = \"node{n}\"\nlease_seconds = 3\n\
                         drain_seconds = 2\ndrain_max_seconds = 20\n",
                        replicas.join(", ")
                    ),
                )
                .unwrap();
                Node {
                    archive,
                    http: free_port(),
                    dimse: free_port(),
                    server: None,
                }
            })
            .collect();
        // the first start makes the admin; the others find it
        for n in &mut nodes {
            n.start();
        }
        let token = super::token(&nodes[0].archive, "admin");
        let proxy = Proxy::start(dir.path(), &nodes, proxy_http);
        for name in ["node1", "node2", "node3"] {
            proxy.wait_up(name, Duration::from_secs(30));
        }
        Cluster {
            nodes,
            proxy,
            token,
            _garages: garages,
            dir,
        }
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }
}
