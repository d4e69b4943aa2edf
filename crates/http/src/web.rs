//! The radiologist's browser viewer (`web/`), embedded in the binary at build time so that one
//! binary is the whole product and nothing is fetched from outside (hospital networks are often
//! closed). The files hold no patient data, so they are served without authentication; every
//! request the viewer makes for data goes through the protected API.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use strata_archive::Archive;

#[derive(rust_embed::Embed)]
#[folder = "../../web/"]
struct Assets;

/// What the viewer's pages may load and connect to: this server only.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
                   worker-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/", get(index))
        .route("/letter", get(letter))
        .route("/app/protocol.js", get(protocol))
        .route("/app/{*file}", get(asset))
}

/// `/app/protocol.js`: the render stream's constants as a JavaScript module, made from the
/// server's own definitions, so the viewer and its worker never keep a copy that could drift.
async fn protocol() -> Response {
    use strata_render::stream::protocol as p;
    let names = serde_json::to_string(&p::PRESETS).expect("preset names serialise");
    let module = format!(
        "// Made by the server from its definitions (schemas/render-stream.md); not a file.\n\
         export const PRESET_NAMES = {names};\n\
         export const HEADER_LEN = {};\n\
         export const KIND_FRAME = {};\n\
         export const KIND_STILL = {};\n\
         export const FLAG_KEYFRAME = {};\n\
         export const FLAG_RGB = {};\n\
         export const MAX_IN_FLIGHT = {};\n\
         export const STILL_AFTER_MS = {};\n",
        p::HEADER_LEN,
        p::KIND_FRAME,
        p::KIND_STILL,
        p::FLAG_KEYFRAME,
        p::FLAG_RGB,
        p::MAX_IN_FLIGHT,
        p::STILL_AFTER.as_millis(),
    );
    with_headers("text/javascript", module.into_bytes())
}

async fn index() -> Response {
    serve("index.html")
}

/// The page where an access letter's holder types its code ([`crate::letters`]).
async fn letter() -> Response {
    serve("letter.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(file: &str) -> Response {
    match Assets::get(file) {
        Some(content) => with_headers(content.metadata.mimetype(), content.data.into_owned()),
        None => crate::problem::Problem::new(StatusCode::NOT_FOUND, format!("no file {file}"))
            .into_response(),
    }
}

fn with_headers(content_type: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::CONTENT_SECURITY_POLICY, CSP.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}
