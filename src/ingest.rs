//! The one path in. Every instance, whichever door it came through (`strata import`, DIMSE
//! C-STORE, STOW-RS), takes this path, and is acknowledged only at its end:
//!
//! ```text
//! bytes ─▶ inspect: preamble, file meta, a walk over every element to the end (truncation),
//!          the header parsed up to the pixel data, UIDs and SOP class validated
//!       ─▶ identify: the local patient key (PatientID, normalised issuer or the source)
//!       ─▶ address: keyed hash of the bytes; same SOP Instance UID already stored?
//!          same bytes → success without writing; other bytes → conflict, or replace
//!       ─▶ store: seal and write to the replicas (write quorum, fsynced)
//!       ─▶ index: one committed row (group commit) ─▶ Ingested (the acknowledgement)
//! ```
//!
//! An instance at most `spool_threshold` bytes is handled in memory; a larger one is read from
//! its spool file (the imported file itself, or a temporary file a network door wrote) in
//! segments and is never whole in memory.

use crate::archive::Archive;
use crate::index::{
    InsertOutcome, InstanceRecord, InstanceRow, OnConflict, PatientRecord, SeriesRecord,
    StudyRecord,
};
use crate::store::address::{Addresser, BlobId};
use crate::store::StoreError;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{FileMetaTable, InMemDicomObject, OpenFileOptions};
use dicom_parser::stateful::decode::{DynStatefulDecoder, StatefulDecode};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

/// Where an instance came from; recorded with it, and the issuer of last resort.
#[derive(Debug, Clone)]
pub enum Source {
    Import,
    Dimse {
        calling_ae: String,
        remote: String,
    },
    /// STOW-RS; `study` is the study the request URL names, which every instance must be of.
    Web {
        user: String,
        role: String,
        remote: String,
        study: Option<String>,
    },
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Import => "import".into(),
            Source::Dimse { calling_ae, .. } => format!("dimse:{calling_ae}"),
            Source::Web { user, .. } => format!("web:{user}"),
        }
    }

    /// The audit event a stored instance from this source writes (none for a local import,
    /// which the operator ran); patient, study and instance are filled in by ingest.
    fn audit_event(&self) -> Option<crate::audit::AuditEvent> {
        use crate::audit::{AuditEvent, Outcome};
        match self {
            Source::Import => None,
            Source::Dimse { calling_ae, remote } => Some(
                AuditEvent::now(calling_ae, "dimse", "dimse.store", Outcome::Success)
                    .remote(remote),
            ),
            Source::Web {
                user, role, remote, ..
            } => Some(AuditEvent::now(user, role, "http.stow", Outcome::Success).remote(remote)),
        }
    }

    fn expected_study(&self) -> Option<&str> {
        match self {
            Source::Web { study, .. } => study.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Stored,
    AlreadyPresent,
    Replaced,
}

/// The acknowledgement: the instance is durable on a write quorum and indexed.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub patient_id: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub blob_id: BlobId,
    pub size: u64,
    pub disposition: Disposition,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is not an instance we can accept; the message names the problem.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "instance is {size} bytes, over the limit of {limit} bytes (ingest.max_instance_bytes)"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("conflict: SOP Instance UID {sop_uid} is already stored with different content (blob {stored}); the stored instance was kept")]
    Conflict { sop_uid: String, stored: BlobId },
    #[error("the instance belongs to study {found}, not to study {expected} named in the request")]
    WrongStudy { found: String, expected: String },
    #[error("storage failed, the instance was not stored: {0}")]
    Store(#[from] StoreError),
    #[error("index failed, the instance was not stored: {0}")]
    Index(#[from] crate::index::IndexError),
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(msg: impl Into<String>) -> IngestError {
    IngestError::Invalid(msg.into())
}

/// Our implementation class UID, written in the file meta of instances we wrap (C-STORE data
/// sets arrive without one). A `2.25` UID derived from a fixed UUID.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.190204309917532440376154236476523361313";
pub const IMPLEMENTATION_VERSION_NAME: &str = "STRATA_0_1";

/// The Part-10 header (preamble, "DICM", file meta group) for a data set received over the
/// network, which arrives without one. The data set bytes that follow stay as they arrived.
pub fn part10_header(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
    source_ae: &str,
) -> Result<Vec<u8>, IngestError> {
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(source_ae)
        .build()
        .map_err(|e| invalid(format!("cannot build file meta information: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| invalid(format!("cannot write file meta information: {e}")))?;
    Ok(out)
}

/// An instance arriving over the network: held in memory up to the spool threshold, then
/// written to a temporary file in `<data>/spool`, so a large instance is never whole in memory.
/// Its address is hashed as the bytes arrive, while the rest of it is still on the wire.
pub struct Spool {
    mem: Vec<u8>,
    file: Option<std::io::BufWriter<tempfile::NamedTempFile>>,
    len: u64,
    threshold: u64,
    dir: std::path::PathBuf,
    /// Boxed: the hash state is large, and a spool travels in enums beside small variants.
    address: Box<Addresser>,
}

impl Spool {
    pub fn new(archive: &Archive) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            threshold: archive.config.ingest.spool_threshold_bytes,
            dir: archive.config.data_dir.join("spool"),
            address: Box::new(Addresser::new(archive.store.address_key())),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`Spool::write_all`] from async code: while the instance fits in memory on the caller's
    /// thread, once it goes to a file in a blocking section.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() && self.len + bytes.len() as u64 <= self.threshold {
            self.write_all(bytes)
        } else {
            tokio::task::block_in_place(|| self.write_all(bytes))
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.len += bytes.len() as u64;
        self.address.update(bytes);
        if self.file.is_none() && self.len > self.threshold {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = std::io::BufWriter::with_capacity(
                1 << 20,
                tempfile::NamedTempFile::new_in(&self.dir)?,
            );
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None => {
                self.mem.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// Ingests what a network door spooled (a complete Part-10 instance).
pub async fn ingest_spool(
    archive: &Archive,
    spool: Spool,
    source: &Source,
) -> Result<Ingested, IngestError> {
    let id = spool.address.finish();
    match spool.file {
        None => ingest_in_memory(archive, spool.mem, Some(id), source).await,
        Some(f) => {
            let f = f
                .into_inner()
                .map_err(|e| IngestError::Io(e.into_error()))?;
            ingest_path(archive, f.path(), Some(id), source).await
            // the temporary file is removed when `f` drops
        }
    }
}

/// Ingests a Part-10 file.
pub async fn ingest_file(
    archive: &Archive,
    path: &Path,
    source: &Source,
) -> Result<Ingested, IngestError> {
    ingest_path(archive, path, None, source).await
}

/// [`ingest_file`], with the file's address when the caller hashed it already.
async fn ingest_path(
    archive: &Archive,
    path: &Path,
    address: Option<BlobId>,
    source: &Source,
) -> Result<Ingested, IngestError> {
    let size = std::fs::metadata(path)?.len();
    check_size(archive, size)?;
    if size <= archive.config.ingest.spool_threshold_bytes {
        let bytes = tokio::fs::read(path).await?;
        return ingest_in_memory(archive, bytes, address, source).await;
    }
    let started = Instant::now();
    let (owned_path, key) = (path.to_path_buf(), *archive.store.address_key());
    let label = source.label();
    let (record_base, blob_id) = tokio::task::spawn_blocking(move || -> Result<_, IngestError> {
        let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&owned_path)?);
        let id = match address {
            Some(id) => id,
            None => crate::store::address_of_file(&key, &owned_path)?,
        };
        Ok((inspect(f, size, &label, id)?, id))
    })
    .await
    .expect("inspect task panicked")?;
    let path = path.to_path_buf();
    finish(archive, record_base, blob_id, size, started, source, |id| {
        let path = path.clone();
        async move { archive.store.put_file(&id, &path).await }
    })
    .await
}

/// Ingests a Part-10 instance held in memory, hashing it unless its address is given.
async fn ingest_in_memory(
    archive: &Archive,
    bytes: Vec<u8>,
    address: Option<BlobId>,
    source: &Source,
) -> Result<Ingested, IngestError> {
    let started = Instant::now();
    let size = bytes.len() as u64;
    check_size(archive, size)?;
    // CPU work, on this thread in a blocking section: a trip through the blocking pool would
    // cost two thread wake-ups, more than inspecting an instance whose address is known
    let (inspected, blob_id) = tokio::task::block_in_place(|| -> Result<_, IngestError> {
        let id = address
            .unwrap_or_else(|| crate::store::address_of(archive.store.address_key(), &bytes));
        Ok((
            inspect(Cursor::new(&bytes[..]), size, &source.label(), id)?,
            id,
        ))
    })?;
    finish(archive, inspected, blob_id, size, started, source, |id| {
        let bytes = &bytes;
        async move { archive.store.put(&id, bytes).await }
    })
    .await
}

fn check_size(archive: &Archive, size: u64) -> Result<(), IngestError> {
    if size == 0 {
        return Err(invalid("empty file: no DICOM data"));
    }
    let limit = archive.config.ingest.max_instance_bytes;
    if size > limit {
        return Err(IngestError::TooLarge { size, limit });
    }
    Ok(())
}

/// Address known, header known: deduplicate, store, index.
async fn finish<F, Fut>(
    archive: &Archive,
    record: InstanceRecord,
    blob_id: BlobId,
    size: u64,
    started: Instant,
    source: &Source,
    store: F,
) -> Result<Ingested, IngestError>
where
    F: FnOnce(BlobId) -> Fut,
    Fut: std::future::Future<Output = Result<crate::store::WriteReport, StoreError>>,
{
    let on_conflict = archive.config.ingest.on_conflict;
    let sop_uid = record.instance.sop_uid.clone();
    let ack = |disposition| Ingested {
        patient_id: record.patient.patient_id.clone(),
        sop_instance_uid: record.instance.sop_uid.clone(),
        sop_class_uid: record.instance.sop_class_uid.clone(),
        study_instance_uid: record.study.uid.clone(),
        series_instance_uid: record.series.uid.clone(),
        blob_id,
        size,
        disposition,
    };
    let audit = source.audit_event().map(|e| {
        e.patient(
            Some(record.patient.patient_id.clone()),
            Some(record.study.uid.clone()),
        )
        .detail(record.instance.sop_uid.clone())
    });
    if let Some(expected) = source.expected_study() {
        if expected != record.study.uid {
            return Err(IngestError::WrongStudy {
                found: record.study.uid.clone(),
                expected: expected.to_string(),
            });
        }
    }
    // Cheap pre-check so that a resend costs no write and a conflict stores nothing.
    if let Some(stored) = archive.index.instance(&sop_uid).await? {
        if stored.blob_id == blob_id {
            archive
                .metrics
                .ingested("already_present", size, started.elapsed());
            if let Some(event) = audit {
                archive
                    .index
                    .audit(event.detail(format!("{sop_uid} already present")))
                    .await?;
            }
            return Ok(ack(Disposition::AlreadyPresent));
        }
        if on_conflict == OnConflict::Reject {
            archive.metrics.ingested("conflict", 0, started.elapsed());
            return Err(IngestError::Conflict {
                sop_uid,
                stored: stored.blob_id,
            });
        }
    }
    let report = store(blob_id)
        .await
        .inspect_err(|_| archive.metrics.ingested("failed", 0, started.elapsed()))?;
    let failed: Vec<_> = report
        .failed
        .iter()
        .map(|b| (blob_id, b.replica, format!("write failed: {}", b.error)))
        .collect();
    for (_, replica, reason) in &failed {
        archive.metrics.replica_error(*replica, "write");
        tracing::warn!(replica = replica + 1, %blob_id, "{reason}; repair queued");
    }
    let outcome = archive
        .index
        .insert_instance_audited(record.clone(), on_conflict, failed, audit)
        .await?;
    let (label, disposition) = match outcome {
        InsertOutcome::Inserted => ("stored", Disposition::Stored),
        InsertOutcome::AlreadyPresent => ("already_present", Disposition::AlreadyPresent),
        InsertOutcome::Replaced { previous } => {
            archive
                .journal_replace(&sop_uid, &previous, &blob_id)
                .await?;
            ("replaced", Disposition::Replaced)
        }
        InsertOutcome::Conflict { stored } => {
            archive.metrics.ingested("conflict", 0, started.elapsed());
            return Err(IngestError::Conflict { sop_uid, stored });
        }
    };
    archive.metrics.ingested(label, size, started.elapsed());
    Ok(ack(disposition))
}

/// Reads and validates one Part-10 instance from `r` (`len` bytes in all) and returns what the
/// index keeps of it, stored under `blob_id`.
pub fn inspect<R: Read + Seek>(
    mut r: R,
    len: u64,
    source: &str,
    blob_id: BlobId,
) -> Result<InstanceRecord, IngestError> {
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
    // anything is stored. A deflated data set is checked by parsing it whole instead.
    if ts.is_unsupported() {
        return Err(invalid(format!(
            "transfer syntax {ts_uid} ({}) is not supported",
            ts.name()
        )));
    }
    let deflated = matches!(ts.codec(), Codec::Dataset(_));
    if !deflated {
        let mut dec = DynStatefulDecoder::new_with_ts(&mut r, ts, dataset_start)
            .map_err(|e| invalid(format!("cannot decode transfer syntax {ts_uid}: {e}")))?;
        walk_elements(&mut dec, None, len, 0)?;
    }

    r.seek(SeekFrom::Start(meta_start))?;
    let mut opts = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if !deflated {
        opts = opts.read_until(tags::PIXEL_DATA);
    }
    let obj = opts
        .from_reader(&mut r)
        .map_err(|e| invalid(format!("malformed data set: {e}")))?;
    record_from(&obj, &meta, &ts_uid, source, blob_id, len)
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

fn tag_str(t: Tag) -> String {
    format!("({:04X},{:04X})", t.group(), t.element())
}

/// Walks data elements until `end` (a defined-length item's end), an item delimiter (inside an
/// undefined-length item), or the end of the file (top level), skipping values without reading
/// them into memory.
fn walk_elements<D: StatefulDecode>(
    d: &mut D,
    end: Option<u64>,
    file_len: u64,
    depth: u32,
) -> Result<(), IngestError> {
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
) -> Result<(), IngestError> {
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

/// A valid DICOM UID (PS3.5 9.1): at most 64 characters, dot-separated numeric components,
/// no component with a leading zero.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    text(obj, tag)
        .and_then(|s| s.split('\\').next()?.trim().parse::<f64>().ok())
        .map(|f| f as i64)
}

fn required_uid(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<String, IngestError> {
    let uid = text(obj, tag).ok_or_else(|| invalid(format!("missing {name} {}", tag_str(tag))))?;
    if !is_valid_uid(&uid) {
        return Err(invalid(format!("{name} {uid:?} is not a valid DICOM UID")));
    }
    Ok(uid)
}

/// The issuer part of the local patient key: IssuerOfPatientID, upper-cased with runs of
/// space folded; when absent, the AE title that sent the instance (file meta), else "LOCAL".
pub fn local_issuer(issuer: Option<&str>, source_ae: Option<&str>) -> String {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    };
    issuer
        .map(norm)
        .filter(|s| !s.is_empty())
        .or_else(|| source_ae.map(norm).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "LOCAL".to_string())
}

/// The keys of OtherPatientIDsSequence: the sender's statement that they are this patient too.
fn other_patient_ids(
    ds: &InMemDicomObject,
    source_ae: Option<&str>,
) -> Vec<crate::index::LocalKey> {
    let Some(seq) = ds.get(tags::OTHER_PATIENT_I_DS_SEQUENCE) else {
        return vec![];
    };
    seq.items()
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let patient_id = text(item, tags::PATIENT_ID)?;
            Some(crate::index::LocalKey {
                issuer: local_issuer(text(item, tags::ISSUER_OF_PATIENT_ID).as_deref(), source_ae),
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
) -> Result<InstanceRecord, IngestError> {
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
    let source_ae = meta
        .source_application_entity_title
        .as_deref()
        .map(|s| s.trim_end_matches(['\0', ' ']));
    Ok(InstanceRecord {
        patient: PatientRecord {
            patient_id: text(ds, tags::PATIENT_ID).unwrap_or_default(),
            issuer: local_issuer(text(ds, tags::ISSUER_OF_PATIENT_ID).as_deref(), source_ae),
            name: text(ds, tags::PATIENT_NAME),
            birth_date: text(ds, tags::PATIENT_BIRTH_DATE),
            sex: text(ds, tags::PATIENT_SEX),
            address: text(ds, tags::PATIENT_ADDRESS),
            phone: text(ds, tags::PATIENT_TELEPHONE_NUMBERS),
            other_ids: other_patient_ids(ds, source_ae),
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
            received_at: crate::index::now_ms(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rules() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(is_valid_uid("2.25.0"));
        assert!(!is_valid_uid("1.2.03"));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2."));
        assert!(!is_valid_uid("1.2.abc"));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid(&"1.".repeat(32)));
    }

    #[test]
    fn issuer_falls_back_to_source() {
        assert_eq!(local_issuer(Some(" hosp  a "), Some("CT1")), "HOSP A");
        assert_eq!(local_issuer(Some(""), Some("ct1 ")), "CT1");
        assert_eq!(local_issuer(None, None), "LOCAL");
    }
}
