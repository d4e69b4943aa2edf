//! Inspection: one Part-10 instance read and validated into the [`InstanceRecord`] the index
//! keeps of it. Every element is walked to the end, so a truncated or garbled file is refused
//! before anything is stored; the header is parsed only up to the pixel data.

use crate::attr::{int, required_uid, tag_str, text};
use crate::record::{InstanceRecord, InstanceRow, PatientRecord, SeriesRecord, StudyRecord};
use crate::{invalid, InspectError};
use dicom_core::header::DataElementHeader;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::{TransferSyntax, TransferSyntaxIndex};
use dicom_object::{FileMetaTable, InMemDicomObject};
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
    let (meta, dataset_start, ts_uid, ts) = file_meta(&mut r)?;

    // Walk every element to the end: a truncated or garbled file is refused here, before
    // anything is stored. A deflated data set is walked as it inflates, within bounds.
    if ts.is_unsupported() {
        return Err(invalid(format!(
            "transfer syntax {ts_uid} ({}) is not supported",
            ts.name()
        )));
    }
    // The header is kept as it is walked: every value up to the pixel data, but none larger
    // than MAX_HEADER_VALUE (those stay in the stored file, named by a BulkDataURI).
    let mut obj = InMemDicomObject::new_empty();
    let mut budget = Budget::default();
    if matches!(ts.codec(), Codec::Dataset(_)) {
        walk_deflated(&mut r, dataset_start, len, &mut obj, &mut budget)?;
    } else {
        let mut dec = DynStatefulDecoder::new_with_ts(&mut r, ts, dataset_start)
            .map_err(|e| invalid(format!("cannot decode transfer syntax {ts_uid}: {e}")))?;
        walk_elements(&mut dec, None, len, 0, Some(&mut obj), &mut budget)?;
    }
    crate::un::resolve_unknown_vrs(&mut obj);
    let mut record = record_from(&obj, &budget.beyond, &meta, &ts_uid, source, blob_id, len)?;
    let file_alone = patient_keys(&obj, &meta, &IssuerSource::operator());
    let (issuer, other_ids) = patient_keys(&obj, &meta, issuers);
    if (&issuer, &other_ids) != (&file_alone.0, &file_alone.1) {
        record.patient.issuer_source = Some(issuers.clone());
    }
    record.patient.issuer = issuer;
    record.patient.other_ids = other_ids;
    Ok(record)
}

/// Where a stored instance's pixel data lies, found by reading its header and, for encapsulated
/// pixel data, the item headers of its fragments, never the pixels: a frame of a large instance
/// is then read by its byte range.
pub struct Layout {
    pub meta: FileMetaTable,
    /// Every element before the pixel data, held as [`inspect`] holds it (values larger than
    /// [`MAX_HEADER_VALUE`] left out).
    pub header: InMemDicomObject,
    pub pixels: Option<PixelLayout>,
    /// The top-level values left out of the header for their size: tag, offset and length.
    pub values: Vec<(Tag, u64, u32)>,
}

/// The pixel data's bytes within the stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelLayout {
    /// Native pixel data: `len` bytes from `offset`.
    Native { offset: u64, len: u64 },
    /// Encapsulated: the Basic Offset Table's entries and each fragment's (offset, length),
    /// the offset table's own item excepted.
    Encapsulated {
        offset_table: Vec<u32>,
        fragments: Vec<(u64, u32)>,
    },
}

impl Layout {
    /// The layout with only what locating frames needs of its header (Rows, Columns, Samples
    /// per Pixel, Bits Allocated, Number of Frames): what is worth keeping between requests.
    pub fn slim(mut self) -> Layout {
        let mut kept = InMemDicomObject::new_empty();
        for t in [
            tags::ROWS,
            tags::COLUMNS,
            tags::SAMPLES_PER_PIXEL,
            tags::BITS_ALLOCATED,
            tags::NUMBER_OF_FRAMES,
        ] {
            if let Ok(e) = self.header.take_element(t) {
                kept.put(e);
            }
        }
        self.header = kept;
        self
    }

    /// Number of Frames (1 when absent).
    pub fn frames(&self) -> u32 {
        int(&self.header, tags::NUMBER_OF_FRAMES)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The byte ranges holding frame `frame` (0-based): one for native pixel data, the frame's
    /// fragments for encapsulated. An error says why the frame cannot be located.
    pub fn frame_ranges(&self, frame: u32) -> Result<Vec<std::ops::Range<u64>>, String> {
        let frames = self.frames();
        if frame >= frames {
            return Err(format!("no frame {} in {frames}", frame + 1));
        }
        match self
            .pixels
            .as_ref()
            .ok_or("the instance has no pixel data")?
        {
            PixelLayout::Native { offset, len } => {
                let get = |t| int(&self.header, t).and_then(|v| u64::try_from(v).ok());
                let (rows, columns) = (get(tags::ROWS), get(tags::COLUMNS));
                let samples = get(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
                let bits = get(tags::BITS_ALLOCATED).unwrap_or(0);
                let (Some(rows), Some(columns)) = (rows, columns) else {
                    return Err("Rows or Columns is missing".into());
                };
                if bits == 0 || bits % 8 != 0 {
                    return Err(format!("frames of {bits}-bit samples are not byte-aligned"));
                }
                let size = rows * columns * samples * (bits / 8);
                let start = offset + frame as u64 * size;
                if size == 0 || (frame as u64 + 1) * size > *len {
                    return Err(format!(
                        "{frames} frames of {size} bytes do not fit in {len} bytes of pixel data"
                    ));
                }
                Ok(std::iter::once(start..start + size).collect())
            }
            PixelLayout::Encapsulated {
                offset_table,
                fragments,
            } => {
                let range = |&(at, n): &(u64, u32)| at..at + n as u64;
                if fragments.len() == frames as usize {
                    return Ok(vec![range(&fragments[frame as usize])]);
                }
                if frames == 1 {
                    return Ok(fragments.iter().map(range).collect());
                }
                if offset_table.len() != frames as usize || fragments.is_empty() {
                    return Err(format!(
                        "{} fragments for {frames} frames and no offset table to group them",
                        fragments.len()
                    ));
                }
                // offsets count from the first fragment's item header
                let base = fragments[0].0 - 8;
                let from = offset_table[frame as usize] as u64;
                let to = offset_table
                    .get(frame as usize + 1)
                    .map_or(u64::MAX, |&o| o as u64);
                let picked: Vec<_> = fragments
                    .iter()
                    .filter(|(at, _)| (from..to).contains(&(at - 8 - base)))
                    .map(range)
                    .collect();
                if picked.is_empty() {
                    return Err(format!(
                        "the offset table names no fragment for frame {}",
                        frame + 1
                    ));
                }
                Ok(picked)
            }
        }
    }
}

/// Most fragments a layout lists: one a frame, for more frames than any real instance holds.
pub const MAX_FRAGMENTS: usize = 1 << 20;

/// Reads the layout of a Part-10 instance of `len` bytes from `r`, seeking past the pixels. A
/// deflated data set has no byte ranges to give (its pixels are compressed with the rest) and
/// is refused here; its reader reads it whole instead.
pub fn layout<R: Read + Seek>(r: R, len: u64) -> Result<Layout, InspectError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| layout_unguarded(r, len)))
        .unwrap_or_else(|_| Err(invalid("malformed data set: the DICOM parser failed on it")))
}

fn layout_unguarded<R: Read + Seek>(mut r: R, len: u64) -> Result<Layout, InspectError> {
    let (meta, dataset_start, ts_uid, ts) = file_meta(&mut r)?;
    if matches!(ts.codec(), Codec::Dataset(_)) || ts.is_unsupported() {
        return Err(invalid(format!(
            "a data set in {} has no pixel byte ranges",
            ts.name()
        )));
    }
    let mut header = InMemDicomObject::new_empty();
    let mut budget = Budget {
        stop_at_pixels: true,
        ..Budget::default()
    };
    let mut dec = DynStatefulDecoder::new_with_ts(&mut r, ts, dataset_start)
        .map_err(|e| invalid(format!("cannot decode transfer syntax {ts_uid}: {e}")))?;
    walk_elements(&mut dec, None, len, 0, Some(&mut header), &mut budget)?;
    crate::un::resolve_unknown_vrs(&mut header);
    let offset = dec.position();
    drop(dec);
    let pixels = match budget.pixels {
        None => None,
        Some(h) => Some(match h.len.get() {
            Some(n) => {
                if offset + n as u64 > len {
                    return Err(invalid("truncated: the pixel data runs past the end"));
                }
                PixelLayout::Native {
                    offset,
                    len: n.into(),
                }
            }
            None => fragments_of(&mut r, offset, len)?,
        }),
    };
    Ok(Layout {
        meta,
        header,
        pixels,
        values: budget.beyond_at,
    })
}

/// The offset table and fragments of encapsulated pixel data (its items from `at`), from the
/// item headers alone: each is 8 bytes, (FFFE,E000) or (FFFE,E0DD) and a length, little-endian
/// in every syntax that encapsulates.
fn fragments_of<R: Read + Seek>(
    r: &mut R,
    mut at: u64,
    len: u64,
) -> Result<PixelLayout, InspectError> {
    let mut offset_table = None;
    let mut fragments = Vec::new();
    loop {
        r.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 8];
        if read_up_to(r, &mut head)? < 8 {
            return Err(invalid(format!("truncated pixel data at byte {at}")));
        }
        let tag = (
            u16::from_le_bytes([head[0], head[1]]),
            u16::from_le_bytes([head[2], head[3]]),
        );
        let n = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let start = at + 8;
        match tag {
            (0xFFFE, 0xE0DD) => break,
            (0xFFFE, 0xE000) if n != u32::MAX => {}
            (0xFFFE, 0xE000) => return Err(invalid("pixel data fragment of undefined length")),
            _ => return Err(invalid(format!("not a pixel data item at byte {at}"))),
        }
        if start + n as u64 > len {
            return Err(invalid(format!(
                "truncated: a fragment at byte {at} needs {n} bytes"
            )));
        }
        at = start + n as u64;
        if offset_table.is_none() {
            if n as u64 > 4 * MAX_FRAGMENTS as u64 {
                return Err(invalid(
                    "the Basic Offset Table is larger than any frame count",
                ));
            }
            let mut bytes = vec![0u8; n as usize];
            r.read_exact(&mut bytes)?;
            offset_table = Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
            continue;
        }
        if fragments.len() == MAX_FRAGMENTS {
            return Err(invalid(format!(
                "more than {MAX_FRAGMENTS} pixel data fragments"
            )));
        }
        fragments.push((start, n));
    }
    Ok(PixelLayout::Encapsulated {
        offset_table: offset_table.unwrap_or_default(),
        fragments,
    })
}

/// A Part-10 file's meta information, where its data set starts, and its transfer syntax (UID
/// and codec). The 128-byte preamble is optional in a stream, "DICM" is not.
fn file_meta<R: Read + Seek>(
    r: &mut R,
) -> Result<(FileMetaTable, u64, String, &'static TransferSyntax), InspectError> {
    let mut head = [0u8; 132];
    let n = read_up_to(r, &mut head)?;
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
    let meta = FileMetaTable::from_reader(&mut *r)
        .map_err(|e| invalid(format!("unreadable file meta information: {e}")))?;
    let dataset_start = r.stream_position()?;
    let ts_uid = meta
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| invalid(format!("unknown transfer syntax {ts_uid}")))?;
    Ok((meta, dataset_start, ts_uid, ts))
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
    walk_elements(
        &mut dec,
        None,
        bytes.len() as u64,
        0,
        None,
        &mut Budget::default(),
    )
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
fn walk_deflated<R: Read + Seek>(
    r: &mut R,
    start: u64,
    len: u64,
    into: &mut InMemDicomObject,
    budget: &mut Budget,
) -> Result<(), InspectError> {
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
    walk_elements(&mut dec, None, inflated_len, 0, Some(into), budget)
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

/// Largest value the in-memory header (and the index's metadata) keeps: a larger one (a private
/// blob, an encapsulated document, waveform or overlay data) is skipped in the stream and stays
/// in the stored file, where the metadata route names it by a BulkDataURI. A palette or a LUT
/// of 65536 16-bit entries (128 KiB) is the largest value any header attribute legitimately
/// needs kept; the rendering pipeline reads those from the file itself.
pub const MAX_HEADER_VALUE: u32 = 64 << 10;

/// Most elements and sequence items a header may hold in memory: far more than the largest
/// structure set or structured report, and the bound that keeps a sequence of millions of items
/// from being built into memory (and into the index) whole.
pub const MAX_HEADER_ELEMENTS: u64 = 250_000;

/// Most value bytes a header may hold in memory, the values under [`MAX_HEADER_VALUE`] added up.
pub const MAX_HEADER_BYTES: u64 = 32 << 20;

/// What a walk has kept of a header so far, held to [`MAX_HEADER_ELEMENTS`] and
/// [`MAX_HEADER_BYTES`], and the top-level values it left in the file.
#[derive(Default)]
struct Budget {
    elements: u64,
    bytes: u64,
    beyond: Vec<(Tag, VR)>,
    /// Stop at the top-level pixel data (a layout, not an inspection), and its header once met.
    stop_at_pixels: bool,
    pixels: Option<DataElementHeader>,
    /// Where each value in `beyond` lies: its tag, offset and length.
    beyond_at: Vec<(Tag, u64, u32)>,
}

impl Budget {
    /// Counts one more element (or item) of `bytes` value bytes kept, or refuses the header.
    fn take(&mut self, bytes: u64) -> Result<(), InspectError> {
        self.elements += 1;
        self.bytes += bytes;
        if self.elements > MAX_HEADER_ELEMENTS {
            return Err(invalid(format!(
                "the data set's header has more than {MAX_HEADER_ELEMENTS} elements and items"
            )));
        }
        if self.bytes > MAX_HEADER_BYTES {
            return Err(invalid(format!(
                "the data set's header holds more than {} MiB of values",
                MAX_HEADER_BYTES >> 20
            )));
        }
        Ok(())
    }
}

/// Walks data elements until `end` (a defined-length item's end), an item delimiter (inside an
/// undefined-length item), or the end of the file (top level). Each value is read into `into`
/// when there is one, it comes before the pixel data and is no larger than
/// [`MAX_HEADER_VALUE`]; every other value is skipped without being read into memory.
fn walk_elements<D: StatefulDecode>(
    d: &mut D,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
    mut into: Option<&mut InMemDicomObject>,
    budget: &mut Budget,
) -> Result<(), InspectError> {
    if depth > MAX_DEPTH {
        return Err(invalid("sequences nested too deeply"));
    }
    let top = depth == 0 && end.is_none();
    loop {
        let pos = d.position();
        match end {
            Some(e) if pos >= e => return Ok(()),
            None if top && pos >= file_len => return Ok(()),
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
        if top && budget.stop_at_pixels && h.tag == tags::PIXEL_DATA {
            budget.pixels = Some(h);
            return Ok(());
        }
        // the header ends at the pixel data: what follows it is walked, not kept
        if top && h.tag >= tags::PIXEL_DATA {
            into = None;
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
                if h.vr == VR::SQ {
                    let item_end = d.position() + n as u64;
                    walk_sequence(
                        d,
                        &h,
                        Some(item_end),
                        file_len,
                        depth,
                        into.as_deref_mut(),
                        budget,
                    )?;
                } else if let Some(obj) = into.as_deref_mut().filter(|_| n <= MAX_HEADER_VALUE) {
                    budget.take(n as u64)?;
                    let value = d.read_value_preserved(&h).map_err(|e| {
                        invalid(format!(
                            "malformed value of element {}: {e}",
                            tag_str(h.tag)
                        ))
                    })?;
                    obj.put(DataElement::new(h.tag, h.vr, value));
                } else {
                    if top && into.is_some() {
                        budget.beyond.push((h.tag, h.vr));
                        budget.beyond_at.push((h.tag, d.position(), n));
                    }
                    d.skip_bytes(n).map_err(|e| {
                        invalid(format!("truncated at element {}: {e}", tag_str(h.tag)))
                    })?;
                }
            }
            None if h.tag == tags::PIXEL_DATA => {
                walk_items(d, None, file_len, depth + 1, true, None, budget)?
            }
            None => walk_sequence(d, &h, None, file_len, depth, into.as_deref_mut(), budget)?,
        }
    }
}

/// Walks a sequence's items (to `end`, or to its delimiter) and puts the sequence into `into`
/// when there is one. An undefined-length element other than the pixel data is read as a
/// sequence whatever its VR, as dicom-rs reads it.
fn walk_sequence<D: StatefulDecode>(
    d: &mut D,
    h: &DataElementHeader,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
    into: Option<&mut InMemDicomObject>,
    budget: &mut Budget,
) -> Result<(), InspectError> {
    let mut items = into.is_some().then(Vec::new);
    walk_items(d, end, file_len, depth + 1, false, items.as_mut(), budget)?;
    if let (Some(obj), Some(items)) = (into, items) {
        budget.take(0)?;
        obj.put(DataElement::new(
            h.tag,
            VR::SQ,
            DataSetSequence::new(items, h.len),
        ));
    }
    Ok(())
}

/// Walks the items of a sequence (or the fragments of encapsulated pixel data, never kept),
/// each item's data set pushed to `items` when there are any.
fn walk_items<D: StatefulDecode>(
    d: &mut D,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
    fragments: bool,
    mut items: Option<&mut Vec<InMemDicomObject>>,
    budget: &mut Budget,
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
        let mut kept = match items.as_deref_mut() {
            Some(_) if !fragments => {
                budget.take(0)?;
                Some(InMemDicomObject::new_empty())
            }
            _ => None,
        };
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
                        walk_elements(d, Some(item_end), file_len, depth, kept.as_mut(), budget)?;
                    }
                }
                None if fragments => {
                    return Err(invalid("pixel data fragment of undefined length"))
                }
                None => walk_elements(d, None, file_len, depth, kept.as_mut(), budget)?,
            },
        }
        if let (Some(items), Some(kept)) = (items.as_deref_mut(), kept) {
            items.push(kept);
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
    ds: &InMemDicomObject,
    beyond: &[(Tag, VR)],
    meta: &FileMetaTable,
    ts_uid: &str,
    source: &str,
    blob_id: BlobId,
    size: u64,
) -> Result<InstanceRecord, InspectError> {
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
    let metadata = with_bulk_data(metadata, beyond)
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

/// The header's JSON with each top-level value too large to keep named by a BulkDataURI
/// relative to the instance (its tag), which the metadata route resolves against the stored
/// file: the value is left out of the index, not out of what a client can ask for.
fn with_bulk_data(json: String, beyond: &[(Tag, VR)]) -> serde_json::Result<String> {
    if beyond.is_empty() {
        return Ok(json);
    }
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json)?;
    for (tag, vr) in beyond {
        let key = format!("{:04X}{:04X}", tag.0, tag.1);
        map.insert(
            key.clone(),
            serde_json::json!({ "vr": vr.to_string(), "BulkDataURI": key }),
        );
    }
    serde_json::to_string(&map)
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

    /// One Explicit VR Little Endian element, the long header form for OB and SQ.
    fn element(out: &mut Vec<u8>, tag: (u16, u16), vr: &[u8; 2], v: &[u8], len: Option<u32>) {
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        let len = len.unwrap_or(v.len() as u32);
        if matches!(vr, b"OB" | b"SQ") {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&len.to_le_bytes());
        } else {
            out.extend_from_slice(&(len as u16).to_le_bytes());
        }
        out.extend_from_slice(v);
    }

    /// A Part-10 instance whose data set is the UIDs it needs with `rest` between the SOP
    /// Instance UID and the Study Instance UID.
    fn part10(rest: &[u8]) -> Vec<u8> {
        part10_in(crate::syntax::EXPLICIT_VR_LITTLE_ENDIAN, rest)
    }

    fn part10_in(syntax: &str, rest: &[u8]) -> Vec<u8> {
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("2.25.1")
            .transfer_syntax(syntax)
            .implementation_class_uid("2.25.9")
            .build()
            .unwrap();
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        meta.write(&mut out).unwrap();
        element(
            &mut out,
            (0x0008, 0x0016),
            b"UI",
            b"1.2.840.10008.5.1.4.1.1.7\0",
            None,
        );
        element(&mut out, (0x0008, 0x0018), b"UI", b"2.25.1", None);
        out.extend_from_slice(rest);
        element(&mut out, (0x0020, 0x000D), b"UI", b"2.25.2", None);
        element(&mut out, (0x0020, 0x000E), b"UI", b"2.25.3", None);
        out
    }

    /// Image Pixel attributes of `frames` frames of 2×2 16-bit grey samples.
    fn image_pixel(frames: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        element(&mut h, (0x0028, 0x0002), b"US", &1u16.to_le_bytes(), None);
        element(&mut h, (0x0028, 0x0008), b"IS", frames, None);
        element(&mut h, (0x0028, 0x0010), b"US", &2u16.to_le_bytes(), None);
        element(&mut h, (0x0028, 0x0011), b"US", &2u16.to_le_bytes(), None);
        element(&mut h, (0x0028, 0x0100), b"US", &16u16.to_le_bytes(), None);
        h
    }

    fn item(out: &mut Vec<u8>, tag: u16, v: &[u8]) {
        out.extend_from_slice(&0xFFFEu16.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }

    #[test]
    fn a_layout_locates_each_native_frame_by_its_bytes() {
        let mut file = part10(&image_pixel(b"3 "));
        let pixels: Vec<u8> = (0..24).collect();
        element(&mut file, (0x7FE0, 0x0010), b"OB", &pixels, None);
        let layout = layout(std::io::Cursor::new(&file), file.len() as u64).unwrap();
        assert_eq!(layout.frames(), 3);
        let second = layout.frame_ranges(1).unwrap();
        assert_eq!(second.len(), 1);
        let r = second[0].start as usize..second[0].end as usize;
        assert_eq!(&file[r], &pixels[8..16]);
        assert!(layout.frame_ranges(3).is_err());
        // kept between requests: only what locating frames needs
        let slim = layout.slim();
        assert_eq!(slim.frame_ranges(1).unwrap(), second);
        assert!(slim.header.get(tags::SOP_INSTANCE_UID).is_none());
    }

    #[test]
    fn a_layout_groups_fragments_into_frames_by_the_offset_table() {
        // frame 1: fragment A; frame 2: fragments B and C; frame 3: fragment D
        let (a, b, c, d) = ([1u8; 10], [2u8; 6], [3u8; 4], [4u8; 8]);
        let offsets = [0u32, 8 + 10, 8 + 10 + 8 + 6 + 8 + 4];
        let table: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let mut file = part10_in("1.2.840.10008.1.2.4.50", &image_pixel(b"3 "));
        element(&mut file, (0x7FE0, 0x0010), b"OB", &[], Some(u32::MAX));
        item(&mut file, 0xE000, &table);
        for f in [&a[..], &b, &c, &d] {
            item(&mut file, 0xE000, f);
        }
        item(&mut file, 0xE0DD, &[]);
        let layout = layout(std::io::Cursor::new(&file), file.len() as u64).unwrap();
        let bytes = |frame| -> Vec<u8> {
            layout
                .frame_ranges(frame)
                .unwrap()
                .into_iter()
                .flat_map(|r| file[r.start as usize..r.end as usize].to_vec())
                .collect()
        };
        assert_eq!(bytes(0), a);
        assert_eq!(bytes(1), [&b[..], &c].concat());
        assert_eq!(bytes(2), d);
        // without an offset table, four fragments cannot be told apart into three frames
        let mut bare = part10_in("1.2.840.10008.1.2.4.50", &image_pixel(b"3 "));
        element(&mut bare, (0x7FE0, 0x0010), b"OB", &[], Some(u32::MAX));
        item(&mut bare, 0xE000, &[]);
        for f in [&a[..], &b, &c, &d] {
            item(&mut bare, 0xE000, f);
        }
        item(&mut bare, 0xE0DD, &[]);
        let unlocated = super::layout(std::io::Cursor::new(&bare), bare.len() as u64).unwrap();
        assert!(unlocated.frame_ranges(1).is_err());
        // a fragment running past the end is refused
        let cut = &file[..file.len() - 12];
        assert!(super::layout(std::io::Cursor::new(cut), cut.len() as u64).is_err());
    }

    fn inspected(bytes: &[u8]) -> Result<InstanceRecord, InspectError> {
        let blob = BlobId::from_bytes([0; 32]);
        let r = std::io::Cursor::new(bytes);
        inspect(
            r,
            bytes.len() as u64,
            "test",
            blob,
            &IssuerSource::operator(),
        )
    }

    #[test]
    fn a_value_over_the_limit_stays_in_the_file_named_by_a_bulk_data_uri() {
        let mut rest = Vec::new();
        element(&mut rest, (0x0009, 0x0010), b"LO", b"CREATOR ", None);
        element(&mut rest, (0x0009, 0x1000), b"OB", &[7; 16], None);
        let big = vec![9u8; MAX_HEADER_VALUE as usize + 2];
        element(&mut rest, (0x0009, 0x1001), b"OB", &big, None);
        let record = inspected(&part10(&rest)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&record.instance.metadata).unwrap();
        assert!(json["00091000"]["InlineBinary"].is_string(), "{json}");
        assert_eq!(
            json["00091001"],
            serde_json::json!({ "vr": "OB", "BulkDataURI": "00091001" })
        );
        assert!(record.instance.metadata.len() < 4096);
        assert_eq!(json["0020000E"]["Value"][0], "2.25.3");
    }

    #[test]
    fn a_header_of_too_many_items_is_refused() {
        let items = MAX_HEADER_ELEMENTS as usize;
        let mut rest = Vec::new();
        element(&mut rest, (0x0009, 0x0010), b"LO", b"CREATOR ", None);
        element(&mut rest, (0x0009, 0x1001), b"SQ", &[], Some(u32::MAX));
        for _ in 0..items {
            rest.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
            rest.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        }
        rest.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        match inspected(&part10(&rest)) {
            Err(InspectError::Invalid(why)) => assert!(why.contains("elements and items"), "{why}"),
            other => panic!("{other:?}"),
        }
        // a sequence of some items is kept whole
        rest.truncate(rest.len() - 16 * (items - 3) - 8);
        rest.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let record = inspected(&part10(&rest)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&record.instance.metadata).unwrap();
        assert_eq!(json["00091001"]["Value"].as_array().map(Vec::len), Some(3));
    }
}
