//! WADO-URI (PS3.18 9): `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…`.
//! `contentType=application/dicom` (optionally with `transferSyntax`) is the stored instance;
//! image/jpeg (the standard's default) and image/png are a picture from the render pool, as
//! `/rendered` makes it, with `windowCenter`/`windowWidth`, `rows`/`columns` (the picture fits
//! in them), `frameNumber` and `imageQuality`.

use super::path_uid;
use super::rendered::{frame_count, picture, Format, Request};
use crate::auth::Caller;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::collections::HashMap;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::InstanceRef;
use strata_render::{Priority, VoiFunction, Window};
use strata_services::auth::Permission;

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
    // a list names the types the client takes, preferred first
    let chosen = content_type
        .split(',')
        .find_map(|t| match t.split(';').next().unwrap_or("").trim() {
            "application/dicom" => Some(None),
            "image/jpeg" | "image/*" | "*/*" => Some(Some(Format::Jpeg)),
            "image/png" => Some(Some(Format::Png)),
            _ => None,
        })
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "contentType {content_type}: served are application/dicom, image/jpeg, image/png"
                ),
            )
        })?;
    if let Some(format) = chosen {
        return rendered(&a, &c, &q, (study, series, sop), format).await;
    }
    c.require(Permission::OriginalPixels)?;
    let target = match q.get("transferSyntax") {
        Some(ts) => Some(path_uid(ts, "transferSyntax")?),
        None => None,
    };
    let r = &instance(&a, &c, &study, series, sop).await?;
    let windows = a
        .reads()
        .part10_windows(&r.blob_id, r.size, &r.transfer_syntax, target.as_deref())
        .await?;
    let event = c
        .event("http.wado_uri", Outcome::Success)
        .patient(Some(r.patient_id.clone()), Some(study));
    a.audit()
        .record_read(event.detail(r.sop_uid.clone()))
        .await
        .map_err(Problem::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/dicom".to_string()),
            (header::CONTENT_LENGTH, windows.len().to_string()),
        ],
        Body::from_stream(super::window_stream(windows)),
    )
        .into_response())
}

/// The one instance a WADO-URI request names, within the caller's scope.
async fn instance(
    a: &Archive,
    c: &Caller,
    study: &str,
    series: String,
    sop: String,
) -> Result<InstanceRef, Problem> {
    let refs = a
        .reads()
        .resolve(study, Some(&series), Some(&sop), c.scope())
        .await?;
    refs.into_iter()
        .next()
        .ok_or_else(|| Problem::not_found("no such instance"))
}

/// A picture of the instance, as `/rendered` makes it.
async fn rendered(
    a: &Archive,
    c: &Caller,
    q: &HashMap<String, String>,
    (study, series, sop): (String, String, String),
    format: Format,
) -> Result<Response, Problem> {
    c.require(Permission::Rendered)?;
    let num = |k: &str| -> Result<Option<f64>, Problem> {
        q.get(k)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| Problem::bad_request(format!("{k}={v:?} is not a number")))
            })
            .transpose()
    };
    let whole = |k: &str, max: u32| -> Result<Option<u32>, Problem> {
        q.get(k)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!("{k}={v:?}: a whole number from 1 to {max}"))
                    })
            })
            .transpose()
    };
    let window = match (num("windowCenter")?, num("windowWidth")?) {
        (Some(center), Some(width)) => {
            let w = Window {
                center,
                width,
                function: VoiFunction::Linear,
            };
            w.validate()
                .map_err(|e| Problem::bad_request(format!("windowWidth: {e}")))?;
            Some(w)
        }
        (None, None) => None,
        _ => {
            return Err(Problem::bad_request(
                "windowCenter and windowWidth go together",
            ))
        }
    };
    let viewport = match (whole("columns", 8192)?, whole("rows", 8192)?) {
        (None, None) => None,
        v => Some(v),
    };
    let req = Request {
        window,
        viewport,
        format,
        quality: whole("imageQuality", 100)?.unwrap_or(90) as u8,
    };
    let frame = whole("frameNumber", u32::MAX)?.unwrap_or(1) - 1;
    let r = &instance(a, c, &study, series, sop).await?;
    if frame >= frame_count(r) {
        return Err(Problem::not_found(format!(
            "frameNumber {}: the instance has {} frame(s)",
            frame + 1,
            frame_count(r)
        )));
    }
    let outcome = picture(a, r, frame, &req, Priority::Http).await;
    let event = c
        .event(
            "http.wado_uri",
            if outcome.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .patient(Some(r.patient_id.clone()), Some(study));
    a.audit()
        .record_read(event.detail(format!("{} as {}", r.sop_uid, format.media_type())))
        .await
        .map_err(Problem::internal)?;
    Ok(([(header::CONTENT_TYPE, format.media_type())], outcome?).into_response())
}
