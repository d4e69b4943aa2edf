//! The archive wired from one [`Config`] (layer 3): it opens the engines (the store with its
//! key and replicas, the index, the render pool, the metrics), builds each service with exactly
//! the engines and configuration it needs, and starts the background workers. It holds handles
//! and does no work of its own: every door reaches the archive's work through the services it
//! hands out.

pub mod drain;
pub mod tls;

/// The decoder process's side, for the command that is its program.
pub use strata_render::decode::worker::{serve as serve_codec_worker, SUBCOMMAND as CODEC_WORKER};

use std::path::Path;
use std::sync::{Arc, OnceLock};
use strata_core::config::{Config, IndexLocation};
use strata_core::Metrics;
use strata_index::{Index, PG_REINDEX_SCHEMA, PG_SCHEMA};
use strata_render::RenderPool;
use strata_services::admin::Admin;
use strata_services::audit::AuditTrail;
use strata_services::auth::Access;
use strata_services::deidentify::Deidentification;
use strata_services::ingest::Ingest;
use strata_services::journal::Journal;
use strata_services::letters::Letters;
use strata_services::maintenance::leases::Node;
use strata_services::maintenance::Maintenance;
use strata_services::media::Media;
use strata_services::persons::Persons;
use strata_services::pictures::Pictures;
use strata_services::reads::Reads;
use strata_services::reindex::{rebuild, ReindexReport};
use strata_services::retention::Retention;
use strata_services::sends::{Carriers, Sends};
use strata_services::tiers::{open_shards, Tiers};
use strata_services::ServiceError;
use strata_store::crypt::MasterKey;
use strata_store::{Replica, Replicas, Store};

pub struct Archive {
    config: Config,
    store: Arc<Store>,
    index: Index,
    metrics: Arc<Metrics>,
    ingest: Ingest,
    reads: Reads,
    pictures: Pictures,
    media: Media,
    letters: Letters,
    admin: Admin,
    access: Access,
    audit: AuditTrail,
    persons: Persons,
    retention: Retention,
    maintenance: Maintenance,
    sends: Sends,
    deidentification: Deidentification,
    tiers: Arc<Tiers>,
    /// Where clients reach the HTTP side: `http.public_url`, or set once the listener is bound.
    /// Shared with the node's heartbeat, which reports it.
    public_url: Arc<OnceLock<String>>,
    /// Where the node is in its stop (`strata serve` moves it on; the doors watch it).
    drain: drain::Drain,
}

/// Held by `strata serve` for as long as it runs, so that `reindex`, which swaps the index file,
/// can refuse to run under a live server. The operating system drops it if the process dies.
pub struct ServeLock(#[allow(dead_code)] std::fs::File);

impl ServeLock {
    pub fn acquire(config: &Config) -> Result<ServeLock, ServiceError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            ServiceError::Setup(format!("creating {}: {e}", config.data_dir.display()))
        })?;
        let path = config.data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ServiceError::Setup(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(ServiceError::Setup(format!(
                "the archive in {} is being served by another process: stop it first",
                config.data_dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(ServiceError::Setup(format!("{}: {e}", path.display())))
            }
        }
    }
}

/// Opens the store alone (key and replicas), for commands that must not touch the index.
pub fn open_store(config: &Config) -> Result<Store, ServiceError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServiceError::Setup(format!("creating {}: {e}", config.data_dir.display())))?;
    let env_key = std::env::var("STRATA_MASTER_KEY").ok();
    let (key, created) = MasterKey::load_or_create(&config.data_dir, env_key.as_deref())
        .map_err(|e| ServiceError::Setup(e.to_string()))?;
    if let Some(path) = created {
        eprintln!(
            "strata: created a new master key at {}: BACK IT UP NOW, somewhere other than the replicas; without it every stored instance is unreadable.",
            path.display()
        );
    }
    let replicas = config
        .replica_urls()
        .iter()
        .map(|u| Replica::open(u))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Setup(e.to_string()))?;
    Ok(Store::new(
        Arc::new(key),
        Replicas::new(replicas, config.write_quorum()),
    ))
}

impl Archive {
    pub async fn open(config: Config) -> Result<Arc<Archive>, ServiceError> {
        Archive::open_with_clock(config, strata_core::Clock::system()).await
    }

    /// [`Archive::open`] on `clock`: what decides by age (the tier policy) reads it, so a test
    /// can move it.
    pub async fn open_with_clock(
        config: Config,
        clock: strata_core::Clock,
    ) -> Result<Arc<Archive>, ServiceError> {
        let metrics = Arc::new(Metrics::for_node(&config.node_id()));
        let store = Arc::new(open_store(&config)?.measured(metrics.clone()));
        let index = Index::open_at(
            &config.index_location(),
            metrics.clone(),
            Some(store.audit_key().clone()),
        )?;
        let pool = Arc::new(
            RenderPool::new(config.render.workers, config.render.cache_bytes)
                .measured(metrics.clone()),
        );
        let journal = Journal::new(store.clone()).stamped_by(index.clone());
        let node = Node::new(
            index.clone(),
            config.node_id(),
            config.node.role,
            std::time::Duration::from_secs(config.node.lease_seconds),
        );
        metrics.set_node(node.id(), node.role().as_str());
        let codec_workers = config.render.codec_worker_program.clone().map(|program| {
            Arc::new(strata_render::CodecWorkers::new(
                program,
                config.render.codec_worker_memory_bytes,
                std::time::Duration::from_secs(config.render.codec_worker_seconds),
            ))
        });
        let tiers = Arc::new(Tiers::new(
            store.clone(),
            index.clone(),
            open_shards(&config.tiers, store.master_key())?,
            config.tiers.clone(),
            clock,
        ));
        let reads = Reads::new(
            store.clone(),
            index.clone(),
            metrics.clone(),
            config.render.instance_memory_bytes,
            codec_workers.clone(),
        )
        .with_tiers(tiers.clone());
        let pictures = Pictures::new(
            reads.clone(),
            pool,
            strata_render::DecodeLimits {
                max_frame_samples: config.render.max_frame_samples,
                codec_workers,
            },
            config.render.volume_bytes,
        );
        let media = Media::new(reads.clone(), pictures.clone(), index.clone());
        let archive = Arc::new(Archive {
            ingest: Ingest::new(
                store.clone(),
                index.clone(),
                journal.clone(),
                metrics.clone(),
                config.ingest.clone(),
                config.data_dir.join("spool"),
            ),
            deidentification: Deidentification::new(
                store.clone(),
                index.clone(),
                reads.clone(),
                config.deidentify.clone(),
            ),
            media: media.clone(),
            letters: Letters::new(index.clone(), media, config.retention.clone()),
            pictures,
            reads,
            admin: Admin::new(
                index.clone(),
                journal.clone(),
                config.dimse.peers.clone(),
                config.data_dir.clone(),
            ),
            access: Access::new(index.clone()),
            audit: AuditTrail::new(index.clone(), store.clone()),
            persons: Persons::new(index.clone(), journal.clone()),
            retention: Retention::new(
                store.clone(),
                index.clone(),
                journal.clone(),
                config.retention.clone(),
                tiers.clock().clone(),
                tiers.shards().cloned(),
            ),
            sends: Sends::new(
                index.clone(),
                Admin::new(
                    index.clone(),
                    journal.clone(),
                    config.dimse.peers.clone(),
                    config.data_dir.clone(),
                ),
                AuditTrail::new(index.clone(), store.clone()),
                config.dicomweb_peers.clone(),
                std::time::Duration::from_secs(config.send.retry_after_seconds.max(1)),
            ),
            maintenance: Maintenance::new(
                store.clone(),
                index.clone(),
                metrics.clone(),
                config.scrub.clone(),
                config.repair.clone(),
                node,
            )
            .with_tiers(tiers.clone()),
            tiers,
            config,
            store,
            index,
            metrics,
            public_url: Arc::default(),
            drain: drain::Drain::default(),
        });
        // From the first opening of an archive that keys its chain, the replicas know it.
        if let Err(e) = archive.audit.mark_keyed().await {
            tracing::warn!("sealing where the audit chain is keyed from: {e}");
        }
        Ok(archive)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The catalog, for what the doors read: searches, instance lists, persons, users.
    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    pub fn pictures(&self) -> &Pictures {
        &self.pictures
    }

    /// Studies exported as PS3.10 media in a ZIP.
    pub fn media(&self) -> &Media {
        &self.media
    }

    /// Access letters: patients' copies without an account.
    pub fn letters(&self) -> &Letters {
        &self.letters
    }

    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Credentials: tokens, sessions, signing in and out.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The audit trail, for the events every door writes.
    pub fn audit(&self) -> &AuditTrail {
        &self.audit
    }

    pub fn persons(&self) -> &Persons {
        &self.persons
    }

    /// Bytes and projected monthly cost per tier and store.
    pub async fn storage_use(&self) -> Result<strata_services::usage::StorageUse, ServiceError> {
        strata_services::usage::storage(
            &self.index,
            self.store.replicas().shown_urls(),
            self.tiers.shards().map(|s| s.as_ref()),
            &self.config.tiers,
        )
        .await
    }

    /// Reads per study against study age, from the audit trail.
    pub async fn access_decay(&self) -> Result<strata_services::usage::Decay, ServiceError> {
        strata_services::usage::decay(&self.index, self.tiers.clock().now_ms()).await
    }

    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    pub fn deidentification(&self) -> &Deidentification {
        &self.deidentification
    }

    /// Hot and cold tiers: the policy, moves, restores, the shards' scrub.
    pub fn tiers(&self) -> &Arc<Tiers> {
        &self.tiers
    }

    /// Where clients reach the HTTP side (the base of RetrieveURL and BulkDataURI): set once,
    /// when the HTTP listener is bound.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.get().map(String::as_str)
    }

    pub fn set_public_url(&self, url: String) {
        let _ = self.public_url.set(url);
    }

    /// The node's stop: its phase, moved on by `strata serve`, watched by the doors.
    pub fn drain(&self) -> &drain::Drain {
        &self.drain
    }

    /// Ready to acknowledge instances: the index answers and a write quorum of replicas is
    /// reachable.
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            index_ok: self.index.ping().await,
            replicas_reachable: self.store.replicas().reachable().await,
            replicas: self.store.replicas().len(),
            write_quorum: self.store.replicas().write_quorum(),
        }
    }

    /// Marks each replica as part of this archive (the readiness probe looks for the marker).
    pub async fn write_markers(&self) {
        if let Err(e) = self.store.write_markers().await {
            tracing::warn!("writing replica markers: {e}");
        }
    }

    /// Starts the background workers of a serving archive, and its node's heartbeat.
    pub fn spawn_workers(&self) {
        self.maintenance.spawn_heartbeat(self.public_url.clone());
        self.maintenance.spawn_workers();
        let retention = self.retention.clone();
        self.maintenance
            .spawn_leased(strata_services::retention::WORKER, move || {
                let retention = retention.clone();
                async move { retention.round().await }
            });
    }

    /// Starts the worker that carries out the sends, with the doors' `carriers`.
    pub fn spawn_send_worker(&self, carriers: Carriers) {
        let sends = self.sends.clone();
        self.maintenance
            .spawn_leased(strata_services::sends::WORKER, move || {
                let (sends, carriers) = (sends.clone(), carriers.clone());
                async move { sends.round(&carriers).await }
            });
    }

    /// Sends to other archives.
    pub fn sends(&self) -> &Sends {
        &self.sends
    }

    /// Stops the background workers and hands their leases over to the other nodes.
    pub async fn stop_workers(&self) {
        self.maintenance.stop_workers().await;
    }

    /// This process as a node of the archive: its id and role.
    pub fn node(&self) -> &Node {
        self.maintenance.node()
    }
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub index_ok: bool,
    pub replicas_reachable: usize,
    pub replicas: usize,
    pub write_quorum: usize,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.index_ok && self.replicas_reachable >= self.write_quorum
    }
}

/// Rebuilds the index from one replica alone (1-based `replica_no`): every blob on it, then the
/// decision journal replayed in order. The new index is built beside the old one and moved into
/// place at the end, so a failed reindex leaves the old index untouched. The archive must not be
/// serving while this runs.
/// With `replica_no` None, the index is rebuilt from the cold stores alone (`tiers.stores`):
/// the instances whose shards they hold, without the journal and the audit trail, which only
/// the replicas keep. Either way the cold stores' blobs that the replica lacks are indexed
/// from their shards, and the tiers recorded.
pub async fn reindex(
    config: &Config,
    replica_no: Option<usize>,
) -> Result<ReindexReport, ServiceError> {
    let _lock = ServeLock::acquire(config)?;
    let store = open_store(config)?;
    let r = match replica_no {
        Some(n) => Some(replica_index(&store, n)?),
        None if config.tiers.enabled() => None,
        None => {
            return Err(ServiceError::Invalid(
                "--from-shards: no cold stores are configured (tiers.stores)".into(),
            ))
        }
    };
    match config.index_location() {
        IndexLocation::Sqlite(final_path) => {
            let tmp_path = final_path.with_extension("sqlite.reindex");
            remove_db(&tmp_path);
            let index = Index::open_keyed(
                &tmp_path,
                Arc::new(Metrics::new()),
                store.audit_key().clone(),
            )?;
            let report = rebuild_into(&store, &index, r, config).await?;
            remove_db(&final_path);
            std::fs::rename(&tmp_path, &final_path).map_err(|e| {
                ServiceError::Setup(format!("moving the new index into place: {e}"))
            })?;
            Ok(report)
        }
        // Built in a schema beside the archive's, which it replaces in one transaction.
        IndexLocation::Postgres(url) => {
            strata_index::postgres_drop_schema(&url, PG_REINDEX_SCHEMA)?;
            let index = Index::open_postgres(
                &url,
                PG_REINDEX_SCHEMA,
                Arc::new(Metrics::new()),
                Some(store.audit_key().clone()),
            )?;
            let report = rebuild_into(&store, &index, r, config).await?;
            strata_index::postgres_replace_schema(&url, PG_REINDEX_SCHEMA, PG_SCHEMA)?;
            Ok(report)
        }
    }
}

/// The 0-based position of replica `replica_no` (1-based, as the command line names it).
fn replica_index(store: &Store, replica_no: usize) -> Result<usize, ServiceError> {
    if replica_no == 0 || replica_no > store.replicas().len() {
        return Err(ServiceError::Setup(format!(
            "--from-replica {replica_no}: the archive has replicas 1 to {}",
            store.replicas().len()
        )));
    }
    Ok(replica_no - 1)
}

/// Rebuilds `index` from replica `r` (0-based; None: none) and the cold stores, and closes it.
async fn rebuild_into(
    store: &Store,
    index: &Index,
    r: Option<usize>,
    config: &Config,
) -> Result<ReindexReport, ServiceError> {
    let mut report = match r {
        Some(r) => {
            rebuild(
                store,
                index,
                r,
                &config.data_dir,
                config.ingest.spool_threshold_bytes,
            )
            .await?
        }
        None => ReindexReport::default(),
    };
    if let Some(shards) = open_shards(&config.tiers, store.master_key())? {
        let known = index.blob_ids().await?.into_iter().collect();
        let cold =
            strata_services::tiers::reindex_cold(&shards, index, &known, strata_core::now_ms())
                .await?;
        report.cold_blobs = cold.blobs;
        report.cold_indexed = cold.indexed;
        report.indexed += cold.indexed;
        report.unreadable.extend(cold.unreadable);
        // what the journal removed must stay removed among the cold blobs too
        if let Some(r) = r {
            strata_services::reindex::reapply_removals(store, index, r).await?;
        }
    }
    index.close().await?;
    Ok(report)
}

/// Copies the archive's index into the empty PostgreSQL database at `url` by rebuilding it from
/// replica `replica_no` (1-based), as a reindex would: everything the index holds comes from the
/// replicas (instances, the decision journal, the sealed audit trail). The archive then runs on
/// PostgreSQL once `index.url` names it. The archive must not be serving while this runs.
pub async fn migrate_index_to(
    config: &Config,
    url: &str,
    replica_no: usize,
) -> Result<ReindexReport, ServiceError> {
    let _lock = ServeLock::acquire(config)?;
    let store = open_store(config)?;
    let r = Some(replica_index(&store, replica_no)?);
    if !strata_index::postgres_is_empty(url, PG_SCHEMA)? {
        return Err(ServiceError::Setup(format!(
            "{}: its index already holds instances; migrate into an empty database",
            strata_index::redacted_url(url)
        )));
    }
    strata_index::postgres_drop_schema(url, PG_REINDEX_SCHEMA)?;
    let index = Index::open_postgres(
        url,
        PG_REINDEX_SCHEMA,
        Arc::new(Metrics::new()),
        Some(store.audit_key().clone()),
    )?;
    let report = rebuild_into(&store, &index, r, config).await?;
    strata_index::postgres_replace_schema(url, PG_REINDEX_SCHEMA, PG_SCHEMA)?;
    Ok(report)
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
