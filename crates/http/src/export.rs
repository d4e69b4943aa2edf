//! Media export over HTTP: studies, or a person's whole record, as a ZIP of PS3.10 media
//! (see [`strata_services::media`]), streamed as it is built. `GET /api/export?study=UID
//! [&study=UID...]` or `?person=ID` for the web app; a WADO-RS retrieve of a study or series
//! with `Accept: application/zip` answers the same ZIP ([`crate::dicomweb::wado`]).
//!
//! Exporting needs [`Permission::Export`]; what a caller may export is its scope (a patient
//! exports their own studies; anything else is 404). Every export is audited as a read of
//! patient data, one event per study, before the first byte goes out.

use crate::auth::Caller;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_services::auth::Permission;
use strata_services::media::Export;

/// Most studies one export may name: a person's record is one request whatever its size, but
/// a hand-made list that long is a mistake.
const MAX_STUDIES: usize = 1000;

pub fn router() -> Router<Arc<Archive>> {
    Router::new().route("/api/export", get(export))
}

/// `GET /api/export?study=UID&study=UID` or `?person=ID`.
async fn export(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    caller.require(Permission::Export)?;
    let (mut studies, mut person) = (Vec::new(), None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "study" => studies.push(crate::dicomweb::path_uid(&v, "study")?),
            "person" => person = Some(person_id(&v)?),
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter {other:.32}: give study=UID (once or more) or person=ID"
                )))
            }
        }
    }
    let (found, name) = match (person, studies.len()) {
        (Some(_), n) if n > 0 => {
            return Err(Problem::bad_request("give studies or a person, not both"))
        }
        (Some(p), _) => (
            archive.media().person(&p, caller.scope()).await,
            format!("person-{p}"),
        ),
        (None, 0) => {
            return Err(Problem::bad_request(
                "give study=UID (once or more) or person=ID",
            ))
        }
        (None, n) if n > MAX_STUDIES => {
            return Err(Problem::bad_request(format!(
                "at most {MAX_STUDIES} studies in one export"
            )))
        }
        (None, 1) => (
            archive.media().studies(&studies, caller.scope()).await,
            format!("study-{}", studies[0]),
        ),
        (None, _) => (
            archive.media().studies(&studies, caller.scope()).await,
            "studies".to_string(),
        ),
    };
    answer(archive, &caller, "http.export", found?, &name).await
}

/// A person id: hex, as the MPI makes them.
pub(crate) fn person_id(id: &str) -> Result<String, Problem> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Problem::bad_request(format!(
            "{id:.70?} is not a person id"
        )))
    }
}

/// Audits the export, one event per study, then answers the ZIP as `name`.zip.
pub async fn answer(
    archive: Arc<Archive>,
    caller: &Caller,
    action: &str,
    export: Export,
    name: &str,
) -> Result<Response, Problem> {
    for s in &export.studies {
        let event = caller
            .event(action, Outcome::Success)
            .patient(Some(s.patient_id.clone()), Some(s.study_uid.clone()))
            .detail(format!("media ZIP, {} instances", s.instances));
        archive
            .audit()
            .record_read(event)
            .await
            .map_err(Problem::internal)?;
    }
    let source = crate::dicomweb::base_url(&archive);
    let body = archive.media().zip(export, &source);
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.zip\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
