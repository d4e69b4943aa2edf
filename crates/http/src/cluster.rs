//! The archive as an operator runs it, for the console: the nodes serving it (from their
//! heartbeats), the replicas' health with the repair queue and the scrub, and what the tiers
//! hold and cost with how reads decay with age. Administrators only. Like `/api/workers` and
//! `/metrics` these hold no patient data (the decay is counts by age) and are not audited: the
//! console reads them every few seconds.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use std::sync::Arc;
use strata_archive::Archive;
use strata_services::auth::Permission;
use strata_services::maintenance::nodes::{NodeStatus, ALIVE_WITHIN, FORGET_AFTER, HEARTBEAT};

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/nodes", get(nodes))
        .route("/api/replicas", get(replicas))
        .route("/api/storage", get(storage))
        .route("/api/storage/decay", get(decay))
}

/// `GET /api/nodes`: every node that wrote a heartbeat within the last day (id, role, address,
/// version, when it started and was last seen, its load), each said alive when seen within
/// three heartbeats.
async fn nodes(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    let nodes: Vec<NodeStatus> = a.maintenance().nodes().await.map_err(Problem::from)?;
    Ok(Json(serde_json::json!({
        "this": a.node().id(),
        "heartbeat_seconds": HEARTBEAT.as_secs(),
        "alive_within_seconds": ALIVE_WITHIN.as_secs(),
        "forget_after_seconds": FORGET_AFTER.as_secs(),
        "nodes": nodes,
    })))
}

/// `GET /api/replicas`: each replica's URL (never its credentials) and whether it answers a
/// probe now, the write quorum, the repair queue's length and the scrub's progress.
async fn replicas(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    Ok(Json(
        a.maintenance().replicas().await.map_err(Problem::from)?,
    ))
}

/// `GET /api/storage`: bytes per tier and per store (URLs without credentials), with the
/// projected monthly cost from the configured prices.
async fn storage(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    Ok(Json(serde_json::json!(a.storage_use().await?)))
}

/// `GET /api/storage/decay`: reads per study against study age (quarters of a year, ten
/// years), from the audit trail, with the half-life fitted past the first year.
async fn decay(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    Ok(Json(serde_json::json!(a.access_decay().await?)))
}
