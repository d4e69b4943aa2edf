//! The tiers as a reader meets them: `POST /api/studies/{study}/restore` says whether a study is
//! on the replicas or coming back from the cold tier (blobs done of all), and starts bringing a
//! cold study back. The viewer asks before it opens a study, and says "retrieving from cold
//! storage" with the progress until the study is hot; every other door restores on its first
//! read. For whoever may view the study ([`Permission::Rendered`], within the caller's scope).

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Extension, Json, Router};
use std::sync::Arc;
use strata_archive::Archive;
use strata_services::auth::Permission;
use strata_services::tiers::Availability;

pub fn router() -> Router<Arc<Archive>> {
    Router::new().route("/api/studies/{study}/restore", post(restore))
}

async fn restore(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(study): Path<String>,
) -> Result<Json<Availability>, Problem> {
    caller.require(Permission::Rendered)?;
    let study = crate::dicomweb::path_uid(&study, "study")?;
    // outside the caller's scope the study does not exist
    a.reads()
        .resolve(&study, None, None, caller.scope())
        .await
        .map_err(Problem::from)?;
    Ok(Json(a.tiers().availability(&study, true).await?))
}
