//! DELETE of a study, series or instance: administrators only, audited, and refused with 409
//! while the data is under retention (see `strata_services::retention::retained_until`) or a
//! legal hold.

use super::path_uid;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_services::auth::Permission;
use strata_services::ServiceError;

async fn delete(
    archive: Arc<Archive>,
    caller: Caller,
    study: &str,
    series: Option<&str>,
    sop: Option<&str>,
) -> Result<Response, Problem> {
    caller.require(Permission::Delete)?;
    let study = path_uid(study, "study")?;
    let series = series.map(|s| path_uid(s, "series")).transpose()?;
    let sop = sop.map(|s| path_uid(s, "instance")).transpose()?;
    let refs = archive
        .reads()
        .resolve(&study, series.as_deref(), sop.as_deref(), caller.scope())
        .await?;
    let patient = refs[0].patient_id.clone();
    let sops: Vec<String> = refs.iter().map(|r| r.sop_uid.clone()).collect();
    let event = |outcome| {
        caller
            .event("http.delete", outcome)
            .patient(Some(patient.clone()), Some(study.clone()))
    };
    match archive.retention().delete_instances(sops).await {
        Ok(n) => {
            archive
                .audit()
                .record(event(Outcome::Success).detail(format!("{n} instances")))
                .await
                .map_err(Problem::internal)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e @ (ServiceError::Retained { .. } | ServiceError::Held { .. })) => {
            archive
                .audit()
                .record(event(Outcome::Denied).detail(e.to_string()))
                .await
                .map_err(Problem::internal)?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn study(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path(st): Path<String>,
) -> Result<Response, Problem> {
    delete(a, c, &st, None, None).await
}

pub async fn series(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path((st, se)): Path<(String, String)>,
) -> Result<Response, Problem> {
    delete(a, c, &st, Some(&se), None).await
}

pub async fn instance(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path((st, se, i)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    delete(a, c, &st, Some(&se), Some(&i)).await
}
