//! WADO-RS (PS3.18 10.4): studies, series and instances as `multipart/related` DICOM, streamed
//! one instance at a time; their metadata as DICOM JSON with a BulkDataURI for the pixel data
//! and any large binary value; frames; and bulk data with byte ranges.
//!
//! The read path: [`crate::index`] says which instances and which blobs, the archive reads each
//! blob (decrypting and verifying, repairing bad copies), and this module frames the answer.
//! Original objects and pixel data need [`Permission::OriginalPixels`]; metadata needs only
//! [`Permission::Metadata`].

use super::path_uid;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dicom_dictionary_std::tags;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::InstanceRef;
use strata_services::auth::Permission;
use strata_services::reads::{Then, Windows};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Native (not encapsulated) pixel data.
fn is_native(transfer_syntax: &str) -> bool {
    matches!(
        transfer_syntax,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
    )
}

/// Which instances a request names.
struct Target {
    study: String,
    series: Option<String>,
    sop: Option<String>,
}

impl Target {
    fn parse(study: &str, series: Option<&str>, sop: Option<&str>) -> Result<Target, Problem> {
        Ok(Target {
            study: path_uid(study, "study")?,
            series: series.map(|s| path_uid(s, "series")).transpose()?,
            sop: sop.map(|s| path_uid(s, "instance")).transpose()?,
        })
    }
}

/// The instances a request names, within the caller's scope (404 outside it).
async fn resolve(
    archive: &Archive,
    caller: &Caller,
    t: &Target,
) -> Result<Vec<InstanceRef>, Problem> {
    Ok(archive
        .reads()
        .resolve(
            &t.study,
            t.series.as_deref(),
            t.sop.as_deref(),
            caller.scope(),
        )
        .await?)
}

async fn audit(
    archive: &Archive,
    caller: &Caller,
    action: &str,
    refs: &[InstanceRef],
) -> Result<(), Problem> {
    let first = &refs[0];
    let event = caller
        .event(action, Outcome::Success)
        .patient(
            Some(first.patient_id.clone()),
            Some(first.study_uid.clone()),
        )
        .detail(format!("{} instances", refs.len()));
    archive
        .audit()
        .record_read(event)
        .await
        .map_err(Problem::internal)
}

/// The transfer syntax asked for by `Accept` for `multipart/related; type="application/dicom"`:
/// None for `*` (as stored); Explicit VR Little Endian when none is named (PS3.18 8.7.3.5.2).
fn requested_syntax(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else {
        return Ok(Some(EXPLICIT_LE.into()));
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("");
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let dicom_type = param("type").is_none_or(|t| t == "application/dicom");
        if (kind == "multipart/related" && dicom_type) || kind == "*/*" || kind == "multipart/*" {
            return Ok(match param("transfer-syntax").as_deref() {
                Some("*") => None,
                Some(ts) if strata_dicom::is_valid_uid(ts) => Some(ts.to_string()),
                Some(ts) => {
                    return Err(Problem::bad_request(format!(
                        "transfer-syntax {ts:?} is not a UID"
                    )))
                }
                None => Some(EXPLICIT_LE.into()),
            });
        }
    }
    Err(Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "instances are served as multipart/related; type=\"application/dicom\"",
    ))
}

/// True when `Accept` prefers `application/zip` (PS3.18 10.4.1.1.1 lists it for retrieving
/// studies and series) to multipart: the first of the two it names wins.
fn wants_zip(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else {
        return false;
    };
    for media in accept.split(',') {
        let kind = media.split(';').next().unwrap_or("").trim();
        if kind.eq_ignore_ascii_case("application/zip") {
            return true;
        }
        if kind.starts_with("multipart/") || kind == "*/*" {
            return false;
        }
    }
    false
}

/// A study or series as a ZIP of PS3.10 media (DICOMDIR, instances as stored, a page with a
/// picture per series): the media export, audited as one.
async fn media_zip(archive: Arc<Archive>, caller: Caller, t: Target) -> Result<Response, Problem> {
    caller.require(Permission::Export)?;
    let (export, name) = match &t.series {
        Some(series) => (
            archive
                .media()
                .series(&t.study, series, caller.scope())
                .await?,
            format!("series-{series}"),
        ),
        None => (
            archive
                .media()
                .studies(std::slice::from_ref(&t.study), caller.scope())
                .await?,
            format!("study-{}", t.study),
        ),
    };
    crate::export::answer(archive, &caller, "http.wado.retrieve", export, &name).await
}

fn boundary() -> String {
    format!("strata-{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Bytes read per step when streaming a stored instance: memory per response stays bounded
/// whatever the instance's size.
const STREAM_WINDOW: u64 = 4 << 20;

/// Instances fetched ahead while the current one is sent: each fetch (read, verify, decrypt)
/// runs as its own task, so two cores work on one response.
const PREFETCH: usize = 4;

/// One instance of a multipart response, fetched.
enum Part {
    /// Header, bytes and the closing line of a part, ready to send (as they are, uncopied).
    Whole([Vec<u8>; 3]),
    /// Larger than one window, or converted: its header, then its windows as they are read.
    Streamed(Vec<u8>, Box<Windows>),
}

fn part_header(b: &str, ts: &str, len: usize) -> Vec<u8> {
    format!("--{b}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

async fn fetch_part(
    archive: Arc<Archive>,
    r: InstanceRef,
    syntax: Option<String>,
    b: String,
) -> Result<Part, String> {
    let as_stored = syntax.as_deref().is_none_or(|s| s == r.transfer_syntax);
    if as_stored && r.size <= STREAM_WINDOW {
        let bytes = archive
            .reads()
            .read_blob_range(&r.blob_id, 0..r.size)
            .await
            .map_err(|e| e.to_string())?;
        let head = part_header(&b, &r.transfer_syntax, bytes.len());
        return Ok(Part::Whole([head, bytes, b"\r\n".to_vec()]));
    }
    let ts = match syntax {
        Some(s) if !as_stored => s,
        _ => r.transfer_syntax.clone(),
    };
    let windows = archive
        .reads()
        .part10_windows(&r.blob_id, r.size, &r.transfer_syntax, Some(&ts))
        .await
        .map_err(|e| e.to_string())?;
    let head = part_header(&b, &ts, windows.len() as usize);
    Ok(Part::Streamed(head, Box::new(windows)))
}

/// A part sent window by window: memory stays bounded whatever the instance's size.
fn streamed(
    head: Vec<u8>,
    windows: Windows,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    use futures::StreamExt;
    futures::stream::once(async move { Ok(head) })
        .chain(super::window_stream(windows))
        .chain(futures::stream::once(async { Ok(b"\r\n".to_vec()) }))
}

/// Streams the instances as one multipart/related body: the next instances are fetched while
/// the current one is sent; an instance larger than a window goes out window by window as it
/// is read; one converted to another syntax is converted whole, within the read budget.
fn multipart_dicom(
    archive: Arc<Archive>,
    refs: Vec<InstanceRef>,
    syntax: Option<String>,
) -> Response {
    use futures::StreamExt;
    let b = boundary();
    let ctype = format!("multipart/related; type=\"application/dicom\"; boundary={b}");
    let closing = format!("--{b}--\r\n").into_bytes();
    let (a, bb) = (archive.clone(), b.clone());
    let parts = futures::stream::iter(refs)
        .map(move |r| tokio::spawn(fetch_part(a.clone(), r, syntax.clone(), bb.clone())))
        .buffered(PREFETCH)
        .flat_map(move |fetched| match fetched {
            Ok(Ok(Part::Whole(chunks))) => futures::stream::iter(chunks.map(Ok)).boxed(),
            Ok(Ok(Part::Streamed(head, w))) => streamed(head, *w).boxed(),
            Ok(Err(e)) => {
                futures::stream::once(async move { Err(std::io::Error::other(e)) }).boxed()
            }
            Err(e) => {
                futures::stream::once(async move { Err(std::io::Error::other(e.to_string())) })
                    .boxed()
            }
        })
        .chain(futures::stream::once(async move { Ok(closing) }));
    ([(header::CONTENT_TYPE, ctype)], Body::from_stream(parts)).into_response()
}

async fn retrieve(
    archive: Arc<Archive>,
    caller: Caller,
    headers: HeaderMap,
    t: Target,
) -> Result<Response, Problem> {
    if wants_zip(&headers) && t.sop.is_none() {
        return media_zip(archive, caller, t).await;
    }
    caller.require(Permission::OriginalPixels)?;
    let syntax = requested_syntax(&headers)?;
    let refs = resolve(&archive, &caller, &t).await?;
    audit(&archive, &caller, "http.wado.retrieve", &refs).await?;
    Ok(multipart_dicom(archive, refs, syntax))
}

pub async fn study(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path(st): Path<String>,
) -> Result<Response, Problem> {
    retrieve(a, c, h, Target::parse(&st, None, None)?).await
}

pub async fn series(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path((st, se)): Path<(String, String)>,
) -> Result<Response, Problem> {
    retrieve(a, c, h, Target::parse(&st, Some(&se), None)?).await
}

pub async fn instance(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path((st, se, i)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    retrieve(a, c, h, Target::parse(&st, Some(&se), Some(&i))?).await
}

/// The first value of a numeric attribute in DICOM JSON text, found without parsing the whole
/// document (a metadata request may cover hundreds of instances).
fn first_number(json: &str, tag: &str) -> Option<u32> {
    let at = json.find(&format!("\"{tag}\""))?;
    let rest = &json[at..];
    let rest = &rest[..rest.find('}')?]; // this element's object only
    let value = rest.find("\"Value\"")?;
    let digits: String = rest[value..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One instance's metadata: the DICOM JSON precomputed at ingest, with BulkDataURIs added.
fn metadata_json(base: &str, r: &InstanceRef) -> String {
    let url = format!(
        "{base}/dicomweb/studies/{}/series/{}/instances/{}/bulk",
        r.study_uid, r.series_uid, r.sop_uid
    );
    let encapsulated = !is_native(&r.transfer_syntax);
    let mut json = if r.metadata.contains("InlineBinary") || r.metadata.contains("BulkDataURI") {
        // A header with binary values of its own (overlays, icons, float pixel data, private
        // blobs): each becomes bulk data, which only a caller allowed original pixels may
        // fetch. Metadata carries no binary value inline, however small. A value too large
        // for the index was kept out of it at ingest and named by its tag alone.
        let mut v: serde_json::Value =
            serde_json::from_str(&r.metadata).unwrap_or(serde_json::Value::Null);
        if let Some(map) = v.as_object_mut() {
            for (tag, e) in map.iter_mut() {
                if e.get("InlineBinary").is_some() || e.get("BulkDataURI").is_some() {
                    let vr = e.get("vr").cloned().unwrap_or(serde_json::json!("UN"));
                    *e = serde_json::json!({ "vr": vr, "BulkDataURI": format!("{url}/{tag}") });
                }
            }
        }
        v.to_string()
    } else {
        r.metadata.clone()
    };
    let bits = first_number(&r.metadata, "00280100").unwrap_or(16);
    let has_pixels = r.metadata.contains("\"00280010\"");
    if has_pixels && json.ends_with('}') {
        let vr = if encapsulated || bits <= 8 {
            "OB"
        } else {
            "OW"
        };
        json.pop();
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            "\"7FE00010\":{{\"vr\":\"{vr}\",\"BulkDataURI\":\"{url}/7FE00010\"}}}}"
        ));
    }
    json
}

async fn metadata(archive: Arc<Archive>, caller: Caller, t: Target) -> Result<Response, Problem> {
    caller.require(Permission::Metadata)?;
    let refs = resolve(&archive, &caller, &t).await?;
    audit(&archive, &caller, "http.wado.metadata", &refs).await?;
    let base = super::base_url(&archive);
    let mut body = String::with_capacity(refs.iter().map(|r| r.metadata.len() + 200).sum());
    body.push('[');
    for (i, r) in refs.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&metadata_json(&base, r));
    }
    body.push(']');
    Ok(([(header::CONTENT_TYPE, "application/dicom+json")], body).into_response())
}

pub async fn study_metadata(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path(st): Path<String>,
) -> Result<Response, Problem> {
    metadata(a, c, Target::parse(&st, None, None)?).await
}

pub async fn series_metadata(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path((st, se)): Path<(String, String)>,
) -> Result<Response, Problem> {
    metadata(a, c, Target::parse(&st, Some(&se), None)?).await
}

pub async fn instance_metadata(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    Path((st, se, i)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    metadata(a, c, Target::parse(&st, Some(&se), Some(&i))?).await
}

/// The one instance a frames or bulk data request names, its access audited.
async fn one_instance(
    archive: &Archive,
    caller: &Caller,
    t: &Target,
    action: &str,
) -> Result<InstanceRef, Problem> {
    caller.require(Permission::OriginalPixels)?;
    let refs = resolve(archive, caller, t).await?;
    audit(archive, caller, action, &refs).await?;
    Ok(refs
        .into_iter()
        .next()
        .expect("resolve returns at least one"))
}

/// Reads one instance whole (within the read budget) and parses it; `decode`: compressed pixel
/// data becomes native Explicit VR Little Endian.
async fn parse_instance(
    archive: &Archive,
    mut r: InstanceRef,
    decode: bool,
) -> Result<(InstanceRef, dicom_object::DefaultDicomObject), Problem> {
    let target = (decode && !is_native(&r.transfer_syntax)).then_some(EXPLICIT_LE);
    let bytes = archive
        .reads()
        .part10(&r.blob_id, r.size, &r.transfer_syntax, target, Then::Parse)
        .await?;
    if let Some(t) = target {
        r.transfer_syntax = t.to_string();
    }
    let obj = strata_dicom::part10::open(&bytes).map_err(Problem::internal)?;
    Ok((r, obj))
}

/// Where each wanted frame (1-based) lies in the stored instance, when all of them can be
/// located by its layout (as stored, or native); None when some cannot (the instance is then
/// read whole). A frame past the last is a 404.
async fn located_frames(
    archive: &Archive,
    r: &InstanceRef,
    wanted: &[u32],
) -> Result<Option<Vec<Vec<std::ops::Range<u64>>>>, Problem> {
    // big-endian words are served in little-endian order, which the parsed object gives
    if r.transfer_syntax == strata_dicom::syntax::EXPLICIT_VR_BIG_ENDIAN {
        return Ok(None);
    }
    let Ok(layout) = archive.reads().layout(&r.blob_id, r.size).await else {
        return Ok(None);
    };
    let mut located = Vec::with_capacity(wanted.len());
    for &n in wanted {
        if n > layout.frames() {
            return Err(Problem::not_found(format!(
                "frame {n}: the instance has {} frames",
                layout.frames()
            )));
        }
        match layout.frame_ranges(n - 1) {
            Ok(ranges) => located.push(ranges),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(located))
}

/// The bytes of each frame: a slice of native pixel data, or the fragments of one frame.
fn frames_of(obj: &dicom_object::DefaultDicomObject) -> Result<Vec<Vec<u8>>, Problem> {
    let pixel = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| Problem::not_found("the instance has no pixel data"))?;
    let count = strata_dicom::attr::attr_text(obj, tags::NUMBER_OF_FRAMES)
        .parse::<usize>()
        .unwrap_or(1)
        .max(1);
    if let Some(fragments) = pixel.fragments() {
        if fragments.len() == count {
            return Ok(fragments.to_vec());
        }
        if count == 1 {
            return Ok(vec![fragments.concat()]);
        }
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "frames spread over several fragments are not served yet",
        ));
    }
    let bytes = pixel.to_bytes().map_err(Problem::internal)?;
    let size = bytes.len() / count;
    Ok(bytes
        .chunks(size.max(1))
        .take(count)
        .map(|c| c.to_vec())
        .collect())
}

pub async fn frames(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path((st, se, i, list)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    // As stored only when asked for (`transfer-syntax=*` or a named syntax); the default,
    // application/octet-stream, is native pixel data (PS3.18 8.7.3.3.2).
    let accept = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let decode = !accept.contains("transfer-syntax=");
    let wanted = super::frame_list(&list)?;
    let t = Target::parse(&st, Some(&se), Some(&i))?;
    let r = one_instance(&a, &c, &t, "http.wado.frames").await?;
    let b = boundary();
    let ctype = format!("multipart/related; type=\"application/octet-stream\"; boundary={b}");
    let as_stored = !decode || is_native(&r.transfer_syntax);
    // as stored, each frame is read by its byte ranges as it is sent
    let located = match as_stored {
        true => located_frames(&a, &r, &wanted).await?,
        false => None,
    };
    if let Some(located) = located {
        let part_type = frame_part_type(&r.transfer_syntax);
        let (archive, blob) = (a.clone(), r.blob_id);
        let closing = format!("--{b}--\r\n").into_bytes();
        use futures::StreamExt;
        let parts = futures::stream::iter(located)
            .then(move |ranges: Vec<std::ops::Range<u64>>| {
                let (archive, b, part_type) = (archive.clone(), b.clone(), part_type.clone());
                async move {
                    let frame = archive
                        .reads()
                        .read_ranges(&blob, &ranges)
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let mut part = format!(
                        "--{b}\r\nContent-Type: {part_type}\r\nContent-Length: {}\r\n\r\n",
                        frame.len()
                    )
                    .into_bytes();
                    part.extend_from_slice(&frame);
                    part.extend_from_slice(b"\r\n");
                    Ok::<_, std::io::Error>(part)
                }
            })
            .chain(futures::stream::once(async move { Ok(closing) }));
        return Ok(([(header::CONTENT_TYPE, ctype)], Body::from_stream(parts)).into_response());
    }
    let (r, obj) = parse_instance(&a, r, decode).await?;
    let frames = frames_of(&obj)?;
    let part_type = frame_part_type(&r.transfer_syntax);
    let mut body = Vec::new();
    for n in wanted {
        let f = frames.get(n as usize - 1).ok_or_else(|| {
            Problem::not_found(format!(
                "frame {n}: the instance has {} frames",
                frames.len()
            ))
        })?;
        body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Type: {part_type}\r\nContent-Length: {}\r\n\r\n",
                f.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(f);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

/// A frame's part type: native pixel data, or the stored syntax's bytes.
fn frame_part_type(syntax: &str) -> String {
    if is_native(syntax) {
        "application/octet-stream".to_string()
    } else {
        format!("application/octet-stream; transfer-syntax={syntax}")
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` within `len`.
fn byte_range(headers: &HeaderMap, len: usize) -> Result<Option<std::ops::Range<usize>>, Problem> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = || {
        Problem::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {v:?} is not within {len} bytes"),
        )
    };
    let spec = v.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().map_err(|_| bad())?;
            len.saturating_sub(n)..len
        }
        (a, "") => a.parse::<usize>().map_err(|_| bad())?..len,
        (a, b) => {
            a.parse::<usize>().map_err(|_| bad())?
                ..b.parse::<usize>()
                    .map_err(|_| bad())?
                    .saturating_add(1)
                    .min(len)
        }
    };
    if range.start >= range.end || range.start >= len {
        return Err(bad());
    }
    Ok(Some(range))
}

pub async fn bulkdata(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Path((st, se, i, tag)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    let t = u32::from_str_radix(&tag, 16)
        .ok()
        .filter(|_| tag.len() == 8)
        .map(|n| dicom_core::Tag((n >> 16) as u16, (n & 0xFFFF) as u16))
        .ok_or_else(|| Problem::bad_request(format!("{tag:?} is not a tag (eight hex digits)")))?;
    let target = Target::parse(&st, Some(&se), Some(&i))?;
    let r = one_instance(&a, &c, &target, "http.wado.bulkdata").await?;
    // multipart/related (PS3.18 8.7.3.3) unless the client asks for the bare bytes
    let accept = h
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    let single = accept
        .split(',')
        .any(|a| a.split(';').next().unwrap_or("").trim() == "application/octet-stream")
        && !accept.contains("multipart/related");
    // native pixel data and the values left out of the header stream from their byte range
    if let Some(stored) = located_value(&a, &r, t).await {
        let total = (stored.end - stored.start) as usize;
        let (status, wanted) = match byte_range(&h, total)? {
            None => (StatusCode::OK, stored.clone()),
            Some(w) => (
                StatusCode::PARTIAL_CONTENT,
                stored.start + w.start as u64..stored.start + w.end as u64,
            ),
        };
        let len = wanted.end - wanted.start;
        let windows = a.reads().windows(&r.blob_id, wanted.clone()).await?;
        let b = boundary();
        let (ctype, head, tail) = if single {
            (
                "application/octet-stream".to_string(),
                Vec::new(),
                Vec::new(),
            )
        } else {
            (
                format!("multipart/related; type=\"application/octet-stream\"; boundary={b}"),
                format!("--{b}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n")
                    .into_bytes(),
                format!("\r\n--{b}--\r\n").into_bytes(),
            )
        };
        use futures::StreamExt;
        let body = futures::stream::once(async move { Ok(head) })
            .chain(super::window_stream(windows))
            .chain(futures::stream::once(async move { Ok(tail) }));
        let mut response = (
            status,
            [(header::CONTENT_TYPE, ctype)],
            Body::from_stream(body),
        )
            .into_response();
        if status == StatusCode::PARTIAL_CONTENT {
            let first = wanted.start - stored.start;
            let range = format!("bytes {first}-{}/{total}", first + len - 1);
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, range.parse().expect("ASCII header"));
        }
        return Ok(response);
    }
    let (_, obj) = parse_instance(&a, r, false).await?;
    let bytes = if t == tags::PIXEL_DATA {
        frames_of(&obj)?.concat()
    } else {
        let e = obj
            .element(t)
            .map_err(|_| Problem::not_found(format!("the instance has no ({tag})")))?;
        e.to_bytes()
            .map_err(|_| Problem::not_found(format!("({tag}) holds no bulk data")))?
            .to_vec()
    };
    let total = bytes.len();
    let (status, body, range) = match byte_range(&h, total)? {
        None => (StatusCode::OK, bytes, None),
        Some(r) => {
            let range = format!("bytes {}-{}/{total}", r.start, r.end - 1);
            (StatusCode::PARTIAL_CONTENT, bytes[r].to_vec(), Some(range))
        }
    };
    let (ctype, body) = if single {
        ("application/octet-stream".to_string(), body)
    } else {
        let b = boundary();
        let mut out = format!(
            "--{b}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        (
            format!("multipart/related; type=\"application/octet-stream\"; boundary={b}"),
            out,
        )
    };
    let mut response = (status, [(header::CONTENT_TYPE, ctype)], body).into_response();
    if let Some(range) = range {
        response
            .headers_mut()
            .insert(header::CONTENT_RANGE, range.parse().expect("ASCII header"));
    }
    Ok(response)
}

/// Where a value to be served as bulk data lies in the stored instance, when its layout says:
/// native pixel data, or a top-level value left out of the header for its size. None for the
/// rest (read from the parsed instance), and for big-endian data sets, whose words the parsed
/// instance gives in little-endian order.
async fn located_value(
    archive: &Archive,
    r: &InstanceRef,
    tag: dicom_core::Tag,
) -> Option<std::ops::Range<u64>> {
    if r.transfer_syntax == strata_dicom::syntax::EXPLICIT_VR_BIG_ENDIAN {
        return None;
    }
    let layout = archive.reads().layout(&r.blob_id, r.size).await.ok()?;
    if tag == tags::PIXEL_DATA {
        return match layout.pixels {
            Some(strata_dicom::inspect::PixelLayout::Native { offset, len }) if len > 0 => {
                Some(offset..offset + len)
            }
            _ => None,
        };
    }
    let (_, at, len) = layout.values.iter().find(|(t, _, _)| *t == tag)?;
    (*len > 0).then(|| *at..*at + *len as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_number_reads_one_attribute() {
        let json = r#"{"00280010":{"vr":"US","Value":[512]},"00280100":{"vr":"US","Value":[16]}}"#;
        assert_eq!(super::first_number(json, "00280100"), Some(16));
        assert_eq!(super::first_number(json, "00280010"), Some(512));
        assert_eq!(super::first_number(json, "00280101"), None);
        let empty = r#"{"00280100":{"vr":"US"},"00280101":{"vr":"US","Value":[12]}}"#;
        assert_eq!(
            super::first_number(empty, "00280100"),
            None,
            "an empty value is no value"
        );
    }
}
