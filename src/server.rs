//! `strata serve`: the HTTP listener, the DIMSE listener and the background workers. HTTP serves
//! the health and metrics routes for now; the DICOMweb, API and viewer routers join it here.

use crate::archive::Archive;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn router(archive: Arc<Archive>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(archive)
}

/// The process is up and answering.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready to acknowledge instances: the index answers and a write quorum of replicas is reachable.
async fn readyz(State(a): State<Arc<Archive>>) -> impl IntoResponse {
    let index_ok = a.index.ping().await;
    let reachable = a.store.replicas().reachable().await;
    let quorum = a.store.replicas().write_quorum();
    let body = serde_json::json!({
        "index": if index_ok { "ok" } else { "unavailable" },
        "replicas_reachable": reachable,
        "replicas": a.store.replicas().len(),
        "write_quorum": quorum,
    });
    let status = if index_ok && reachable >= quorum {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(a): State<Arc<Archive>>) -> impl IntoResponse {
    if let Ok(n) = a.index.repair_queue_len().await {
        a.metrics.set_repair_queue(n);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        a.metrics.render(),
    )
}

/// Runs the archive until SIGINT or SIGTERM.
pub async fn serve(archive: Arc<Archive>) -> anyhow::Result<()> {
    archive.write_markers().await;
    archive.spawn_background();
    let listen = archive.config.http.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http.listen): {e}"))?;
    eprintln!(
        "strata: serving http://{} (data in {})",
        listener.local_addr()?,
        archive.config.data_dir.display()
    );
    let dimse = crate::dimse::serve(archive.clone());
    let http = axum::serve(listener, router(archive)).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        r = http => r?,
        r = dimse => r?,
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
