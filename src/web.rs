//! The radiologist's browser viewer (`web/`), embedded in the binary at build time so that one
//! binary is the whole product and nothing is fetched from outside (hospital networks are often
//! closed). The files hold no patient data, so they are served without authentication; every
//! request the viewer makes for data goes through the protected API.

use crate::archive::Archive;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// What the viewer's pages may load and connect to: this server only.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
                   worker-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/", get(index))
        .route("/app/{*file}", get(asset))
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(file: &str) -> Response {
    match Assets::get(file) {
        Some(content) => (
            [
                (
                    header::CONTENT_TYPE,
                    content.metadata.mimetype().to_string(),
                ),
                (header::CACHE_CONTROL, "no-cache".to_string()),
                (header::CONTENT_SECURITY_POLICY, CSP.to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            ],
            content.data.into_owned(),
        )
            .into_response(),
        None => crate::problem::Problem::new(StatusCode::NOT_FOUND, format!("no file {file}"))
            .into_response(),
    }
}
