//! Authentication on the HTTP side: a middleware that turns a bearer token or a session cookie
//! into a [`Principal`] (or answers 401), and the login and logout routes. Sessions are
//! HttpOnly, SameSite=Strict cookies; a cookie-authenticated request that changes something must
//! also come from our own origin, so a cross-site form cannot ride on the session.

use crate::problem::Problem;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::net::SocketAddr;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::{AuditEvent, Outcome};
use strata_services::auth::{
    valid_user_name, Holder, Permission, Principal, Scope, SignIn, SESSION_LIFETIME_MS,
};

pub const SESSION_COOKIE: &str = "strata_session";

/// The caller, as handlers see it: who, from where, and with which credential.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub remote: String,
    /// What the caller presented, so that a long-lived connection (the render stream) can ask
    /// again whether it is still good.
    pub credential: Credential,
}

/// A bearer token or a session id. Never printed: its `Debug` says which kind only.
#[derive(Clone)]
pub enum Credential {
    Token(String),
    Session(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Token(_) => "Token(…)",
            Credential::Session(_) => "Session(…)",
        })
    }
}

impl Credential {
    /// Who holds this credential now: None once it is revoked or expired.
    pub async fn holder(&self, archive: &Archive) -> Result<Option<Holder>, Problem> {
        match self {
            Credential::Token(t) => archive.access().by_token(t).await,
            Credential::Session(s) => archive.access().by_session(s).await,
        }
        .map_err(Problem::internal)
    }
}

impl Caller {
    /// Fails with 403 unless the caller's role grants `p`.
    pub fn require(&self, p: Permission) -> Result<(), Problem> {
        if self.principal.may(p) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "the {} role may not do this",
                self.principal.role_name()
            )))
        }
    }

    /// Whose data this caller may see: hand it to every index read.
    pub fn scope(&self) -> Scope {
        self.principal.scope
    }

    /// An audit event by this caller.
    pub fn event(&self, action: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent::now(
            &self.principal.user,
            self.principal.role_name(),
            action,
            outcome,
        )
        .remote(&self.remote)
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Who presented the request's credentials, and with which.
async fn authenticate(
    archive: &Archive,
    headers: &HeaderMap,
) -> Result<Option<(Holder, Credential)>, Problem> {
    let credential = if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) else {
            return Ok(None);
        };
        Credential::Token(token.to_string())
    } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
        Credential::Session(id)
    } else {
        return Ok(None);
    };
    let holder = credential.holder(archive).await?;
    Ok(holder.map(|h| (h, credential)))
}

/// The request's origin is ours: `Origin` (or, failing that, `Referer`) names the Host.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    match origin {
        None => true, // not a browser form: browsers always send Origin on cross-site writes
        Some(o) => o
            .split("://")
            .nth(1)
            .is_some_and(|rest| rest.split('/').next() == Some(host)),
    }
}

/// What a session whose user must change their password may still do: change it, ask who
/// it is, sign out. (A token is made by an administrator for a program, so it is not held
/// back: the printed password is what must not stay in use.)
fn may_before_password_change(method: &Method, path: &str, user: &str) -> bool {
    matches!(
        (method, path),
        (&Method::GET, "/api/me") | (&Method::POST, "/api/logout")
    ) || (method == Method::POST && path == crate::accounts::password_path(user))
}

/// What the holder of a share token may ask: DICOMweb reads (QIDO-RS, WADO-RS, WADO-URI,
/// rendered), nothing else.
fn share_may_ask(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && (path.starts_with("/dicomweb/") || path == "/wado")
}

/// The study a DICOMweb path names, for the audit event of a refusal.
fn study_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/dicomweb/studies/")?;
    Some(rest.split('/').next()?.to_string()).filter(|s| !s.is_empty())
}

/// Middleware for every protected route. It also writes the audit event of every refusal the
/// route answered, whichever handler refused: a 403, and — for a caller limited to one person's
/// studies — a 404, which is how such a caller is told "not yours" (it is also the answer when
/// nothing is there, so the event says both).
pub async fn require_caller(
    State(archive): State<Arc<Archive>>,
    mut req: Request,
    next: Next,
) -> Response {
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| remote_text(c.0))
        .unwrap_or_default();
    let what = format!("{} {}", req.method(), req.uri().path());
    let study = study_in_path(req.uri().path());
    match authenticate(&archive, req.headers()).await {
        Err(p) => p.into_response(),
        Ok(None) => Problem::unauthorized().into_response(),
        Ok(Some((Holder::Refused { user, role, why }, _))) => {
            let event = AuditEvent::now(&user, &role, "http.refused", Outcome::Denied)
                .remote(&remote)
                .patient(None, study)
                .detail(format!("{what}: {why}"));
            if let Err(e) = archive.audit().record(event).await {
                return Problem::internal(e).into_response();
            }
            Problem::forbidden(why).into_response()
        }
        Ok(Some((Holder::Principal(principal), credential))) => {
            let unsafe_method =
                !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            let by_cookie = matches!(credential, Credential::Session(_));
            if by_cookie && unsafe_method && !same_origin(req.headers()) {
                return Problem::forbidden("cross-origin request refused").into_response();
            }
            if principal.is_share() && !share_may_ask(req.method(), req.uri().path()) {
                let event =
                    AuditEvent::now(&principal.user, "share", "http.refused", Outcome::Denied)
                        .remote(&remote)
                        .patient(None, study)
                        .detail(format!("{what}: a share token reads DICOMweb only"));
                if let Err(e) = archive.audit().record(event).await {
                    return Problem::internal(e).into_response();
                }
                return Problem::forbidden(
                    "a share token reads the shared studies by DICOMweb only",
                )
                .into_response();
            }
            if by_cookie
                && principal.must_change_password
                && !may_before_password_change(req.method(), req.uri().path(), &principal.user)
            {
                let why = format!(
                    "the password of {} must be changed first: POST {} \
                     {{\"old_password\", \"password\"}}",
                    principal.user,
                    crate::accounts::password_path(&principal.user)
                );
                let event = AuditEvent::now(
                    &principal.user,
                    principal.role.as_str(),
                    "http.refused",
                    Outcome::Denied,
                )
                .remote(&remote)
                .detail(format!("{what}: the password must be changed first"));
                if let Err(e) = archive.audit().record(event).await {
                    return Problem::internal(e).into_response();
                }
                return Problem::forbidden(why).into_response();
            }
            let caller = Caller {
                principal,
                remote,
                credential,
            };
            req.extensions_mut().insert(caller.clone());
            let response = next.run(req).await;
            let status = response.status();
            let scoped = caller.scope() != Scope::All;
            let refused =
                status == StatusCode::FORBIDDEN || (scoped && status == StatusCode::NOT_FOUND);
            if refused {
                let detail = if status == StatusCode::FORBIDDEN {
                    format!(
                        "{what}: 403 to a caller of the {} role",
                        caller.principal.role_name()
                    )
                } else {
                    format!("{what}: 404, outside the caller's studies or absent")
                };
                let event = caller
                    .event("http.refused", Outcome::Denied)
                    .patient(None, study)
                    .detail(detail);
                if let Err(e) = archive.audit().record(event).await {
                    // no answer without its audit event
                    return Problem::internal(e).into_response();
                }
            }
            response
        }
    }
}

#[derive(serde::Deserialize)]
pub struct Login {
    user: String,
    password: String,
}

/// A client's address as the audit trail writes it: `ip:port`, or the address alone for a
/// client named by a trusted proxy (whose port is not known).
pub fn remote_text(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// `POST /api/login`: a session for a user name and password. The answer says when the
/// password must be changed before anything else (`must_change_password`). Sign-ins are
/// throttled per user name, per address and in all (see `strata_services::auth`).
pub async fn login(
    State(archive): State<Arc<Archive>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    let Json(login) = body.map_err(|e| {
        Problem::bad_request(format!("expected JSON {{\"user\", \"password\"}}: {e}"))
    })?;
    if !valid_user_name(&login.user) {
        return Err(Problem::bad_request(
            "user is not a user name (1 to 64 letters, digits, . _ - @)",
        ));
    }
    let signed_in = archive
        .access()
        .sign_in(&login.user, &login.password, &addr.ip().to_string())
        .await
        .map_err(Problem::internal)?;
    let (id, role, must_change) = match signed_in {
        SignIn::Session {
            id,
            role,
            must_change_password,
        } => (id, role, must_change_password),
        SignIn::Refused { failures } => {
            let event = AuditEvent::now(&login.user, "-", "http.login", Outcome::Failure)
                .remote(remote_text(addr));
            let detail = format!(
                "{} failures of this name, {} from this address, {} in all in 15 minutes",
                failures.name, failures.remote, failures.all
            );
            archive
                .audit()
                .record(event.detail(detail))
                .await
                .map_err(Problem::internal)?;
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "wrong user name or password",
            ));
        }
        SignIn::Disabled => {
            let event = AuditEvent::now(&login.user, "-", "http.login", Outcome::Denied)
                .remote(remote_text(addr))
                .detail("the account is disabled");
            archive
                .audit()
                .record(event)
                .await
                .map_err(Problem::internal)?;
            return Err(Problem::forbidden(
                "this account is disabled; an administrator can enable it",
            ));
        }
    };
    let mut event = AuditEvent::now(&login.user, role.as_str(), "http.login", Outcome::Success)
        .remote(remote_text(addr));
    if must_change {
        event = event.detail("the password must be changed before anything else");
    }
    archive
        .audit()
        .record(event)
        .await
        .map_err(Problem::internal)?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_LIFETIME_MS / 1000,
        secure(&archive)
    );
    let body = serde_json::json!({
        "user": login.user,
        "role": role.as_str(),
        "must_change_password": must_change,
    });
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// The session cookie is `Secure` whenever clients reach the archive over HTTPS (served here,
/// or by a proxy in front named in `http.public_url`): the browser never sends it in clear.
fn secure(archive: &Archive) -> &'static str {
    if serves_https(archive) {
        "; Secure"
    } else {
        ""
    }
}

/// Clients reach the archive over HTTPS.
pub fn serves_https(archive: &Archive) -> bool {
    archive
        .public_url()
        .is_some_and(|u| u.starts_with("https://"))
}

/// `POST /api/logout`: ends the session.
pub async fn logout(
    State(archive): State<Arc<Archive>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        archive
            .access()
            .sign_out(&id)
            .await
            .map_err(Problem::internal)?;
    }
    let clear = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(&archive)
    );
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

/// `GET /api/me`: who the caller is (and, for a patient, the person their studies belong to).
pub async fn me(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    let mut me = serde_json::json!({
        "user": caller.principal.user,
        "role": caller.principal.role.as_str(),
        "must_change_password": caller.principal.must_change_password,
    });
    if let Some(person) = &caller.principal.person {
        me["person"] = serde_json::json!(person);
    }
    Json(me)
}
