//! What this node serves over HTTP, by its role (`node.role`). A request its role does not
//! serve is refused before anything else looks at it, with 421 Misdirected Request and a
//! problem body naming the node, its role and where to send the request instead: the load
//! balancer (or client) sent it to the wrong kind of node, and the same request to a node of
//! the right role succeeds.
//!
//! - `all`: everything.
//! - `render`: the viewer's side: every read (GET and HEAD: QIDO-RS, WADO-RS and WADO-URI,
//!   metadata, rendered pictures and thumbnails, the render stream, the persons, the statuses),
//!   signing in and out, a user's password change (a first sign-in may require it), and an
//!   access letter's opening and download (reads, for all that they are POSTs).
//!   Nothing that changes the archive: no STOW-RS, no deletion, no administration, no person
//!   index decision.
//! - `ingest`: everything but rendering: no rendered pictures, thumbnails or render stream.

use crate::problem::Problem;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::config::NodeRole;

/// Refuses, with 421, the requests this node's role does not serve.
pub async fn serve_only_the_role(
    State(a): State<Arc<Archive>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let node = a.node();
    if let Some(instead) = refusal(node.role(), request.method(), request.uri().path()) {
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "node {} has node.role = {}: {instead}",
                node.id(),
                node.role().as_str()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Why `role` does not serve `method path`, and where to send it instead; None when it does.
fn refusal(role: NodeRole, method: &Method, path: &str) -> Option<&'static str> {
    match role {
        NodeRole::All => None,
        NodeRole::Render => {
            let read = method == Method::GET || method == Method::HEAD;
            let signing = method == Method::POST
                && (path == "/api/login"
                    || path == "/api/logout"
                    || path.starts_with("/api/letter/")
                    || (path.starts_with("/api/users/") && path.ends_with("/password")));
            (!read && !signing).then_some(
                "it serves reads and rendered pictures only; send stores, deletions and changes to a node of role all or ingest",
            )
        }
        NodeRole::Ingest => renders(path).then_some(
            "it does not render; ask a node of role all or render for rendered pictures, thumbnails and the render stream",
        ),
    }
}

/// Whether `path` asks for rendering: the render stream, a rendered picture or a thumbnail.
fn renders(path: &str) -> bool {
    path == "/api/stream"
        || (path.starts_with("/dicomweb/")
            && (path.ends_with("/rendered") || path.ends_with("/thumbnail")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_serves_its_own_requests() {
        let stow = (Method::POST, "/dicomweb/studies");
        let qido = (Method::GET, "/dicomweb/studies");
        let rendered = (
            Method::GET,
            "/dicomweb/studies/1/series/2/instances/3/frames/1/rendered",
        );
        let stream = (Method::GET, "/api/stream");
        let login = (Method::POST, "/api/login");
        let delete = (Method::DELETE, "/dicomweb/studies/1");
        let password = (Method::POST, "/api/users/ann/password");
        let merge = (Method::POST, "/api/persons/1/merge");
        let serves = |role, (m, p): &(Method, &str)| refusal(role, m, p).is_none();
        for r in [&stow, &qido, &rendered, &stream, &login, &delete, &merge] {
            assert!(serves(NodeRole::All, r), "{r:?}");
        }
        for r in [&qido, &rendered, &stream, &login, &password] {
            assert!(serves(NodeRole::Render, r), "{r:?}");
        }
        for r in [&stow, &delete, &merge] {
            assert!(!serves(NodeRole::Render, r), "{r:?}");
        }
        for r in [&stow, &qido, &login, &delete, &merge] {
            assert!(serves(NodeRole::Ingest, r), "{r:?}");
        }
        for r in [
            &rendered,
            &stream,
            &(Method::GET, "/dicomweb/studies/1/thumbnail"),
        ] {
            assert!(!serves(NodeRole::Ingest, r), "{r:?}");
        }
    }
}
