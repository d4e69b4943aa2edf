//! De-identification by PS3.15 Annex E: the Basic Application Level Confidentiality Profile with
//! the options Retain Longitudinal Temporal Information with Modified Dates, Retain Patient
//! Characteristics, Retain Device Identity and Clean Descriptors.
//!
//! One instance in (Part-10 bytes), one de-identified instance out with a report of what was
//! done to each attribute; the input is never changed. Everything that must agree between
//! instances of a project is derived from the project's key and nothing else, so instances
//! de-identified apart (another study, another day, another export) still agree:
//!
//! - a UID becomes `2.25.<HMAC-SHA256(key, uid) as a 128-bit decimal>`, so series, studies and
//!   references (ReferencedSOPInstanceUID in sequences too) stay linked;
//! - a patient (IssuerOfPatientID, PatientID) becomes a pseudonym from the same HMAC, and
//!   their dates move by a constant number of days derived from it;
//! - without the key nobody can link a pseudonym or a UID back, nor find the date shift.
//!
//! The actions come from [`table`], PS3.15 Table E.1-1 written out. Where the table leaves a
//! choice (X/Z, X/D, X/Z/D, Z/D) the attribute is kept present, empty (Z) or with a dummy (D),
//! since which attributes an IOD requires is not known here and a present empty attribute
//! satisfies both the Type 2 and the Type 3 case. Where two options name one attribute, the
//! one that changes it wins (C over K): dates of a device's calibration are shifted, not kept.
//!
//! Instances with burned-in annotation (BurnedInAnnotation YES, or absent on a modality that
//! burns text into its pictures) are refused unless a [`PixelRule`] for the device names where
//! the text is; its rectangles are then blanked in the native pixel data.

mod table;

use crate::attr::{int, tag_str, text};
use chrono::{Duration, NaiveDate};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::HashMap;
pub use strata_core::config::{DeidentifyConfig, PixelRule, SafePrivate};

type InMemElement = dicom_object::mem::InMemElement;

/// The secret of one de-identification project: the same key gives the same UIDs, pseudonyms
/// and date shifts; another key gives others that cannot be linked to them.
#[derive(Clone)]
pub struct ProjectKey([u8; 32]);

impl ProjectKey {
    pub fn from_bytes(bytes: [u8; 32]) -> ProjectKey {
        ProjectKey(bytes)
    }

    fn mac(&self, purpose: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The project's UID for `uid`: `2.25.` and 128 bits of its keyed hash in decimal (at most
    /// 44 characters, within the 64 of PS3.5 9.1).
    pub fn uid(&self, uid: &str) -> String {
        let h = self.mac(b"uid", uid.as_bytes());
        let n = u128::from_be_bytes(h[..16].try_into().expect("16 bytes"));
        format!("2.25.{n}")
    }

    /// The project's pseudonym for a patient, known by their local key.
    pub fn pseudonym(&self, issuer: &str, patient_id: &str) -> String {
        let subject = format!("{issuer}\0{patient_id}");
        let h = self.mac(b"patient", subject.as_bytes());
        let hex: String = h[..8].iter().map(|b| format!("{b:02X}")).collect();
        format!("P{hex}")
    }

    /// How many days a pseudonymous patient's dates move: -365 to 365, never 0.
    pub fn date_shift_days(&self, pseudonym: &str) -> i64 {
        let h = self.mac(b"date shift", pseudonym.as_bytes());
        let v = (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % 730) as i64;
        if v < 365 {
            -(v + 1)
        } else {
            v - 364
        }
    }
}

/// Why an instance was not de-identified, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum DeidentifyError {
    #[error("not a readable DICOM instance: {0}")]
    Unreadable(String),
    #[error(
        "burned-in annotation ({reason}) and no pixel-cleaning rule for manufacturer \
         {manufacturer:?}, model {model:?}"
    )]
    BurnedIn {
        reason: String,
        manufacturer: String,
        model: String,
    },
    #[error("burned-in annotation cannot be blanked: {0}")]
    Pixels(String),
    #[error("writing the de-identified instance: {0}")]
    Write(String),
}

/// A de-identified instance and what was done to make it so.
pub struct Deidentified {
    pub part10: Vec<u8>,
    pub report: Report,
}

/// What was done to one instance: every attribute it held, by where it sat, with the action
/// taken. It names the instance by its new UIDs only: the report travels with the data.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub pseudonym: String,
    pub attributes: Vec<AttributeAction>,
    /// Rectangles `[x, y, width, height]` blanked in every frame (a pixel-cleaning rule).
    pub blanked: Vec<[u32; 4]>,
}

/// One attribute's fate. `tag` is its path: `(0008,1140)[0](0008,1155)` for an attribute in the
/// first item of a sequence.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttributeAction {
    pub tag: String,
    pub name: String,
    /// What was done: X removed, Z emptied, D dummy value, U UID replaced, C cleaned (dates
    /// shifted, identifiers taken out of text, sequence items cleaned), K kept, P pseudonym.
    pub action: &'static str,
    /// Why: the table's entry for the attribute (`basic X/Z`, `modified dates C`, ...), or
    /// `not listed`, `private`, `private, safe-listed`, `added`.
    pub rule: String,
}

/// One row of Table E.1-1.
pub(crate) struct Row {
    tag: u32,
    mask: u32,
    name: &'static str,
    basic: &'static str,
    patient: u8,
    device: u8,
    dates: u8,
    descriptors: u8,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    const fn new(
        tag: u32,
        mask: u32,
        name: &'static str,
        basic: &'static str,
        patient: u8,
        device: u8,
        dates: u8,
        descriptors: u8,
    ) -> Row {
        Row {
            tag,
            mask,
            name,
            basic,
            patient,
            device,
            dates,
            descriptors,
        }
    }
}

/// The row of Table E.1-1 for `tag`, if it has one.
fn row(tag: Tag) -> Option<&'static Row> {
    let t = (u32::from(tag.group()) << 16) | u32::from(tag.element());
    if let Ok(i) = table::ROWS.binary_search_by_key(&t, |r| r.tag) {
        return Some(&table::ROWS[i]);
    }
    table::REPEATING.iter().find(|r| t & r.mask == r.tag)
}

/// What is done to one attribute, resolved from its row and the options in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Remove,
    Empty,
    Dummy,
    Keep,
    Clean,
    Uid,
    /// X/Z/U*: a sequence of references kept, the UIDs within replaced (by their own rows).
    References,
}

/// The action for `row` and the rule that decided it (for the report).
fn resolve(row: &Row, cfg: &DeidentifyConfig) -> (Action, String) {
    let option = |on: bool, code: u8, name: &str| {
        (on && code != b'-').then(|| {
            let action = if code == b'K' {
                Action::Keep
            } else {
                Action::Clean
            };
            (action, format!("{name} {}", code as char))
        })
    };
    if let Some(r) = option(cfg.modified_dates, row.dates, "modified dates")
        .or_else(|| option(cfg.clean_descriptors, row.descriptors, "clean descriptors"))
        .or_else(|| {
            option(
                cfg.patient_characteristics,
                row.patient,
                "patient characteristics",
            )
        })
        .or_else(|| option(cfg.device_identity, row.device, "device identity"))
    {
        return r;
    }
    let action = match row.basic {
        "X" => Action::Remove,
        "Z" | "X/Z" => Action::Empty,
        "D" | "X/D" | "X/Z/D" | "Z/D" => Action::Dummy,
        "U" => Action::Uid,
        "X/Z/U*" => Action::References,
        _ => Action::Remove,
    };
    (action, format!("basic {}", row.basic))
}

/// De-identifies one instance (Part-10 bytes) for the project whose key is `key`.
pub fn deidentify(
    part10: &[u8],
    key: &ProjectKey,
    cfg: &DeidentifyConfig,
) -> Result<Deidentified, DeidentifyError> {
    let file = crate::part10::open(part10).map_err(DeidentifyError::Unreadable)?;
    let transfer_syntax = file
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let mut obj = file.into_inner();

    let blanked = clean_burned_in(&mut obj, cfg)?;
    let issuer = text(&obj, tags::ISSUER_OF_PATIENT_ID).unwrap_or_default();
    let patient_id = text(&obj, tags::PATIENT_ID).unwrap_or_default();
    let pseudonym = key.pseudonym(&issuer, &patient_id);
    let mut walk = Walk {
        key,
        cfg,
        shift: Duration::days(key.date_shift_days(&pseudonym)),
        identifiers: identifiers(&obj),
        pseudonym,
        report: Vec::with_capacity(obj.iter().count() + 8),
    };
    let mut out = walk.clean_set(obj, "");
    walk.mark(&mut out, !blanked.is_empty());

    let report = Report {
        sop_instance_uid: text(&out, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        series_instance_uid: text(&out, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        study_instance_uid: text(&out, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        pseudonym: walk.pseudonym,
        attributes: walk.report,
        blanked,
    };
    let file = out
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(transfer_syntax)
                .implementation_class_uid(crate::part10::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(crate::part10::IMPLEMENTATION_VERSION_NAME),
        )
        .map_err(|e| DeidentifyError::Write(e.to_string()))?;
    let mut bytes = Vec::with_capacity(part10.len() + 512);
    file.write_all(&mut bytes)
        .map_err(|e| DeidentifyError::Write(e.to_string()))?;
    Ok(Deidentified {
        part10: bytes,
        report,
    })
}

/// The codes of PS3.16 CID 7050 naming the profile and each option applied, for
/// DeidentificationMethodCodeSequence.
fn method_codes(cfg: &DeidentifyConfig) -> Vec<(&'static str, &'static str)> {
    let mut codes = vec![("113100", "Basic Application Confidentiality Profile")];
    if cfg.clean_descriptors {
        codes.push(("113105", "Clean Descriptors Option"));
    }
    if cfg.modified_dates {
        codes.push((
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ));
    }
    if cfg.patient_characteristics {
        codes.push(("113108", "Retain Patient Characteristics Option"));
    }
    if cfg.device_identity {
        codes.push(("113109", "Retain Device Identity Option"));
    }
    codes
}

/// The record's identifying values, lowercased, that cleaning takes out of free text: names,
/// identifiers and places a description may repeat. Shorter than three characters they would
/// cut ordinary words, so they are left out.
fn identifiers(obj: &InMemDicomObject) -> Vec<String> {
    const NAMES: [Tag; 4] = [
        tags::PATIENT_NAME,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::PERFORMING_PHYSICIAN_NAME,
        tags::OPERATORS_NAME,
    ];
    const VALUES: [Tag; 10] = [
        tags::PATIENT_ID,
        Tag(0x0010, 0x1000), // Other Patient IDs (retired, still sent)
        tags::ACCESSION_NUMBER,
        tags::PATIENT_BIRTH_DATE,
        tags::INSTITUTION_NAME,
        tags::INSTITUTION_ADDRESS,
        tags::PATIENT_ADDRESS,
        tags::PATIENT_TELEPHONE_NUMBERS,
        tags::STUDY_ID,
        Tag(0x0010, 0x1090), // Medical Record Locator (retired, still sent)
    ];
    let mut out = Vec::new();
    for tag in NAMES {
        if let Some(v) = text(obj, tag) {
            out.extend(
                v.split(['^', ' ', '=', '\\'])
                    .map(str::to_string)
                    .chain(std::iter::once(v.replace('^', " "))),
            );
        }
    }
    for tag in VALUES {
        if let Some(v) = text(obj, tag) {
            out.extend(v.split('\\').map(str::to_string));
        }
    }
    let mut out: Vec<String> = out
        .into_iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| s.chars().count() >= 3)
        .collect();
    // longest first, so a full name goes before the parts that make it up
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every identifier (ASCII case ignored) replaced by `*`.
fn scrub(text: &str, identifiers: &[String]) -> String {
    let mut out = text.to_string();
    for id in identifiers {
        loop {
            let lower = out.to_lowercase();
            // lowercasing must not move byte offsets; a text where it would is emptied
            if lower.len() != out.len() {
                return String::new();
            }
            let Some(at) = lower.find(id.as_str()) else {
                break;
            };
            out.replace_range(at..at + id.len(), "*");
        }
    }
    out
}

/// The walk over a data set and its sequences, with what every instance of a patient shares.
struct Walk<'a> {
    key: &'a ProjectKey,
    cfg: &'a DeidentifyConfig,
    shift: Duration,
    identifiers: Vec<String>,
    pseudonym: String,
    report: Vec<AttributeAction>,
}

impl Walk<'_> {
    fn note(&mut self, at: String, tag: Tag, action: &'static str, rule: impl Into<String>) {
        let name = match row(tag) {
            Some(r) => r.name.to_string(),
            None if tag.group() % 2 == 1 => "Private".to_string(),
            None => StandardDataDictionary
                .by_tag(tag)
                .map(|e| e.alias().to_string())
                .unwrap_or_else(|| "Unknown".to_string()),
        };
        self.report.push(AttributeAction {
            tag: at,
            name,
            action,
            rule: rule.into(),
        });
    }

    fn clean_set(&mut self, set: InMemDicomObject, path: &str) -> InMemDicomObject {
        let creators = private_creators(&set);
        let mut kept = Vec::new();
        for elem in set {
            if let Some(e) = self.clean_element(elem, path, &creators) {
                kept.push(e);
            }
        }
        InMemDicomObject::from_element_iter(kept)
    }

    fn clean_element(
        &mut self,
        elem: InMemElement,
        path: &str,
        creators: &HashMap<(u16, u8), String>,
    ) -> Option<InMemElement> {
        let tag = elem.tag();
        let at = format!("{path}{}", tag_str(tag));
        if tag.group() % 2 == 1 {
            return self.private(elem, at, creators);
        }
        if tag.element() == 0 {
            // group lengths are recomputed by whoever needs them; they are not data
            self.note(at, tag, "X", "group length");
            return None;
        }
        if tag == tags::PATIENT_NAME || tag == tags::PATIENT_ID {
            let code = row(tag).map_or("", |r| r.basic);
            self.note(at, tag, "P", format!("basic {code}, pseudonym"));
            return Some(DataElement::new(
                tag,
                elem.vr(),
                PrimitiveValue::from(self.pseudonym.clone()),
            ));
        }
        let Some(r) = row(tag) else {
            self.note(at.clone(), tag, "K", "not listed");
            return Some(self.keep(elem, &at));
        };
        let (action, rule) = resolve(r, self.cfg);
        match action {
            Action::Remove => {
                self.note(at, tag, "X", rule);
                None
            }
            Action::Empty => {
                self.note(at, tag, "Z", rule);
                Some(empty(tag, elem.vr()))
            }
            Action::Dummy => {
                self.note(at, tag, "D", rule);
                Some(self.dummy(elem))
            }
            Action::Keep => {
                self.note(at.clone(), tag, "K", rule);
                Some(self.keep(elem, &at))
            }
            Action::References => {
                self.note(at.clone(), tag, "U", rule);
                Some(self.keep(elem, &at))
            }
            Action::Uid => {
                self.note(at, tag, "U", rule);
                Some(self.replace_uids(elem))
            }
            Action::Clean => {
                let (e, action) = self.clean(elem, &at);
                self.note(at, tag, action, rule);
                e
            }
        }
    }

    /// A private attribute: kept only when safe-listed (with its block's private creator).
    fn private(
        &mut self,
        elem: InMemElement,
        at: String,
        creators: &HashMap<(u16, u8), String>,
    ) -> Option<InMemElement> {
        let (group, element) = (elem.tag().group(), elem.tag().element());
        let safe = |creator: &str, low: Option<u8>| {
            self.cfg.private_safe.iter().any(|s| {
                s.group == group
                    && s.creator.trim() == creator
                    && low.is_none_or(|l| s.element == l)
            })
        };
        let keep = match element {
            0x0010..=0x00FF => creators
                .get(&(group, element as u8))
                .is_some_and(|c| safe(c, None)),
            0x1000..=0xFFFF => creators
                .get(&(group, (element >> 8) as u8))
                .is_some_and(|c| safe(c, Some(element as u8))),
            _ => false,
        };
        if keep {
            self.note(at.clone(), elem.tag(), "K", "private, safe-listed");
            Some(self.keep(elem, &at))
        } else {
            self.note(at, elem.tag(), "X", "private");
            None
        }
    }

    /// Kept; a sequence's items are de-identified in turn.
    fn keep(&mut self, elem: InMemElement, at: &str) -> InMemElement {
        let (tag, vr) = (elem.tag(), elem.vr());
        match elem.into_value() {
            Value::Sequence(seq) => {
                let items = seq
                    .into_items()
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.clean_set(item, &format!("{at}[{i}]")))
                    .collect::<Vec<_>>();
                DataElement::new(tag, vr, DataSetSequence::new(items, Length::UNDEFINED))
            }
            value => DataElement::new(tag, vr, value),
        }
    }

    fn replace_uids(&mut self, elem: InMemElement) -> InMemElement {
        let (tag, vr) = (elem.tag(), elem.vr());
        let uids: Vec<String> = elem
            .to_str()
            .map(|s| {
                s.split('\\')
                    .map(|u| u.trim_matches(['\0', ' ']))
                    .filter(|u| !u.is_empty())
                    .map(|u| self.key.uid(u))
                    .collect()
            })
            .unwrap_or_default();
        DataElement::new(tag, vr, strs(uids))
    }

    /// A dummy value of the attribute's VR. A sequence is emptied instead: a made-up item
    /// would mean nothing, and its real items may hold anything (free text, names).
    fn dummy(&mut self, elem: InMemElement) -> InMemElement {
        let (tag, vr) = (elem.tag(), elem.vr());
        let value = match vr {
            VR::UI => return self.replace_uids(elem),
            VR::SQ => return empty(tag, vr),
            VR::DA => PrimitiveValue::from("19000101"),
            VR::DT => PrimitiveValue::from("19000101000000"),
            VR::TM => PrimitiveValue::from("000000"),
            VR::AS => PrimitiveValue::from("000D"),
            VR::DS | VR::IS => PrimitiveValue::from("0"),
            VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UT => {
                PrimitiveValue::from("ANONYMIZED")
            }
            VR::US | VR::SS => PrimitiveValue::from(0u16),
            VR::UL | VR::SL => PrimitiveValue::from(0u32),
            VR::FL => PrimitiveValue::from(0f32),
            VR::FD => PrimitiveValue::from(0f64),
            _ => return empty(tag, vr),
        };
        DataElement::new(tag, vr, value)
    }

    /// C: dates shifted, identifiers taken out of text, sequence items de-identified; what
    /// cannot be cleaned (a date that does not parse, a binary value) is emptied. Returns the
    /// element and the action taken.
    fn clean(&mut self, elem: InMemElement, at: &str) -> (Option<InMemElement>, &'static str) {
        let (tag, vr) = (elem.tag(), elem.vr());
        let shifted = |s: &str, f: fn(&str, Duration) -> Option<String>| {
            s.split('\\')
                .map(|v| f(v.trim_matches(['\0', ' ']), self.shift))
                .collect::<Option<Vec<_>>>()
        };
        let value = elem.to_str().map(|s| s.into_owned()).unwrap_or_default();
        match vr {
            VR::SQ => (Some(self.keep(elem, at)), "C"),
            VR::DA | VR::DT => {
                let f = if vr == VR::DA { shift_da } else { shift_dt };
                match shifted(&value, f) {
                    Some(v) => (Some(DataElement::new(tag, vr, strs(v))), "C"),
                    None => (Some(empty(tag, vr)), "Z"),
                }
            }
            // dates move by whole days, so a time of day stays true
            VR::TM => (Some(elem), "C"),
            VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UT => {
                let clean = scrub(&value, &self.identifiers);
                (
                    Some(DataElement::new(tag, vr, PrimitiveValue::from(clean))),
                    "C",
                )
            }
            // numbers, ages, codes in binary: nothing of a name or an identifier in them
            _ => (Some(elem), "K"),
        }
    }

    /// What marks the result as de-identified (PS3.3 C.7.1.1): PatientIdentityRemoved, the
    /// method in words and in codes, whether dates were modified; the pseudonym where the
    /// patient's name and ID go; BurnedInAnnotation NO once the annotation was blanked.
    fn mark(&mut self, out: &mut InMemDicomObject, blanked: bool) {
        let pseudonym = self.pseudonym.clone();
        let codes = method_codes(self.cfg);
        let mut method = vec!["Strata PS3.15 E.1 Basic Application Confidentiality Profile"];
        method.extend(codes.iter().skip(1).map(|(_, meaning)| *meaning));
        let items: Vec<InMemDicomObject> = codes
            .iter()
            .map(|(value, meaning)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(*value)),
                    DataElement::new(
                        tags::CODING_SCHEME_DESIGNATOR,
                        VR::SH,
                        PrimitiveValue::from("DCM"),
                    ),
                    DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(*meaning)),
                ])
            })
            .collect();
        let temporal = if self.cfg.modified_dates {
            "MODIFIED"
        } else {
            "REMOVED"
        };
        let mut added = vec![
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from(pseudonym.clone()),
            ),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from(pseudonym)),
            DataElement::new(
                tags::PATIENT_IDENTITY_REMOVED,
                VR::CS,
                PrimitiveValue::from("YES"),
            ),
            DataElement::new(
                tags::DEIDENTIFICATION_METHOD,
                VR::LO,
                strs(method.into_iter().map(str::to_string).collect()),
            ),
            DataElement::new(
                tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(items, Length::UNDEFINED),
            ),
            DataElement::new(
                tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
                VR::CS,
                PrimitiveValue::from(temporal),
            ),
        ];
        if blanked {
            added.push(DataElement::new(
                tags::BURNED_IN_ANNOTATION,
                VR::CS,
                PrimitiveValue::from("NO"),
            ));
        }
        for e in added {
            let tag = e.tag();
            if tag != tags::PATIENT_NAME && tag != tags::PATIENT_ID {
                self.note(tag_str(tag), tag, "A", "added");
            }
            out.put(e);
        }
    }
}

fn empty(tag: Tag, vr: VR) -> InMemElement {
    if vr == VR::SQ {
        DataElement::new(tag, vr, DataSetSequence::<InMemDicomObject>::empty())
    } else {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    }
}

fn strs(values: Vec<String>) -> PrimitiveValue {
    match values.len() {
        0 => PrimitiveValue::Empty,
        1 => PrimitiveValue::from(values.into_iter().next().expect("one value")),
        _ => PrimitiveValue::Strs(values.into()),
    }
}

/// The private creators of a data set's blocks: (group, block) → creator.
fn private_creators(set: &InMemDicomObject) -> HashMap<(u16, u8), String> {
    set.iter()
        .filter(|e| e.tag().group() % 2 == 1 && (0x10..=0xFF).contains(&e.tag().element()))
        .filter_map(|e| {
            let creator = e.to_str().ok()?.trim_matches(['\0', ' ']).to_string();
            Some(((e.tag().group(), e.tag().element() as u8), creator))
        })
        .collect()
}

/// A DA value (or range `A-B`) moved by `shift`; None when it is no date.
fn shift_da(value: &str, shift: Duration) -> Option<String> {
    if value.is_empty() {
        return Some(String::new());
    }
    if let Some((a, b)) = value.split_once('-') {
        return Some(format!("{}-{}", shift_da(a, shift)?, shift_da(b, shift)?));
    }
    let date = NaiveDate::parse_from_str(value, "%Y%m%d").ok()?;
    Some((date + shift).format("%Y%m%d").to_string())
}

/// A DT value moved by `shift`: its date part moved, the time and offset kept; None when it has
/// no full date (a year or a month alone cannot move by days).
fn shift_dt(value: &str, shift: Duration) -> Option<String> {
    if value.is_empty() {
        return Some(String::new());
    }
    let date = shift_da(value.get(..8)?, shift)?;
    Some(format!("{date}{}", &value[8..]))
}

/// Why an instance carries burned-in annotation, if it does: BurnedInAnnotation YES, or absent
/// on a modality or SOP class whose pictures usually carry text (ultrasound, secondary
/// capture, photographs).
fn burned_in(obj: &InMemDicomObject) -> Option<String> {
    const MODALITIES: [&str; 5] = ["US", "IVUS", "XC", "ES", "OT"];
    const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
    obj.get(tags::PIXEL_DATA)?;
    match text(obj, tags::BURNED_IN_ANNOTATION).as_deref() {
        Some("YES") => return Some("BurnedInAnnotation YES".into()),
        Some("NO") => return None,
        _ => {}
    }
    let modality = text(obj, tags::MODALITY).unwrap_or_default();
    if MODALITIES.contains(&modality.as_str()) {
        return Some(format!("modality {modality} without BurnedInAnnotation NO"));
    }
    let class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if class.starts_with(SECONDARY_CAPTURE) {
        return Some("secondary capture without BurnedInAnnotation NO".into());
    }
    None
}

/// Refuses an instance with burned-in annotation, unless a rule for its device says where the
/// text is; then blanks it and returns the rectangles blanked.
fn clean_burned_in(
    obj: &mut InMemDicomObject,
    cfg: &DeidentifyConfig,
) -> Result<Vec<[u32; 4]>, DeidentifyError> {
    let Some(reason) = burned_in(obj) else {
        return Ok(Vec::new());
    };
    let manufacturer = text(obj, tags::MANUFACTURER).unwrap_or_default();
    let model = text(obj, tags::MANUFACTURER_MODEL_NAME).unwrap_or_default();
    let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    let Some(rule) = cfg
        .pixel_rules
        .iter()
        .find(|r| same(&r.manufacturer, &manufacturer) && same(&r.model, &model))
    else {
        return Err(DeidentifyError::BurnedIn {
            reason,
            manufacturer,
            model,
        });
    };
    blank(obj, &rule.rectangles)?;
    Ok(rule.rectangles.clone())
}

/// Zeroes `rectangles` (`[x, y, width, height]`, clipped to the image) in every frame of native
/// pixel data. Encapsulated (compressed) pixel data is refused: it would have to be decoded and
/// encoded again, and a lossy encoding would change the rest of the picture.
fn blank(obj: &mut InMemDicomObject, rectangles: &[[u32; 4]]) -> Result<(), DeidentifyError> {
    let fail = |m: &str| DeidentifyError::Pixels(m.to_string());
    let rows = int(obj, tags::ROWS).ok_or_else(|| fail("no Rows"))? as usize;
    let cols = int(obj, tags::COLUMNS).ok_or_else(|| fail("no Columns"))? as usize;
    let samples = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize;
    let bits = int(obj, tags::BITS_ALLOCATED).unwrap_or(0);
    let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let unit = match bits {
        8 => 1,
        16 => 2,
        _ => return Err(fail(&format!("{bits} bits allocated (8 or 16 handled)"))),
    };
    let elem = obj
        .take_element(tags::PIXEL_DATA)
        .map_err(|_| fail("no pixel data"))?;
    let (tag, vr) = (elem.tag(), elem.vr());
    let frame_samples = rows * cols * samples;
    // every sample index to blank, frame by frame
    let zero = |data_len: usize, set: &mut dyn FnMut(usize)| -> Result<(), DeidentifyError> {
        if data_len < frame_samples * frames {
            return Err(fail("pixel data shorter than its frames"));
        }
        for f in 0..frames {
            for &[x, y, w, h] in rectangles {
                let (x0, y0) = (x as usize, y as usize);
                let x1 = (x0 + w as usize).min(cols);
                let y1 = (y0 + h as usize).min(rows);
                for r in y0.min(rows)..y1 {
                    for c in x0.min(cols)..x1 {
                        for s in 0..samples {
                            let i = if planar {
                                s * rows * cols + r * cols + c
                            } else {
                                (r * cols + c) * samples + s
                            };
                            set(f * frame_samples + i);
                        }
                    }
                }
            }
        }
        Ok(())
    };
    let value = match elem.into_value() {
        Value::Primitive(PrimitiveValue::U8(mut bytes)) => {
            zero(bytes.len() / unit, &mut |i| {
                bytes[i * unit..(i + 1) * unit].fill(0);
            })?;
            PrimitiveValue::U8(bytes)
        }
        Value::Primitive(PrimitiveValue::U16(mut words)) if unit == 2 => {
            zero(words.len(), &mut |i| words[i] = 0)?;
            PrimitiveValue::U16(words)
        }
        Value::PixelSequence(_) => {
            return Err(fail(
                "the pixel data is compressed; only native pixel data is blanked",
            ))
        }
        _ => return Err(fail("pixel data of an unexpected form")),
    };
    obj.put(DataElement::new(tag, vr, value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_tag_order() {
        assert!(table::ROWS.windows(2).all(|w| w[0].tag < w[1].tag));
        assert_eq!(row(tags::PATIENT_NAME).unwrap().basic, "Z");
        assert_eq!(row(Tag(0x6002, 0x3000)).unwrap().name, "Overlay Data");
        assert!(row(tags::ROWS).is_none());
    }

    #[test]
    fn options_decide_before_the_basic_profile() {
        let all = DeidentifyConfig::default();
        let none = DeidentifyConfig {
            modified_dates: false,
            patient_characteristics: false,
            device_identity: false,
            clean_descriptors: false,
            ..all.clone()
        };
        let sex = row(tags::PATIENT_SEX).unwrap();
        assert_eq!(resolve(sex, &all).0, Action::Keep);
        assert_eq!(resolve(sex, &none).0, Action::Empty);
        let study_date = row(tags::STUDY_DATE).unwrap();
        assert_eq!(resolve(study_date, &all).0, Action::Clean);
        assert_eq!(resolve(study_date, &none).0, Action::Empty);
        // a device's calibration date: kept by device identity, shifted by modified dates
        let calibration = row(tags::DATE_OF_LAST_CALIBRATION).unwrap();
        assert_eq!(resolve(calibration, &all).0, Action::Clean);
    }

    #[test]
    fn keyed_values_are_stable_and_differ_by_key() {
        let a = ProjectKey::from_bytes([1; 32]);
        let b = ProjectKey::from_bytes([2; 32]);
        assert_eq!(a.uid("1.2.3"), a.uid("1.2.3"));
        assert_ne!(a.uid("1.2.3"), b.uid("1.2.3"));
        assert!(crate::is_valid_uid(&a.uid("1.2.3")));
        assert_eq!(a.pseudonym("H", "42"), a.pseudonym("H", "42"));
        assert_ne!(a.pseudonym("H", "42"), a.pseudonym("H", "43"));
        for p in ["a", "b", "c", "d", "e"] {
            let d = a.date_shift_days(p);
            assert!((-365..=365).contains(&d) && d != 0, "{d}");
        }
    }

    #[test]
    fn dates_move_and_text_loses_identifiers() {
        let d = Duration::days(-31);
        assert_eq!(shift_da("20240301", d).unwrap(), "20240130");
        assert_eq!(
            shift_da("20240301-20240302", d).unwrap(),
            "20240130-20240131"
        );
        assert_eq!(
            shift_dt("20240301120000.5+0100", d).unwrap(),
            "20240130120000.5+0100"
        );
        assert!(shift_dt("2024", d).is_none());
        let ids = vec!["john doe".to_string(), "12345".to_string()];
        assert_eq!(
            scrub("Head CT of John Doe, MRN 12345", &ids),
            "Head CT of *, MRN *"
        );
    }
}
