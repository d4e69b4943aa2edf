//! DICOMweb (PS3.18) under `/dicomweb`: [`qido`] searches the index, [`wado`] reads instances and
//! their metadata back, [`rendered`] serves them as pictures through the render pool, [`stow`]
//! stores through the one ingest path. Every route is behind
//! authentication (the server adds it) and writes an audit event for the patient data it touches.
//! Whose data a caller may see is its [`strata_index::Scope`], which every route hands to the
//! index's reads: a patient's search finds only their own studies, and anything else answers
//! 404 as if it were not there.

pub mod delete;
pub mod qido;
pub mod rendered;
pub mod stow;
pub mod wado;
pub mod wado_uri;

use crate::problem::Problem;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use strata_archive::Archive;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/dicomweb/studies", get(qido::studies).post(stow::studies))
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
        .route(
            "/dicomweb/studies/{study}",
            get(wado::study).post(stow::study).delete(delete::study),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}",
            get(wado::series).delete(delete::series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}",
            get(wado::instance).delete(delete::instance),
        )
        .route("/wado", get(wado_uri::wado))
        .route(
            "/dicomweb/studies/{study}/metadata",
            get(wado::study_metadata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::instance_metadata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(wado::frames),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}",
            get(wado::bulkdata),
        )
        .route("/dicomweb/studies/{study}/rendered", get(rendered::study))
        .route(
            "/dicomweb/studies/{study}/series/{series}/rendered",
            get(rendered::series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(rendered::instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(rendered::frames),
        )
        .route(
            "/dicomweb/studies/{study}/thumbnail",
            get(rendered::study_thumbnail),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/thumbnail",
            get(rendered::series_thumbnail),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(rendered::instance_thumbnail),
        )
}

/// The base of URLs handed to clients (RetrieveURL, BulkDataURI).
pub fn base_url(archive: &Archive) -> String {
    archive
        .public_url()
        .unwrap_or("http://localhost")
        .to_string()
}

/// A UID from the path, refused with 400 unless it is a valid UID.
pub fn path_uid(value: &str, what: &str) -> Result<String, Problem> {
    if strata_dicom::is_valid_uid(value) {
        Ok(value.to_string())
    } else {
        Err(Problem::bad_request(format!(
            "{what} {value:?} is not a valid DICOM UID"
        )))
    }
}
