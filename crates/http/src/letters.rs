//! Access letters over HTTP: the patient's own copy, with credentials the provider hands over
//! ([`strata_services::letters`]).
//!
//! For staff with [`Permission::IssueLetters`]: `POST /api/letters {person, valid_days}` issues
//! a letter (its code and passcode are in this answer only; with `Accept: text/html` the
//! answer is the printable letter), `GET /api/letters[?person=ID]` lists them and
//! `POST /api/letters/{id}/revoke` revokes one.
//!
//! For the letter's holder, with no account: the page `/letter`, `POST /api/letter/open
//! {code}` (the letter and its studies) and `POST /api/letter/download` with the code and the
//! passcode (JSON, or a form, so the page can let the browser save the file), which answers the
//! person's media ZIP encrypted under the passcode (`application/pgp-encrypted`, `.zip.gpg`).
//! Every code (and passcode) tried counts against the client address and against all
//! addresses together ([`crate::throttle::CodeAttempts`]): beyond, 429 with Retry-After and
//! nothing is looked up. A wrong code is 401, a revoked or expired letter 410.
//!
//! Audited: every issue and revocation (by the staff member), every opening (one event per
//! study shown) and download (one per study, before the first byte), and every refusal but
//! the throttle's (which would let anyone fill the trail).

use crate::auth::{remote_text, Caller};
use crate::problem::Problem;
use crate::throttle::CodeAttempts;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::{AuditEvent, Outcome};
use strata_index::{LetterRow, PersonStudy};
use strata_services::auth::Permission;
use strata_services::letters::{Issued, LetterError, OpenLetter};

/// The role a letter's holder has in the audit trail.
const HOLDER_ROLE: &str = "letter";
/// Longest code or passcode read from a request (both are far shorter).
const MAX_SECRET_CHARS: usize = 64;

/// Staff routes (behind authentication).
pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/letters", get(list).post(issue))
        .route("/api/letters/{id}/revoke", post(revoke))
}

/// The holder's routes: open, each code tried counted in `attempts`.
pub fn public(attempts: Arc<CodeAttempts>) -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/letter/open", post(open))
        .route("/api/letter/download", post(download))
        .layer(Extension(attempts))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    person: String,
    valid_days: Option<i64>,
}

/// `POST /api/letters`: a new letter, shown once.
async fn issue(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<IssueBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    caller.require(Permission::IssueLetters)?;
    let Json(body) = body.map_err(|e| {
        Problem::bad_request(format!("expected JSON {{\"person\", \"valid_days\"}}: {e}"))
    })?;
    let person = crate::export::person_id(&body.person)?;
    let user = caller.principal.user.clone();
    let issued = match archive
        .letters()
        .issue(&person, body.valid_days, &user)
        .await
    {
        Ok(issued) => issued,
        Err(e) => {
            let event = caller
                .event("letter.issue", Outcome::Failure)
                .detail(format!("for person {person}: {e}"));
            audit(&archive, event).await?;
            return Err(staff_problem(e));
        }
    };
    let letter = &issued.letter;
    let event = caller
        .event("letter.issue", Outcome::Success)
        .detail(format!(
            "letter {} for person {}, valid until {}",
            letter.id,
            letter.person,
            day(letter.expires_at)
        ));
    audit(&archive, event).await?;
    let url = format!("{}/letter", crate::dicomweb::base_url(&archive));
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let page = printable(&issued, &url);
        return Ok((
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response());
    }
    let body = serde_json::json!({
        "letter": letter,
        "code": issued.code,
        "passcode": issued.passcode,
        "url": url,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    person: Option<String>,
}

/// `GET /api/letters[?person=ID]`: the letters, newest first (never their secrets).
async fn list(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<LetterRow>>, Problem> {
    caller.require(Permission::IssueLetters)?;
    let Query(q) =
        query.map_err(|e| Problem::bad_request(format!("give person=ID or nothing: {e}")))?;
    let person = q
        .person
        .as_deref()
        .map(crate::export::person_id)
        .transpose()?;
    let letters = archive
        .letters()
        .list(person)
        .await
        .map_err(staff_problem)?;
    Ok(Json(letters))
}

/// `POST /api/letters/{id}/revoke`: the letter opens nothing from now on.
async fn revoke(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<LetterRow>, Problem> {
    caller.require(Permission::IssueLetters)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Problem::bad_request(format!("{id:.40?} is not a letter number")))?;
    let user = caller.principal.user.clone();
    let letter = archive
        .letters()
        .revoke(id, &user)
        .await
        .map_err(staff_problem)?
        .ok_or_else(|| Problem::not_found(format!("no letter {id}")))?;
    let event = caller
        .event("letter.revoke", Outcome::Success)
        .detail(format!("letter {id} for person {}", letter.person));
    audit(&archive, event).await?;
    Ok(Json(letter))
}

/// What the holder sends: the code, and for a download the passcode.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Presented {
    code: String,
    passcode: Option<String>,
}

impl Presented {
    /// The request's body, JSON or a form.
    fn read(headers: &HeaderMap, body: &Bytes) -> Result<Presented, Problem> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let presented: Presented = if json {
            serde_json::from_slice(body).map_err(|e| {
                Problem::bad_request(format!("expected JSON {{\"code\", \"passcode\"}}: {e}"))
            })?
        } else {
            let (mut code, mut passcode) = (None, None);
            for (k, v) in url::form_urlencoded::parse(body) {
                match k.as_ref() {
                    "code" => code = Some(v.into_owned()),
                    "passcode" => passcode = Some(v.into_owned()),
                    other => {
                        return Err(Problem::bad_request(format!(
                            "unknown field {other:.32}: give code and passcode"
                        )))
                    }
                }
            }
            Presented {
                code: code.ok_or_else(|| Problem::bad_request("give the letter's code"))?,
                passcode,
            }
        };
        let long = |s: &str| s.chars().count() > MAX_SECRET_CHARS;
        if long(&presented.code) || presented.passcode.as_deref().is_some_and(long) {
            return Err(Problem::bad_request(
                "that is longer than a letter's code or passcode",
            ));
        }
        Ok(presented)
    }
}

/// `POST /api/letter/open {code}`: the letter and the studies it shows.
async fn open(
    State(archive): State<Arc<Archive>>,
    Extension(attempts): Extension<Arc<CodeAttempts>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    attempts.check(addr.ip())?;
    let presented = Presented::read(&headers, &body)?;
    let remote = remote_text(addr);
    let letter = accept(&archive, &presented.code, &remote, "letter.open").await?;
    let studies = archive
        .letters()
        .studies(&letter)
        .await
        .map_err(holder_problem)?;
    for s in &studies {
        let event = holder_event(&letter.letter, "letter.open", Outcome::Success, &remote)
            .patient(Some(s.patient_id.clone()), Some(s.study_uid.clone()))
            .detail(format!("letter {}: the study listed", letter.letter.id));
        archive
            .audit()
            .record_read(event)
            .await
            .map_err(Problem::internal)?;
    }
    let body = serde_json::json!({
        "letter": {"id": letter.letter.id, "expires_at": letter.letter.expires_at},
        "studies": studies.iter().map(study_json).collect::<Vec<_>>(),
    });
    Ok(no_store(Json(body).into_response()))
}

/// `POST /api/letter/download` with the code and the passcode: the media ZIP of the letter's
/// studies, encrypted under the passcode.
async fn download(
    State(archive): State<Arc<Archive>>,
    Extension(attempts): Extension<Arc<CodeAttempts>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    attempts.check(addr.ip())?;
    let presented = Presented::read(&headers, &body)?;
    let remote = remote_text(addr);
    let letter = accept(&archive, &presented.code, &remote, "letter.download").await?;
    let passcode = presented
        .passcode
        .ok_or_else(|| Problem::bad_request("give the passcode printed on the letter"))?;
    let (passphrase, export) = match archive.letters().download(&letter, &passcode).await {
        Ok(found) => found,
        Err(e) => {
            let outcome = match e {
                LetterError::WrongPasscode { .. } => Outcome::Failure,
                _ => Outcome::Denied,
            };
            let event = holder_event(&letter.letter, "letter.download", outcome, &remote)
                .detail(format!("letter {}: {e}", letter.letter.id));
            audit(&archive, event).await?;
            return Err(holder_problem(e));
        }
    };
    for s in &export.studies {
        let event = holder_event(&letter.letter, "letter.download", Outcome::Success, &remote)
            .patient(Some(s.patient_id.clone()), Some(s.study_uid.clone()))
            .detail(format!(
                "letter {}: media ZIP encrypted under the passcode (OpenPGP), {} instances",
                letter.letter.id, s.instances
            ));
        archive
            .audit()
            .record_read(event)
            .await
            .map_err(Problem::internal)?;
    }
    let name = format!("studies-{}", day(strata_core::now_ms()));
    let source = crate::dicomweb::base_url(&archive);
    let zip = archive.media().zip(export, &source);
    let body = strata_services::media::openpgp::encrypted(zip, passphrase, format!("{name}.zip"));
    let response = (
        [
            (
                header::CONTENT_TYPE,
                "application/pgp-encrypted".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.zip.gpg\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response();
    Ok(no_store(response))
}

/// The letter `code` opens, or the refusal (audited) to give the holder.
async fn accept(
    archive: &Archive,
    code: &str,
    remote: &str,
    action: &str,
) -> Result<OpenLetter, Problem> {
    match archive.letters().open(code).await {
        Ok(letter) => Ok(letter),
        Err(e) => {
            let event = match &e {
                LetterError::UnknownCode => {
                    AuditEvent::now("letter:?", HOLDER_ROLE, action, Outcome::Failure)
                        .remote(remote)
                        .detail("no letter has this access code")
                }
                LetterError::Revoked { letter }
                | LetterError::Expired { letter }
                | LetterError::Merged { letter, .. } => {
                    holder_event(letter, action, Outcome::Denied, remote)
                        .detail(format!("letter {}: {e}", letter.id))
                }
                _ => return Err(holder_problem(e)),
            };
            audit(archive, event).await?;
            Err(holder_problem(e))
        }
    }
}

/// An event by the holder of `letter`.
fn holder_event(letter: &LetterRow, action: &str, outcome: Outcome, remote: &str) -> AuditEvent {
    AuditEvent::now(
        &format!("letter:{}", letter.id),
        HOLDER_ROLE,
        action,
        outcome,
    )
    .remote(remote)
}

async fn audit(archive: &Archive, event: AuditEvent) -> Result<(), Problem> {
    archive
        .audit()
        .record(event)
        .await
        .map_err(Problem::internal)
}

/// What the holder learns of a refusal.
fn holder_problem(e: LetterError) -> Problem {
    match e {
        LetterError::UnknownCode | LetterError::WrongPasscode { .. } => {
            Problem::new(StatusCode::UNAUTHORIZED, e.to_string())
        }
        LetterError::Revoked { .. } | LetterError::Expired { .. } | LetterError::Merged { .. } => {
            Problem::new(StatusCode::GONE, e.to_string())
        }
        LetterError::Service(e) => e.into(),
        e => Problem::bad_request(e.to_string()),
    }
}

/// What staff learn of a refusal.
fn staff_problem(e: LetterError) -> Problem {
    match e {
        LetterError::NoPerson(_) => Problem::not_found(e.to_string()),
        LetterError::MergedPerson { .. } | LetterError::NothingConfirmed(_) => {
            Problem::new(StatusCode::CONFLICT, e.to_string())
        }
        LetterError::Service(e) => e.into(),
        e => Problem::bad_request(e.to_string()),
    }
}

/// The holder's answers are patient data: no cache keeps them.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn study_json(s: &PersonStudy) -> serde_json::Value {
    serde_json::json!({
        "study_uid": s.study_uid,
        "date": s.study_date,
        "description": s.description,
        "modalities": s.modalities,
        "instances": s.num_instances,
    })
}

/// A time (ms) as its day, `YYYY-MM-DD` (UTC).
fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The letter to print and hand over: where to go, the code, the passcode, until when, and
/// how to open the file.
fn printable(issued: &Issued, url: &str) -> String {
    let l = &issued.letter;
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>Your imaging studies: access letter {id}</title></head>\n<body>\n\
         <h1>Your imaging studies</h1>\n\
         <p>With this letter you (or someone you trust) can see and download a copy of your \
         imaging studies, without an account. Keep it safe: anyone holding it can take the copy.</p>\n\
         <ol>\n<li>Go to <strong class=\"url\">{url}</strong></li>\n\
         <li>Type the access code: <strong class=\"code\">{code}</strong></li>\n\
         <li>To download, type the passcode: <strong class=\"passcode\">{passcode}</strong></li>\n</ol>\n\
         <p>The letter is valid until <strong class=\"expires\">{expires}</strong> (UTC).</p>\n\
         <p>The file you download (<code>.zip.gpg</code>) is encrypted with the passcode \
         (OpenPGP). Open it with GnuPG: <code>gpg --decrypt studies.zip.gpg &gt; studies.zip</code>, \
         or any OpenPGP program (Kleopatra, GPG Suite), typing the passcode exactly as printed, \
         in capitals. The ZIP holds the original DICOM files with a DICOMDIR for any DICOM \
         viewer, and INDEX.HTM with a picture of each series for any browser.</p>\n\
         <p>Letter {id}, issued by {by} on {issued}. Lost it? Ask us to revoke it and issue a new one.</p>\n\
         </body>\n</html>\n",
        id = l.id,
        url = html(url),
        code = html(&issued.code),
        passcode = html(&issued.passcode),
        expires = day(l.expires_at),
        by = html(&l.issued_by),
        issued = day(l.issued_at),
    )
}
