//! `strata serve`: both doors (HTTP and DIMSE) and the background workers, until SIGINT or
//! SIGTERM.

use std::sync::Arc;
use strata_archive::Archive;

/// Runs the archive until SIGINT or SIGTERM.
pub async fn serve(archive: Arc<Archive>) -> anyhow::Result<()> {
    archive.write_markers().await;
    archive.admin().ensure_initial_admin().await?;
    archive.spawn_workers();
    let http = strata_http::serve(archive.clone(), shutdown_signal());
    let dimse = dimse(archive.clone());
    let ended = tokio::select! {
        r = http => r,
        r = dimse => r,
    };
    // the once-per-archive work goes to another node now rather than at its lease's expiry
    archive.stop_workers().await;
    ended
}

/// The DIMSE door, unless the node's role has none (`render`).
async fn dimse(archive: Arc<Archive>) -> anyhow::Result<()> {
    if archive.node().role().serves_dimse() {
        return strata_dimse::serve(archive).await;
    }
    eprintln!("strata: no DIMSE listener (node.role = render)");
    std::future::pending().await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
