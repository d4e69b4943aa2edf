//! QIDO-RS (PS3.18 10.6): search for studies, series and instances. Query parameters name
//! attributes by keyword or tag; matching is the index's (the same as C-FIND): single values,
//! `*` and `?` wildcards, date and time ranges, UID lists, case- and accent-insensitive person
//! names. `includefield` adds attributes (or `all`), `limit` and `offset` page, and
//! `fuzzymatching=true` lets each patient name component also match as a prefix, and names that
//! sound alike match (the person index's phonetic keys).

use super::path_uid;
use crate::auth::Caller;
use crate::problem::Problem;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dicom_core::dictionary::DataDictionary;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::query::{Key, Level, Query, QueryError};
use strata_index::Scope;
use strata_services::auth::Permission;

/// Most results one search returns when no limit is given.
const DEFAULT_LIMIT: usize = 1000;
/// Most results one search may ask for.
const MAX_LIMIT: usize = 10_000;

/// The attributes every response at a level carries (PS3.18 Tables 10.6.3-3 to -5).
fn defaults(level: Level) -> &'static [Tag] {
    match level {
        Level::Study | Level::Patient => &[
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::ACCESSION_NUMBER,
            tags::INSTANCE_AVAILABILITY,
            tags::MODALITIES_IN_STUDY,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::ISSUER_OF_PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_SEX,
            tags::STUDY_INSTANCE_UID,
            tags::STUDY_ID,
            tags::STUDY_DESCRIPTION,
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ],
        Level::Series => &[
            tags::MODALITY,
            tags::SERIES_DESCRIPTION,
            tags::SERIES_INSTANCE_UID,
            tags::SERIES_NUMBER,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
            tags::SERIES_DATE,
            tags::SERIES_TIME,
            tags::BODY_PART_EXAMINED,
        ],
        Level::Image => &[
            tags::SOP_CLASS_UID,
            tags::SOP_INSTANCE_UID,
            tags::INSTANCE_AVAILABILITY,
            tags::INSTANCE_NUMBER,
            tags::ROWS,
            tags::COLUMNS,
            tags::BITS_ALLOCATED,
            tags::NUMBER_OF_FRAMES,
        ],
    }
}

/// Attributes `includefield=all` adds: every attribute the index keeps at or above the level.
fn all_fields(level: Level) -> Vec<Tag> {
    let mut v: Vec<Tag> = Vec::new();
    for l in [Level::Study, Level::Series, Level::Image] {
        if l <= level {
            v.extend_from_slice(defaults(l));
        }
    }
    v.extend_from_slice(&[
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        tags::SOP_CLASSES_IN_STUDY,
        tags::CONTENT_DATE,
        tags::CONTENT_TIME,
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
    ]);
    v
}

/// A tag from a keyword (`PatientName`) or eight hex digits (`00100010`).
fn tag_of(name: &str) -> Option<Tag> {
    if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        let n = u32::from_str_radix(name, 16).ok()?;
        return Some(Tag((n >> 16) as u16, (n & 0xFFFF) as u16));
    }
    StandardDataDictionary.by_name(name).map(|e| e.tag.inner())
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Builds the index query from the request's parameters and the UIDs of its path.
fn build_query(
    level: Level,
    raw: Option<&str>,
    fixed: &[(Tag, String)],
    scope: Scope,
) -> Result<Query, Problem> {
    let mut keys: Vec<Key> = defaults(level).iter().map(|t| Key::new(*t, "")).collect();
    if level >= Level::Series {
        keys.push(Key::new(tags::STUDY_INSTANCE_UID, ""));
    }
    if level >= Level::Image {
        keys.push(Key::new(tags::SERIES_INSTANCE_UID, ""));
    }
    let (mut limit, mut offset, mut fuzzy) = (DEFAULT_LIMIT, 0usize, false);
    let set =
        |keys: &mut Vec<Key>, tag: Tag, value: String| match keys.iter_mut().find(|k| k.tag == tag)
        {
            Some(k) => k.value = value,
            None => keys.push(Key::new(tag, value)),
        };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name), decode(value));
        match name.as_str() {
            "limit" => {
                limit = value.parse().map_err(|_| {
                    Problem::bad_request(format!("limit={value:?} is not a number"))
                })?;
                limit = limit.min(MAX_LIMIT);
            }
            "offset" => {
                offset = value.parse().map_err(|_| {
                    Problem::bad_request(format!("offset={value:?} is not a number"))
                })?
            }
            "fuzzymatching" => {
                fuzzy = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Problem::bad_request("fuzzymatching must be true or false")),
                }
            }
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field == "all" {
                        for t in all_fields(level) {
                            if !keys.iter().any(|k| k.tag == t) {
                                keys.push(Key::new(t, ""));
                            }
                        }
                        continue;
                    }
                    let tag = tag_of(field).ok_or_else(|| {
                        Problem::bad_request(format!("includefield {field:?} is not an attribute"))
                    })?;
                    if !keys.iter().any(|k| k.tag == tag) {
                        keys.push(Key::new(tag, ""));
                    }
                }
            }
            _ => {
                let tag = tag_of(&name).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "{name:?} is neither a query parameter nor an attribute"
                    ))
                })?;
                if value.chars().any(|c| c.is_control()) {
                    return Err(Problem::bad_request(format!(
                        "{name}: control characters are not allowed"
                    )));
                }
                set(&mut keys, tag, value);
            }
        }
    }
    for (tag, uid) in fixed {
        set(&mut keys, *tag, uid.clone());
    }
    Ok(Query {
        level,
        keys,
        retrieve_ae_title: String::new(),
        limit: Some(limit),
        offset,
        fuzzy,
        scope,
    })
}

async fn search(
    archive: &Archive,
    caller: &Caller,
    headers: &HeaderMap,
    level: Level,
    raw: Option<String>,
    fixed: Vec<(Tag, String)>,
) -> Result<Response, Problem> {
    caller.require(Permission::Search)?;
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) {
        if !accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or("").trim();
            a == "application/dicom+json"
                || a == "application/json"
                || a == "*/*"
                || a == "application/*"
        }) {
            return Err(Problem::new(
                axum::http::StatusCode::NOT_ACCEPTABLE,
                "QIDO-RS answers application/dicom+json",
            ));
        }
    }
    let mut query = build_query(level, raw.as_deref(), &fixed, caller.principal.scope)?;
    // Everything Strata holds is ONLINE, so Instance Availability is answered here rather than
    // looked up in each match's stored header (which the index would parse for it).
    let before = query.keys.len();
    query.keys.retain(|k| k.tag != tags::INSTANCE_AVAILABILITY);
    let availability = query.keys.len() != before;
    let base = super::base_url(archive);
    let found = archive.index().find(query).await.map_err(|e| match e {
        QueryError::Invalid(why) => Problem::bad_request(why),
        e => Problem::internal(e),
    })?;
    let mut studies: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(found.len());
    for mut obj in found {
        obj.remove_element(tags::QUERY_RETRIEVE_LEVEL);
        let text = |t: Tag| strata_dicom::attr::attr_text(&obj, t);
        let st = text(tags::STUDY_INSTANCE_UID);
        let mut url = format!("{base}/dicomweb/studies/{st}");
        if level >= Level::Series {
            url.push_str("/series/");
            url.push_str(&text(tags::SERIES_INSTANCE_UID));
        }
        if level >= Level::Image {
            url.push_str("/instances/");
            url.push_str(&text(tags::SOP_INSTANCE_UID));
        }
        obj.put(DataElement::new(
            tags::RETRIEVE_URL,
            VR::UR,
            PrimitiveValue::from(url),
        ));
        if availability {
            obj.put(DataElement::new(
                tags::INSTANCE_AVAILABILITY,
                VR::CS,
                PrimitiveValue::from("ONLINE"),
            ));
        }
        if !studies.contains(&st) {
            studies.push(st);
        }
        out.push(obj);
    }
    let event = caller.event("http.qido", Outcome::Success).detail(format!(
        "{} level, {} results",
        level.as_str(),
        out.len()
    ));
    let event = if studies.len() == 1 {
        event.patient(None, studies.pop())
    } else {
        event
    };
    // The event commits while the answer is written out below; nothing is sent before it has.
    let recorded = archive.audit().record_read(event);
    let body = json_array(&out);
    recorded.await.map_err(Problem::internal)?;
    Ok((
        [(header::CONTENT_TYPE, "application/dicom+json")],
        body.map_err(Problem::internal)?,
    )
        .into_response())
}

/// The matches as one DICOM JSON array, written straight to its bytes.
fn json_array(objects: &[dicom_object::InMemDicomObject]) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::with_capacity(64 + 1024 * objects.len());
    body.push(b'[');
    for (i, obj) in objects.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        dicom_json::to_writer(&mut body, obj)?;
    }
    body.push(b']');
    Ok(body)
}

pub async fn studies(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, Problem> {
    search(&a, &c, &h, Level::Study, q, vec![]).await
}

pub async fn series(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, Problem> {
    search(&a, &c, &h, Level::Series, q, vec![]).await
}

pub async fn instances(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, Problem> {
    search(&a, &c, &h, Level::Image, q, vec![]).await
}

pub async fn study_series(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
    Path(study): Path<String>,
) -> Result<Response, Problem> {
    let fixed = vec![(tags::STUDY_INSTANCE_UID, path_uid(&study, "study")?)];
    search(&a, &c, &h, Level::Series, q, fixed).await
}

pub async fn study_instances(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
    Path(study): Path<String>,
) -> Result<Response, Problem> {
    let fixed = vec![(tags::STUDY_INSTANCE_UID, path_uid(&study, "study")?)];
    search(&a, &c, &h, Level::Image, q, fixed).await
}

pub async fn series_instances(
    State(a): State<Arc<Archive>>,
    Extension(c): Extension<Caller>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let fixed = vec![
        (tags::STUDY_INSTANCE_UID, path_uid(&study, "study")?),
        (tags::SERIES_INSTANCE_UID, path_uid(&series, "series")?),
    ];
    search(&a, &c, &h, Level::Image, q, fixed).await
}
