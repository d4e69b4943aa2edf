//! The AE table over HTTP, as `strata ae` has it: list the C-MOVE destinations (those of
//! strata.toml and those managed at run time), add or change a managed one, remove one.
//! Changes are the administrators'; the list is also for those who may send studies to one
//! (integrators). Every call, the list included, writes an audit event.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_core::config::DimsePeer;
use strata_services::admin::valid_ae_title;
use strata_services::auth::Permission;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/ae", get(list))
        .route("/api/ae/{aet}", put(set).delete(remove))
}

/// One C-MOVE destination as the API shows it.
#[derive(Serialize)]
struct Entry {
    aet: String,
    host: String,
    port: u16,
    tls: bool,
    /// False for a destination of strata.toml, which only the file changes.
    managed: bool,
}

impl Entry {
    fn of(p: DimsePeer, managed: bool) -> Entry {
        Entry {
            aet: p.aet,
            host: p.host,
            port: p.port,
            tls: p.tls,
            managed,
        }
    }
}

/// `GET /api/ae`: the destinations of strata.toml, then the managed ones (admin).
async fn list(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Entry>>, Problem> {
    // those who may send choose a destination from it; changing it is the administrator's
    caller.require(Permission::Send)?;
    let (configured, managed) = a.admin().peers().await.map_err(Problem::from)?;
    let list: Vec<Entry> = configured
        .into_iter()
        .map(|p| Entry::of(p, false))
        .chain(managed.into_iter().map(|p| Entry::of(p, true)))
        .collect();
    let n = list.len();
    let event = caller
        .event("http.ae.list", Outcome::Success)
        .detail(format!("{n} AE title{}", if n == 1 { "" } else { "s" }));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Destination {
    host: String,
    port: u16,
}

/// `PUT /api/ae/{aet}` `{host, port}`: adds or changes a managed destination (admin); at once,
/// also for the running DIMSE door, like `strata ae add`.
async fn set(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(aet): Path<String>,
    b: Result<Json<Destination>, JsonRejection>,
) -> Result<Json<Entry>, Problem> {
    caller.require(Permission::Administer)?;
    let Json(d) =
        b.map_err(|e| Problem::bad_request(format!("expected JSON {{\"host\", \"port\"}}: {e}")))?;
    let peer = a
        .admin()
        .add_peer(&aet, &d.host, d.port)
        .await
        .map_err(Problem::from)?;
    let event = caller
        .event("http.ae.set", Outcome::Success)
        .detail(format!("{} at {}:{}", peer.aet, peer.host, peer.port));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(Entry::of(peer, true)))
}

/// `DELETE /api/ae/{aet}`: removes a managed destination (admin), like `strata ae remove`.
async fn remove(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(aet): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Administer)?;
    if !valid_ae_title(&aet) {
        return Err(Problem::bad_request(format!(
            "{:?} is not an AE title (1 to 16 characters, no backslash)",
            strata_core::audit::capped(&aet, 32)
        )));
    }
    if !a.admin().remove_peer(&aet).await.map_err(Problem::from)? {
        return Err(Problem::not_found(format!("no managed AE titled {aet}")));
    }
    let event = caller
        .event("http.ae.remove", Outcome::Success)
        .detail(aet.to_string());
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
