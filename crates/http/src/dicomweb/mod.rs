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
pub mod stow_client;
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

/// Most frames one request may name: more than a viewer asks for at once, few enough that the
/// answer stays bounded.
pub const MAX_FRAMES_PER_REQUEST: usize = 1024;

/// A frame list from the path (PS3.18 8.3.3.1: `1,3,5`), 1-based, each frame once in the order
/// first named: a list that names one frame thousands of times gets it once. Refused with 400
/// when a number is not a frame number or the list names more than
/// [`MAX_FRAMES_PER_REQUEST`] frames.
pub fn frame_list(list: &str) -> Result<Vec<u32>, Problem> {
    let mut seen = std::collections::HashSet::new();
    let mut wanted = Vec::new();
    for n in list.split(',') {
        let n = n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "frame list {list:.64}: {n:.16} is not a frame number (they start at 1)"
                ))
            })?;
        if seen.insert(n) {
            wanted.push(n);
            if wanted.len() > MAX_FRAMES_PER_REQUEST {
                return Err(Problem::bad_request(format!(
                    "the frame list names more than {MAX_FRAMES_PER_REQUEST} frames; ask for \
                     them in several requests"
                )));
            }
        }
    }
    Ok(wanted)
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

/// A stored instance's windows as a response body, read as it is sent; the instance's share of
/// the read budget (when it was converted) is held until the body ends.
pub(crate) fn window_stream(
    windows: strata_services::reads::Windows,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send {
    futures::stream::unfold(Some(windows), |w| async move {
        let mut w = w?;
        match w.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(w))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists_are_deduplicated_capped_and_checked() {
        assert_eq!(frame_list("3,1,3,2,1").unwrap(), [3, 1, 2]);
        let repeated = vec!["1"; 8000].join(",");
        assert_eq!(frame_list(&repeated).unwrap(), [1]);
        let many: Vec<String> = (1..=1025).map(|n| n.to_string()).collect();
        assert!(frame_list(&many.join(",")).is_err());
        assert_eq!(frame_list(&many[..1024].join(",")).unwrap().len(), 1024);
        for bad in ["0", "1,,2", "x", "-1", "1.5"] {
            assert!(frame_list(bad).is_err(), "{bad}");
        }
    }
}
