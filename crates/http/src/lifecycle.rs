//! A record's end over HTTP, for administrators ([`Permission::Retention`]):
//!
//! - `GET /api/holds[?all=true]`, `POST /api/holds {person | study, reason}`,
//!   `POST /api/holds/{id}/release`: legal holds; nothing under one can be deleted.
//! - `GET /api/expiry`, `POST /api/expiry` (propose a batch now), `GET /api/expiry/{id}`,
//!   `POST /api/expiry/{id}/approve`, `POST /api/expiry/{id}/dismiss`: batches of studies past
//!   retention; the expiry worker deletes an approved batch.
//! - `GET /api/rejections`: the instances rejection notes took out of use, not yet purged.
//!
//! Every call is audited.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_services::auth::Permission;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/holds", get(holds).post(place))
        .route("/api/holds/{id}/release", post(release))
        .route("/api/expiry", get(batches).post(propose))
        .route("/api/expiry/{id}", get(batch))
        .route("/api/expiry/{id}/approve", post(approve))
        .route("/api/expiry/{id}/dismiss", post(dismiss))
        .route("/api/rejections", get(rejections))
}

/// Records `event` of the caller's call; the answer goes out only once it is committed.
async fn audited(
    a: &Archive,
    caller: &Caller,
    action: &str,
    detail: String,
) -> Result<(), Problem> {
    let event = caller.event(action, Outcome::Success).detail(detail);
    a.audit().record(event).await.map_err(Problem::internal)
}

#[derive(Deserialize)]
struct HoldsQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /api/holds`: the holds in force (`?all=true`: released ones too).
async fn holds(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HoldsQuery>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    let list = a.retention().holds(!q.all).await?;
    audited(
        &a,
        &caller,
        "http.holds.list",
        format!("{} holds", list.len()),
    )
    .await?;
    Ok(Json(json!(list)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHold {
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    study: Option<String>,
    reason: String,
}

/// `POST /api/holds {person | study, reason}`: places a hold (201 with its id).
async fn place(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewHold>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Permission::Retention)?;
    let Json(new) = body.map_err(|e| {
        Problem::bad_request(format!(
            r#"expected JSON {{"person": id}} or {{"study": uid}} with "reason": {}"#,
            e.body_text()
        ))
    })?;
    let target = match (&new.person, &new.study) {
        (Some(p), _) => format!("person {p}"),
        (_, Some(s)) => format!("study {s}"),
        _ => String::new(),
    };
    let id = a
        .retention()
        .place_hold(
            new.person,
            new.study.clone(),
            new.reason,
            &caller.principal.user,
        )
        .await?;
    let event = caller
        .event("hold.place", Outcome::Success)
        .patient(None, new.study)
        .detail(format!("hold {id} on {target}"));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

/// `POST /api/holds/{id}/release`: releases a hold in force.
async fn release(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    let hold = a
        .retention()
        .release_hold(id, &caller.principal.user)
        .await?;
    let event = caller
        .event("hold.release", Outcome::Success)
        .patient(None, hold.study_uid.clone())
        .detail(format!("hold {id}"));
    a.audit().record(event).await.map_err(Problem::internal)?;
    Ok(Json(json!({"id": id, "released": true})))
}

/// `GET /api/expiry`: the latest expiry batches.
async fn batches(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    let list = a.retention().batches().await?;
    audited(
        &a,
        &caller,
        "http.expiry.list",
        format!("{} batches", list.len()),
    )
    .await?;
    Ok(Json(json!(list)))
}

/// `POST /api/expiry`: proposes a batch of the studies past retention now (201 with its id;
/// 200 with a null id when there are none).
async fn propose(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Permission::Retention)?;
    let id = a
        .retention()
        .propose(&caller.principal.user, caller.principal.role_name())
        .await?;
    let status = if id.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"id": id}))))
}

/// `GET /api/expiry/{id}`: a batch with its studies.
async fn batch(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    let (batch, items) = a.retention().batch(id).await?;
    audited(&a, &caller, "http.expiry.read", format!("batch {id}")).await?;
    Ok(Json(json!({"batch": batch, "studies": items})))
}

/// `POST /api/expiry/{id}/approve`: the expiry worker deletes the batch's studies (each
/// checked again for holds and retention at its turn).
async fn approve(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    a.retention()
        .approve(id, &caller.principal.user, caller.principal.role_name())
        .await?;
    Ok(Json(json!({"id": id, "state": "approved"})))
}

/// `POST /api/expiry/{id}/dismiss`: nothing of the batch is deleted.
async fn dismiss(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    a.retention()
        .dismiss(id, &caller.principal.user, caller.principal.role_name())
        .await?;
    Ok(Json(json!({"id": id, "state": "dismissed"})))
}

/// `GET /api/rejections`: the instances rejection notes took out of use and not yet purged,
/// earliest first (at most 1000).
async fn rejections(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Retention)?;
    let list = a
        .index()
        .rejected_instances(None, None, 1000)
        .await
        .map_err(Problem::internal)?;
    audited(
        &a,
        &caller,
        "http.rejections.list",
        format!("{} instances", list.len()),
    )
    .await?;
    Ok(Json(json!(list)))
}
