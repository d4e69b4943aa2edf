//! Values of known attributes that arrived with VR UN, read as their dictionary VR says.
//!
//! A sender that does not know an attribute (an older toolkit, a router that re-encoded a data
//! set it received in Implicit VR) writes it with VR UN, and its value keeps the bytes of the
//! Implicit VR Little Endian encoding. PS3.5 6.2.2 asks a receiver that knows the attribute to
//! read it with its own VR: an SOP Class UID sent as UN is still the SOP Class UID.

use dicom_core::dictionary::{DataDictionary, VirtualVr};
use dicom_core::header::Header;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Reads every element of `obj` (and of its sequences' items) that arrived as UN and whose tag
/// the standard dictionary knows with its dictionary VR. A value that does not decode as that
/// VR stays UN (the checks that need it then name it); private and unknown tags stay UN.
pub fn resolve_unknown_vrs(obj: &mut InMemDicomObject) {
    resolve_in(obj, None);
}

fn resolve_in(obj: &mut InMemDicomObject, inherited: Option<&SpecificCharacterSet>) {
    // The character set first: it may itself have arrived as UN, and the text read after it
    // depends on it. An item without its own inherits its data set's.
    if let Some(e) = obj
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| reread(e, &SpecificCharacterSet::default()))
    {
        obj.put(e);
    }
    let cs = own_charset(obj)
        .or_else(|| inherited.cloned())
        .unwrap_or_default();
    let fixed: Vec<InMemElement> = obj.iter().filter_map(|e| reread(e, &cs)).collect();
    for e in fixed {
        obj.put(e);
    }
    let sequences: Vec<Tag> = obj
        .iter()
        .filter(|e| e.value().items().is_some())
        .map(|e| e.tag())
        .collect();
    for tag in sequences {
        obj.update_value(tag, |v| {
            for item in v.items_mut().into_iter().flatten() {
                resolve_in(item, Some(&cs));
            }
        });
    }
}

fn own_charset(obj: &InMemDicomObject) -> Option<SpecificCharacterSet> {
    let codes = obj.get(tags::SPECIFIC_CHARACTER_SET)?.to_str().ok()?;
    // The first value names the default repertoire; code extensions are not followed here.
    let first = codes
        .split('\\')
        .next()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    SpecificCharacterSet::from_code(first)
}

/// The dictionary VR of `tag` when the dictionary knows it as one exact VR other than UN.
fn dictionary_vr(tag: Tag) -> Option<VR> {
    match StandardDataDictionary.by_tag(tag)?.vr {
        VirtualVr::Exact(VR::UN) => None,
        VirtualVr::Exact(vr) => Some(vr),
        // US or SS, OB or OW: the implicit reader's own choice is as good as any.
        _ => Some(VR::UN),
    }
}

/// `e` read again with its dictionary VR, when it arrived as UN and the dictionary knows it.
fn reread(e: &InMemElement, cs: &SpecificCharacterSet) -> Option<InMemElement> {
    if e.vr() != VR::UN || e.tag().group() & 1 == 1 {
        return None;
    }
    let vr = dictionary_vr(e.tag())?;
    match e.value() {
        // An undefined-length UN is already read as a sequence: only its VR is to be named.
        dicom_core::value::Value::Sequence(_) if vr == VR::SQ => {
            Some(DataElement::new(e.tag(), VR::SQ, e.value().clone()))
        }
        dicom_core::value::Value::Primitive(p) => {
            let bytes = p.to_bytes();
            let mut implicit = Vec::with_capacity(8 + bytes.len());
            implicit.extend_from_slice(&e.tag().group().to_le_bytes());
            implicit.extend_from_slice(&e.tag().element().to_le_bytes());
            implicit.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
            implicit.extend_from_slice(&bytes);
            let mut one = InMemDicomObject::read_dataset_with_ts_cs(
                &implicit[..],
                &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                cs.clone(),
            )
            .ok()?;
            one.take(e.tag()).filter(|e| e.vr() != VR::UN)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::PrimitiveValue;

    fn un(tag: Tag, bytes: &[u8]) -> InMemElement {
        DataElement::new(tag, VR::UN, PrimitiveValue::from(bytes.to_vec()))
    }

    #[test]
    fn known_tags_sent_as_un_are_read_with_their_dictionary_vr() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::SOP_CLASS_UID, b"1.2.840.10008.5.1.4.1.1.7\0"));
        obj.put(un(tags::PATIENT_NAME, b"Doe^Jane"));
        obj.put(un(tags::ROWS, &512u16.to_le_bytes()));
        obj.put(un(Tag(0x0009, 0x1010), b"private!"));
        resolve_unknown_vrs(&mut obj);
        let sop = obj.get(tags::SOP_CLASS_UID).unwrap();
        assert_eq!(sop.vr(), VR::UI);
        assert_eq!(
            sop.to_str().unwrap().trim_end_matches('\0'),
            "1.2.840.10008.5.1.4.1.1.7"
        );
        let name = obj.get(tags::PATIENT_NAME).unwrap();
        assert_eq!(
            (name.vr(), name.to_str().unwrap().as_ref()),
            (VR::PN, "Doe^Jane")
        );
        let rows = obj.get(tags::ROWS).unwrap();
        assert_eq!((rows.vr(), rows.to_int::<u16>().unwrap()), (VR::US, 512));
        assert_eq!(obj.get(Tag(0x0009, 0x1010)).unwrap().vr(), VR::UN);
    }

    #[test]
    fn text_sent_as_un_is_decoded_in_the_data_sets_character_set() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::SPECIFIC_CHARACTER_SET, b"ISO_IR 100"));
        obj.put(un(tags::PATIENT_NAME, b"M\xfcller^J\xf6rg"));
        resolve_unknown_vrs(&mut obj);
        let name = obj.get(tags::PATIENT_NAME).unwrap();
        assert_eq!(name.to_str().unwrap().as_ref(), "Müller^Jörg");
    }
}
