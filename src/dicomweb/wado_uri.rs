//! WADO-URI (PS3.18 9): `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…` with
//! `contentType=application/dicom` (and optionally `transferSyntax`). Rendered content types
//! (image/jpeg, the standard's default) belong to the rendering pipeline and are answered 406
//! until it exists.

use super::path_uid;
use crate::archive::Archive;
use crate::audit::Outcome;
use crate::auth::http::Caller;
use crate::auth::Permission;
use crate::problem::Problem;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::collections::HashMap;
use std::sync::Arc;

pub async fn wado(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("requestType") != "WADO" {
        return Err(Problem::bad_request("requestType must be WADO"));
    }
    let study = path_uid(get("studyUID"), "studyUID")?;
    let series = path_uid(get("seriesUID"), "seriesUID")?;
    let sop = path_uid(get("objectUID"), "objectUID")?;
    let content_type = q
        .get("contentType")
        .map(String::as_str)
        .unwrap_or("image/jpeg");
    if content_type != "application/dicom" {
        return Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("contentType {content_type}: only application/dicom is served here"),
        ));
    }
    c.require(Permission::OriginalPixels)?;
    let target = match q.get("transferSyntax") {
        Some(ts) => Some(path_uid(ts, "transferSyntax")?),
        None => None,
    };
    let refs = a
        .index
        .instances_under(study.clone(), Some(series), Some(sop))
        .await
        .map_err(Problem::internal)?;
    let r = refs
        .first()
        .ok_or_else(|| Problem::not_found("no such instance"))?;
    let bytes = a
        .part10(&r.blob_id, &r.transfer_syntax, target.as_deref())
        .await?;
    let event = c
        .event("http.wado_uri", Outcome::Success)
        .patient(Some(r.patient_id.clone()), Some(study));
    a.index
        .audit(event.detail(r.sop_uid.clone()))
        .await
        .map_err(Problem::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/dicom")], bytes).into_response())
}
