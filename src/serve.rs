//! `strata serve`: both doors (HTTP and DIMSE) and the background workers, until SIGINT or
//! SIGTERM, which drain the node before it exits: `/readyz` says 503 for `node.drain_seconds`
//! (the load balancer's health check sees it and sends nothing new), then the listeners close and
//! what is under way finishes, for at most `node.drain_max_seconds`, then what is left is
//! aborted. A second signal skips straight to the next phase.

use std::sync::Arc;
use std::time::Duration;
use strata_archive::drain::Phase;
use strata_archive::Archive;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Runs the archive until SIGINT or SIGTERM, then drains it; returns once it is drained.
pub async fn serve(archive: Arc<Archive>) -> anyhow::Result<()> {
    // installed first: a signal from now on drains, never kills
    let signals = Signals::install()?;
    match archive.ingest().clear_spool() {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} half-received instances the last run left spooled"),
        Err(e) => tracing::warn!("clearing the spool: {e}"),
    }
    archive.write_markers().await;
    archive.admin().ensure_initial_admin().await?;
    archive.spawn_workers();
    archive.spawn_send_worker(strata_services::sends::Carriers {
        ae: Arc::new(strata_dimse::send::StoreCarrier::new(archive.clone())),
        dicomweb: Arc::new(
            strata_http::dicomweb::stow_client::StowCarrier::new(archive.clone())
                .map_err(anyhow::Error::msg)?,
        ),
    });
    tokio::spawn(drain_on_signal(archive.clone(), signals));
    let http = strata_http::serve(archive.clone());
    let dimse = dimse(archive.clone());
    tokio::try_join!(http, dimse)?;
    workers_between_rounds(&archive).await;
    // the once-per-archive work goes to another node now rather than at its lease's expiry
    archive.stop_workers().await;
    tracing::info!("drained: exiting");
    Ok(())
}

/// The DIMSE door, unless the node's role has none (`render`): then nothing, until the drain
/// closes the doors.
async fn dimse(archive: Arc<Archive>) -> anyhow::Result<()> {
    if archive.node().role().serves_dimse() {
        return strata_dimse::serve(archive).await;
    }
    eprintln!("strata: no DIMSE listener (node.role = render)");
    archive.drain().reached(Phase::Closed).await;
    Ok(())
}

/// SIGTERM and SIGINT, as one stream of requests to stop.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Moves the node through its drain once it is asked to stop: each phase lasts its configured
/// time, or until the next signal.
async fn drain_on_signal(archive: Arc<Archive>, mut signals: Signals) {
    let node = archive.config().node.clone();
    let name = signals.next().await;
    tracing::info!(
        "{name}: draining: /readyz says 503 for {} s, then the listeners close (node.drain_seconds)",
        node.drain_seconds
    );
    archive.drain().advance(Phase::Draining);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(node.drain_seconds)) => {}
        s = signals.next() => tracing::info!("{s}: closing the listeners now"),
    }
    tracing::info!(
        "closing the listeners: what is under way has {} s to finish (node.drain_max_seconds)",
        node.drain_max_seconds
    );
    archive.drain().advance(Phase::Closed);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(node.drain_max_seconds)) => {}
        s = signals.next() => tracing::info!("{s}: aborting what is under way now"),
    }
    archive.drain().advance(Phase::Aborting);
}

/// Once the doors are closed, waits until no background worker is in a round (each round is
/// whole or not done, but one cut short is done again by the next start), for as long as the
/// drain allows.
async fn workers_between_rounds(archive: &Archive) {
    let running = || {
        archive
            .maintenance()
            .workers()
            .into_iter()
            .filter(|w| w.state == "running")
            .map(|w| w.name)
            .collect::<Vec<_>>()
    };
    let busy = running();
    if busy.is_empty() {
        return;
    }
    tracing::info!(
        "waiting for the workers in a round to finish it: {}",
        busy.join(", ")
    );
    let idle = async {
        while !running().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = idle => tracing::info!("every worker is between rounds"),
        _ = archive.drain().reached(Phase::Aborting) => {
            tracing::warn!("workers still in a round when the drain ran out: {}", running().join(", "))
        }
    }
}
