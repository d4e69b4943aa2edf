//! Rendered resources and thumbnails (PS3.18 8.3.5, 10.4): studies, series, instances and
//! frames as JPEG or PNG pictures made by the render pool, never the original pixel data — what
//! a radiologist's viewer gets. Query parameters `window=center,width[,function]`,
//! `viewport=vw,vh` (the picture is scaled to fit, keeping its aspect) and `quality` (JPEG,
//! 1–100); `Accept` (or the `accept` parameter) chooses image/jpeg (the default) or image/png.
//! A study or series, or several frames, come back as `multipart/related` with one picture per
//! instance (its first frame) or frame. Thumbnails are one small picture of a representative
//! frame: the middle instance of the first series of a study, the middle instance of a series,
//! the middle frame of an instance.
//!
//! Every answer, and every failure to render, is audited.

use super::path_uid;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::collections::HashMap;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::InstanceRef;
use strata_render::picture::PictureFormat;
use strata_render::{Priority, RenderError, View, VoiFunction, Window};
use strata_services::auth::Permission;
use strata_services::pictures::RenderInstanceError;

/// JPEG quality when the request names none: visually lossless for greyscale at a third of
/// PNG's size.
const DEFAULT_QUALITY: u8 = 90;
/// The box a thumbnail fits in unless `viewport` says otherwise.
const THUMBNAIL_BOX: (u32, u32) = (128, 128);
/// The largest viewport side served: bounds the memory and time one request can take.
const MAX_VIEWPORT: u32 = 8192;
/// Instances rendered side by side for a study or series (the pool bounds the CPU anyway).
const PARALLEL_RENDERS: usize = 4;

/// The picture format a client can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }

    fn parse(media: &str) -> Option<Format> {
        match media.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/*" | "*/*" | "image/jpg" => Some(Format::Jpeg),
            "image/png" => Some(Format::Png),
            _ => None,
        }
    }
}

/// The format asked for by the `accept` query parameter (PS3.18 8.3.3.1) or the Accept header:
/// the first media range we can produce, JPEG for wildcards and when nothing is asked; 406 when
/// nothing asked for can be produced. `multipart/related; type=…` names the type of each part.
pub fn negotiate(headers: &HeaderMap, q: &HashMap<String, String>) -> Result<Format, Problem> {
    let accept = match q.get("accept") {
        Some(a) => a.clone(),
        None => match headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) {
            Some(a) if !a.trim().is_empty() => a.to_string(),
            _ => return Ok(Format::Jpeg),
        },
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let inner = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("type"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string());
        let wanted = if kind == "multipart/related" {
            inner.as_deref().map_or(Some(Format::Jpeg), Format::parse)
        } else {
            Format::parse(&kind)
        };
        if let Some(f) = wanted {
            return Ok(f);
        }
    }
    Err(Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        format!("rendered images are served as image/jpeg or image/png, not {accept:?}"),
    ))
}

/// `window=center,width[,function]` (PS3.18 8.3.5.1.4): 400 for anything else, or for a width
/// the function does not allow.
pub fn parse_window(value: &str) -> Result<Window, Problem> {
    let bad = |why: &str| Problem::bad_request(format!("window={value:?}: {why}"));
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad("expected center,width[,function]"));
    }
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    let center = num(parts[0]).ok_or_else(|| bad("the center is not a number"))?;
    let width = num(parts[1]).ok_or_else(|| bad("the width is not a number"))?;
    let function = match parts.get(2) {
        Some(f) => VoiFunction::parse(f)
            .ok_or_else(|| bad("the function is one of linear, linear-exact, sigmoid"))?,
        None => VoiFunction::Linear,
    };
    let w = Window {
        center,
        width,
        function,
    };
    w.validate().map_err(|e| bad(&e.to_string()))?;
    Ok(w)
}

/// `viewport=vw,vh` (PS3.18 8.3.5.1.3); either may be empty (then the aspect decides it).
/// Source rectangles (`sx,sy,sw,sh`) are refused with 400 rather than ignored.
pub fn parse_viewport(value: &str) -> Result<(Option<u32>, Option<u32>), Problem> {
    let bad = |why: &str| Problem::bad_request(format!("viewport={value:?}: {why}"));
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.len() != 2 {
        return Err(bad(
            "expected vw,vh (a source rectangle is not supported here)",
        ));
    }
    let side = |s: &str| -> Result<Option<u32>, Problem> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (1..=MAX_VIEWPORT).contains(v))
            .map(Some)
            .ok_or_else(|| bad(&format!("sides are whole numbers from 1 to {MAX_VIEWPORT}")))
    };
    let (w, h) = (side(parts[0])?, side(parts[1])?);
    if w.is_none() && h.is_none() {
        return Err(bad("give a width, a height or both"));
    }
    Ok((w, h))
}

/// The size of a `columns`×`rows` picture scaled to fit the viewport, aspect kept.
pub fn fitted(columns: u32, rows: u32, viewport: (Option<u32>, Option<u32>)) -> (u32, u32) {
    let (c, r) = (f64::from(columns.max(1)), f64::from(rows.max(1)));
    let scale = match viewport {
        (Some(w), Some(h)) => (f64::from(w) / c).min(f64::from(h) / r),
        (Some(w), None) => f64::from(w) / c,
        (None, Some(h)) => f64::from(h) / r,
        (None, None) => 1.0,
    };
    let side = |v: f64| ((v * scale).round() as u32).clamp(1, MAX_VIEWPORT);
    (side(c), side(r))
}

/// What a request asks of each picture.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub window: Option<Window>,
    pub viewport: Option<(Option<u32>, Option<u32>)>,
    pub format: Format,
    pub quality: u8,
}

impl Request {
    fn parse(headers: &HeaderMap, q: &HashMap<String, String>) -> Result<Request, Problem> {
        let quality = match q.get("quality") {
            Some(v) => v
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|v| (1..=100).contains(v))
                .ok_or_else(|| {
                    Problem::bad_request(format!("quality={v:?}: a whole number from 1 to 100"))
                })?,
            None => DEFAULT_QUALITY,
        };
        Ok(Request {
            window: q.get("window").map(|w| parse_window(w)).transpose()?,
            viewport: q.get("viewport").map(|v| parse_viewport(v)).transpose()?,
            format: negotiate(headers, q)?,
            quality,
        })
    }
}

/// The HTTP answer to a render that failed: the archive's errors as usual; a frame that does not
/// exist is 404; pixel data that cannot be decoded 422, an image kind we cannot render 415.
pub fn render_problem(e: RenderInstanceError) -> Problem {
    match e {
        RenderInstanceError::Archive(e) => e.into(),
        RenderInstanceError::Encode(e) => Problem::internal(e),
        RenderInstanceError::Render(e) => match e {
            RenderError::NoSuchFrame { .. } => Problem::not_found(e.to_string()),
            RenderError::Unsupported(_) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
            }
            RenderError::NoPixelData | RenderError::Decode(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
        },
    }
}

/// A numeric attribute of an instance's precomputed DICOM JSON.
fn json_number(r: &InstanceRef, tag: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(&r.metadata).ok()?;
    let n = &v.get(tag)?.get("Value")?[0];
    n.as_u64()
        .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
}

/// Number of Frames of an instance (1 when it has none).
pub fn frame_count(r: &InstanceRef) -> u32 {
    json_number(r, "00280008").unwrap_or(1).max(1)
}

/// Rows and columns of an image instance, None for instances without pixels (reports, SR).
fn image_size(r: &InstanceRef) -> Option<(u32, u32)> {
    Some((json_number(r, "00280011")?, json_number(r, "00280010")?))
}

/// Renders frame `frame` of `r` and encodes it.
pub async fn picture(
    archive: &Archive,
    r: &InstanceRef,
    frame: u32,
    req: &Request,
    priority: Priority,
) -> Result<Vec<u8>, Problem> {
    let viewport = match (req.viewport, image_size(r)) {
        (Some(v), Some((c, rows))) => Some(fitted(c, rows, v)),
        _ => None,
    };
    let view = View {
        window: req.window,
        viewport,
        ..View::default()
    };
    let format = match req.format {
        Format::Jpeg => PictureFormat::Jpeg(req.quality),
        Format::Png => PictureFormat::Png,
    };
    archive
        .pictures()
        .picture(&r.sop_uid, frame, view, priority, format)
        .await
        .map_err(render_problem)
}

async fn audit(
    archive: &Archive,
    caller: &Caller,
    action: &str,
    refs: &[InstanceRef],
    outcome: &Result<impl Sized, Problem>,
) -> Result<(), Problem> {
    let first = &refs[0];
    let (result, detail) = match outcome {
        Ok(_) if refs.len() == 1 => (Outcome::Success, first.sop_uid.clone()),
        Ok(_) => (Outcome::Success, format!("{} instances", refs.len())),
        Err(p) => (Outcome::Failure, format!("{}: {}", p.status, p.detail)),
    };
    let event = caller
        .event(action, result)
        .patient(
            Some(first.patient_id.clone()),
            Some(first.study_uid.clone()),
        )
        .detail(detail);
    archive
        .audit()
        .record_read(event)
        .await
        .map_err(Problem::internal)
}

/// The instances a request names, within the caller's scope (404 outside it).
async fn resolve(
    archive: &Archive,
    caller: &Caller,
    study: &str,
    series: Option<&str>,
    sop: Option<&str>,
) -> Result<Vec<InstanceRef>, Problem> {
    let study = path_uid(study, "study")?;
    let series = series.map(|s| path_uid(s, "series")).transpose()?;
    let sop = sop.map(|s| path_uid(s, "instance")).transpose()?;
    Ok(archive
        .reads()
        .resolve(&study, series.as_deref(), sop.as_deref(), caller.scope())
        .await?)
}

fn single(format: Format, bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, format.media_type())], bytes).into_response()
}

/// Pictures as multipart/related, rendered while the answer goes out, a few at a time: never
/// all of them in memory, however many the request names. The first is rendered before the
/// answer starts (so a request that cannot be served gets its error status); a later failure
/// ends the answer early, after whole parts only.
fn multipart(
    archive: Arc<Archive>,
    req: Request,
    first: Vec<u8>,
    rest: Vec<(InstanceRef, u32)>,
) -> Response {
    use futures::StreamExt;
    let b = format!("strata-{}", hex::encode(rand::random::<[u8; 12]>()));
    let media = req.format.media_type();
    let part = {
        let b = b.clone();
        move |p: Vec<u8>| {
            let mut out = format!(
                "--{b}\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n",
                p.len()
            )
            .into_bytes();
            out.extend_from_slice(&p);
            out.extend_from_slice(b"\r\n");
            out
        }
    };
    let first = futures::stream::once(std::future::ready(Ok(part.clone()(first))));
    let rest = futures::stream::iter(rest)
        .map(move |(r, frame)| {
            let archive = archive.clone();
            async move { picture(&archive, &r, frame, &req, Priority::Http).await }
        })
        .buffered(PARALLEL_RENDERS)
        .map(move |p| p.map(&part).map_err(|e| std::io::Error::other(e.detail)));
    let end = futures::stream::once(std::future::ready(Ok(format!("--{b}--\r\n").into_bytes())));
    let ctype = format!("multipart/related; type=\"{media}\"; boundary={b}");
    (
        [(header::CONTENT_TYPE, ctype)],
        Body::from_stream(first.chain(rest).chain(end)),
    )
        .into_response()
}

/// A study or series: the first frame of each image instance, as multipart/related.
async fn rendered_many(
    archive: Arc<Archive>,
    caller: Caller,
    headers: HeaderMap,
    q: HashMap<String, String>,
    study: String,
    series: Option<String>,
) -> Result<Response, Problem> {
    caller.require(Permission::Rendered)?;
    let req = Request::parse(&headers, &q)?;
    let refs = resolve(&archive, &caller, &study, series.as_deref(), None).await?;
    let images: Vec<InstanceRef> = refs
        .iter()
        .filter(|r| image_size(r).is_some())
        .cloned()
        .collect();
    let mut jobs = images.into_iter().map(|r| (r, 0));
    let outcome = match jobs.next() {
        None => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no instance here holds an image",
        )),
        Some((r, frame)) => picture(&archive, &r, frame, &req, Priority::Http).await,
    };
    audit(&archive, &caller, "http.wado.rendered", &refs, &outcome).await?;
    Ok(multipart(archive, req, outcome?, jobs.collect()))
}

pub async fn study(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(st): Path<String>,
) -> Result<Response, Problem> {
    rendered_many(a, c, h, q, st, None).await
}

pub async fn series(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path((st, se)): Path<(String, String)>,
) -> Result<Response, Problem> {
    rendered_many(a, c, h, q, st, Some(se)).await
}

/// Frames (1-based numbers) of one instance: one picture, or multipart/related for several.
async fn rendered_frames(
    archive: Arc<Archive>,
    caller: Caller,
    headers: HeaderMap,
    q: HashMap<String, String>,
    (study, series, sop): (String, String, String),
    frames: Vec<u32>,
) -> Result<Response, Problem> {
    caller.require(Permission::Rendered)?;
    let req = Request::parse(&headers, &q)?;
    let refs = resolve(&archive, &caller, &study, Some(&series), Some(&sop)).await?;
    let r = &refs[0];
    let count = frame_count(r);
    if let Some(n) = frames.iter().find(|&&n| n > count) {
        return Err(Problem::not_found(format!(
            "frame {n}: the instance has {count} frame(s)"
        )));
    }
    let outcome = picture(&archive, r, frames[0] - 1, &req, Priority::Http).await;
    audit(&archive, &caller, "http.wado.rendered", &refs, &outcome).await?;
    let first = outcome?;
    Ok(if frames.len() == 1 {
        single(req.format, first)
    } else {
        let rest = frames[1..].iter().map(|&f| (r.clone(), f - 1)).collect();
        multipart(archive, req, first, rest)
    })
}

pub async fn instance(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(ids): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    rendered_frames(a, c, h, q, ids, vec![1]).await
}

pub async fn frames(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path((st, se, i, list)): Path<(String, String, String, String)>,
) -> Result<Response, Problem> {
    let wanted = super::frame_list(&list)?;
    rendered_frames(a, c, h, q, (st, se, i), wanted).await
}

/// One small picture of a representative frame of what the path names.
async fn thumbnail(
    archive: Arc<Archive>,
    caller: Caller,
    headers: HeaderMap,
    q: HashMap<String, String>,
    (study, series, sop): (String, Option<String>, Option<String>),
) -> Result<Response, Problem> {
    caller.require(Permission::Rendered)?;
    let mut req = Request::parse(&headers, &q)?;
    if req.viewport.is_none() {
        req.viewport = Some((Some(THUMBNAIL_BOX.0), Some(THUMBNAIL_BOX.1)));
    }
    let refs = resolve(&archive, &caller, &study, series.as_deref(), sop.as_deref()).await?;
    // the first series holding images, its middle instance, that instance's middle frame
    let first_series = refs
        .iter()
        .find(|r| image_size(r).is_some())
        .map(|r| r.series_uid.clone());
    let images: Vec<&InstanceRef> = refs
        .iter()
        .filter(|r| Some(&r.series_uid) == first_series.as_ref() && image_size(r).is_some())
        .collect();
    let outcome = match images.get(images.len() / 2) {
        None => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no instance here holds an image",
        )),
        Some(r) => picture(&archive, r, frame_count(r) / 2, &req, Priority::Thumbnail).await,
    };
    audit(&archive, &caller, "http.wado.thumbnail", &refs, &outcome).await?;
    Ok(single(req.format, outcome?))
}

pub async fn study_thumbnail(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path(st): Path<String>,
) -> Result<Response, Problem> {
    thumbnail(a, c, h, q, (st, None, None)).await
}

pub async fn series_thumbnail(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path((st, se)): Path<(String, String)>,
) -> Result<Response, Problem> {
    thumbnail(a, c, h, q, (st, Some(se), None)).await
}

pub async fn instance_thumbnail(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Path((st, se, i)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    thumbnail(a, c, h, q, (st, Some(se), Some(i))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_or_say_why_not() {
        let w = parse_window("40,400,sigmoid").unwrap();
        assert_eq!(
            (w.center, w.width, w.function),
            (40.0, 400.0, VoiFunction::Sigmoid)
        );
        assert_eq!(
            parse_window("40,400").unwrap().function,
            VoiFunction::Linear
        );
        for bad in [
            "40",
            "a,400",
            "40,0",
            "40,0.5,linear",
            "40,400,cubic",
            "1,2,3,4",
        ] {
            assert_eq!(parse_window(bad).unwrap_err().status, 400, "{bad}");
        }
        assert!(parse_window("40,0.5,linear-exact").is_ok());
        assert_eq!(parse_viewport("256,128").unwrap(), (Some(256), Some(128)));
        assert_eq!(parse_viewport(",128").unwrap(), (None, Some(128)));
        for bad in ["0,10", "10", "1,2,3,4,5,6", ",", "99999,1"] {
            assert_eq!(parse_viewport(bad).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(fitted(512, 256, (Some(128), Some(128))), (128, 64));
        assert_eq!(fitted(512, 256, (None, Some(128))), (256, 128));
    }

    #[test]
    fn accept_chooses_the_format() {
        let q = HashMap::new();
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h, &q).unwrap(), Format::Jpeg);
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert_eq!(negotiate(&h, &q).unwrap(), Format::Jpeg);
        h.insert(header::ACCEPT, "image/gif, image/png".parse().unwrap());
        assert_eq!(negotiate(&h, &q).unwrap(), Format::Png);
        h.insert(
            header::ACCEPT,
            "multipart/related; type=\"image/png\"".parse().unwrap(),
        );
        assert_eq!(negotiate(&h, &q).unwrap(), Format::Png);
        h.insert(header::ACCEPT, "image/gif".parse().unwrap());
        assert_eq!(negotiate(&h, &q).unwrap_err().status, 406);
        let q = HashMap::from([("accept".to_string(), "image/png".to_string())]);
        assert_eq!(negotiate(&h, &q).unwrap(), Format::Png);
    }
}
