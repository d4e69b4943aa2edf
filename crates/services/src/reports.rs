//! Measurements kept as DICOM, so that any viewer reads them: a Measurement Report (PS3.16
//! TID 1500, in a Comprehensive SR) of the measurements a reader made, and a Key Object
//! Selection document (TID 2010, "Of Interest") of the images a reader marked. Both are built
//! here as Part-10 objects of the study they speak of, with its patient and study attributes,
//! and stored by the caller through the one ingest path like any other instance.
//!
//! Each measurement is a Measurement Group (TID 1501) with its Tracking Identifier
//! (`strata:<kind>`) and Tracking Unique Identifier, and its values as NUM items (TID 300)
//! whose geometry is an SCOORD they are INFERRED FROM, SELECTED FROM the image it was drawn
//! on: lengths as a POLYLINE of 2 points, angles of 3, a Cobb angle as two POLYLINEs, an
//! ellipse as its 4 axis end points, a rectangle and a freehand outline as a closed POLYLINE,
//! a probe as a POINT. A measurement made on a plane cut through a series' volume (MPR) has
//! its geometry as SCOORD3D instead, in the patient (mm) in the series' frame of reference,
//! as TID 300 allows; it names the acquired slice nearest it as evidence.
//! [`read_measurement_report`] turns such a document back into the geometry and values the
//! viewer draws.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use serde::Serialize;
use strata_render::measure::{Kind, Measured};

/// Comprehensive SR Storage: 2D SCOORD, as TID 1500 allows and OHIF reads.
pub const COMPREHENSIVE_SR: &str = "1.2.840.10008.5.1.4.1.1.88.33";
pub use strata_dicom::rejection::KEY_OBJECT_SELECTION;
/// The prefix of the Tracking Identifier of the measurements this archive writes.
const TRACKING_PREFIX: &str = "strata:";

/// The image (a frame of it, for a multi-frame instance) a measurement or a key image refers to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRef {
    pub series: String,
    pub instance: String,
    pub sop_class: String,
    /// 1-based; None for a single-frame instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
}

/// A measurement made on the server, as it goes into a report.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The image it was drawn on; for one drawn on an MPR plane ([`Finding::space`]), the
    /// acquired slice nearest it.
    pub image: ImageRef,
    pub kind: Kind,
    /// In the image's coordinates (those of the plane, for one drawn on an MPR plane).
    pub points: Vec<[f64; 2]>,
    pub measured: Measured,
    /// Where the plane it was drawn on lies, when that is an MPR plane.
    pub space: Option<PlaneSpace>,
}

/// An MPR plane's slice in the patient: image point (x, y) is at `corner + (x·across +
/// y·down)·pixel_mm` (mm), in frame of reference `frame_of_reference`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneSpace {
    pub frame_of_reference: String,
    pub corner: [f64; 3],
    pub across: [f64; 3],
    pub down: [f64; 3],
    pub pixel_mm: f64,
}

impl PlaneSpace {
    pub fn point(&self, [x, y]: [f64; 2]) -> [f64; 3] {
        let at =
            |i: usize| self.corner[i] + (x * self.across[i] + y * self.down[i]) * self.pixel_mm;
        [at(0), at(1), at(2)]
    }
}

/// A measurement's geometry in the patient, read back from SCOORD3D.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadSpace {
    pub frame_of_reference: String,
    pub points: Vec<[f64; 3]>,
}

/// A value read back from a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadValue {
    /// The concept's meaning ("Length", "Mean", ...).
    pub name: String,
    pub value: f64,
    /// The UCUM code of its unit.
    pub unit: String,
}

/// A measurement read back from a report: its geometry as the viewer draws it and its values.
/// Geometry on an image has `image` and `points`; geometry in the patient (SCOORD3D) has
/// `space`, and no image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadFinding {
    pub image: Option<ImageRef>,
    pub kind: Kind,
    pub points: Vec<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub space: Option<ReadSpace>,
    pub tracking_uid: String,
    pub values: Vec<ReadValue>,
}

/// Who writes, and the study the document belongs to: the patient and study attributes of the
/// study (as a study-level query returns them) are copied from `study`.
pub struct Author<'a> {
    pub observer: &'a str,
    pub study: &'a InMemDicomObject,
}

/// A new UID under `2.25` (PS3.5 B.2: a UUID as a decimal integer).
pub fn new_uid() -> String {
    format!("2.25.{}", u128::from_be_bytes(rand::random::<[u8; 16]>()))
}

/// The Measurement Report of `findings` as Part-10 bytes, a new instance in a new series.
pub fn measurement_report(author: &Author, findings: &[Finding]) -> Result<Vec<u8>, String> {
    if findings.is_empty() {
        return Err("a report needs at least one measurement".into());
    }
    let mut obj = document(author, COMPREHENSIVE_SR, "SR", "Measurements")?;
    let images: Vec<&ImageRef> = findings.iter().map(|f| &f.image).collect();
    obj.put(seq(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        evidence(author, &images),
    ));
    put_root(
        &mut obj,
        code("126000", "DCM", "Imaging Measurement Report"),
        "1500",
    );
    let library: Vec<InMemDicomObject> = distinct(&images)
        .into_iter()
        .map(|i| image_item("CONTAINS", i))
        .collect();
    let library_group = container(
        "CONTAINS",
        code("126200", "DCM", "Image Library Group"),
        library,
    );
    let groups = findings.iter().map(measurement_group).collect();
    let content = vec![
        concept_modifier(
            code("121049", "DCM", "Language of Content Item and Descendants"),
            code("en-US", "RFC5646", "English (United States)"),
        ),
        observer_type(),
        {
            let mut name = content_item(
                "HAS OBS CONTEXT",
                "PNAME",
                Some(code("121008", "DCM", "Person Observer Name")),
            );
            name.put(text(tags::PERSON_NAME, VR::PN, author.observer));
            name
        },
        concept_modifier(
            code("121058", "DCM", "Procedure reported"),
            code("363679005", "SCT", "Imaging procedure"),
        ),
        container(
            "CONTAINS",
            code("111028", "DCM", "Image Library"),
            vec![library_group],
        ),
        container(
            "CONTAINS",
            code("126010", "DCM", "Imaging Measurements"),
            groups,
        ),
    ];
    obj.put(seq(tags::CONTENT_SEQUENCE, content));
    part10(obj, COMPREHENSIVE_SR)
}

/// The Key Object Selection document ("Of Interest") of `images` as Part-10 bytes.
pub fn key_object_selection(author: &Author, images: &[ImageRef]) -> Result<Vec<u8>, String> {
    if images.is_empty() {
        return Err("a key object selection needs at least one image".into());
    }
    let mut obj = document(author, KEY_OBJECT_SELECTION, "KO", "Key images")?;
    let refs: Vec<&ImageRef> = images.iter().collect();
    obj.put(seq(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        evidence(author, &refs),
    ));
    put_root(&mut obj, code("113000", "DCM", "Of Interest"), "2010");
    let mut content = vec![observer_type(), {
        let mut name = content_item(
            "HAS OBS CONTEXT",
            "PNAME",
            Some(code("121008", "DCM", "Person Observer Name")),
        );
        name.put(text(tags::PERSON_NAME, VR::PN, author.observer));
        name
    }];
    content.extend(
        distinct(&refs)
            .into_iter()
            .map(|i| image_item("CONTAINS", i)),
    );
    obj.put(seq(tags::CONTENT_SEQUENCE, content));
    part10(obj, KEY_OBJECT_SELECTION)
}

/// The measurements of a TID 1500 Measurement Report, in document order; groups without
/// geometry on an image, or of a kind not drawn here, are left out.
pub fn read_measurement_report(obj: &InMemDicomObject) -> Vec<ReadFinding> {
    let series_of = series_by_instance(obj);
    let mut found = Vec::new();
    for measurements in children(obj)
        .into_iter()
        .filter(|c| concept_value(c).as_deref() == Some("126010"))
    {
        for group in children(&measurements) {
            if let Some(f) = read_group(&group, &series_of) {
                found.push(f);
            }
        }
    }
    found
}

/// The SOP Instance UIDs of the evidence, each with its series.
fn series_by_instance(obj: &InMemDicomObject) -> Vec<(String, String)> {
    let mut map = Vec::new();
    for study in items(obj, tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE) {
        for series in items(&study, tags::REFERENCED_SERIES_SEQUENCE) {
            let uid = string(&series, tags::SERIES_INSTANCE_UID);
            for sop in items(&series, tags::REFERENCED_SOP_SEQUENCE) {
                map.push((string(&sop, tags::REFERENCED_SOP_INSTANCE_UID), uid.clone()));
            }
        }
    }
    map
}

fn read_group(group: &InMemDicomObject, series_of: &[(String, String)]) -> Option<ReadFinding> {
    if concept_value(group).as_deref() != Some("125007") {
        return None;
    }
    let mut tracking = String::new();
    let mut tracking_uid = String::new();
    let mut values = Vec::new();
    let mut geometry: Option<Geometry> = None;
    for item in children(group) {
        match (
            string(&item, tags::VALUE_TYPE).as_str(),
            concept_value(&item).as_deref(),
        ) {
            ("TEXT", Some("112039")) => tracking = string(&item, tags::TEXT_VALUE),
            ("UIDREF", Some("112040")) => tracking_uid = string(&item, tags::UID),
            ("NUM", _) => {
                values.push(read_num(&item)?);
                if geometry.is_none() {
                    geometry = read_scoords(&item, series_of);
                }
            }
            _ => {}
        }
    }
    let g = geometry?;
    let kind = tracking
        .strip_prefix(TRACKING_PREFIX)
        .and_then(Kind::parse)
        .or_else(|| infer_kind(&values, &g.graphic, g.points.len()))?;
    Some(ReadFinding {
        image: g.image,
        kind,
        points: points_of(kind, g.points),
        space: g.space.map(|(frame_of_reference, points)| ReadSpace {
            frame_of_reference,
            points: points_of_3d(kind, points),
        }),
        tracking_uid,
        values,
    })
}

/// A group's geometry as read: its graphic type, and its points on an image or in the patient.
struct Geometry {
    graphic: String,
    points: Vec<[f64; 2]>,
    image: Option<ImageRef>,
    /// SCOORD3D: the frame of reference and the points.
    space: Option<(String, Vec<[f64; 3]>)>,
}

/// The kind of a group another writer made, from its first value's concept and its geometry.
fn infer_kind(values: &[ReadValue], graphic: &str, points: usize) -> Option<Kind> {
    match (values.first()?.name.as_str(), graphic) {
        ("Length", _) => Some(Kind::Length),
        ("Angle", _) => Some(Kind::Angle),
        ("Cobb angle", _) => Some(Kind::Cobb),
        (_, "POINT") => Some(Kind::Probe),
        (_, "ELLIPSE") => Some(Kind::Ellipse),
        (_, "POLYLINE" | "POLYGON") if points >= 3 => Some(Kind::Freehand),
        _ => None,
    }
}

/// The points the viewer draws from those of the SCOORD: an ellipse's and a rectangle's two
/// corners, an outline without its closing point.
fn points_of(kind: Kind, points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    let bbox = |p: &[[f64; 2]]| {
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for q in p {
            lo = [lo[0].min(q[0]), lo[1].min(q[1])];
            hi = [hi[0].max(q[0]), hi[1].max(q[1])];
        }
        vec![lo, hi]
    };
    match kind {
        Kind::Ellipse | Kind::Rectangle => bbox(&points),
        Kind::Freehand if points.len() > 3 && points.first() == points.last() => {
            points[..points.len() - 1].to_vec()
        }
        _ => points,
    }
}

/// The points kept of SCOORD3D: an outline without its closing point (an ellipse's axis ends
/// and a rectangle's corners stay: on a plane they give its box again).
fn points_of_3d(kind: Kind, points: Vec<[f64; 3]>) -> Vec<[f64; 3]> {
    match kind {
        Kind::Freehand | Kind::Rectangle if points.len() > 3 && points.first() == points.last() => {
            points[..points.len() - 1].to_vec()
        }
        _ => points,
    }
}

fn read_num(item: &InMemDicomObject) -> Option<ReadValue> {
    let name = items(item, tags::CONCEPT_NAME_CODE_SEQUENCE)
        .first()
        .map(|c| string(c, tags::CODE_MEANING))?;
    let measured = items(item, tags::MEASURED_VALUE_SEQUENCE)
        .into_iter()
        .next()?;
    let value = string(&measured, tags::NUMERIC_VALUE).trim().parse().ok()?;
    let unit = items(&measured, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
        .first()
        .map(|c| string(c, tags::CODE_VALUE))
        .unwrap_or_default();
    Some(ReadValue { name, value, unit })
}

/// The SCOORDs (or SCOORD3Ds) a NUM is inferred from: their graphic type, their points in
/// order, and the image the first is selected from (or the frame of reference they lie in).
fn read_scoords(num: &InMemDicomObject, series_of: &[(String, String)]) -> Option<Geometry> {
    let mut graphic = None;
    let mut points = Vec::new();
    let mut image = None;
    let mut space: Option<(String, Vec<[f64; 3]>)> = None;
    for s in children(num) {
        match string(&s, tags::VALUE_TYPE).as_str() {
            "SCOORD3D" => {
                graphic.get_or_insert_with(|| string(&s, tags::GRAPHIC_TYPE));
                let data = s.get(tags::GRAPHIC_DATA)?.to_multi_float64().ok()?;
                let frame = string(&s, tags::REFERENCED_FRAME_OF_REFERENCE_UID);
                let (_, p) = space.get_or_insert_with(|| (frame, Vec::new()));
                p.extend(data.chunks_exact(3).map(|q| [q[0], q[1], q[2]]));
            }
            "SCOORD" => {
                graphic.get_or_insert_with(|| string(&s, tags::GRAPHIC_TYPE));
                let data = s.get(tags::GRAPHIC_DATA)?.to_multi_float64().ok()?;
                points.extend(data.chunks_exact(2).map(|p| [p[0], p[1]]));
                if image.is_none() {
                    image = Some(selected_image(&s, series_of)?);
                }
            }
            _ => {}
        }
    }
    if image.is_none() && space.is_none() {
        return None;
    }
    Some(Geometry {
        graphic: graphic?,
        points,
        image,
        space,
    })
}

/// The image an SCOORD is SELECTED FROM.
fn selected_image(scoord: &InMemDicomObject, series_of: &[(String, String)]) -> Option<ImageRef> {
    let selected = children(scoord)
        .into_iter()
        .find(|c| string(c, tags::VALUE_TYPE) == "IMAGE")?;
    let sop = items(&selected, tags::REFERENCED_SOP_SEQUENCE)
        .into_iter()
        .next()?;
    let instance = string(&sop, tags::REFERENCED_SOP_INSTANCE_UID);
    let series = series_of
        .iter()
        .find(|(i, _)| *i == instance)
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    Some(ImageRef {
        series,
        sop_class: string(&sop, tags::REFERENCED_SOP_CLASS_UID),
        frame: string(&sop, tags::REFERENCED_FRAME_NUMBER)
            .trim()
            .parse()
            .ok(),
        instance,
    })
}

// --- building ---

/// The modules every SR document here shares: patient and study copied from the study, a new
/// series and instance, SR Document General.
fn document(
    author: &Author,
    sop_class: &str,
    modality: &str,
    description: &str,
) -> Result<InMemDicomObject, String> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::ISSUER_OF_PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_INSTANCE_UID, VR::UI),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::STUDY_DESCRIPTION, VR::LO),
    ] {
        obj.put(text(tag, vr, &string(author.study, tag)));
    }
    if string(&obj, tags::STUDY_INSTANCE_UID).is_empty() {
        return Err("the study has no Study Instance UID".into());
    }
    let now = chrono::Utc::now();
    let (date, time) = (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    );
    let (sop_uid, series_uid) = (new_uid(), new_uid());
    let fields: [(Tag, VR, &str); 13] = [
        (tags::SOP_CLASS_UID, VR::UI, sop_class),
        (tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        (tags::MODALITY, VR::CS, modality),
        (tags::SERIES_INSTANCE_UID, VR::UI, &series_uid),
        (tags::SERIES_NUMBER, VR::IS, "9901"),
        (tags::SERIES_DESCRIPTION, VR::LO, description),
        (tags::INSTANCE_NUMBER, VR::IS, "1"),
        (tags::MANUFACTURER, VR::LO, "Strata"),
        (tags::CONTENT_DATE, VR::DA, &date),
        (tags::CONTENT_TIME, VR::TM, &time),
        (tags::INSTANCE_CREATION_DATE, VR::DA, &date),
        (tags::INSTANCE_CREATION_TIME, VR::TM, &time),
        (tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"),
    ];
    for (tag, vr, value) in fields {
        obj.put(text(tag, vr, value));
    }
    obj.put(seq(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    ));
    if sop_class == COMPREHENSIVE_SR {
        obj.put(text(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"));
        obj.put(text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"));
        obj.put(seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]));
    } else {
        obj.put(seq(tags::REFERENCED_REQUEST_SEQUENCE, vec![]));
    }
    Ok(obj)
}

/// The root content item: a CONTAINER with its title and template.
fn put_root(obj: &mut InMemDicomObject, title: InMemDicomObject, template: &str) {
    obj.put(text(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
    obj.put(seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![title]));
    obj.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    let mut t = InMemDicomObject::new_empty();
    t.put(text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"));
    t.put(text(tags::TEMPLATE_IDENTIFIER, VR::CS, template));
    obj.put(seq(tags::CONTENT_TEMPLATE_SEQUENCE, vec![t]));
}

/// Current Requested Procedure Evidence: every image referred to, by series.
fn evidence(author: &Author, images: &[&ImageRef]) -> Vec<InMemDicomObject> {
    let mut series: Vec<(&str, Vec<InMemDicomObject>)> = Vec::new();
    for image in distinct(images) {
        let sop = sop_reference(image);
        match series.iter_mut().find(|(s, _)| *s == image.series) {
            Some((_, sops)) if !sops.iter().any(|s| same_instance(s, image)) => sops.push(sop),
            Some(_) => {}
            None => series.push((&image.series, vec![sop])),
        }
    }
    let mut study = InMemDicomObject::new_empty();
    study.put(text(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &string(author.study, tags::STUDY_INSTANCE_UID),
    ));
    let series = series
        .into_iter()
        .map(|(uid, sops)| {
            let mut s = InMemDicomObject::new_empty();
            s.put(text(tags::SERIES_INSTANCE_UID, VR::UI, uid));
            s.put(seq(tags::REFERENCED_SOP_SEQUENCE, sops));
            s
        })
        .collect();
    study.put(seq(tags::REFERENCED_SERIES_SEQUENCE, series));
    vec![study]
}

fn same_instance(sop: &InMemDicomObject, image: &ImageRef) -> bool {
    string(sop, tags::REFERENCED_SOP_INSTANCE_UID) == image.instance
}

/// Each image (instance and frame) once, in first-seen order.
fn distinct<'a>(images: &[&'a ImageRef]) -> Vec<&'a ImageRef> {
    let mut out: Vec<&ImageRef> = Vec::new();
    for &i in images {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// One Measurement Group (TID 1501): tracking identifier and UID, then the values.
fn measurement_group(f: &Finding) -> InMemDicomObject {
    let mut id = content_item(
        "HAS OBS CONTEXT",
        "TEXT",
        Some(code("112039", "DCM", "Tracking Identifier")),
    );
    id.put(text(
        tags::TEXT_VALUE,
        VR::UT,
        &format!("{TRACKING_PREFIX}{}", f.kind.as_str()),
    ));
    let mut uid = content_item(
        "HAS OBS CONTEXT",
        "UIDREF",
        Some(code("112040", "DCM", "Tracking Unique Identifier")),
    );
    uid.put(text(tags::UID, VR::UI, &new_uid()));
    let mut items = vec![id, uid];
    let m = &f.measured;
    let length_unit = |u: &str| match u {
        "mm" => code("mm", "UCUM", "millimeter"),
        _ => code("{pixel}", "UCUM", "pixel"),
    };
    let values: Vec<(InMemDicomObject, f64, InMemDicomObject)> = match f.kind {
        Kind::Length => vec![(
            code("410668003", "SCT", "Length"),
            m.value,
            length_unit(&m.unit),
        )],
        Kind::Angle => vec![(
            code("1483009", "SCT", "Angle"),
            m.value,
            code("deg", "UCUM", "degree"),
        )],
        Kind::Cobb => vec![(
            code("285285000", "SCT", "Cobb angle"),
            m.value,
            code("deg", "UCUM", "degree"),
        )],
        Kind::Probe => vec![(
            code("373098007", "SCT", "Mean"),
            m.value,
            value_unit(&m.value_unit),
        )],
        Kind::Ellipse | Kind::Rectangle | Kind::Freehand => match &m.region {
            Some(r) => vec![
                (
                    code("42798000", "SCT", "Area"),
                    r.area,
                    match r.area_unit {
                        "mm2" => code("mm2", "UCUM", "square millimeter"),
                        _ => code("{pixel}", "UCUM", "pixel"),
                    },
                ),
                (
                    code("373098007", "SCT", "Mean"),
                    r.mean,
                    value_unit(&m.value_unit),
                ),
                (
                    code("386136009", "SCT", "Standard Deviation"),
                    r.sd,
                    value_unit(&m.value_unit),
                ),
                (
                    code("255605001", "SCT", "Minimum"),
                    r.min,
                    value_unit(&m.value_unit),
                ),
                (
                    code("56851009", "SCT", "Maximum"),
                    r.max,
                    value_unit(&m.value_unit),
                ),
            ],
            None => vec![],
        },
    };
    for (concept, value, unit) in values {
        let mut num = content_item("CONTAINS", "NUM", Some(concept));
        let mut measured = InMemDicomObject::new_empty();
        measured.put(seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![unit]));
        measured.put(text(tags::NUMERIC_VALUE, VR::DS, &ds(value)));
        num.put(seq(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
        num.put(seq(tags::CONTENT_SEQUENCE, scoords(f)));
        items.push(num);
    }
    container(
        "CONTAINS",
        code("125007", "DCM", "Measurement Group"),
        items,
    )
}

/// The unit of modality values: Hounsfield units for CT, else no unit.
fn value_unit(unit: &str) -> InMemDicomObject {
    match unit {
        "HU" => code("[hnsf'U]", "UCUM", "Hounsfield unit"),
        _ => code("1", "UCUM", "no units"),
    }
}

/// The geometry of a finding as the SCOORD items its values are inferred from.
fn scoords(f: &Finding) -> Vec<InMemDicomObject> {
    let p = &f.points;
    // on the image: SCOORD, selected from it; on an MPR plane: SCOORD3D, in the patient
    let shape = |graphic: &str, points: Vec<[f64; 2]>| {
        let (data, value_type): (Vec<f32>, _) = match &f.space {
            None => (
                points.iter().flat_map(|q| q.map(|v| v as f32)).collect(),
                "SCOORD",
            ),
            Some(space) => (
                points
                    .iter()
                    .flat_map(|&q| space.point(q).map(|v| v as f32))
                    .collect(),
                "SCOORD3D",
            ),
        };
        let mut s = content_item("INFERRED FROM", value_type, None);
        s.put(text(tags::GRAPHIC_TYPE, VR::CS, graphic));
        s.put(DataElement::new(
            tags::GRAPHIC_DATA,
            VR::FL,
            PrimitiveValue::F32(data.into()),
        ));
        match &f.space {
            None => s.put(seq(
                tags::CONTENT_SEQUENCE,
                vec![image_item("SELECTED FROM", &f.image)],
            )),
            Some(space) => s.put(text(
                tags::REFERENCED_FRAME_OF_REFERENCE_UID,
                VR::UI,
                &space.frame_of_reference,
            )),
        };
        s
    };
    match f.kind {
        Kind::Length | Kind::Angle => vec![shape("POLYLINE", p.clone())],
        Kind::Cobb => vec![
            shape("POLYLINE", p[..2].to_vec()),
            shape("POLYLINE", p[2..].to_vec()),
        ],
        Kind::Probe => vec![shape("POINT", p.clone())],
        Kind::Ellipse => {
            let (lo, hi) = (
                [p[0][0].min(p[1][0]), p[0][1].min(p[1][1])],
                [p[0][0].max(p[1][0]), p[0][1].max(p[1][1])],
            );
            let (cx, cy) = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
            let across = [[lo[0], cy], [hi[0], cy]];
            let down = [[cx, lo[1]], [cx, hi[1]]];
            // the major axis first (PS3.3 C.18.6.1.2)
            let points = if hi[0] - lo[0] >= hi[1] - lo[1] {
                [across, down].concat()
            } else {
                [down, across].concat()
            };
            vec![shape("ELLIPSE", points)]
        }
        Kind::Rectangle => {
            let (a, b) = (p[0], p[1]);
            let corners = vec![a, [b[0], a[1]], b, [a[0], b[1]], a];
            vec![shape("POLYLINE", corners)]
        }
        Kind::Freehand => {
            let mut closed = p.clone();
            closed.push(p[0]);
            vec![shape("POLYLINE", closed)]
        }
    }
}

/// An item naming an image by its SOP Class and Instance UIDs.
fn sop_reference(image: &ImageRef) -> InMemDicomObject {
    let mut sop = InMemDicomObject::new_empty();
    sop.put(text(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        &image.sop_class,
    ));
    sop.put(text(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &image.instance,
    ));
    sop
}

fn image_item(relationship: &str, image: &ImageRef) -> InMemDicomObject {
    let mut item = content_item(relationship, "IMAGE", None);
    let mut sop = sop_reference(image);
    if let Some(frame) = image.frame {
        sop.put(text(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            &frame.to_string(),
        ));
    }
    item.put(seq(tags::REFERENCED_SOP_SEQUENCE, vec![sop]));
    item
}

fn observer_type() -> InMemDicomObject {
    let mut item = content_item(
        "HAS OBS CONTEXT",
        "CODE",
        Some(code("121005", "DCM", "Observer Type")),
    );
    item.put(seq(
        tags::CONCEPT_CODE_SEQUENCE,
        vec![code("121006", "DCM", "Person")],
    ));
    item
}

fn concept_modifier(name: InMemDicomObject, value: InMemDicomObject) -> InMemDicomObject {
    let mut item = content_item("HAS CONCEPT MOD", "CODE", Some(name));
    item.put(seq(tags::CONCEPT_CODE_SEQUENCE, vec![value]));
    item
}

fn container(
    relationship: &str,
    name: InMemDicomObject,
    content: Vec<InMemDicomObject>,
) -> InMemDicomObject {
    let mut item = content_item(relationship, "CONTAINER", Some(name));
    item.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    item.put(seq(tags::CONTENT_SEQUENCE, content));
    item
}

fn content_item(
    relationship: &str,
    value_type: &str,
    name: Option<InMemDicomObject>,
) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(text(tags::RELATIONSHIP_TYPE, VR::CS, relationship));
    item.put(text(tags::VALUE_TYPE, VR::CS, value_type));
    if let Some(name) = name {
        item.put(seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![name]));
    }
    item
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut c = InMemDicomObject::new_empty();
    c.put(text(tags::CODE_VALUE, VR::SH, value));
    c.put(text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme));
    c.put(text(tags::CODE_MEANING, VR::LO, meaning));
    c
}

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A decimal string of at most 16 characters (PS3.5 6.2, DS): six decimals when they fit,
/// else as many significant digits as fit in exponent form.
fn ds(v: f64) -> String {
    let fixed = format!("{v:.6}");
    let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
    if fixed.len() <= 16 {
        return fixed.to_string();
    }
    format!("{v:.9e}")
}

fn part10(obj: InMemDicomObject, sop_class: &str) -> Result<Vec<u8>, String> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(sop_class),
        )
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

// --- reading ---

fn string(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Vec<InMemDicomObject> {
    obj.get(tag)
        .and_then(|e| e.items())
        .map(|i| i.to_vec())
        .unwrap_or_default()
}

fn children(obj: &InMemDicomObject) -> Vec<InMemDicomObject> {
    items(obj, tags::CONTENT_SEQUENCE)
}

/// The code value of an item's concept name.
fn concept_value(item: &InMemDicomObject) -> Option<String> {
    items(item, tags::CONCEPT_NAME_CODE_SEQUENCE)
        .first()
        .map(|c| string(c, tags::CODE_VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_render::measure::RegionStats;

    fn study() -> InMemDicomObject {
        let mut s = InMemDicomObject::new_empty();
        s.put(text(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"));
        s.put(text(tags::PATIENT_ID, VR::LO, "P1"));
        s.put(text(tags::PATIENT_NAME, VR::PN, "Doe^Jane"));
        s
    }

    fn finding(kind: Kind, points: Vec<[f64; 2]>, value: f64) -> Finding {
        let region = kind.is_region().then_some(RegionStats {
            area: 314.0,
            area_unit: "mm2",
            mean: value,
            sd: 1.5,
            min: value - 3.0,
            max: value + 3.0,
            pixels: 100,
        });
        Finding {
            image: ImageRef {
                series: "1.2.3.4".into(),
                instance: "1.2.3.4.5".into(),
                sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
                frame: None,
            },
            kind,
            points,
            measured: Measured {
                kind,
                value,
                unit: if kind.is_region() { "HU" } else { "mm" }.into(),
                value_unit: "HU".into(),
                calibration: "pixel spacing",
                region,
            },
            space: None,
        }
    }

    #[test]
    fn a_report_reads_back_as_it_was_written() {
        let findings = vec![
            finding(Kind::Length, vec![[10.5, 20.5], [50.5, 20.5]], 24.0),
            finding(Kind::Ellipse, vec![[10.0, 10.0], [30.0, 20.0]], 40.25),
            finding(Kind::Rectangle, vec![[1.0, 2.0], [3.0, 4.0]], -5.0),
            finding(
                Kind::Freehand,
                vec![[1.0, 1.0], [9.0, 1.0], [5.0, 7.0]],
                7.0,
            ),
            finding(
                Kind::Cobb,
                vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 2.0]],
                45.0,
            ),
            finding(Kind::Probe, vec![[4.5, 4.5]], 1000.0),
        ];
        let author = Author {
            observer: "Reader^Ruth",
            study: &study(),
        };
        let bytes = measurement_report(&author, &findings).unwrap();
        let obj = strata_dicom::part10::open(&bytes).unwrap();
        assert_eq!(string(&obj, tags::PATIENT_ID), "P1");
        assert_eq!(string(&obj, tags::SOP_CLASS_UID), COMPREHENSIVE_SR);
        let template = &items(&obj, tags::CONTENT_TEMPLATE_SEQUENCE)[0];
        assert_eq!(string(template, tags::TEMPLATE_IDENTIFIER), "1500");
        let read = read_measurement_report(&obj);
        assert_eq!(read.len(), findings.len());
        for (r, f) in read.iter().zip(&findings) {
            assert_eq!((r.kind, &r.points), (f.kind, &f.points));
            assert_eq!(r.image.as_ref(), Some(&f.image));
            assert_eq!(r.space, None);
            assert_eq!(
                r.values[0].value,
                f.measured
                    .region
                    .as_ref()
                    .map_or(f.measured.value, |s| s.area)
            );
            assert!(r.tracking_uid.starts_with("2.25."));
        }
        assert_eq!(
            read[1]
                .values
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["Area", "Mean", "Standard Deviation", "Minimum", "Maximum"]
        );
        assert_eq!(read[1].values[1].unit, "[hnsf'U]");
        assert!(measurement_report(&author, &[]).is_err());
    }

    #[test]
    fn a_measurement_on_an_mpr_plane_reads_back_in_the_patient() {
        // a coronal plane at y = 20: x across, z down, 0.5 mm pixels from (−50, 20, 60)
        let space = PlaneSpace {
            frame_of_reference: "1.2.3.9".into(),
            corner: [-50.0, 20.0, 60.0],
            across: [1.0, 0.0, 0.0],
            down: [0.0, 0.0, -1.0],
            pixel_mm: 0.5,
        };
        let mut length = finding(Kind::Length, vec![[10.0, 20.0], [50.0, 20.0]], 20.0);
        length.space = Some(space.clone());
        let mut outline = finding(
            Kind::Freehand,
            vec![[0.0, 0.0], [8.0, 0.0], [4.0, 6.0]],
            7.0,
        );
        outline.space = Some(space);
        let author = Author {
            observer: "Reader^Ruth",
            study: &study(),
        };
        let bytes = measurement_report(&author, &[length, outline]).unwrap();
        let obj = strata_dicom::part10::open(&bytes).unwrap();
        let read = read_measurement_report(&obj);
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].kind, read[0].image.as_ref()), (Kind::Length, None));
        let s = read[0].space.as_ref().unwrap();
        assert_eq!(s.frame_of_reference, "1.2.3.9");
        assert_eq!(s.points, [[-45.0, 20.0, 50.0], [-25.0, 20.0, 50.0]]);
        assert_eq!(read[0].values[0].value, 20.0);
        // an outline without its closing point
        let s = read[1].space.as_ref().unwrap();
        assert_eq!(
            s.points,
            [
                [-50.0, 20.0, 60.0],
                [-46.0, 20.0, 60.0],
                [-48.0, 20.0, 57.0]
            ]
        );
        // the slice nearest is its evidence
        assert_eq!(series_by_instance(&obj)[0].0, "1.2.3.4.5");
    }

    #[test]
    fn key_images_are_an_of_interest_selection() {
        let author = Author {
            observer: "Reader^Ruth",
            study: &study(),
        };
        let image = finding(Kind::Probe, vec![[0.0, 0.0]], 0.0).image;
        let bytes = key_object_selection(&author, &[image.clone(), image]).unwrap();
        let obj = strata_dicom::part10::open(&bytes).unwrap();
        assert_eq!(string(&obj, tags::MODALITY), "KO");
        let title = &items(&obj, tags::CONCEPT_NAME_CODE_SEQUENCE)[0];
        assert_eq!(string(title, tags::CODE_VALUE), "113000");
        let images: Vec<_> = children(&obj)
            .into_iter()
            .filter(|c| string(c, tags::VALUE_TYPE) == "IMAGE")
            .collect();
        assert_eq!(images.len(), 1);
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(ds(24.0), "24");
        assert_eq!(ds(-1000.125), "-1000.125");
        assert_eq!(ds(1.0 / 3.0), "0.333333");
        assert!(ds(1.0e20).len() <= 16, "{}", ds(1.0e20));
    }
}
