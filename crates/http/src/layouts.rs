//! The viewer's hanging protocols: `GET /api/viewer/layouts` answers the archive's rules
//! (`[[hanging]]` in the configuration: modality, body part, series description → layout, and
//! whether the prior goes beside the study) and the caller's own layouts, per kind of study
//! (its modality, or modality and body part), which the viewer applies first. `PUT` remembers
//! one (`{kind, layout, prior}`), `DELETE ?kind=` forgets it. A reader's own preferences: no
//! patient data, so not audited; any role that may open the viewer.

use crate::accounts::body;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::config::HANGING_LAYOUTS;
use strata_services::auth::Permission;

pub fn router() -> Router<Arc<Archive>> {
    Router::new().route(
        "/api/viewer/layouts",
        get(read).put(remember).delete(forget),
    )
}

/// A reader's layout for a kind of study.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Mine {
    kind: String,
    layout: String,
    #[serde(default)]
    prior: bool,
}

/// A kind of study: a modality, or a modality and a body part (`CT` or `CT/CHEST`), in the
/// characters of a Code String.
fn kind(k: &str) -> Result<String, Problem> {
    let cs = |s: &str| {
        !s.is_empty()
            && s.len() <= 16
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ')
    };
    let ok = match k.split_once('/') {
        Some((m, b)) => cs(m) && cs(b),
        None => cs(k),
    };
    if ok {
        Ok(k.to_string())
    } else {
        Err(Problem::bad_request(format!(
            "kind {:?} is not a modality or modality/body part (Code String, 16 characters each)",
            strata_core::audit::capped(k, 40)
        )))
    }
}

/// `GET /api/viewer/layouts`
async fn read(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Metadata)?;
    let rows = archive
        .index()
        .viewer_layouts(caller.principal.user.clone())
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    let mine: Vec<Value> = rows
        .into_iter()
        .filter_map(|(_, layout)| serde_json::from_str(&layout).ok())
        .collect();
    Ok(Json(json!({
        "rules": archive.config().hanging,
        "mine": mine,
    })))
}

/// `PUT /api/viewer/layouts`
async fn remember(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<Mine>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Metadata)?;
    let mine = body(b, "{kind, layout, prior}")?;
    let kind = kind(&mine.kind)?;
    if !HANGING_LAYOUTS.contains(&mine.layout.as_str()) {
        return Err(Problem::bad_request(format!(
            "layout {:?} is not one of {}",
            strata_core::audit::capped(&mine.layout, 16),
            HANGING_LAYOUTS.join(", ")
        )));
    }
    if mine.prior && mine.layout == "1x1" {
        return Err(Problem::bad_request(
            "a prior beside the study needs two viewports (1x2 or 2x2)",
        ));
    }
    let stored = serde_json::to_string(&mine).map_err(Problem::internal)?;
    archive
        .index()
        .put_viewer_layout(caller.principal.user.clone(), kind, Some(stored))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/viewer/layouts?kind=`
async fn forget(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Metadata)?;
    let k = q
        .get("kind")
        .ok_or_else(|| Problem::bad_request("the kind parameter is required"))?;
    let kind = kind(k)?;
    archive
        .index()
        .put_viewer_layout(caller.principal.user.clone(), kind, None)
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
