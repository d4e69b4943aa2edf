//! The HTTP door (layer 4): DICOMweb ([`dicomweb`], PS3.18), the person index's API
//! ([`persons`]), media export as a ZIP ([`export`]), access letters ([`letters`]), holds, expiry and rejections ([`lifecycle`]), sign-in and callers ([`auth`]), users, tokens and sessions ([`accounts`]),
//! measurements and their reports ([`measure`]), the render stream's socket ([`stream`]), the viewer's files ([`web`]), health, readiness,
//! metrics and the audit trail; errors as problem details ([`problem`]). It stores and
//! indexes nothing itself: it calls the archive's services.
//!
//! Only `/healthz`, `/readyz`, `POST /api/login`, an access letter's routes ([`letters`]: its
//! code is the credential) and the viewer's files are open; every other
//! route passes through [`auth::require_caller`] (which also audits every refusal), checks the
//! caller's permission itself, and hands the caller's scope to the index reads it makes.

pub mod accounts;
mod ae;
pub mod auth;
mod cluster;
pub mod dicomweb;
mod export;
mod layouts;
mod letters;
mod lifecycle;
mod listen;
mod measure;
pub mod persons;
pub mod problem;
mod role;
mod sends;
pub mod stream;
mod throttle;
mod tiers;
pub mod web;

use crate::auth::{self as auth_http, Caller};
use crate::problem::Problem;
use axum::extract::Query;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::AuditFilter;
use strata_services::auth::Permission;

pub fn router(archive: Arc<Archive>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/me", get(auth_http::me))
        .route("/api/logout", post(auth_http::logout))
        .route("/api/audit", get(audit))
        .route("/api/workers", get(workers))
        .route("/api/stream", get(crate::stream::handler))
        .merge(crate::dicomweb::router())
        .merge(crate::persons::router())
        .merge(crate::export::router())
        .merge(crate::letters::router())
        .merge(crate::lifecycle::router())
        .merge(crate::tiers::router())
        .merge(crate::accounts::router())
        .merge(crate::ae::router())
        .merge(crate::sends::router())
        .merge(crate::cluster::router())
        .merge(crate::measure::router())
        .merge(crate::layouts::router())
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(throttle::Throttles::new(&archive.config().http)),
            throttle::limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            archive.clone(),
            auth_http::require_caller,
        ))
        .route_layer(axum::middleware::map_response(no_store));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/login", post(auth_http::login))
        .merge(crate::letters::public(Arc::new(
            throttle::CodeAttempts::new(&archive.config().http),
        )))
        .merge(crate::web::router())
        .merge(protected)
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::map_response(
            crate::problem::plain_errors_as_problems,
        ))
        .layer(axum::middleware::from_fn(refuse_nul))
        .layer(axum::middleware::from_fn_with_state(
            archive.clone(),
            role::serve_only_the_role,
        ))
        .layer(axum::middleware::from_fn_with_state(archive.clone(), hsts))
        .layer(axum::middleware::from_fn_with_state(
            archive.clone(),
            count_in_flight,
        ))
        .with_state(archive)
}

/// A request whose path or query holds an encoded NUL is refused before any route sees it: no
/// name, UID or search value has one, and no text column of PostgreSQL can hold one.
async fn refuse_nul(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = request.uri();
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return Problem::bad_request("the request's path or query holds a NUL character (%00)")
            .into_response();
    }
    next.run(request).await
}

/// Counts the request as in flight until its answer is made (the node's load in its
/// heartbeat and `strata_http_requests_in_flight`).
async fn count_in_flight(
    State(a): State<Arc<Archive>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let _counted = a.metrics().http_request();
    next.run(request).await
}

/// Over HTTPS every answer carries HSTS: a browser that has seen the archive once never tries
/// it over plain HTTP again (for a year).
async fn hsts(
    State(a): State<Arc<Archive>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if auth_http::serves_https(&a) {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Nothing an authenticated route answers is kept on the device: patient data, pictures and
/// refusals all carry `Cache-Control: no-store`, so no browser cache holds them.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    response
}

/// The process is up and answering.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready to acknowledge instances: the index answers and a write quorum of replicas is reachable.
/// A node asked to stop says 503 (draining) at once, whatever else holds, so the load balancer
/// sends it nothing new while it finishes what it has.
async fn readyz(State(a): State<Arc<Archive>>) -> impl IntoResponse {
    let r = a.readiness().await;
    let draining = a.drain().draining();
    let body = serde_json::json!({
        "index": if r.index_ok { "ok" } else { "unavailable" },
        "replicas_reachable": r.replicas_reachable,
        "replicas": r.replicas,
        "write_quorum": r.write_quorum,
        "node": a.node().id(),
        "role": a.node().role().as_str(),
        "draining": draining,
    });
    let status = if r.ready() && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// `GET /api/audit?actor=&action=&patient_id=&since=&until=&limit=&order=`: the audit trail
/// (admin), oldest first unless `order=newest` (the console's latest page).
async fn audit(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Vec<strata_core::audit::StoredEvent>>, Problem> {
    caller.require(Permission::Administer)?;
    let num = |k: &str| -> Result<Option<i64>, Problem> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Problem::bad_request(format!("{k} must be a number")))
            })
            .transpose()
    };
    for k in q.keys() {
        if ![
            "actor",
            "action",
            "patient_id",
            "since",
            "until",
            "limit",
            "order",
        ]
        .contains(&k.as_str())
        {
            return Err(Problem::bad_request(format!("unknown parameter {k:?}")));
        }
    }
    let newest_first = match q.get("order").map(String::as_str) {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "order must be oldest or newest, not {other:?}"
            )))
        }
    };
    let filter = AuditFilter {
        after_id: None,
        actor: q.get("actor").cloned(),
        action: q.get("action").cloned(),
        patient_id: q.get("patient_id").cloned(),
        since: num("since")?,
        until: num("until")?,
        limit: Some(num("limit")?.unwrap_or(1000).clamp(1, 100_000) as usize),
        newest_first,
    };
    let events = a.audit().events(filter).await.map_err(Problem::internal)?;
    let _ = a
        .audit()
        .record(
            caller
                .event("http.audit", Outcome::Success)
                .detail(format!("{} events", events.len())),
        )
        .await;
    Ok(Json(events))
}

/// `GET /api/workers`: this node (id and role), its background workers (repair, audit export,
/// MPI re-estimation, scrub) with how their rounds ended and who holds their leases, every
/// lease as the index holds it, and where the scrub has got to (admin).
async fn workers(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::Administer)?;
    let scrub = a
        .maintenance()
        .scrub_progress()
        .await
        .map_err(Problem::internal)?;
    let leases = a.index().leases().await.map_err(Problem::internal)?;
    Ok(Json(serde_json::json!({
        "node": {"id": a.node().id(), "role": a.node().role().as_str()},
        "workers": a.maintenance().workers(),
        "leases": leases,
        "scrub": scrub,
    })))
}

async fn metrics(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, Problem> {
    caller.require(Permission::Administer)?;
    if let Ok(n) = a.index().repair_queue_len().await {
        a.metrics().set_repair_queue(n);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        a.metrics().render(),
    ))
}

/// Serves the HTTP side on `http.listen` until the node's drain closes the doors: HTTPS when a
/// certificate is configured or asked for, else plain HTTP. Once the listener is bound, the
/// archive learns the URL clients reach it at (`http.public_url`, else this address). The
/// requests under way when the listener closes finish; those still running when the drain
/// aborts are cut off.
pub async fn serve(archive: Arc<Archive>) -> anyhow::Result<()> {
    use strata_archive::drain::Phase;
    let shutdown = archive.drain().reached(Phase::Closed);
    let abort = archive.drain().reached(Phase::Aborting);
    let cfg = archive.config().http.clone();
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (http.listen): {e}", cfg.listen))?;
    let local = listener.local_addr()?;
    let tls = https_config(&archive, local)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "strata: serving {scheme}://{local} (data in {})",
        archive.config().data_dir.display()
    );
    let public = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"));
    archive.set_public_url(public.trim_end_matches('/').to_string());
    let limits = listen::Limits {
        header_timeout: std::time::Duration::from_secs(cfg.header_timeout_seconds),
        body_idle: std::time::Duration::from_secs(cfg.body_idle_seconds),
        max_connections: cfg.max_connections,
        max_connections_per_ip: cfg.max_connections_per_ip,
        trusted_proxies: archive
            .config()
            .trusted_proxies()
            .map_err(|e| anyhow::anyhow!("http.trusted_proxies: {e}"))?
            .into(),
    };
    listen::run(listener, router(archive), tls, limits, shutdown, abort).await
}

/// The HTTPS configuration: the configured certificate, or the one the archive made for itself
/// (`http.tls_self_signed`), valid for localhost, the listening address and the public URL's
/// host. None serves plain HTTP.
fn https_config(
    archive: &Archive,
    local: std::net::SocketAddr,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let cfg = &archive.config().http;
    let (cert, key) = match (&cfg.tls_certificate, &cfg.tls_private_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ if cfg.tls_self_signed => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            if !local.ip().is_unspecified() {
                names.push(local.ip().to_string());
            }
            let public_host = cfg
                .public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()));
            names.extend(public_host);
            names.dedup();
            let dir = archive.config().data_dir.join("tls");
            let (cert, key) = strata_archive::tls::self_signed(&dir, &names)?;
            eprintln!(
                "strata: HTTPS with the self-signed certificate {} (SHA-256 {})",
                cert.display(),
                strata_archive::tls::fingerprint(&cert)?
            );
            (cert, key)
        }
        _ => return Ok(None),
    };
    strata_archive::tls::server_config("http", &cert, &key, None, &[b"http/1.1"]).map(Some)
}
