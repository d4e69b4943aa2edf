//! Measurements made on the server and kept as DICOM.
//!
//! - `POST /api/measure`: one measurement (length, angle, Cobb angle, ellipse, rectangle,
//!   freehand, probe) of geometry drawn in image coordinates on a frame, computed from the
//!   frame's stored values after its modality LUT; numbers only, never pixels, so those who
//!   may see rendered pictures may measure ([`Permission::Rendered`]). Audited as a read.
//! - `POST /api/reports`: the measurements, computed again here, saved as a TID 1500
//!   Measurement Report and the marked images as a Key Object Selection, both stored through
//!   the one ingest path as instances of the study ([`Permission::Report`]).
//! - `GET /api/reports?study=`: the measurements of the study's Measurement Reports, their
//!   geometry and values, for the viewer to draw again ([`Permission::Metadata`]).

use crate::accounts::body;
use crate::auth::Caller;
use crate::dicomweb::path_uid;
use crate::dicomweb::rendered::render_problem;
use crate::problem::Problem;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use strata_archive::Archive;
use strata_core::audit::Outcome;
use strata_index::query::{Key, Level, Query as IndexQuery};
use strata_index::InstanceRef;
use strata_render::measure::{self, Calibration, Kind, MeasureError, Measured};
use strata_render::stream::{MprSpec, Rotation, SlabSpec};
use strata_render::volume::{Slab, MAX_SLAB_MM};
use strata_render::Priority;
use strata_services::auth::Permission;
use strata_services::ingest::Source;
use strata_services::reports::{self, Author, Finding, ImageRef};

/// The most measurements (and key images) one report may hold.
const MAX_FINDINGS: usize = 1000;

pub fn router() -> Router<Arc<Archive>> {
    Router::new()
        .route("/api/measure", post(measure_one))
        .route("/api/reports", post(save).get(read))
}

/// Where a measurement is drawn: an instance's frame (1-based, 1 when not named).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Place {
    series: String,
    instance: String,
    #[serde(default)]
    frame: Option<u32>,
}

/// A measurement to save: drawn on an instance's frame, or on a slice of an MPR plane.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Drawn {
    series: String,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    frame: Option<u32>,
    #[serde(default)]
    mpr: Option<PlacePlane>,
    kind: String,
    points: Vec<[f64; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureRequest {
    study: String,
    series: String,
    /// An instance's frame, or else a plane of the series' volume (`mpr`).
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    frame: Option<u32>,
    #[serde(default)]
    mpr: Option<PlacePlane>,
    kind: String,
    points: Vec<[f64; 2]>,
}

/// Slice `slice` (0-based) of an MPR plane of the series, as the stream shows it (the same
/// plane, rotation and slab), measured in the plane's image coordinates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacePlane {
    plane: String,
    #[serde(default)]
    rotate: Option<Rotation>,
    slice: u32,
    #[serde(default)]
    slab: Option<SlabSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    study: String,
    #[serde(default)]
    measurements: Vec<Drawn>,
    #[serde(default)]
    key_images: Vec<Place>,
}

/// `POST /api/measure`
async fn measure_one(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<MeasureRequest>, JsonRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Rendered)?;
    let req = body(
        b,
        "{study, series, instance, frame, kind, points: [[x, y], ...]} or {study, series, mpr: {plane, rotate, slice, slab}, kind, points}",
    )?;
    let kind = kind_of(&req.kind)?;
    match (&req.instance, &req.mpr) {
        (Some(sop), None) => {
            let r = instance(&archive, &caller, &req.study, &req.series, sop).await?;
            let outcome = measured(&archive, &r, req.frame, kind, &req.points).await;
            audit(&archive, &caller, "http.measure", &r, &outcome).await?;
            let (m, frame) = outcome?;
            Ok(Json(answer(&m, &r, frame, &req.points)))
        }
        (None, Some(place)) if req.frame.is_none() => {
            measure_plane(&archive, &caller, &req, place, kind).await
        }
        _ => Err(Problem::bad_request(
            "name an instance (and its frame) or an MPR plane, one of the two",
        )),
    }
}

/// A measurement on a slice of an MPR plane: the plane is cut through the series' volume as the
/// stream cuts it, and measured like an acquired slice, its square pixels `pixel_mm` wide.
async fn measure_plane(
    archive: &Archive,
    caller: &Caller,
    req: &MeasureRequest,
    place: &PlacePlane,
    kind: Kind,
) -> Result<Json<Value>, Problem> {
    let study = path_uid(&req.study, "study")?;
    let series = path_uid(&req.series, "series")?;
    let refs = archive
        .reads()
        .resolve(&study, Some(&series), None, caller.scope())
        .await?;
    let outcome = on_plane(archive, &refs, place, kind, &req.points).await;
    let (result, detail) = match &outcome {
        Ok(_) => (
            Outcome::Success,
            format!("series {series}, MPR {} slice {}", place.plane, place.slice),
        ),
        Err(p) => (Outcome::Failure, format!("{}: {}", p.status, p.detail)),
    };
    let event = caller
        .event("http.measure", result)
        .patient(Some(refs[0].patient_id.clone()), Some(study.clone()))
        .detail(detail);
    archive
        .audit()
        .record_read(event)
        .await
        .map_err(Problem::internal)?;
    let m = outcome?.measured;
    let mut v = serde_json::to_value(&m).unwrap_or(Value::Null);
    v["series"] = json!(series);
    v["mpr"] = json!({"plane": place.plane, "slice": place.slice});
    v["points"] = json!(req.points);
    Ok(Json(v))
}

/// A measurement on an MPR plane's slice, and where that slice lies in the patient.
struct OnPlane {
    measured: Measured,
    /// None when the series names no frame of reference.
    space: Option<reports::PlaneSpace>,
    /// The acquired slice nearest the measurement's first point.
    nearest: String,
}

/// Measures `points` on slice `place.slice` of an MPR plane of the series `refs` (resolved
/// within the caller's scope), on the whole volume, never on the coarse one shown while it is
/// built.
async fn on_plane(
    archive: &Archive,
    refs: &[InstanceRef],
    place: &PlacePlane,
    kind: Kind,
    points: &[[f64; 2]],
) -> Result<OnPlane, Problem> {
    kind.check(points)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let spec = MprSpec {
        plane: place.plane.clone(),
        rotate: place.rotate,
    };
    let plane = spec.plane().map_err(Problem::bad_request)?;
    let slab = match place.slab {
        Some(s) if !(s.thickness.is_finite() && (0.0..=MAX_SLAB_MM).contains(&s.thickness)) => {
            return Err(Problem::bad_request(format!(
                "slab thickness must be within 0 to {MAX_SLAB_MM} mm"
            )))
        }
        Some(s) => (s.thickness > 0.0).then_some(Slab {
            thickness_mm: s.thickness,
            mode: s.mode,
        }),
        None => None,
    };
    let opened = archive
        .pictures()
        .open_series(refs)
        .await
        .map_err(|e| Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e))?;
    let volume = archive
        .pictures()
        .volume(&opened)
        .await
        .map_err(render_problem)?
        .complete()
        .await
        .map_err(render_problem)?;
    let layout = Arc::new(volume.layout(plane, crate::stream::MPR_MAX_SIDE));
    let slice = place.slice as usize;
    if slice >= layout.depths.len() {
        return Err(Problem::not_found(format!(
            "slice {} of the plane does not exist (it has {})",
            place.slice,
            layout.depths.len()
        )));
    }
    let f = archive
        .pictures()
        .reformat(volume, layout.clone(), slice, slab, Priority::Interactive)
        .await
        .map_err(render_problem)?;
    let meta: Value = serde_json::from_str(&refs[0].metadata).unwrap_or(Value::Null);
    let first = |tag: &str| meta[tag]["Value"][0].as_str().map(str::to_string);
    let unit = measure::value_unit(
        first("00080060").as_deref().unwrap_or(""),
        first("00281054").as_deref(),
    );
    let calibration = Calibration::PixelSpacing {
        row_mm: layout.pixel_mm,
        column_mm: layout.pixel_mm,
    };
    let measured = measure::measure(kind, points, &f.frame, &f.presentation, calibration, &unit)
        .map_err(|e| match e {
            MeasureError::Points(_) => Problem::bad_request(e.to_string()),
            _ => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        })?;
    let at = layout.point(slice, points[0][0], points[0][1]);
    let nearest = opened
        .slices
        .iter()
        .filter_map(|s| Some((s.geometry.as_ref()?.distance(at), &s.sop_uid)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, sop)| sop.clone())
        .unwrap_or_else(|| opened.slices[0].sop_uid.clone());
    let space = opened.metadata["frame_of_reference"]
        .as_str()
        .map(|frame| reports::PlaneSpace {
            frame_of_reference: frame.to_string(),
            corner: layout.point(slice, 0.0, 0.0),
            across: layout.plane.across,
            down: layout.plane.down,
            pixel_mm: layout.pixel_mm,
        });
    Ok(OnPlane {
        measured,
        space,
        nearest,
    })
}

/// `POST /api/reports`
async fn save(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<ReportRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Permission::Report)?;
    let req = body(
        b,
        "{study, measurements: [{series, instance, frame, kind, points} or {series, mpr: {plane, rotate, slice, slab}, kind, points}], key_images: [{series, instance, frame}]}",
    )?;
    let study_uid = path_uid(&req.study, "study")?;
    if req.measurements.is_empty() && req.key_images.is_empty() {
        return Err(Problem::bad_request(
            "nothing to save: no measurements and no key images",
        ));
    }
    if req.measurements.len() > MAX_FINDINGS || req.key_images.len() > MAX_FINDINGS {
        return Err(Problem::bad_request(format!(
            "at most {MAX_FINDINGS} measurements and {MAX_FINDINGS} key images per report"
        )));
    }
    // every measurement is computed here again: the report holds the server's numbers
    let mut findings = Vec::new();
    let mut answers = Vec::new();
    for d in &req.measurements {
        let kind = kind_of(&d.kind)?;
        let finding = match (&d.instance, &d.mpr) {
            (Some(sop), None) => {
                let r = instance(&archive, &caller, &study_uid, &d.series, sop).await?;
                let (m, frame) = measured(&archive, &r, d.frame, kind, &d.points).await?;
                answers.push(answer(&m, &r, frame, &d.points));
                Finding {
                    image: image_ref(&r, frame),
                    kind,
                    points: d.points.clone(),
                    measured: m,
                    space: None,
                }
            }
            (None, Some(place)) if d.frame.is_none() => {
                plane_finding(&archive, &caller, &study_uid, d, place, kind, &mut answers).await?
            }
            _ => {
                return Err(Problem::bad_request(
                    "each measurement names an instance (and its frame) or an MPR plane, one of the two",
                ))
            }
        };
        findings.push(finding);
    }
    let mut key_images = Vec::new();
    for p in &req.key_images {
        let r = instance(&archive, &caller, &study_uid, &p.series, &p.instance).await?;
        let frame = frame_of(&r, p.frame)?;
        key_images.push(image_ref(&r, frame));
    }
    let study = study_attributes(&archive, &caller, &study_uid).await?;
    let issuer = text_of(&study, dicom_dictionary_std::tags::ISSUER_OF_PATIENT_ID);
    let author = Author {
        observer: &caller.principal.user,
        study: &study,
    };
    let mut saved = json!({"measurements": answers});
    let documents = [
        (
            "report",
            (!findings.is_empty()).then(|| reports::measurement_report(&author, &findings)),
        ),
        (
            "key_images",
            (!key_images.is_empty()).then(|| reports::key_object_selection(&author, &key_images)),
        ),
    ];
    for (name, built) in documents {
        let Some(built) = built else { continue };
        let bytes = built.map_err(Problem::internal)?;
        let source = Source::Report {
            user: caller.principal.user.clone(),
            role: caller.principal.role.as_str().to_string(),
            remote: caller.remote.clone(),
            study: study_uid.clone(),
            issuer: issuer.clone(),
        };
        let mut spool = archive.ingest().spool();
        spool.append(&bytes).map_err(Problem::internal)?;
        let stored = match archive.ingest().ingest_spool(spool, &source).await {
            Ok(stored) => stored,
            Err(e) => {
                let _ = archive
                    .audit()
                    .record(
                        caller
                            .event("http.report", Outcome::Failure)
                            .patient(None, Some(study_uid.clone()))
                            .detail(e.to_string()),
                    )
                    .await;
                return Err(Problem::internal(e));
            }
        };
        saved[name] = json!({
            "study": stored.study_instance_uid,
            "series": stored.series_instance_uid,
            "instance": stored.sop_instance_uid,
            "sop_class": stored.sop_class_uid,
        });
    }
    Ok((StatusCode::CREATED, Json(saved)))
}

/// A measurement on an MPR plane as it goes into a report: its geometry in the patient, in the
/// series' frame of reference, and the acquired slice nearest it as its image.
async fn plane_finding(
    archive: &Archive,
    caller: &Caller,
    study: &str,
    d: &Drawn,
    place: &PlacePlane,
    kind: Kind,
    answers: &mut Vec<Value>,
) -> Result<Finding, Problem> {
    let series = path_uid(&d.series, "series")?;
    let refs = archive
        .reads()
        .resolve(study, Some(&series), None, caller.scope())
        .await?;
    let p = on_plane(archive, &refs, place, kind, &d.points).await?;
    let space = p.space.ok_or_else(|| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("series {series} names no frame of reference: a measurement on its MPR planes cannot be placed in the patient"),
        )
    })?;
    let r = refs
        .iter()
        .find(|r| r.sop_uid == p.nearest)
        .unwrap_or(&refs[0]);
    let mut v = serde_json::to_value(&p.measured).unwrap_or(Value::Null);
    v["series"] = json!(series);
    v["mpr"] = json!({"plane": place.plane, "slice": place.slice});
    v["points"] = json!(d.points);
    answers.push(v);
    Ok(Finding {
        image: image_ref(r, 1),
        kind,
        points: d.points.clone(),
        measured: p.measured,
        space: Some(space),
    })
}

/// `GET /api/reports?study=`
async fn read(
    State(archive): State<Arc<Archive>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    caller.require(Permission::Metadata)?;
    if let Some(k) = q.keys().find(|k| k.as_str() != "study") {
        return Err(Problem::bad_request(format!("unknown parameter {k:?}")));
    }
    let study = q
        .get("study")
        .ok_or_else(|| Problem::bad_request("the study parameter is required"))?;
    let study = path_uid(study, "study")?;
    let refs = archive
        .reads()
        .resolve(&study, None, None, caller.scope())
        .await?;
    let mut found = Vec::new();
    for r in refs
        .iter()
        .filter(|r| r.sop_class_uid == reports::COMPREHENSIVE_SR)
    {
        let stored = archive.reads().stored(&r.sop_uid).await?;
        let bytes = archive.reads().instance_whole(&stored).await?;
        let obj = strata_dicom::part10::open(&bytes).map_err(Problem::internal)?;
        let measurements = reports::read_measurement_report(&obj);
        if !measurements.is_empty() {
            found.push(json!({
                "series": r.series_uid,
                "instance": r.sop_uid,
                "measurements": measurements,
            }));
        }
    }
    let event = caller
        .event("http.reports.read", Outcome::Success)
        .patient(Some(refs[0].patient_id.clone()), Some(study.clone()))
        .detail(format!("{} reports", found.len()));
    archive
        .audit()
        .record_read(event)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(json!({ "study": study, "reports": found })))
}

fn kind_of(kind: &str) -> Result<Kind, Problem> {
    Kind::parse(kind).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Problem::bad_request(format!("kind {kind:?} is not one of {}", names.join(", ")))
    })
}

/// The one instance named, within the caller's scope (404 outside it).
async fn instance(
    archive: &Archive,
    caller: &Caller,
    study: &str,
    series: &str,
    sop: &str,
) -> Result<InstanceRef, Problem> {
    let study = path_uid(study, "study")?;
    let series = path_uid(series, "series")?;
    let sop = path_uid(sop, "instance")?;
    let mut refs = archive
        .reads()
        .resolve(&study, Some(&series), Some(&sop), caller.scope())
        .await?;
    Ok(refs.remove(0))
}

/// The 1-based frame asked for, checked against the instance's frames.
fn frame_of(r: &InstanceRef, frame: Option<u32>) -> Result<u32, Problem> {
    let frames = crate::dicomweb::rendered::frame_count(r);
    match frame.unwrap_or(1) {
        f if (1..=frames).contains(&f) => Ok(f),
        f => Err(Problem::not_found(format!(
            "frame {f}: the instance has {frames} frame(s), numbered from 1"
        ))),
    }
}

/// The measurement of `points` on frame `frame` of `r`, with the frame measured (1-based).
async fn measured(
    archive: &Archive,
    r: &InstanceRef,
    frame: Option<u32>,
    kind: Kind,
    points: &[[f64; 2]],
) -> Result<(Measured, u32), Problem> {
    let frame = frame_of(r, frame)?;
    kind.check(points)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let decoded = archive
        .pictures()
        .decoded_frame(&r.sop_uid, frame - 1, Priority::Interactive)
        .await
        .map_err(render_problem)?;
    let meta: Value = serde_json::from_str(&r.metadata).unwrap_or(Value::Null);
    let calibration = Calibration::from_metadata(&meta);
    let first = |tag: &str| meta[tag]["Value"][0].as_str().map(str::to_string);
    let unit = measure::value_unit(
        first("00080060").as_deref().unwrap_or(""),
        first("00281054").as_deref(),
    );
    let m = measure::measure(
        kind,
        points,
        &decoded.frame,
        &decoded.presentation,
        calibration,
        &unit,
    )
    .map_err(|e| match e {
        MeasureError::Points(_) => Problem::bad_request(e.to_string()),
        _ => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    })?;
    Ok((m, frame))
}

fn answer(m: &Measured, r: &InstanceRef, frame: u32, points: &[[f64; 2]]) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    v["series"] = json!(r.series_uid);
    v["instance"] = json!(r.sop_uid);
    v["frame"] = json!(frame);
    v["points"] = json!(points);
    v
}

fn image_ref(r: &InstanceRef, frame: u32) -> ImageRef {
    let multi = crate::dicomweb::rendered::frame_count(r) > 1;
    ImageRef {
        series: r.series_uid.clone(),
        instance: r.sop_uid.clone(),
        sop_class: r.sop_class_uid.clone(),
        frame: multi.then_some(frame),
    }
}

/// The study's patient and study attributes, as a study-level query returns them (the patient
/// key's issuer among them), within the caller's scope.
async fn study_attributes(
    archive: &Archive,
    caller: &Caller,
    study: &str,
) -> Result<dicom_object::InMemDicomObject, Problem> {
    use dicom_dictionary_std::tags;
    let mut keys = vec![Key::new(tags::STUDY_INSTANCE_UID, study)];
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::ISSUER_OF_PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::STUDY_ID,
        tags::STUDY_DESCRIPTION,
    ] {
        keys.push(Key::new(tag, ""));
    }
    let mut q = IndexQuery::all(Level::Study, keys);
    q.scope = caller.scope();
    let mut found = archive
        .index()
        .find(q)
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    if found.is_empty() {
        return Err(Problem::not_found(format!("no study {study}")));
    }
    Ok(found.remove(0))
}

fn text_of(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

async fn audit(
    archive: &Archive,
    caller: &Caller,
    action: &str,
    r: &InstanceRef,
    outcome: &Result<impl Sized, Problem>,
) -> Result<(), Problem> {
    let (result, detail) = match outcome {
        Ok(_) => (Outcome::Success, r.sop_uid.clone()),
        Err(p) => (Outcome::Failure, format!("{}: {}", p.status, p.detail)),
    };
    let event = caller
        .event(action, result)
        .patient(Some(r.patient_id.clone()), Some(r.study_uid.clone()))
        .detail(detail);
    archive
        .audit()
        .record_read(event)
        .await
        .map_err(Problem::internal)
}
