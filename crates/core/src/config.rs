//! One configuration: embedded defaults < `strata.toml` < `STRATA_*` environment variables <
//! command-line flags. An unknown key or a bad value is an error that names the key and where it
//! came from; nothing is silently ignored.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Environment variables that are not configuration keys.
const RESERVED_ENV: &[&str] = &[
    "STRATA_DATA",
    "STRATA_CONFIG",
    "STRATA_MASTER_KEY",
    "STRATA_LOG",
];
const SECTIONS: &[&str] = &[
    "http",
    "dimse",
    "store",
    "ingest",
    "scrub",
    "repair",
    "retention",
    "render",
    "index",
    "node",
    "tiers",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub dimse: DimseConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub scrub: ScrubConfig,
    pub repair: RepairConfig,
    pub retention: RetentionConfig,
    pub render: RenderConfig,
    pub index: IndexConfig,
    pub node: NodeConfig,
    pub deidentify: DeidentifyConfig,
    /// DICOMweb archives studies may be sent to by STOW-RS (`[[dicomweb_peers]]`).
    pub dicomweb_peers: Vec<DicomwebPeer>,
    pub send: SendConfig,
    pub tiers: TiersConfig,
    /// The viewer's hanging protocols (`[[hanging]]`), first match wins; a reader's own layout
    /// for a kind of study comes before them.
    pub hanging: Vec<HangingRule>,
    /// The data directory (index, key, default replicas); set from `--data`, not the file.
    #[serde(skip)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Loopback by default: exposing the archive is a decision, not an accident.
    pub listen: String,
    /// Largest STOW-RS request body; larger ones are refused with 413.
    pub max_body_bytes: u64,
    /// The URL clients reach the archive at (behind a proxy, say), used in RetrieveURL and
    /// BulkDataURI; default: http:// and the address the server listens on.
    pub public_url: Option<String>,
    /// A viewing session (`/api/stream`) with no message from its client for this long is
    /// closed: an idle socket holds a render encoder and one of the sessions allowed.
    pub stream_idle_seconds: u64,
    /// A client gets this long to send a request's headers (and, over HTTPS, to finish the
    /// handshake); a connection idle between requests for as long is closed. Slow-header
    /// clients (slowloris) cannot hold connections open.
    pub header_timeout_seconds: u64,
    /// A request body that sends no byte for this long is abandoned (408).
    pub body_idle_seconds: u64,
    /// Connections served at once; one more is closed at once. Kept well under the process's
    /// file descriptor limit so HTTP can never starve DIMSE or storage of descriptors.
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_connections_per_ip: usize,
    /// Rendered pictures and thumbnails one user may ask for per second (a burst of five
    /// seconds' worth); beyond, 429.
    pub renders_per_second: u32,
    /// Original studies, series, instances, frames or bulk data one user may retrieve per
    /// minute (a burst of a minute's worth); beyond, 429.
    pub exports_per_minute: u32,
    /// Access letter codes (and passcodes) one client address may try per minute (a burst of
    /// a minute's worth), and sixty times as many from all addresses together; beyond, 429.
    pub letter_attempts_per_minute: u32,
    /// Reverse proxies (addresses or networks, `10.0.0.0/8`): only when one of them connects
    /// is `X-Forwarded-For` read, its right-most address that is not a trusted proxy taken as
    /// the client's (for the sign-in throttle and the audit trail). Empty: never read.
    pub trusted_proxies: Vec<String>,
    /// HTTPS: served on `listen` instead of plain HTTP when both are given (PEM files).
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// HTTPS with a certificate the archive makes itself on first start (kept under
    /// `<data>/tls/`), for a trial or a closed network; a real deployment names its own.
    pub tls_self_signed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DimseConfig {
    /// Where modalities and other PACS connect; loopback by default, like HTTP.
    pub listen: String,
    pub ae_title: String,
    /// Associations served at once; one more is rejected (transient, local limit exceeded).
    pub max_associations: usize,
    /// Associations one peer address may hold at once, so one host cannot take every slot.
    pub max_associations_per_ip: usize,
    /// Matches one C-FIND returns; beyond, the first ones go out and the final status is
    /// Refused: Out of Resources (A700), asking the peer to narrow its query.
    pub max_find_results: usize,
    /// Largest P-DATA PDU we accept, announced in the A-ASSOCIATE-AC.
    pub max_pdu_length: u32,
    /// How long a peer may take to send its A-ASSOCIATE-RQ after connecting (ARTIM).
    pub artim_timeout_seconds: u64,
    /// An association with no PDU for this long is aborted.
    pub idle_timeout_seconds: u64,
    /// A PDU must arrive whole within this of its first byte, and a peer must take what we
    /// send within it; else the association is aborted. A peer trickling bytes cannot hold a
    /// slot.
    pub pdu_timeout_seconds: u64,
    /// The longest an association lives: past it, it is aborted at its next PDU (an operation
    /// under way is finished first). Generous, so that a large C-STORE, C-GET or C-MOVE is not
    /// cut, but it bounds how long any peer can keep a slot.
    pub max_association_seconds: u64,
    /// When every slot is taken, the association that has made no progress for the longest,
    /// and for at least this long, is aborted to make room for a new one.
    pub reclaim_idle_seconds: u64,
    /// The calling AE titles allowed to connect, each with what it may do. Empty: any AE may
    /// connect and do everything.
    pub clients: Vec<DimseClient>,
    /// Destinations C-MOVE may send to.
    pub peers: Vec<DimsePeer>,
    /// DICOM TLS: served on `tls_listen` when both the certificate and its key are given (PEM).
    pub tls_listen: String,
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Mutual TLS: when given (PEM, one or more CA certificates), a peer on `tls_listen` must
    /// present a certificate issued by one of them; a peer without one is refused.
    pub tls_client_ca: Option<PathBuf>,
    /// The CA certificates (PEM) that peers configured with `tls = true` must be issued by.
    pub tls_peer_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DimseClient {
    pub aet: String,
    #[serde(default = "all_permissions")]
    pub permissions: Vec<DimsePermission>,
    /// The issuer of the local patient keys of what this AE stores (its hospital's assigning
    /// authority). Unset: its AE title.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Believe the IssuerOfPatientID the files of this AE state (and those in their
    /// OtherPatientIDsSequence), falling back to `issuer`. Off by default: a file's claim to
    /// be another hospital's patient is how one patient could be given another's studies.
    #[serde(default)]
    pub trust_issuer: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DimsePermission {
    Store,
    Query,
    Retrieve,
}

fn all_permissions() -> Vec<DimsePermission> {
    vec![
        DimsePermission::Store,
        DimsePermission::Query,
        DimsePermission::Retrieve,
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DimsePeer {
    pub aet: String,
    pub host: String,
    pub port: u16,
    /// Associations to this peer use DICOM TLS, verified against `dimse.tls_peer_ca`.
    #[serde(default)]
    pub tls: bool,
}

/// Sends to other archives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendConfig {
    /// The pause before an instance that could not be sent is tried again; it doubles with
    /// each attempt (three in all).
    pub retry_after_seconds: u64,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            retry_after_seconds: 30,
        }
    }
}

/// A DICOMweb archive studies are sent to by STOW-RS: its name (what a send names), the base
/// URL of its DICOMweb service (`https://pacs.example/dicomweb`; `/studies` is appended) and
/// its credentials, a bearer token or a user and password (HTTP basic). The credentials are
/// never shown by the API.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DicomwebPeer {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for DicomwebPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the credentials stay out of logs
        f.debug_struct("DicomwebPeer")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Default for DimseConfig {
    fn default() -> Self {
        DimseConfig {
            listen: "127.0.0.1:11112".into(),
            ae_title: "STRATA".into(),
            max_associations: 64,
            max_associations_per_ip: 16,
            max_find_results: 10_000,
            max_pdu_length: 262_144,
            artim_timeout_seconds: 30,
            idle_timeout_seconds: 300,
            pdu_timeout_seconds: 60,
            max_association_seconds: 4 * 3600,
            reclaim_idle_seconds: 10,
            clients: Vec::new(),
            peers: Vec::new(),
            tls_listen: "127.0.0.1:2762".into(),
            tls_certificate: None,
            tls_private_key: None,
            tls_client_ca: None,
            tls_peer_ca: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// object_store URLs; empty means three folders under the data directory.
    pub replicas: Vec<String>,
    /// Replicas that must have a blob durably before it counts as written; default all.
    pub write_quorum: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Instances larger than this are streamed from a spool file, never held whole in memory.
    pub spool_threshold_bytes: u64,
    pub max_instance_bytes: u64,
    pub on_conflict: OnConflict,
    /// Files `strata import` ingests at once.
    pub import_parallelism: usize,
}

/// What a different instance under a SOP Instance UID already stored does (`ingest.on_conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep the stored instance, refuse the new one.
    Reject,
    /// Index the new one; the old blob stays, listed in the instance's history.
    Replace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Background verification rate while serving, at most; 0 turns the background scrub off.
    pub blobs_per_second: f64,
    /// After verifying a blob, the background scrub rests this many times as long as the
    /// verification took (garage's "tranquility"): on a busy disk it slows down by itself, so
    /// it never starves ingest and reads of the disk's time.
    pub tranquility: f64,
}

/// The cold tier: studies past the policy are erasure-coded into `data_shards` data and
/// `parity_shards` parity shards, one on each of `stores`, and their replicas removed. Any
/// `data_shards` of the stores rebuild every cold blob; none of them alone holds a readable
/// piece (each shard is sealed like a blob, under a name that links it to nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersConfig {
    /// The cold stores' URLs, as many as data and parity shards; empty: no cold tier.
    pub stores: Vec<String>,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// A study moves to cold once it was received this many months ago...
    pub older_than_months: u32,
    /// ...and nobody has read it for this many months.
    pub unread_for_months: u32,
    /// Only studies with a series of one of these modalities move; empty: every study.
    pub modalities: Vec<String>,
    /// A cold study read is restored to the replicas and stays hot this many days after.
    pub restored_for_days: u32,
    /// The background worker's pace, at most; 0 turns the worker off (`strata tier` still runs).
    pub studies_per_minute: f64,
    /// Blobs larger than this stay hot: a blob is coded in memory.
    pub max_blob_bytes: u64,
    /// What a GiB stored for a month costs on each replica (one figure for all of them, or one
    /// per replica in `store.replicas` order): the console's projected monthly cost.
    pub replica_price_per_gib_month: Vec<f64>,
    /// The same for each cold store (one figure, or one per store).
    pub cold_price_per_gib_month: Vec<f64>,
}

impl Default for TiersConfig {
    fn default() -> Self {
        TiersConfig {
            stores: Vec::new(),
            data_shards: 4,
            parity_shards: 2,
            older_than_months: 12,
            unread_for_months: 6,
            modalities: Vec::new(),
            restored_for_days: 30,
            studies_per_minute: 60.0,
            max_blob_bytes: 1 << 30,
            replica_price_per_gib_month: Vec::new(),
            cold_price_per_gib_month: Vec::new(),
        }
    }
}

impl TiersConfig {
    /// Whether a cold tier is configured.
    pub fn enabled(&self) -> bool {
        !self.stores.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// How often the repair worker looks at the queue.
    pub interval_seconds: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            http: HttpConfig::default(),
            dimse: DimseConfig::default(),
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            scrub: ScrubConfig::default(),
            repair: RepairConfig::default(),
            retention: RetentionConfig::default(),
            render: RenderConfig::default(),
            index: IndexConfig::default(),
            node: NodeConfig::default(),
            deidentify: DeidentifyConfig::default(),
            dicomweb_peers: Vec::new(),
            send: SendConfig::default(),
            tiers: TiersConfig::default(),
            hanging: default_hanging(),
            data_dir: PathBuf::from("strata-data"),
        }
    }
}

/// A hanging protocol: how the viewer lays out a study that matches, and whether the person's
/// most recent comparable prior goes beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangingRule {
    pub name: String,
    /// The study holds a series of one of these modalities (empty: any).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// A series of the study has this Body Part Examined (absent: any).
    #[serde(default)]
    pub body_part: Option<String>,
    /// A series whose description holds this (any case) goes first; the rule matches only a
    /// study that has one (absent: the first series by number).
    #[serde(default)]
    pub series_description: Option<String>,
    /// One of [`HANGING_LAYOUTS`].
    pub layout: String,
    /// The most recent comparable prior goes beside the series shown first.
    #[serde(default)]
    pub prior: bool,
}

/// The viewer's layouts: one viewport, two side by side, four.
pub const HANGING_LAYOUTS: [&str; 3] = ["1x1", "1x2", "2x2"];

/// The hanging protocols an archive starts with.
pub fn default_hanging() -> Vec<HangingRule> {
    let rule = |name: &str,
                modalities: &[&str],
                body_part: Option<&str>,
                desc: Option<&str>,
                layout: &str,
                prior| {
        HangingRule {
            name: name.into(),
            modalities: modalities.iter().map(|m| m.to_string()).collect(),
            body_part: body_part.map(str::to_string),
            series_description: desc.map(str::to_string),
            layout: layout.into(),
            prior,
        }
    };
    vec![
        rule(
            "Chest CT, lung series, with its prior",
            &["CT"],
            Some("CHEST"),
            Some("LUNG"),
            "1x2",
            true,
        ),
        rule(
            "CT and MR with the prior",
            &["CT", "MR"],
            None,
            None,
            "1x2",
            true,
        ),
        rule(
            "Radiographs, two views",
            &["CR", "DX"],
            None,
            None,
            "1x2",
            false,
        ),
        rule("Mammography, four views", &["MG"], None, None, "2x2", false),
    ]
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 8 << 30,
            public_url: None,
            stream_idle_seconds: 600,
            header_timeout_seconds: 15,
            body_idle_seconds: 60,
            max_connections: 512,
            max_connections_per_ip: 64,
            renders_per_second: 50,
            exports_per_minute: 6000,
            letter_attempts_per_minute: 10,
            trusted_proxies: Vec::new(),
            tls_certificate: None,
            tls_private_key: None,
            tls_self_signed: false,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            spool_threshold_bytes: 64 << 20,
            max_instance_bytes: 16 << 30,
            on_conflict: OnConflict::Reject,
            import_parallelism: 8,
        }
    }
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            blobs_per_second: 5.0,
            tranquility: 2.0,
        }
    }
}

/// How long records must be kept, and how they end: deleting a study still under retention
/// or under a legal hold is refused by every path; studies past retention are proposed for
/// deletion in batches an administrator approves; instances a rejection note named are purged
/// after a delay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Years after the person's last study an adult's record is kept.
    pub adult_years: u32,
    /// A child's record is kept at least until the patient reaches this age.
    pub minor_until_age: u32,
    /// Overrides of `adult_years` for studies of a modality or from a source
    /// (`[[retention.rules]]`); where several apply, the longest wins.
    pub rules: Vec<RetentionRule>,
    /// Days an instance a rejection note named stays (out of sight) before it is purged; it
    /// stays longer while under retention or a hold.
    pub rejected_purge_after_days: u32,
    /// How often the expiry worker proposes a batch of studies past retention (0: only when an
    /// administrator asks).
    pub propose_every_hours: u32,
    /// Most studies in one proposed batch.
    pub batch_studies: usize,
}

/// A retention override: studies with a series of `modality`, or with an instance from
/// `source` (`dimse:AE`, `web:user`, `import`), are kept `adult_years` after the last study.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    pub adult_years: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            adult_years: 7,
            minor_until_age: 25,
            rules: Vec::new(),
            rejected_purge_after_days: 30,
            propose_every_hours: 24,
            batch_studies: 1000,
        }
    }
}

/// De-identification (PS3.15 Annex E): which options of the Basic Application Level
/// Confidentiality Profile apply, which private attributes are safe to keep, and which devices'
/// burned-in annotation may be blanked. Every option is on by default: a research copy keeps
/// what makes it useful (ages, sexes, devices, intervals between dates) and loses who it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeidentifyConfig {
    /// Retain Longitudinal Temporal Information with Modified Dates: dates shifted per patient.
    pub modified_dates: bool,
    /// Retain Patient Characteristics: sex, age, size, weight and the like kept.
    pub patient_characteristics: bool,
    /// Retain Device Identity: manufacturer, model, serial numbers kept.
    pub device_identity: bool,
    /// Clean Descriptors: descriptions kept with the record's identifiers taken out of them.
    pub clean_descriptors: bool,
    /// Private attributes kept (every other private attribute is removed).
    pub private_safe: Vec<SafePrivate>,
    /// Devices whose burned-in annotation sits in known places, blanked before export.
    pub pixel_rules: Vec<PixelRule>,
}

impl Default for DeidentifyConfig {
    fn default() -> Self {
        DeidentifyConfig {
            modified_dates: true,
            patient_characteristics: true,
            device_identity: true,
            clean_descriptors: true,
            private_safe: Vec::new(),
            pixel_rules: Vec::new(),
        }
    }
}

/// A private attribute known to carry no identity: the private creator of its block, its
/// (odd) group and its element within the block (the low byte, `0x00` to `0xFF`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SafePrivate {
    pub creator: String,
    pub group: u16,
    pub element: u8,
}

/// Where one device burns text into its images: rectangles `[x, y, width, height]` in pixels,
/// blanked in every frame of an instance whose Manufacturer and ManufacturerModelName match
/// (case and surrounding spaces ignored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PixelRule {
    pub manufacturer: String,
    pub model: String,
    pub rectangles: Vec<[u32; 4]>,
}

/// Where the index lives: the embedded SQLite file in the data directory (the default), or a
/// PostgreSQL database shared by the nodes of a cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// `postgres://user:password@host:port/database` (or `STRATA_INDEX_URL`); none: SQLite.
    pub url: Option<String>,
}

/// This process as one node of a cluster: several `strata serve` sharing one PostgreSQL index,
/// the replicas and the master key. Each node has its own name and does the work its role
/// gives it; the upkeep that must happen once per archive runs on the node holding its lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name in leases, statuses and `/readyz` (`STRATA_NODE_ID`); default the host
    /// name. Two nodes on one host must be given different ones.
    pub id: Option<String>,
    pub role: NodeRole,
    /// How long a lease on a once-per-archive worker lasts without renewal: a node that dies
    /// holding one is replaced this long after its last renewal at most. Its holder renews it
    /// every third of it.
    pub lease_seconds: u64,
    // How the node stops on SIGTERM or SIGINT: first it says not-ready on `/readyz` for
    // `drain_seconds`, long enough for the load balancer's health check to see it and send
    // nothing new; then it stops accepting, lets the requests and associations under way finish
    // for at most `drain_max_seconds`, aborts what is left, and exits.
    /// Seconds `/readyz` says 503 (draining) before the listeners close.
    pub drain_seconds: u64,
    /// Most seconds the requests and associations under way may take to finish once the
    /// listeners are closed; then they are aborted (nothing unacknowledged is acknowledged).
    pub drain_max_seconds: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            role: NodeRole::All,
            lease_seconds: 30,
            drain_seconds: 2,
            drain_max_seconds: 60,
        }
    }
}

/// What a node serves (`node.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Everything: one node alone, or every node of a uniform cluster.
    All,
    /// The viewer's side over HTTP: sign-in, searches and reads, rendered pictures and the
    /// render stream. No DIMSE listener, no STOW-RS, no changes, no upkeep workers.
    Render,
    /// Receiving: DIMSE and STOW-RS, searches and reads, administration and the upkeep
    /// workers; no rendered pictures and no render stream.
    Ingest,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::All => "all",
            NodeRole::Render => "render",
            NodeRole::Ingest => "ingest",
        }
    }

    /// Whether the node listens for DIMSE associations.
    pub fn serves_dimse(self) -> bool {
        self != NodeRole::Render
    }

    /// Whether the node renders pictures (rendered, thumbnails, the render stream).
    pub fn serves_rendering(self) -> bool {
        self != NodeRole::Ingest
    }

    /// Whether the node runs the archive's upkeep (repair, scrub, audit export, MPI
    /// re-estimation), each under its lease.
    pub fn runs_upkeep(self) -> bool {
        self != NodeRole::Render
    }
}

/// Where the index is, as [`Config::index_location`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexLocation {
    /// The embedded index: this SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its connection URL (which may hold a password: never logged).
    Postgres(String),
}

/// The render pool (decode, window, resample) and its decoded-frame cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    /// Worker threads; default one per core. More would only take turns on the same cores.
    pub workers: usize,
    /// Bytes of decoded frames kept for reuse (a 512×512 CT slice takes 1 MiB): scrolling back
    /// and forth through a series decodes each slice once.
    pub cache_bytes: u64,
    /// Most samples (Rows × Columns × Samples per Pixel) one frame may hold before anything is
    /// allocated for it; a larger frame is refused. A decoded frame keeps 4 bytes a sample, so
    /// this bounds what one decode can take.
    pub max_frame_samples: u64,
    /// Bytes of volumes (a series' slices stacked for MPR, 2 bytes a voxel: a 512×512×400 CT
    /// takes 200 MiB) held at once. Opening one more evicts the least recently used volume no
    /// view is showing; a volume that cannot fit is refused, never allowed past this.
    pub volume_bytes: u64,
    /// Memory a JPEG-LS or JPEG 2000 decoder process may take beyond what it holds when it
    /// starts (its address space is limited to that); an allocation past it ends the process
    /// and fails that frame alone.
    pub codec_worker_memory_bytes: u64,
    /// Longest a JPEG-LS or JPEG 2000 decoder process may work on one frame (or a conversion
    /// on one instance) before it is killed.
    pub codec_worker_seconds: u64,
    /// Most bytes of stored instances held whole in memory at once, by all requests together:
    /// a conversion to another transfer syntax (the stored bytes, then the converted ones),
    /// frames, bulk data and rendering read an instance whole. A request that would need more
    /// than this is refused (the instance is still sent as stored, which streams); requests
    /// beyond it together wait their turn.
    pub instance_memory_bytes: u64,
    /// The program the decoder processes run (the `strata` binary itself); set by the command,
    /// not the file. None: the decoders run in this process.
    #[serde(skip)]
    pub codec_worker_program: Option<PathBuf>,
}

/// 2^26 samples: a 8192×8192 grey image (a large mammogram is 4096×5120) or a 4730×4730 colour
/// one, 256 MiB once decoded.
pub const DEFAULT_MAX_FRAME_SAMPLES: u64 = 1 << 26;

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache_bytes: 1 << 30,
            max_frame_samples: DEFAULT_MAX_FRAME_SAMPLES,
            volume_bytes: 1 << 30,
            codec_worker_memory_bytes: 1 << 30,
            codec_worker_seconds: 30,
            instance_memory_bytes: 256 << 20,
            codec_worker_program: None,
        }
    }
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            interval_seconds: 10,
        }
    }
}

impl Config {
    /// Loads the configuration for `data_dir`: `config_file` if given (it must exist), else
    /// `<data>/strata.toml` when it exists; then the `STRATA_*` variables of `env`.
    pub fn load(
        data_dir: &Path,
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let default_file = data_dir.join("strata.toml");
        let file = match config_file {
            Some(f) => Some(f.to_path_buf()),
            None => default_file.exists().then_some(default_file),
        };
        let mut table = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        origin: path.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let origin = file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults".into());
        let mut from_env = Vec::new();
        for (name, value) in env {
            if !name.starts_with("STRATA_") || RESERVED_ENV.contains(&name.as_str()) {
                continue;
            }
            let rest = name["STRATA_".len()..].to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_').filter(|(s, _)| SECTIONS.contains(s))
            else {
                return Err(ConfigError::Invalid {
                    origin: format!("environment variable {name}"),
                    message: format!(
                        "not a configuration key (sections: {})",
                        SECTIONS.join(", ")
                    ),
                });
            };
            let parsed = if section == "node" && key == "id" {
                // a name, even one that reads as a number
                toml::Value::String(value.clone())
            } else if key == "replicas"
                || key == "trusted_proxies"
                || key == "stores"
                || key == "modalities"
            {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(|s| toml::Value::String(s.trim().into()))
                        .collect(),
                )
            } else {
                format!("v = {value}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or(toml::Value::String(value.clone()))
            };
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(key.to_string(), parsed);
            }
            from_env.push(name);
        }
        let origin = if from_env.is_empty() {
            origin
        } else {
            format!("{origin} with {}", from_env.join(", "))
        };
        let mut config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: e.message().to_string(),
                })?;
        config.data_dir = data_dir.to_path_buf();
        config.validate(&origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                message,
            })
        };
        let n = self.replica_urls().len();
        if n == 0 {
            return bad("store.replicas: at least one replica is needed".into());
        }
        if let Some(q) = self.store.write_quorum {
            if q == 0 || q > n {
                return bad(format!(
                    "store.write_quorum = {q}: must be between 1 and the {n} replicas"
                ));
            }
        }
        if let Some(url) = &self.index.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad(
                    "index.url: a PostgreSQL URL (postgres://user:password@host:port/database)"
                        .into(),
                );
            }
        }
        let ae = &self.dimse.ae_title;
        if ae.is_empty() || ae.len() > 16 || ae.chars().any(|c| c == '\\' || c.is_control()) {
            return bad(format!(
                "dimse.ae_title = {ae:?}: an AE title has 1 to 16 characters, no backslash"
            ));
        }
        if !(4096..=16_777_216).contains(&self.dimse.max_pdu_length) {
            return bad("dimse.max_pdu_length must be between 4096 and 16777216".into());
        }
        if self.dimse.tls_certificate.is_some() != self.dimse.tls_private_key.is_some() {
            return bad("dimse.tls_certificate and dimse.tls_private_key go together".into());
        }
        if let Some(p) = self.dimse.peers.iter().find(|p| p.tls) {
            if self.dimse.tls_peer_ca.is_none() {
                return bad(format!(
                    "dimse.peers {}: a TLS peer needs dimse.tls_peer_ca",
                    p.aet
                ));
            }
        }
        for (i, r) in self.retention.rules.iter().enumerate() {
            if r.modality.is_none() == r.source.is_none() {
                return bad(format!(
                    "retention.rules[{i}]: a rule names a modality or a source (one of them)"
                ));
            }
        }
        if self.retention.batch_studies == 0 {
            return bad("retention.batch_studies must be at least 1".into());
        }
        for (i, p) in self.dicomweb_peers.iter().enumerate() {
            if p.name.trim().is_empty() || !p.url.starts_with("http") {
                return bad(format!(
                    "dicomweb_peers[{i}]: a peer needs a name and an http:// or https:// url"
                ));
            }
            if p.token.is_some() && (p.user.is_some() || p.password.is_some()) {
                return bad(format!(
                    "dicomweb_peers {}: a bearer token or a user and password, not both",
                    p.name
                ));
            }
            if p.user.is_some() != p.password.is_some() {
                return bad(format!(
                    "dicomweb_peers {}: user and password go together",
                    p.name
                ));
            }
            if self.dicomweb_peers[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("dicomweb_peers {}: named twice", p.name));
            }
        }
        if self.dimse.tls_client_ca.is_some() && self.dimse.tls_certificate.is_none() {
            return bad("dimse.tls_client_ca needs dimse.tls_certificate and its key".into());
        }
        if self.dimse.max_associations == 0
            || self.dimse.max_associations_per_ip == 0
            || self.dimse.max_find_results == 0
        {
            return bad(
                "dimse.max_associations, dimse.max_associations_per_ip and dimse.max_find_results must be at least 1"
                    .into(),
            );
        }
        if [
            self.dimse.artim_timeout_seconds,
            self.dimse.idle_timeout_seconds,
            self.dimse.pdu_timeout_seconds,
            self.dimse.max_association_seconds,
            self.dimse.reclaim_idle_seconds,
        ]
        .contains(&0)
        {
            return bad(
                "dimse.artim_timeout_seconds, idle_timeout_seconds, pdu_timeout_seconds, max_association_seconds and reclaim_idle_seconds must be at least 1"
                    .into(),
            );
        }
        if self.ingest.import_parallelism == 0 {
            return bad("ingest.import_parallelism must be at least 1".into());
        }
        if self.ingest.spool_threshold_bytes > self.ingest.max_instance_bytes {
            return bad("ingest.spool_threshold_bytes exceeds ingest.max_instance_bytes".into());
        }
        if self.http.tls_certificate.is_some() != self.http.tls_private_key.is_some() {
            return bad("http.tls_certificate and http.tls_private_key go together".into());
        }
        if self.http.tls_self_signed && self.http.tls_certificate.is_some() {
            return bad(
                "http.tls_self_signed and http.tls_certificate: name a certificate or ask for one"
                    .into(),
            );
        }
        if self.http.header_timeout_seconds == 0 || self.http.body_idle_seconds == 0 {
            return bad(
                "http.header_timeout_seconds and http.body_idle_seconds must be at least 1".into(),
            );
        }
        if self.http.renders_per_second == 0
            || self.http.exports_per_minute == 0
            || self.http.letter_attempts_per_minute == 0
        {
            return bad("http.renders_per_second, http.exports_per_minute and \
                 http.letter_attempts_per_minute must be at least 1"
                .into());
        }
        if self.http.max_connections == 0 || self.http.max_connections_per_ip == 0 {
            return bad(
                "http.max_connections and http.max_connections_per_ip must be at least 1".into(),
            );
        }
        if let Err(e) = self.trusted_proxies() {
            return bad(format!("http.trusted_proxies: {e}"));
        }
        if self.http.stream_idle_seconds == 0 {
            return bad("http.stream_idle_seconds must be at least 1".into());
        }
        if self.render.workers == 0 {
            return bad("render.workers must be at least 1".into());
        }
        if self.render.instance_memory_bytes < 1 << 20 {
            return bad("render.instance_memory_bytes must be at least 1 MiB".into());
        }
        for h in &self.hanging {
            if h.name.trim().is_empty() || !HANGING_LAYOUTS.contains(&h.layout.as_str()) {
                return bad(format!(
                    "hanging protocol {:?}: a name and a layout of {} are needed",
                    h.name,
                    HANGING_LAYOUTS.join(", ")
                ));
            }
            if h.prior && h.layout == "1x1" {
                return bad(format!(
                    "hanging protocol {:?}: a prior beside the study needs two viewports",
                    h.name
                ));
            }
        }
        if self.render.volume_bytes < 1 << 20 {
            return bad("render.volume_bytes must be at least 1 MiB".into());
        }
        if self.render.max_frame_samples == 0 {
            return bad("render.max_frame_samples must be at least 1".into());
        }
        if self.render.codec_worker_memory_bytes == 0 || self.render.codec_worker_seconds == 0 {
            return bad(
                "render.codec_worker_memory_bytes and render.codec_worker_seconds must be at least 1"
                    .into(),
            );
        }
        if let Some(id) = &self.node.id {
            if id.is_empty()
                || id.len() > 64
                || id.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return bad(format!(
                    "node.id = {id:?}: a node id has 1 to 64 characters, no spaces or control characters"
                ));
            }
        }
        if !(2..=3600).contains(&self.node.lease_seconds) {
            return bad("node.lease_seconds must be between 2 and 3600".into());
        }
        if self.scrub.blobs_per_second.is_nan() || self.scrub.blobs_per_second < 0.0 {
            return bad("scrub.blobs_per_second must be 0 or more".into());
        }
        if !(0.0..=1000.0).contains(&self.scrub.tranquility) {
            return bad("scrub.tranquility must be between 0 and 1000".into());
        }
        let t = &self.tiers;
        if t.data_shards == 0 || t.parity_shards == 0 || t.data_shards + t.parity_shards > 255 {
            return bad(
                "tiers.data_shards and tiers.parity_shards must be at least 1, 255 together at most"
                    .into(),
            );
        }
        if t.enabled() && t.stores.len() != t.data_shards + t.parity_shards {
            return bad(format!(
                "tiers.stores: {} stores for {} data and {} parity shards; one store per shard",
                t.stores.len(),
                t.data_shards,
                t.parity_shards
            ));
        }
        if t.studies_per_minute.is_nan() || t.studies_per_minute < 0.0 {
            return bad("tiers.studies_per_minute must be 0 or more".into());
        }
        Ok(())
    }

    /// `http.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::peers::Cidr>, String> {
        self.http
            .trusted_proxies
            .iter()
            .map(|s| s.parse())
            .collect()
    }

    /// The replica URLs in force: the configured ones, or three folders in the data directory.
    pub fn replica_urls(&self) -> Vec<String> {
        if !self.store.replicas.is_empty() {
            return self.store.replicas.clone();
        }
        let abs = std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        ["replica-a", "replica-b", "replica-c"]
            .iter()
            .map(|r| {
                url::Url::from_file_path(abs.join(r))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| format!("file://{}/{r}", abs.display()))
            })
            .collect()
    }

    /// This node's id: `node.id`, else the host name (else `strata`).
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.node.id {
            return id.clone();
        }
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|h| h.trim().to_string())
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "strata".into())
    }

    pub fn write_quorum(&self) -> usize {
        self.store.write_quorum.unwrap_or(self.replica_urls().len())
    }

    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.sqlite")
    }

    /// The index the archive opens: `index.url` when set (`postgres://` or `postgresql://`),
    /// else the SQLite file in the data directory.
    pub fn index_location(&self) -> IndexLocation {
        match &self.index.url {
            Some(url) => IndexLocation::Postgres(url.clone()),
            None => IndexLocation::Sqlite(self.index_path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_three_local_replicas_all_required() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), None, env(&[])).unwrap();
        assert_eq!(c.replica_urls().len(), 3);
        assert!(c.replica_urls()[0].starts_with("file:///"));
        assert_eq!(c.write_quorum(), 3);
        assert_eq!(c.http.listen, "127.0.0.1:8080");
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("strata.toml"),
            "[http]\nlisten = \"127.0.0.1:9000\"\n[store]\nwrite_quorum = 2\n[ingest]\non_conflict = \"replace\"\n",
        )
        .unwrap();
        let c = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_STORE_WRITE_QUORUM", "1"), ("STRATA_DATA", "x")]),
        )
        .unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:9000");
        assert_eq!(c.write_quorum(), 1, "environment overrides the file");
        assert_eq!(c.ingest.on_conflict, OnConflict::Replace);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("strata.toml");
        std::fs::write(&f, "[store]\nwrite_qorum = 2\n").unwrap();
        let e = Config::load(dir.path(), None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("write_qorum") && e.contains("strata.toml"),
            "{e}"
        );
        std::fs::write(&f, "[ingest]\non_conflict = \"merge\"\n").unwrap();
        let e = Config::load(dir.path(), None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("merge"), "{e}");
        std::fs::remove_file(&f).unwrap();
        let e = Config::load(dir.path(), None, env(&[("STRATA_STORE_WRITE_QUORUM", "5")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("write_quorum") && e.contains("STRATA_STORE_WRITE_QUORUM"),
            "{e}"
        );
        let e = Config::load(dir.path(), None, env(&[("STRATA_RENDER_WORKERS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("render.workers"), "{e}");
        let c = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_RENDER_CACHE_BYTES", "1048576")]),
        )
        .unwrap();
        assert_eq!(c.render.cache_bytes, 1 << 20);
        assert!(c.render.workers >= 1);
        assert_eq!(c.render.max_frame_samples, DEFAULT_MAX_FRAME_SAMPLES);
        let e = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_RENDER_MAX_FRAME_SAMPLES", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("render.max_frame_samples"), "{e}");
        let e = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_RENDER_CODEC_WORKER_SECONDS", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("render.codec_worker_seconds"), "{e}");
        assert!(c.render.codec_worker_program.is_none());
        let e = Config::load(dir.path(), None, env(&[("STRATA_BOGUS", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("STRATA_BOGUS"), "{e}");
    }

    #[test]
    fn a_node_has_an_id_a_role_and_a_lease_length() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), None, env(&[])).unwrap();
        assert_eq!((c.node.role, c.node.lease_seconds), (NodeRole::All, 30));
        assert!(!c.node_id().is_empty(), "the host name by default");
        let c = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_NODE_ID", "42"), ("STRATA_NODE_ROLE", "render")]),
        )
        .unwrap();
        assert_eq!(
            (c.node_id().as_str(), c.node.role),
            ("42", NodeRole::Render)
        );
        assert!(!c.node.role.serves_dimse() && c.node.role.serves_rendering());
        let e = Config::load(dir.path(), None, env(&[("STRATA_NODE_ROLE", "viewer")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("viewer") && e.contains("`render`") && e.contains("STRATA_NODE_ROLE"),
            "{e}"
        );
        let e = Config::load(dir.path(), None, env(&[("STRATA_NODE_ID", "node a")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.id"), "{e}");
        std::fs::write(
            dir.path().join("strata.toml"),
            "[node]\nlease_seconds = 1\n",
        )
        .unwrap();
        let e = Config::load(dir.path(), None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.lease_seconds"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_HTTP_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16")]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies().unwrap().len(), 2);
        assert!(Config::default().trusted_proxies().unwrap().is_empty());
        let e = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_HTTP_TRUSTED_PROXIES", "10.0.0.0/40")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http.trusted_proxies"), "{e}");
    }

    #[test]
    fn the_drain_has_short_defaults_and_its_keys_in_node() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), None, env(&[])).unwrap();
        assert_eq!((c.node.drain_seconds, c.node.drain_max_seconds), (2, 60));
        std::fs::write(
            dir.path().join("strata.toml"),
            "[node]\ndrain_seconds = 5\n",
        )
        .unwrap();
        let c = Config::load(
            dir.path(),
            None,
            env(&[("STRATA_NODE_DRAIN_MAX_SECONDS", "10")]),
        )
        .unwrap();
        assert_eq!((c.node.drain_seconds, c.node.drain_max_seconds), (5, 10));
        std::fs::write(dir.path().join("strata.toml"), "[node]\ndrain = 5\n").unwrap();
        let e = Config::load(dir.path(), None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("drain"), "{e}");
    }
}
