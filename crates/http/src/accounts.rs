//! Accounts over HTTP: users (add, list, change a password, disable, enable, remove), API
//! tokens (create, list, revoke by id) and sessions (list, end by id). Administrators manage
//! everyone; any user changes their own password (giving the old one) and lists and ends their
//! own sessions. Tokens and sessions are named by non-secret ids: a token's row id, a
//! session's hash prefix; nobody needs to hold a credential to revoke it. Every call, reads
//! included, writes an audit event; names are validated before anything is written.

use crate::auth::{Caller, Credential};
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::{AuditEvent, Outcome};
use strata_index::{SessionRow, TokenRow, UserRow};
use strata_services::auth::{
    check_new_password, hash_password, new_secret, secret_hash, token_expiry, valid_user_name,
    Permission, Role, DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS,
};
use strata_services::ServiceError;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/users", get(users).post(add_user))
        .route("/api/users/{name}", delete(remove_user))
        .route("/api/users/{name}/password", post(change_password))
        .route("/api/users/{name}/disable", post(disable_user))
        .route("/api/users/{name}/enable", post(enable_user))
        .route("/api/tokens", get(tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", delete(end_session))
}

/// The path that a user whose password must be changed may still call.
pub fn password_path(user: &str) -> String {
    format!("/api/users/{user}/password")
}

/// A JSON body, or a 400 that names what was expected.
pub(crate) fn body<T>(b: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, Problem> {
    b.map(|Json(t)| t)
        .map_err(|e| Problem::bad_request(format!("expected JSON {expected}: {e}")))
}

/// A user name from a request, refused (400) before anything is written unless valid.
fn user_name(name: &str) -> Result<&str, Problem> {
    if valid_user_name(name) {
        Ok(name)
    } else {
        Err(Problem::bad_request(format!(
            "{:?} is not a user name (1 to 64 letters, digits, . _ - @)",
            strata_core::audit::capped(name, 64)
        )))
    }
}

/// Writes `event`; no answer goes out without it.
async fn audit(a: &Archive, event: AuditEvent) -> Result<(), Problem> {
    a.audit().record(event).await.map_err(Problem::internal)
}

fn service(e: ServiceError) -> Problem {
    Problem::from(e)
}

/// Only the parameters named may be given.
fn known_params(q: &HashMap<String, String>, known: &[&str]) -> Result<(), Problem> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Problem::bad_request(format!("unknown parameter {k:?}"))),
        None => Ok(()),
    }
}

/// `GET /api/users`: every user with role, person, disabled and must-change flags (admin).
async fn users(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<UserRow>>, Problem> {
    caller.require(Permission::Administer)?;
    let list = a.admin().users().await.map_err(service)?;
    let event = caller
        .event("http.users", Outcome::Success)
        .detail(format!("{} users listed", list.len()));
    audit(&a, event).await?;
    Ok(Json(list))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    role: String,
    password: String,
    person: Option<String>,
    /// The issuer of the local patient keys of what the user stores, whatever the files say.
    issuer: Option<String>,
}

/// `POST /api/users` `{name, role, password, person?, issuer?}`: adds a user (admin). The new
/// user must change the password at the first sign-in: an administrator chose it.
async fn add_user(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    caller.require(Permission::Administer)?;
    let u = body(
        b,
        "{\"name\", \"role\", \"password\", \"person\"?, \"issuer\"?}",
    )?;
    let name = user_name(&u.name)?;
    let role = Role::parse(&u.role).ok_or_else(|| {
        Problem::bad_request(format!(
            "{:?} is not a role (admin, radiologist, integrator, modality, patient)",
            strata_core::audit::capped(&u.role, 32)
        ))
    })?;
    check_new_password(&u.password).map_err(Problem::bad_request)?;
    let person = u.person.map(|p| p.to_ascii_lowercase());
    let hash = hash_password(&u.password);
    let added = a
        .admin()
        .add_user_with_temporary_password(
            name,
            role.as_str(),
            hash,
            person.as_deref(),
            u.issuer.as_deref(),
        )
        .await
        .map_err(service)?;
    if !added {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a user named {name} exists already"),
        ));
    }
    let issuer = u
        .issuer
        .as_deref()
        .map(|i| strata_mpi::local_issuer(Some(i), None));
    let mut detail = format!("user {name}, role {}", role.as_str());
    if let Some(i) = &issuer {
        detail.push_str(&format!(", issuer {i}"));
    }
    let event = caller
        .event("http.user.add", Outcome::Success)
        .detail(detail);
    audit(&a, event).await?;
    let answer = serde_json::json!({
        "name": name, "role": role.as_str(), "person": person, "issuer": issuer,
    });
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize)]
struct NewPassword {
    old_password: Option<String>,
    password: String,
}

/// `POST /api/users/{name}/password` `{old_password?, password}`: a user changes their own
/// password giving the old one (the other sessions end); an administrator sets anyone else's
/// without it (that user's sessions end, and they must change it at the next sign-in).
async fn change_password(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Result<Json<NewPassword>, JsonRejection>,
) -> Result<StatusCode, Problem> {
    let name = user_name(&name)?;
    let own = name == caller.principal.user;
    if !own {
        caller.require(Permission::Administer)?;
    }
    let p = body(b, "{\"old_password\" (your own), \"password\"}")?;
    check_new_password(&p.password).map_err(Problem::bad_request)?;
    if own {
        let Some(old) = &p.old_password else {
            return Err(Problem::bad_request(
                "give old_password to change your own password",
            ));
        };
        let remote = remote_address(&caller.remote);
        let right = a
            .access()
            .password_is(name, old, &remote)
            .await
            .map_err(service)?;
        if !right {
            let event = caller
                .event("http.user.password", Outcome::Failure)
                .detail(format!("user {name}: the old password was wrong"));
            audit(&a, event).await?;
            return Err(Problem::forbidden("the old password is wrong"));
        }
        if p.old_password.as_deref() == Some(p.password.as_str()) {
            return Err(Problem::bad_request(
                "the new password must differ from the old one",
            ));
        }
    }
    let keep = match (&caller.credential, own) {
        (Credential::Session(id), true) => Some(secret_hash(id)),
        _ => None,
    };
    let hash = hash_password(&p.password);
    let changed = a
        .admin()
        .set_password(name, hash, !own, keep)
        .await
        .map_err(service)?;
    if !changed {
        return Err(Problem::not_found(format!("no user named {name}")));
    }
    let detail = if own {
        format!("user {name} changed their own password")
    } else {
        format!("user {name}: password set by an administrator (to be changed at sign-in)")
    };
    audit(
        &a,
        caller
            .event("http.user.password", Outcome::Success)
            .detail(detail),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The address of `remote` (`ip:port`) without the port: what sign-in throttling counts.
pub fn remote_address(remote: &str) -> String {
    remote
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip().to_string())
        .unwrap_or_else(|_| remote.to_string())
}

/// `POST /api/users/{name}/disable` (admin): every token and session of the user is refused
/// from now on; nothing is deleted.
async fn disable_user(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    set_disabled(a, caller, name, true).await
}

/// `POST /api/users/{name}/enable` (admin): the user's credentials work again.
async fn enable_user(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    set_disabled(a, caller, name, false).await
}

async fn set_disabled(
    a: Arc<Archive>,
    caller: Caller,
    name: String,
    disabled: bool,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Administer)?;
    let name = user_name(&name)?;
    let action = if disabled {
        "http.user.disable"
    } else {
        "http.user.enable"
    };
    if !a
        .admin()
        .set_disabled(name, disabled)
        .await
        .map_err(service)?
    {
        return Err(Problem::not_found(format!("no user named {name}")));
    }
    audit(
        &a,
        caller
            .event(action, Outcome::Success)
            .detail(format!("user {name}")),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/users/{name}` (admin): removes the user with their tokens and sessions.
async fn remove_user(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Administer)?;
    let name = user_name(&name)?;
    if !a.admin().remove_user(name).await.map_err(service)? {
        return Err(Problem::not_found(format!("no user named {name}")));
    }
    audit(
        &a,
        caller
            .event("http.user.remove", Outcome::Success)
            .detail(format!("user {name}, with their tokens and sessions")),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/tokens?user=` (admin): tokens by id, revoked and expired ones included; never
/// a token or its hash.
async fn tokens(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<TokenRow>>, Problem> {
    caller.require(Permission::Administer)?;
    known_params(&q, &["user"])?;
    let user = q.get("user").map(|u| user_name(u)).transpose()?;
    let list = a.admin().tokens(user).await.map_err(service)?;
    let whose = user.map(|u| format!(" of {u}")).unwrap_or_default();
    let event = caller
        .event("http.tokens", Outcome::Success)
        .detail(format!("{} tokens{whose} listed", list.len()));
    audit(&a, event).await?;
    Ok(Json(list))
}

#[derive(Deserialize)]
struct NewToken {
    user: String,
    label: Option<String>,
    expires_in_days: Option<i64>,
}

/// `POST /api/tokens` `{user, label?, expires_in_days?}` (admin): a token for a user, shown
/// once in the answer; it expires after 90 days unless told otherwise (1 to 3650).
async fn create_token(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    caller.require(Permission::Administer)?;
    let t = body(
        b,
        "{\"user\", \"label\"?, \"expires_in_days\"? (default 90)}",
    )?;
    let user = user_name(&t.user)?;
    let Some(expires_at) = token_expiry(t.expires_in_days) else {
        return Err(Problem::bad_request(format!(
            "expires_in_days must be 1 to {MAX_TOKEN_DAYS} (default {DEFAULT_TOKEN_DAYS})"
        )));
    };
    let token = new_secret("stk_");
    let added = a
        .admin()
        .add_token(user, secret_hash(&token), t.label.clone(), Some(expires_at))
        .await
        .map_err(service)?;
    let Some(id) = added else {
        return Err(Problem::not_found(format!("no user named {user}")));
    };
    let event = caller
        .event("http.token.create", Outcome::Success)
        .detail(format!("token {id} for user {user}"));
    audit(&a, event).await?;
    let answer = serde_json::json!({
        "id": id, "user": user, "label": t.label, "expires_at": expires_at, "token": token,
    });
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /api/tokens/{id}` (admin): revokes the token with that id.
async fn revoke_token(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Permission::Administer)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Problem::bad_request("a token id is a number (GET /api/tokens)"))?;
    let Some(user) = a.admin().revoke_token_id(id).await.map_err(service)? else {
        return Err(Problem::not_found(format!("no live token {id}")));
    };
    let event = caller
        .event("http.token.revoke", Outcome::Success)
        .detail(format!("token {id} of user {user}"));
    audit(&a, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sessions?user=`: live sessions by id; an administrator sees everyone's (or one
/// user's), anyone else their own.
async fn sessions(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<SessionRow>>, Problem> {
    known_params(&q, &["user"])?;
    let asked = q.get("user").map(|u| user_name(u)).transpose()?;
    let admin = caller.principal.role.may(Permission::Administer);
    let user = match (admin, asked) {
        (true, u) => u,
        (false, Some(u)) if u != caller.principal.user => {
            return Err(Problem::forbidden(
                "only an administrator lists someone else's sessions",
            ))
        }
        (false, _) => Some(caller.principal.user.as_str()),
    };
    let list = a.admin().sessions(user).await.map_err(service)?;
    let whose = user.map(|u| format!(" of {u}")).unwrap_or_default();
    let event = caller
        .event("http.sessions", Outcome::Success)
        .detail(format!("{} sessions{whose} listed", list.len()));
    audit(&a, event).await?;
    Ok(Json(list))
}

/// `DELETE /api/sessions/{id}`: ends a session (an administrator's any, anyone else's their
/// own; someone else's answers 404 to them, as one that does not exist).
async fn end_session(
    State(a): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    if id.len() != strata_index::SESSION_NAME_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Problem::bad_request(format!(
            "a session id is {} hex digits (GET /api/sessions)",
            strata_index::SESSION_NAME_LEN
        )));
    }
    let admin = caller.principal.role.may(Permission::Administer);
    let only = (!admin).then_some(caller.principal.user.as_str());
    let Some(user) = a.admin().end_session(&id, only).await.map_err(service)? else {
        return Err(Problem::not_found(format!("no live session {id}")));
    };
    let event = caller
        .event("http.session.end", Outcome::Success)
        .detail(format!("session {id} of user {user}"));
    audit(&a, event).await?;
    Ok(StatusCode::NO_CONTENT)
}
