//! Attribute values as text: the one place a DICOM element is read as a string.

use crate::uid::is_valid_uid;
use crate::{invalid, InspectError};
use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// A tag as DICOM writes it: `(0010,0020)`.
pub fn tag_str(t: Tag) -> String {
    format!("({:04X},{:04X})", t.group(), t.element())
}

/// The value of `tag` as the index keeps it: padding and surrounding spaces removed; None when
/// the attribute is missing, empty or not text.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// The value of `tag` as a peer sent it, only the trailing padding (NUL or space) removed;
/// empty when the attribute is missing. Query keys keep their leading characters: a leading
/// wildcard or space is part of what was asked.
pub fn attr_text(obj: &InMemDicomObject, tag: Tag) -> String {
    // `get`, not `element_opt`: a missing attribute is no error, and building one captures a
    // backtrace when RUST_BACKTRACE is set.
    obj.get(tag)
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        })
        .unwrap_or_default()
}

/// The first value of a numeric attribute (IS or DS), truncated to an integer.
pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    text(obj, tag)
        .and_then(|s| s.split('\\').next()?.trim().parse::<f64>().ok())
        .map(|f| f as i64)
}

/// A UID the instance must carry, valid (PS3.5 9.1); else an error naming it.
pub fn required_uid(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<String, InspectError> {
    let uid = text(obj, tag).ok_or_else(|| invalid(format!("missing {name} {}", tag_str(tag))))?;
    if !is_valid_uid(&uid) {
        return Err(invalid(format!("{name} {uid:?} is not a valid DICOM UID")));
    }
    Ok(uid)
}
