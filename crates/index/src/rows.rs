//! What the catalog answers: the rows of the index as its callers see them.

use strata_core::BlobId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The same bytes were already stored under this SOP Instance UID.
    AlreadyPresent,
    /// Another blob is stored under this SOP Instance UID and was kept.
    Conflict {
        stored: BlobId,
    },
    /// Another blob was stored under this SOP Instance UID; it is now in the history.
    Replaced {
        previous: BlobId,
    },
}

/// The row `strata get` and retrieval need, with whose it is (for the read's audit event).
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub sop_uid: String,
    pub blob_id: BlobId,
    pub size: u64,
    pub transfer_syntax: String,
    pub patient_id: String,
    pub study_uid: String,
}

#[derive(Debug, Clone)]
pub struct StudySummary {
    pub study_uid: String,
    pub patient_name: Option<String>,
    pub patient_id: String,
    pub issuer: String,
    pub study_date: Option<String>,
    pub modalities: String,
    pub description: Option<String>,
    pub num_series: i64,
    pub num_instances: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub patients: i64,
    pub studies: i64,
    pub series: i64,
    pub instances: i64,
}

#[derive(Debug, Clone)]
pub struct RepairItem {
    pub blob_id: BlobId,
    pub replica: usize,
    pub reason: String,
    pub attempts: i64,
}

/// Which audit events to list; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only events after this id.
    pub after_id: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub patient_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: Option<usize>,
    /// Newest first (highest id first): with `limit`, the latest page of the trail rather than
    /// its start.
    pub newest_first: bool,
}

/// An instance as retrieval needs it: where it sits, its blob, its stored syntax, its metadata.
#[derive(Debug, Clone)]
pub struct InstanceRef {
    pub patient_id: String,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub blob_id: BlobId,
    pub transfer_syntax: String,
    pub size: u64,
    pub metadata: String,
}

/// Where a worker that walks the archive has got to: its pass, and its place in the pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerProgress {
    pub worker: String,
    /// Passes started, the current one included.
    pub pass: i64,
    /// The last blob done in this pass (None: none yet, or between passes).
    #[serde(serialize_with = "hex_or_null")]
    pub cursor: Option<BlobId>,
    /// Blobs done in this pass.
    pub done: i64,
    /// When this pass started; None between passes.
    pub pass_started_at: Option<i64>,
    pub last_pass_finished_at: Option<i64>,
    /// Blobs the last finished pass covered.
    pub last_pass_blobs: Option<i64>,
}

fn hex_or_null<S: serde::Serializer>(b: &Option<BlobId>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&b.to_hex()),
        None => s.serialize_none(),
    }
}
