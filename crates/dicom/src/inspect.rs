//! Inspection: one Part-10 instance read and validated into the [`InstanceRecord`] the index
//! keeps of it. Every element is walked to the end, so a truncated or garbled file is refused
//! before anything is stored; the header is parsed only up to the pixel data.

use crate::attr::{int, required_uid, tag_str, text};
use crate::record::{InstanceRecord, InstanceRow, PatientRecord, SeriesRecord, StudyRecord};
use crate::{invalid, InspectError};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{FileMetaTable, InMemDicomObject, OpenFileOptions};
use dicom_parser::stateful::decode::{DynStatefulDecoder, StatefulDecode};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::{Read, Seek, SeekFrom};
use strata_core::BlobId;
use strata_mpi::{IssuerSource, LocalKey};

/// Reads and validates one Part-10 instance from `r` (`len` bytes in all) and returns what the
/// index keeps of it, stored under `blob_id`.
///
/// A parser that panics on crafted input refuses the file like any other malformed input: the
/// panic is caught here, so it never takes down the request, the association or the import.
/// `issuers` is the source that names the issuers of the instance's local keys.
pub fn inspect<R: Read + Seek>(
    r: R,
    len: u64,
    source: &str,
    blob_id: BlobId,
    issuers: &IssuerSource,
) -> Result<InstanceRecord, InspectError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inspect_unguarded(r, len, source, blob_id, issuers)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no reason given".into());
        Err(invalid(format!(
            "malformed data set: the DICOM parser failed on it ({why})"
        )))
    })
}

fn inspect_unguarded<R: Read + Seek>(
    mut r: R,
    len: u64,
    source: &str,
    blob_id: BlobId,
    issuers: &IssuerSource,
) -> Result<InstanceRecord, InspectError> {
    // Preamble and magic: the 128-byte preamble is optional in a stream, "DICM" is not.
    let mut head = [0u8; 132];
    let n = read_up_to(&mut r, &mut head)?;
    let meta_start = if n >= 132 && &head[128..132] == b"DICM" {
        128
    } else if n >= 4 && &head[0..4] == b"DICM" {
        0
    } else {
        return Err(invalid(
            "not a DICOM Part-10 file: no \"DICM\" marker at byte 128 (nor at the start)",
        ));
    };
    r.seek(SeekFrom::Start(meta_start))?;
    let meta = FileMetaTable::from_reader(&mut r)
        .map_err(|e| invalid(format!("unreadable file meta information: {e}")))?;
    let dataset_start = r.stream_position()?;
    let ts_uid = meta
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| invalid(format!("unknown transfer syntax {ts_uid}")))?;

    // Walk every element to the end: a truncated or garbled file is refused here, before
    // anything is stored. A deflated data set is walked as it inflates, within bounds.
    if ts.is_unsupported() {
        return Err(invalid(format!(
            "transfer syntax {ts_uid} ({}) is not supported",
            ts.name()
        )));
    }
    if matches!(ts.codec(), Codec::Dataset(_)) {
        walk_deflated(&mut r, dataset_start, len)?;
    } else {
        let mut dec = DynStatefulDecoder::new_with_ts(&mut r, ts, dataset_start)
            .map_err(|e| invalid(format!("cannot decode transfer syntax {ts_uid}: {e}")))?;
        walk_elements(&mut dec, None, len, 0)?;
    }

    r.seek(SeekFrom::Start(meta_start))?;
    let mut obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(&mut r)
        .map_err(|e| invalid(format!("malformed data set: {e}")))?;
    crate::un::resolve_unknown_vrs(&mut obj);
    let mut record = record_from(&obj, &meta, &ts_uid, source, blob_id, len)?;
    let file_alone = patient_keys(&obj, &meta, &IssuerSource::operator());
    let (issuer, other_ids) = patient_keys(&obj, &meta, issuers);
    if (&issuer, &other_ids) != (&file_alone.0, &file_alone.1) {
        record.patient.issuer_source = Some(issuers.clone());
    }
    record.patient.issuer = issuer;
    record.patient.other_ids = other_ids;
    Ok(record)
}

/// The issuer of the patient's key and the keys of OtherPatientIDsSequence, as `issuers`
/// names them.
fn patient_keys(
    ds: &InMemDicomObject,
    meta: &FileMetaTable,
    issuers: &IssuerSource,
) -> (String, Vec<LocalKey>) {
    let source_ae = meta
        .source_application_entity_title
        .as_deref()
        .map(|s| s.trim_end_matches(['\0', ' ']));
    let issuer = issuers.issuer_of(text(ds, tags::ISSUER_OF_PATIENT_ID).as_deref(), source_ae);
    (issuer, other_patient_ids(ds, source_ae, issuers))
}

/// Walks a data set held in memory (a query's identifier, an action's information) to its end,
/// keeping nothing: its nesting and the lengths its elements declare are checked against the
/// bytes present before anything parses it into an object. A deflated one is refused: nothing
/// of a query is worth inflating.
pub fn walk(bytes: &[u8], ts: &dicom_encoding::TransferSyntax) -> Result<(), InspectError> {
    if matches!(ts.codec(), Codec::Dataset(_)) {
        return Err(invalid(format!(
            "a deflated data set ({}) is not accepted here",
            ts.name()
        )));
    }
    let mut r = std::io::Cursor::new(bytes);
    let mut dec = DynStatefulDecoder::new_with_ts(&mut r, ts, 0)
        .map_err(|e| invalid(format!("cannot decode transfer syntax {}: {e}", ts.name())))?;
    walk_elements(&mut dec, None, bytes.len() as u64, 0)
}

/// Most bytes a deflated data set may inflate to: beyond, it is refused as a bomb. Deflated
/// data sets are rare (structured reports, waveforms, a few images); this holds a multi-frame
/// image of some hundred 512×512 frames.
pub const MAX_INFLATED_BYTES: u64 = 256 << 20;

/// Reads at most `left` bytes from `inner`; one more is an error naming the limit.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the deflated data set inflates to more than {MAX_INFLATED_BYTES} bytes"),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A deflated data set (from `start`) inflated as it is read, and never to more than
/// [`MAX_INFLATED_BYTES`].
fn inflating<R: Read + Seek>(
    r: &mut R,
    start: u64,
) -> std::io::Result<Bounded<flate2::read::DeflateDecoder<std::io::BufReader<&mut R>>>> {
    r.seek(SeekFrom::Start(start))?;
    Ok(Bounded {
        inner: flate2::read::DeflateDecoder::new(std::io::BufReader::new(r)),
        left: MAX_INFLATED_BYTES,
    })
}

/// Checks a deflated data set as [`walk_elements`] checks the others: once inflated to count
/// its length (nothing kept), then walked element by element as it inflates again.
fn walk_deflated<R: Read + Seek>(r: &mut R, start: u64, len: u64) -> Result<(), InspectError> {
    let bad = |e: std::io::Error| invalid(format!("the deflated data set cannot be inflated: {e}"));
    let inflated_len =
        std::io::copy(&mut inflating(r, start)?, &mut std::io::sink()).map_err(bad)?;
    if inflated_len == 0 && len > start {
        return Err(invalid("the deflated data set inflates to nothing"));
    }
    let explicit = TransferSyntaxRegistry
        .get(crate::syntax::EXPLICIT_VR_LITTLE_ENDIAN)
        .expect("the registry knows Explicit VR Little Endian");
    let mut inflater = inflating(r, start)?;
    let mut dec = DynStatefulDecoder::new_with_ts(&mut inflater, explicit, 0)
        .map_err(|e| invalid(format!("cannot decode the inflated data set: {e}")))?;
    walk_elements(&mut dec, None, inflated_len, 0)
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// (FFFE,E00D): ends an item of undefined length.
const ITEM_DELIMITATION: Tag = Tag(0xFFFE, 0xE00D);

/// Deepest sequence nesting we follow; real data nests a handful of levels.
const MAX_DEPTH: u32 = 64;

/// Walks data elements until `end` (a defined-length item's end), an item delimiter (inside an
/// undefined-length item), or the end of the file (top level), skipping values without reading
/// them into memory.
fn walk_elements<D: StatefulDecode>(
    d: &mut D,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
) -> Result<(), InspectError> {
    if depth > MAX_DEPTH {
        return Err(invalid("sequences nested too deeply"));
    }
    loop {
        let pos = d.position();
        match end {
            Some(e) if pos >= e => return Ok(()),
            None if depth == 0 && pos >= file_len => return Ok(()),
            _ => {}
        }
        let h = d.decode_header().map_err(|e| {
            invalid(format!(
                "truncated or malformed data set at byte {pos}: {e}"
            ))
        })?;
        if h.tag == ITEM_DELIMITATION {
            return if depth > 0 && end.is_none() {
                Ok(())
            } else {
                Err(invalid(format!("unexpected item delimiter at byte {pos}")))
            };
        }
        match h.len.get() {
            Some(n) => {
                let remaining = file_len.saturating_sub(d.position());
                if n as u64 > remaining {
                    return Err(invalid(format!(
                        "truncated: element {} needs {n} bytes, only {remaining} remain in the file",
                        tag_str(h.tag)
                    )));
                }
                d.skip_bytes(n).map_err(|e| {
                    invalid(format!("truncated at element {}: {e}", tag_str(h.tag)))
                })?;
            }
            None => walk_items(d, None, file_len, depth + 1, h.tag == tags::PIXEL_DATA)?,
        }
    }
}

/// Walks the items of a sequence (or the fragments of encapsulated pixel data).
fn walk_items<D: StatefulDecode>(
    d: &mut D,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
    fragments: bool,
) -> Result<(), InspectError> {
    use dicom_core::header::SequenceItemHeader as H;
    loop {
        let pos = d.position();
        if end.is_some_and(|e| pos >= e) {
            return Ok(());
        }
        let item = d.decode_item_header().map_err(|e| {
            invalid(format!(
                "truncated or malformed sequence at byte {pos}: {e}"
            ))
        })?;
        match item {
            H::SequenceDelimiter => return Ok(()),
            H::ItemDelimiter => {
                return Err(invalid(format!("unexpected item delimiter at byte {pos}")))
            }
            H::Item { len } => match len.get() {
                Some(n) => {
                    if n as u64 > file_len.saturating_sub(d.position()) {
                        return Err(invalid(format!(
                            "truncated: an item at byte {pos} needs {n} bytes"
                        )));
                    }
                    if fragments {
                        d.skip_bytes(n)
                            .map_err(|e| invalid(format!("truncated pixel data: {e}")))?;
                    } else {
                        let item_end = d.position() + n as u64;
                        walk_elements(d, Some(item_end), file_len, depth)?;
                    }
                }
                None if fragments => {
                    return Err(invalid("pixel data fragment of undefined length"))
                }
                None => walk_elements(d, None, file_len, depth)?,
            },
        }
    }
}

/// The keys of OtherPatientIDsSequence: the sender's statement that they are this patient too,
/// each under the issuer `issuers` names (a source not trusted for issuers names none but its own).
fn other_patient_ids(
    ds: &InMemDicomObject,
    source_ae: Option<&str>,
    issuers: &IssuerSource,
) -> Vec<LocalKey> {
    let Some(seq) = ds.get(tags::OTHER_PATIENT_I_DS_SEQUENCE) else {
        return vec![];
    };
    seq.items()
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let patient_id = text(item, tags::PATIENT_ID)?;
            Some(LocalKey {
                issuer: issuers
                    .issuer_of(text(item, tags::ISSUER_OF_PATIENT_ID).as_deref(), source_ae),
                patient_id,
            })
        })
        .collect()
}

fn record_from(
    obj: &dicom_object::DefaultDicomObject,
    meta: &FileMetaTable,
    ts_uid: &str,
    source: &str,
    blob_id: BlobId,
    size: u64,
) -> Result<InstanceRecord, InspectError> {
    let ds: &InMemDicomObject = obj;
    let sop_class_uid = required_uid(ds, tags::SOP_CLASS_UID, "SOP Class UID")?;
    let sop_uid = required_uid(ds, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    let meta_uid = meta
        .media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' ']);
    if !meta_uid.is_empty() && meta_uid != sop_uid {
        return Err(invalid(format!(
            "file meta gives Media Storage SOP Instance UID {meta_uid}, the data set SOP Instance UID {sop_uid}"
        )));
    }
    let study_uid = required_uid(ds, tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    let series_uid = required_uid(ds, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
    let metadata = dicom_json::to_string(ds)
        .map_err(|e| invalid(format!("header cannot be expressed as DICOM JSON: {e}")))?;
    Ok(InstanceRecord {
        patient: PatientRecord {
            patient_id: text(ds, tags::PATIENT_ID).unwrap_or_default(),
            // named by the source: see `inspect_unguarded`
            issuer: String::new(),
            name: text(ds, tags::PATIENT_NAME),
            birth_date: text(ds, tags::PATIENT_BIRTH_DATE),
            sex: text(ds, tags::PATIENT_SEX),
            address: text(ds, tags::PATIENT_ADDRESS),
            phone: text(ds, tags::PATIENT_TELEPHONE_NUMBERS),
            other_ids: vec![],
            issuer_source: None,
        },
        study: StudyRecord {
            uid: study_uid,
            date: text(ds, tags::STUDY_DATE),
            time: text(ds, tags::STUDY_TIME),
            accession_number: text(ds, tags::ACCESSION_NUMBER),
            study_id: text(ds, tags::STUDY_ID),
            description: text(ds, tags::STUDY_DESCRIPTION),
            referring_physician: text(ds, tags::REFERRING_PHYSICIAN_NAME),
        },
        series: SeriesRecord {
            uid: series_uid,
            modality: text(ds, tags::MODALITY),
            number: int(ds, tags::SERIES_NUMBER),
            description: text(ds, tags::SERIES_DESCRIPTION),
            body_part: text(ds, tags::BODY_PART_EXAMINED),
            date: text(ds, tags::SERIES_DATE),
            time: text(ds, tags::SERIES_TIME),
        },
        instance: InstanceRow {
            sop_uid,
            sop_class_uid,
            number: int(ds, tags::INSTANCE_NUMBER),
            blob_id,
            transfer_syntax: ts_uid.to_string(),
            size,
            frames: int(ds, tags::NUMBER_OF_FRAMES),
            rows: int(ds, tags::ROWS),
            columns: int(ds, tags::COLUMNS),
            content_date: text(ds, tags::CONTENT_DATE),
            content_time: text(ds, tags::CONTENT_TIME),
            metadata,
            source: source.to_string(),
            received_at: strata_core::now_ms(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader whose every read panics, as a parser meeting crafted input may.
    struct Panicking;

    impl Read for Panicking {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("index out of bounds: a crafted length")
        }
    }

    impl Seek for Panicking {
        fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn a_panic_while_parsing_refuses_the_file() {
        let blob = BlobId::from_bytes([0; 32]);
        match inspect(Panicking, 1000, "test", blob, &IssuerSource::operator()) {
            Err(InspectError::Invalid(why)) => {
                assert!(why.contains("parser failed"), "{why}");
                assert!(why.contains("a crafted length"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
