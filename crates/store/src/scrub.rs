//! Scrub: verify every copy of every blob, and (when asked) rewrite bad copies from a good one.
//! The caller decides what "every blob" is (the index's blobs plus whatever the replicas list)
//! and paces the work; this module only checks and repairs.

use super::address::BlobId;
use super::{ReplicaError, Store};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScrubReport {
    /// Blobs examined.
    pub blobs: u64,
    /// Replica copies verified end to end.
    pub checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Bad copies left bad (not asked to repair, or the repair failed).
    pub unrepaired: u64,
    /// Blobs with no good copy anywhere.
    pub lost: u64,
}

impl ScrubReport {
    pub fn add(&mut self, o: &ScrubReport) {
        self.blobs += o.blobs;
        self.checked += o.checked;
        self.missing += o.missing;
        self.corrupt += o.corrupt;
        self.repaired += o.repaired;
        self.unrepaired += o.unrepaired;
        self.lost += o.lost;
    }
}

/// A bad copy that is still bad after this scrub.
#[derive(Debug, Clone)]
pub struct BadCopyLeft {
    pub blob: BlobId,
    pub replica: usize,
    pub reason: String,
}

/// Verifies every replica's copy of `blob`; with `repair`, rewrites the bad ones.
pub async fn scrub_blob(
    store: &Store,
    blob: &BlobId,
    repair: bool,
) -> (ScrubReport, Vec<BadCopyLeft>) {
    let mut report = ScrubReport {
        blobs: 1,
        ..Default::default()
    };
    let mut bad = Vec::new();
    for replica in 0..store.replicas().len() {
        report.checked += 1;
        match store.verify(blob, replica).await {
            Ok(()) => {}
            Err(ReplicaError::Missing) => {
                report.missing += 1;
                bad.push((replica, "missing".to_string()));
            }
            Err(e) => {
                report.corrupt += 1;
                bad.push((replica, e.to_string()));
            }
        }
    }
    if bad.len() == store.replicas().len() {
        report.lost = 1;
    }
    let mut left = Vec::new();
    for (replica, reason) in bad {
        if repair && report.lost == 0 {
            match store.repair(blob, replica).await {
                Ok(()) => {
                    report.repaired += 1;
                    continue;
                }
                Err(e) => tracing::warn!(%blob, replica = replica + 1, "repair failed: {e}"),
            }
        }
        report.unrepaired += 1;
        left.push(BadCopyLeft {
            blob: *blob,
            replica,
            reason,
        });
    }
    (report, left)
}
