//! The HTTP listener: accepts connections, speaks TLS when configured (HTTPS), and bounds what
//! one client can hold. Every connection has a deadline for its request headers (and its TLS
//! handshake), a request body that stops sending is abandoned, and connections are counted in
//! all and per client address, so slow or many clients (slowloris) cannot exhaust the process's
//! file descriptors, which DIMSE and the store need as much as HTTP does.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use futures::StreamExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata_core::peers::{AddressHold, Cidr, PerAddress};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// What one connection may take, from `http.*`.
#[derive(Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_idle: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// `http.trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[Cidr]>,
}

/// One connection's places: in all, and for its client address.
struct Held {
    _address: AddressHold,
    _slot: OwnedSemaphorePermit,
}

/// Serves `router` on `listener` until `shutdown` resolves, then closes the listener and lets
/// the requests in flight finish (each connection closes once its request is answered) until
/// `abort` resolves; the connections still open then are left to be cut off.
pub async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    abort: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let max = connection_budget(limits.max_connections);
    let slots = Arc::new(Semaphore::new(max));
    let addresses = Arc::new(PerAddress::default());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most often: wait rather than spin.
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // No Nagle: a stream frame or an acknowledgement held back for the peer's delayed ACK
        // costs 40 ms, more than two frames of a scroll.
        let _ = tcp.set_nodelay(true);
        let held = match slots.clone().try_acquire_owned() {
            Ok(slot) => addresses
                .take(peer.ip(), limits.max_connections_per_ip)
                .map(|address| Held {
                    _address: address,
                    _slot: slot,
                }),
            Err(_) => None,
        };
        let Some(held) = held else {
            tracing::warn!(%peer, "connection refused: over http.max_connections or http.max_connections_per_ip");
            if acceptor.is_none() {
                tokio::spawn(refuse(tcp));
            }
            continue;
        };
        let (router, acceptor, stop) = (router.clone(), acceptor.clone(), stop_rx.clone());
        let limits = limits.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, peer, router, limits, stop).await,
                Some(acceptor) => {
                    let handshake = limits.header_timeout;
                    match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => connection(tls, peer, router, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(held);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = max - slots.available_permits();
    tracing::info!("http: listener closed; {open} connections finishing their requests");
    // Every connection task holds a slot: all back means all done.
    tokio::select! {
        _ = slots.acquire_many(max as u32) => tracing::info!("http: every request finished"),
        _ = abort => tracing::warn!(
            "http: {} connections still open when the drain ran out: cut off",
            max - slots.available_permits()
        ),
    }
    Ok(())
}

/// One connection, HTTP/1.1 with upgrades (the stream's WebSocket), until the client closes
/// it, a deadline passes, or the server stops.
async fn connection<S>(
    io: S,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = limits.header_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let trusted = limits.trusted_proxies.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts
                .extensions
                .insert(ConnectInfo(client(peer, &trusted, &parts.headers)));
            let body = if body.is_end_stream() {
                Body::empty()
            } else {
                idle_bounded(body, limits.body_idle)
            };
            router
                .oneshot(axum::http::Request::from_parts(parts, body))
                .await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "http connection: {e}");
            }
        }
        _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The address a request comes from, as the sign-in throttle and the audit trail see it: the
/// TCP peer, or, when the peer is a trusted proxy, the client its `X-Forwarded-For` names (with
/// port 0: the client's own port is not known).
fn client(peer: SocketAddr, trusted: &[Cidr], headers: &axum::http::HeaderMap) -> SocketAddr {
    if trusted.is_empty() {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let ip = strata_core::peers::forwarded_client(peer.ip(), trusted, forwarded);
    if ip == peer.ip() {
        peer
    } else {
        SocketAddr::new(ip, 0)
    }
}

/// A request body that fails once the client has sent nothing for `idle`: a stalled upload
/// gives its connection back instead of holding it forever.
fn idle_bounded(body: Incoming, idle: Duration) -> Body {
    let chunks = Body::new(body).into_data_stream();
    let bounded = futures::stream::unfold(Some(chunks), move |state| async move {
        let mut chunks = state?;
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
            Ok(None) => None,
            Err(_) => {
                let stalled: axum::BoxError = format!(
                    "the request body sent nothing for {} s (http.body_idle_seconds)",
                    idle.as_secs()
                )
                .into();
                Some((Err(stalled), None))
            }
        }
    });
    Body::from_stream(bounded)
}

/// Tells a plain-HTTP client over the limits why it is turned away, then closes.
async fn refuse(mut tcp: TcpStream) {
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(response.as_bytes())).await;
}

/// The connections HTTP may hold: the configured number, but never more than half of the
/// process's file descriptor limit (raised first to its hard maximum), so the rest is left to
/// DIMSE, the index and the store.
fn connection_budget(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return configured;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let budget = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if configured > budget {
        tracing::warn!(
            "http.max_connections = {configured} exceeds half the file descriptor limit ({soft}): serving at most {budget}"
        );
    }
    configured.min(budget)
}
