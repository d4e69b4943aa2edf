//! STOW-RS (PS3.18 10.5): `multipart/related; type="application/dicom"` bodies, each part streamed
//! into a spool and through the one ingest path, so a large instance is never whole in memory.
//! The answer lists what was stored (ReferencedSOPSequence) and what was not, with its reason
//! (FailedSOPSequence): 200 when all were stored, 202 when some were, 409 when none were.

use super::path_uid;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::TryStreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_services::auth::Permission;
use strata_services::ingest::{self, IngestError, Source};
use tokio::task::JoinSet;

/// Parts of one request ingested at once: enough for their writes to share syncs, few enough
/// that spooled parts do not pile up.
const MAX_PARTS_IN_FLIGHT: usize = 8;

/// PS3.4 B.2.3 failure reasons used in FailedSOPSequence.
const PROCESSING_FAILURE: u16 = 0x0110;
const OUT_OF_RESOURCES: u16 = 0xA700;
const CANNOT_UNDERSTAND: u16 = 0xC000;
/// The instance belongs to another study than the one in the request URL.
const STUDY_MISMATCH: u16 = 0xA900;
/// Conflict: another instance is stored under this SOP Instance UID.
const DUPLICATE: u16 = 0x0111;

fn boundary_of(headers: &HeaderMap) -> Result<String, Problem> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "STOW-RS needs Content-Type multipart/related",
            )
        })?;
    let mut parts = ctype.split(';').map(str::trim);
    if !parts
        .next()
        .unwrap_or("")
        .eq_ignore_ascii_case("multipart/related")
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{ctype:?}: STOW-RS takes multipart/related; type=\"application/dicom\""),
        ));
    }
    let mut boundary = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "boundary" => boundary = Some(v.to_string()),
                "type" if v != "application/dicom" => {
                    return Err(Problem::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("type={v:?}: only application/dicom parts are accepted"),
                    ));
                }
                _ => {}
            }
        }
    }
    boundary
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Problem::bad_request("multipart/related without a boundary"))
}

/// Bytes of part headers, boundaries and preamble allowed per part: a part header that never
/// ends would otherwise be buffered whole by the multipart parser.
const HEADER_ALLOWANCE: u64 = 64 * 1024;

/// The request body as the multipart parser pulls it, counted: every byte (part headers,
/// boundaries and preamble included) against `http.max_body_bytes`, and the bytes that are not
/// part data against [`HEADER_ALLOWANCE`] per part. What went over is kept for the answer.
#[derive(Default)]
struct Counted {
    raw: AtomicU64,
    data: AtomicU64,
    parts: AtomicU64,
    over: Mutex<Option<String>>,
}

impl Counted {
    /// Takes the next chunk from the client, or refuses it.
    fn take(&self, len: u64, limit: u64) -> std::io::Result<()> {
        let before = self.raw.fetch_add(len, Ordering::Relaxed);
        // The parser asks for more only once it has used what it had: whatever is not part
        // data by then was headers, boundaries or preamble.
        let overhead = before.saturating_sub(self.data.load(Ordering::Relaxed));
        let allowed = HEADER_ALLOWANCE * (self.parts.load(Ordering::Relaxed) + 1);
        let why = if before + len > limit {
            format!("the body exceeds http.max_body_bytes ({limit})")
        } else if overhead > allowed {
            format!("part headers exceed {HEADER_ALLOWANCE} bytes per part")
        } else {
            return Ok(());
        };
        *self.over.lock().expect("stow counter") = Some(why.clone());
        Err(std::io::Error::other(why))
    }

    /// 413 when the body went over a limit, else the parser's complaint as 400.
    fn refusal(&self, e: multer::Error) -> Problem {
        match self.over.lock().expect("stow counter").clone() {
            Some(why) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, why),
            None => Problem::bad_request(format!("malformed multipart body: {e}")),
        }
    }
}

fn failure(sop_class: &str, sop: &str, reason: u16) -> Value {
    let mut item = serde_json::Map::new();
    if !sop_class.is_empty() {
        item.insert("00081150".into(), json!({"vr": "UI", "Value": [sop_class]}));
    }
    if !sop.is_empty() {
        item.insert("00081155".into(), json!({"vr": "UI", "Value": [sop]}));
    }
    item.insert("00081197".into(), json!({"vr": "US", "Value": [reason]}));
    Value::Object(item)
}

async fn store(
    archive: Arc<Archive>,
    caller: Caller,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
) -> Result<Response, Problem> {
    caller.require(Permission::Store)?;
    let boundary = boundary_of(&headers)?;
    // the account's issuer names the keys of what it stores (see `Source::issuers`)
    let issuer = archive
        .index()
        .user_credentials(caller.principal.user.clone())
        .await
        .map_err(Problem::internal)?
        .and_then(|c| c.issuer);
    let limit = archive.config().http.max_body_bytes;
    let base = super::base_url(archive.as_ref());
    let counted = Arc::new(Counted::default());
    let stream = {
        let counted = counted.clone();
        body.into_data_stream()
            .map_err(std::io::Error::other)
            .and_then(move |chunk| {
                let taken = counted.take(chunk.len() as u64, limit);
                std::future::ready(taken.map(|()| chunk))
            })
    };
    let mut multipart = multer::Multipart::new(stream, boundary);
    let (mut stored, mut failed, mut studies) = (Vec::new(), Vec::new(), Vec::new());
    // Parts arrive one after another; their ingests run side by side (so their writes share
    // syncs), and their results are read back in part order.
    let mut running: JoinSet<(usize, Result<ingest::Ingested, IngestError>)> = JoinSet::new();
    let mut outcomes: Vec<(usize, Option<Result<ingest::Ingested, IngestError>>)> = Vec::new();
    let mut parts = 0;
    let refused = |running: &mut JoinSet<_>, p: Problem| {
        running.detach_all(); // ingests under way finish cleanly
        Err(p)
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return refused(&mut running, counted.refusal(e)),
        };
        let n = parts;
        parts += 1;
        counted.parts.fetch_add(1, Ordering::Relaxed);
        let part_type = field
            .content_type()
            .map(|m| m.essence_str().to_string())
            .unwrap_or_default();
        let mut spool = archive.ingest().spool();
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    counted
                        .data
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if part_type == "application/dicom" {
                        if let Err(e) = spool.append(&chunk) {
                            let problem = if e.kind() == std::io::ErrorKind::FileTooLarge {
                                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
                            } else {
                                Problem::internal(e)
                            };
                            return refused(&mut running, problem);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return refused(&mut running, counted.refusal(e)),
            }
        }
        if part_type != "application/dicom" {
            outcomes.push((n, None));
            continue;
        }
        // the success audit event is written by ingest, with the instance's index row
        let source = Source::Web {
            user: caller.principal.user.clone(),
            role: caller.principal.role.as_str().to_string(),
            remote: caller.remote.clone(),
            study: study.clone(),
            issuer: issuer.clone(),
        };
        if running.len() >= MAX_PARTS_IN_FLIGHT {
            if let Some(done) = running.join_next().await {
                let (k, r) = done.map_err(Problem::internal)?;
                outcomes.push((k, Some(r)));
            }
        }
        let a = archive.clone();
        running.spawn(async move { (n, a.ingest().ingest_spool(spool, &source).await) });
    }
    while let Some(done) = running.join_next().await {
        let (k, r) = done.map_err(Problem::internal)?;
        outcomes.push((k, Some(r)));
    }
    outcomes.sort_by_key(|(k, _)| *k);
    for (_, outcome) in outcomes {
        match outcome {
            None => failed.push(failure("", "", CANNOT_UNDERSTAND)),
            Some(Ok(i)) => {
                let url = format!(
                    "{base}/dicomweb/studies/{}/series/{}/instances/{}",
                    i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid
                );
                stored.push(json!({
                    "00081150": {"vr": "UI", "Value": [i.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [i.sop_instance_uid]},
                    "00081190": {"vr": "UR", "Value": [url]},
                }));
                if !studies.contains(&i.study_instance_uid) {
                    studies.push(i.study_instance_uid);
                }
            }
            Some(Err(e)) => {
                let reason = match &e {
                    IngestError::WrongStudy { .. } => STUDY_MISMATCH,
                    IngestError::Invalid(_) => CANNOT_UNDERSTAND,
                    IngestError::Conflict { .. } => DUPLICATE,
                    IngestError::TooLarge { .. } => OUT_OF_RESOURCES,
                    _ => PROCESSING_FAILURE,
                };
                tracing::warn!(user = caller.principal.user, "STOW-RS part refused: {e}");
                let event = caller
                    .event("http.stow", Outcome::Failure)
                    .detail(e.to_string());
                archive
                    .audit()
                    .record(event)
                    .await
                    .map_err(Problem::internal)?;
                // the sender learns which instance was refused when it is known
                let sop = match &e {
                    IngestError::Conflict { sop_uid, .. }
                    | IngestError::Refused { sop_uid, .. } => sop_uid.as_str(),
                    _ => "",
                };
                failed.push(failure("", sop, reason));
            }
        }
    }
    if parts == 0 {
        return Err(Problem::bad_request("the multipart body has no parts"));
    }
    let mut answer = serde_json::Map::new();
    if let Some(s) = study.or_else(|| (studies.len() == 1).then(|| studies[0].clone())) {
        answer.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{base}/dicomweb/studies/{s}")]}),
        );
    }
    if !stored.is_empty() {
        answer.insert("00081199".into(), json!({"vr": "SQ", "Value": stored}));
    }
    if !failed.is_empty() {
        answer.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    let status = match (stored.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Value::Object(answer).to_string(),
    )
        .into_response())
}

pub async fn studies(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    store(a, c, h, None, body).await
}

pub async fn study(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path(study): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let study = path_uid(&study, "study")?;
    store(a, c, h, Some(study), body).await
}
