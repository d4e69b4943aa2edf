//! DICOMweb (PS3.18) under `/dicomweb`: [`qido`] searches the index, [`wado`] reads instances and
//! their metadata back, [`stow`] stores through the one ingest path. Every route is behind
//! authentication (the server adds it) and writes an audit event for the patient data it touches.

pub mod qido;

use crate::archive::Archive;
use crate::problem::Problem;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/dicomweb/studies", get(qido::studies))
        .route("/dicomweb/series", get(qido::series))
        .route("/dicomweb/instances", get(qido::instances))
        .route("/dicomweb/studies/{study}/series", get(qido::study_series))
        .route(
            "/dicomweb/studies/{study}/instances",
            get(qido::study_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances",
            get(qido::series_instances),
        )
}

/// A UID from the path, refused with 400 unless it is a valid UID.
pub fn path_uid(value: &str, what: &str) -> Result<String, Problem> {
    if crate::ingest::is_valid_uid(value) {
        Ok(value.to_string())
    } else {
        Err(Problem::bad_request(format!(
            "{what} {value:?} is not a valid DICOM UID"
        )))
    }
}
