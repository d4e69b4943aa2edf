//! Sends and shares over HTTP. A send pushes studies to another archive — an AE of the AE
//! table by C-STORE, or a configured DICOMweb peer by STOW-RS — as a background job whose
//! progress and per-instance outcomes can be read, and whose failed instances can be tried
//! again. A share is a time-limited, read-only DICOMweb token for chosen studies, for a
//! receiving system to pull them; it can be listed and revoked.
//!
//! Both need [`Permission::Send`] (admin, integrator). Making a send or a share writes an
//! audit event per study; reading them, one event per call.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_services::auth::Permission;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/sends", get(list).post(create))
        .route("/api/sends/{id}", get(one))
        .route("/api/sends/{id}/retry", post(retry))
        .route("/api/dicomweb-peers", get(peers))
        .route("/api/shares", get(shares).post(share))
        .route("/api/shares/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSend {
    studies: Vec<String>,
    to: To,
}

/// Where a send goes: `{"ae": "TITLE"}` or `{"dicomweb": "name"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum To {
    Ae(String),
    Dicomweb(String),
}

fn bad_json(e: JsonRejection, shape: &str) -> Problem {
    Problem::bad_request(format!("expected JSON {shape}: {}", e.body_text()))
}

/// `POST /api/sends` `{studies, to}`: queues a send; 202 with the job.
async fn create(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewSend>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    caller.require(Permission::Send)?;
    let Json(new) = body.map_err(|e| {
        bad_json(
            e,
            r#"{"studies": [uid, ...], "to": {"ae": "TITLE"} or {"dicomweb": "name"}}"#,
        )
    })?;
    let (kind, name) = match &new.to {
        To::Ae(n) => ("ae", n.as_str()),
        To::Dicomweb(n) => ("dicomweb", n.as_str()),
    };
    let sends = a.sends();
    let target = sends.target(kind, name).await.map_err(Problem::from)?;
    let job = sends
        .create(
            &caller.principal.user,
            caller.principal.role_name(),
            &caller.remote,
            &new.studies,
            &target,
        )
        .await
        .map_err(Problem::from)?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!(job))))
}

/// `GET /api/sends`: the 100 most recent sends, with their counts.
async fn list(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Send)?;
    let jobs = a.sends().list(100).await.map_err(Problem::from)?;
    let event = caller
        .event("http.sends.list", Outcome::Success)
        .detail(format!("{} sends", jobs.len()));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(serde_json::json!(jobs)))
}

/// `GET /api/sends/{id}`: a send with every instance's outcome.
async fn one(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Send)?;
    let view = a
        .sends()
        .get(id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| Problem::not_found(format!("no send {id}")))?;
    let event = caller
        .event("http.sends.read", Outcome::Success)
        .detail(format!("send {id}"));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(serde_json::json!(view)))
}

/// `POST /api/sends/{id}/retry`: the failed instances of a send are queued again.
async fn retry(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Send)?;
    let n = a
        .sends()
        .retry(id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| Problem::not_found(format!("no send {id}")))?;
    let event = caller
        .event("http.sends.retry", Outcome::Success)
        .detail(format!("send {id}: {n} failed instances queued again"));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(serde_json::json!({"id": id, "requeued": n})))
}

/// `GET /api/dicomweb-peers`: the configured DICOMweb peers a send may name (names and URLs;
/// never their credentials).
async fn peers(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Send)?;
    let list: Vec<serde_json::Value> = a
        .sends()
        .dicomweb_peers()
        .into_iter()
        .map(|(name, url)| serde_json::json!({"name": name, "url": url}))
        .collect();
    Ok(Json(serde_json::json!(list)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShare {
    studies: Vec<String>,
    /// How long the token lasts (fractions of an hour allowed).
    valid_hours: f64,
    #[serde(default)]
    label: Option<String>,
}

/// `POST /api/shares` `{studies, valid_hours, label?}`: a read-only DICOMweb token for those
/// studies, shown once (201).
async fn share(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewShare>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    caller.require(Permission::Send)?;
    let Json(new) = body.map_err(|e| {
        bad_json(
            e,
            r#"{"studies": [uid, ...], "valid_hours": n, "label": "..."}"#,
        )
    })?;
    // only what is here can be shared, and each study shared is audited with its patient
    let mut patients = Vec::new();
    for study in &new.studies {
        let found = a
            .index()
            .instances_under(study.clone(), None, None, caller.scope())
            .await
            .map_err(Problem::internal)?;
        let first = found
            .first()
            .ok_or_else(|| Problem::not_found(format!("no study {study}")))?;
        patients.push(first.patient_id.clone());
    }
    let (id, token) = a
        .access()
        .create_share(
            &caller.principal.user,
            new.label.clone(),
            new.studies.clone(),
            new.valid_hours,
        )
        .await
        .map_err(Problem::from)?;
    for (study, patient) in new.studies.iter().zip(patients) {
        let event = caller
            .event("http.share", Outcome::Success)
            .patient(Some(patient), Some(study.clone()))
            .detail(format!(
                "share {id}, read-only for {} hours",
                new.valid_hours
            ));
        a.audit().record(event).await.map_err(Problem::internal)?;
    }
    let shares = a.access().shares().await.map_err(Problem::from)?;
    let made = shares.into_iter().find(|s| s.id == id);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": id, "token": token, "share": made})),
    ))
}

/// `GET /api/shares`: every share, live or not (never their tokens).
async fn shares(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Send)?;
    let list = a.access().shares().await.map_err(Problem::from)?;
    let event = caller
        .event("http.shares.list", Outcome::Success)
        .detail(format!("{} shares", list.len()));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(serde_json::json!(list)))
}

/// `DELETE /api/shares/{id}`: revokes a share at once (204).
async fn revoke(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Send)?;
    if !a.access().revoke_share(id).await.map_err(Problem::from)? {
        return Err(Problem::not_found(format!("no live share {id}")));
    }
    let event = caller
        .event("http.share.revoke", Outcome::Success)
        .detail(format!("share {id}"));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
