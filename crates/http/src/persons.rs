//! The person index's HTTP API: search persons, read one person (identities, studies across hospitals,
//! link history), the manual operations (link, unlink, merge, unmerge, demographics, review
//! decisions) and matching demographics without storing them. Searching and matching need the
//! FindPersons permission; reading one person needs Search, within the caller's scope (a patient
//! reads their own person only: any other is 404); every operation is an administrator's.
//! Every call is audited.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::{IndexError, MpiError, MpiOp, PersonSearch};
use strata_mpi::Identity;
use strata_mpi::LocalKey;
use strata_services::auth::Permission;
use strata_services::ServiceError;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/persons", get(search))
        .route("/api/persons/{id}", get(person))
        .route("/api/persons/{id}/link", post(link))
        .route("/api/persons/{id}/unlink", post(unlink))
        .route("/api/persons/{id}/merge", post(merge))
        .route("/api/persons/{id}/unmerge", post(unmerge))
        .route("/api/mpi/review", get(review_items))
        .route("/api/mpi/review/{id}", post(review))
        .route("/api/mpi/match", post(match_demographics))
        .route("/api/mpi/demographics", post(demographics))
        .route("/api/mpi/rematch", post(rematch))
}

fn problem(e: impl Into<ServiceError>) -> Problem {
    match e.into() {
        ServiceError::Index(IndexError::Mpi(e)) => {
            let status = match e {
                MpiError::NoPerson(_) | MpiError::NoKey { .. } | MpiError::NoReview(_) => {
                    StatusCode::NOT_FOUND
                }
                MpiError::Merged(..) | MpiError::Conflict(_) => StatusCode::CONFLICT,
            };
            Problem::new(status, e.to_string())
        }
        ServiceError::Index(IndexError::Journal(e)) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the decision could not be journaled on the replicas, so it was not made: {e}"),
        ),
        e => Problem::internal(e),
    }
}

/// A person id from the path: hex, as the MPI makes them.
fn person_id(id: &str) -> Result<String, Problem> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Problem::bad_request(format!("{id:?} is not a person id")))
    }
}

/// `GET /api/persons?name=&birthdate=&sex=&identifier=&study=&limit=`
async fn search(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PersonSearch>,
) -> Result<Json<Vec<strata_index::PersonSummary>>, Problem> {
    caller.require(Permission::FindPersons)?;
    if [&q.name, &q.birthdate, &q.sex, &q.identifier, &q.study]
        .iter()
        .all(|v| v.as_deref().is_none_or(str::is_empty))
    {
        return Err(Problem::bad_request(
            "give at least one of name, birthdate, sex, identifier, study",
        ));
    }
    let detail = format!(
        "name={:?} birthdate={:?} sex={:?} identifier={:?} study={:?}",
        q.name, q.birthdate, q.sex, q.identifier, q.study
    );
    let found = a.index().persons(q).await.map_err(problem)?;
    let _ = a
        .audit()
        .record(
            caller
                .event("mpi.search", Outcome::Success)
                .detail(format!("{detail}: {} persons", found.len())),
        )
        .await;
    Ok(Json(found))
}

/// `GET /api/persons/{id}`
async fn person(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<strata_index::PersonView>, Problem> {
    caller.require(Permission::Search)?;
    let id = person_id(&id)?;
    let view = a
        .index()
        .person(id.clone(), caller.scope())
        .await
        .map_err(problem)?;
    let Some(view) = view else {
        return Err(Problem::not_found(format!("no person {id}")));
    };
    let ids: Vec<String> = view
        .identifiers
        .iter()
        .map(|i| format!("{}/{}", i.issuer, i.patient_id))
        .collect();
    let _ = a
        .audit()
        .record(
            caller
                .event("mpi.person", Outcome::Success)
                .patient(view.identifiers.first().map(|i| i.patient_id.clone()), None)
                .detail(format!("person {id}: {}", ids.join(", "))),
        )
        .await;
    Ok(Json(view))
}

async fn operate(
    a: &Arc<Archive>,
    caller: &Caller,
    op: MpiOp,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    if let Err(p) = caller.require(Permission::Administer) {
        let _ = a
            .audit()
            .record(
                caller
                    .event("mpi.operation", Outcome::Denied)
                    .detail(format!("{op:?}")),
            )
            .await;
        return Err(p);
    }
    let audit = caller
        .event("mpi.operation", Outcome::Success)
        .detail(format!("{op:?}"));
    match a
        .persons()
        .apply(op.clone(), caller.principal.user.clone(), audit)
        .await
    {
        Ok(change) => Ok(Json(change)),
        Err(e) => {
            let _ = a
                .audit()
                .record(
                    caller
                        .event("mpi.operation", Outcome::Failure)
                        .detail(format!("{op:?}: {e}")),
                )
                .await;
            Err(problem(e))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    issuer: String,
    patient_id: String,
}

impl KeyBody {
    fn key(self) -> Result<LocalKey, Problem> {
        if self.patient_id.is_empty() {
            return Err(Problem::bad_request("patient_id must not be empty"));
        }
        Ok(LocalKey {
            issuer: strata_mpi::local_issuer(Some(&self.issuer), None),
            patient_id: self.patient_id,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    person: String,
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, Problem> {
    b.map(|Json(t)| t)
        .map_err(|e| Problem::bad_request(format!("request body: {}", e.body_text())))
}

/// `POST /api/persons/{id}/link` `{"issuer", "patient_id"}`: this key is this person.
async fn link(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<KeyBody>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let op = MpiOp::Link {
        person: person_id(&id)?,
        key: body(b)?.key()?,
    };
    operate(&a, &caller, op).await
}

/// `POST /api/persons/{id}/unlink` `{"issuer", "patient_id"}`: this key is someone else.
async fn unlink(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<KeyBody>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let op = MpiOp::Unlink {
        person: person_id(&id)?,
        key: body(b)?.key()?,
    };
    operate(&a, &caller, op).await
}

/// `POST /api/persons/{id}/merge` `{"person"}`: that person is this one.
async fn merge(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<PersonBody>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let op = MpiOp::Merge {
        into: person_id(&id)?,
        from: person_id(&body(b)?.person)?,
    };
    operate(&a, &caller, op).await
}

/// `POST /api/persons/{id}/unmerge` `{"person"}`: undo merging that person into this one.
async fn unmerge(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: JsonBody<PersonBody>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let op = MpiOp::Unmerge {
        into: person_id(&id)?,
        from: person_id(&body(b)?.person)?,
    };
    operate(&a, &caller, op).await
}

/// `POST /api/mpi/demographics` (an identity: `issuer`, `patient_id` and the fields to set):
/// correct a local key's demographics; later instances do not overwrite them.
async fn demographics(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: JsonBody<Identity>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let identity = body(b)?;
    let key = KeyBody {
        issuer: identity.issuer.clone(),
        patient_id: identity.patient_id.clone(),
    }
    .key()?;
    let identity = Identity {
        issuer: key.issuer.clone(),
        ..identity
    };
    operate(
        &a,
        &caller,
        MpiOp::Demographics {
            key,
            identity: Box::new(identity),
        },
    )
    .await
}

#[derive(Deserialize)]
struct ReviewQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /api/mpi/review[?all=true]`: the review queue (administrators).
async fn review_items(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ReviewQuery>,
) -> Result<Json<Vec<strata_index::ReviewItem>>, Problem> {
    caller.require(Permission::Administer)?;
    let items = a.index().review_items(q.all).await.map_err(problem)?;
    let _ = a
        .audit()
        .record(
            caller
                .event("mpi.review_list", Outcome::Success)
                .detail(format!("{} items", items.len())),
        )
        .await;
    Ok(Json(items))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    decision: String,
    person: Option<String>,
}

/// `POST /api/mpi/review/{id}` `{"decision": "accept", "person"}` or `{"decision": "reject"}`.
async fn review(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    b: JsonBody<ReviewBody>,
) -> Result<Json<strata_index::MpiChange>, Problem> {
    let b = body(b)?;
    let accept = match (b.decision.as_str(), b.person) {
        ("accept", Some(p)) => Some(person_id(&p)?),
        ("accept", None) => {
            return Err(Problem::bad_request(
                "accepting names the person the identity belongs to: {\"person\": ...}",
            ))
        }
        ("reject", _) => None,
        (other, _) => {
            return Err(Problem::bad_request(format!(
                "decision must be accept or reject, not {other:?}"
            )))
        }
    };
    operate(&a, &caller, MpiOp::Review { id, accept }).await
}

/// `POST /api/mpi/match`: demographics in, scored candidate persons out; nothing stored.
async fn match_demographics(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: JsonBody<Identity>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::FindPersons)?;
    let identity = body(b)?;
    let (decision, person, scored) = a.index().mpi_match(identity).await.map_err(problem)?;
    let _ = a
        .audit()
        .record(
            caller
                .event("mpi.match", Outcome::Success)
                .detail(format!("{} candidates", scored.len())),
        )
        .await;
    Ok(Json(serde_json::json!({
        "decision": decision,
        "person": person,
        "candidates": scored
            .into_iter()
            .map(|(person, score)| serde_json::json!({ "person": person, "score": score }))
            .collect::<Vec<_>>(),
    })))
}

/// `POST /api/mpi/rematch`: re-run the matcher over every key no person decided.
async fn rematch(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    let moved = a.persons().rematch().await.map_err(problem)?;
    let _ = a
        .audit()
        .record(
            caller
                .event("mpi.rematch", Outcome::Success)
                .detail(format!("{moved} identities moved")),
        )
        .await;
    Ok(Json(serde_json::json!({ "moved": moved })))
}
