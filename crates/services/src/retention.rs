//! Retention: how long a record must be kept, and deletion, which it may refuse. A deletion is
//! journaled (so reindex leaves the instances out), then removed from the index, then from
//! every replica.

use crate::journal::{Journal, JournalEntry};
use crate::ServiceError;
use std::sync::Arc;
use strata_core::config::RetentionConfig;
use strata_core::now_ms;
use strata_index::{Index, RetentionFacts};
use strata_store::Store;

/// The day (YYYYMMDD) until which an instance must be kept: `adult_years` after the study (or
/// after it was received, when the study has no date), and for a child at least until the
/// patient is `minor_until_age` years old. DICOM dates compare correctly as text.
pub fn retained_until(f: &RetentionFacts, cfg: &RetentionConfig) -> String {
    let add_years = |date: &str, years: u32| -> Option<String> {
        let y: u32 = date.get(0..4)?.parse().ok()?;
        let rest = date.get(4..8)?;
        Some(format!("{:04}{rest}", y + years))
    };
    let received = chrono::DateTime::from_timestamp_millis(f.received_at)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    let start = f
        .study_date
        .clone()
        .filter(|d| d.len() == 8)
        .unwrap_or(received);
    let adult = add_years(&start, cfg.adult_years).unwrap_or_default();
    let minor = f
        .birth_date
        .as_deref()
        .and_then(|b| add_years(b, cfg.minor_until_age))
        .unwrap_or_default();
    adult.max(minor)
}

#[derive(Clone)]
pub struct Retention {
    store: Arc<Store>,
    index: Index,
    journal: Journal,
    retention: RetentionConfig,
}

impl Retention {
    pub fn new(
        store: Arc<Store>,
        index: Index,
        journal: Journal,
        retention: RetentionConfig,
    ) -> Retention {
        Retention {
            store,
            index,
            journal,
            retention,
        }
    }

    /// Deletes instances: refused if any is under retention; else journaled (so reindex leaves
    /// them out), removed from the index, and their blobs removed from every replica.
    /// Returns how many were deleted.
    pub async fn delete_instances(&self, sops: Vec<String>) -> Result<usize, ServiceError> {
        let today = chrono::Utc::now().format("%Y%m%d").to_string();
        let facts = self.index.retention_facts(sops.clone()).await?;
        let held: Vec<String> = facts
            .iter()
            .map(|f| retained_until(f, &self.retention))
            .filter(|until| *until > today)
            .collect();
        if let Some(until) = held.iter().max() {
            return Err(ServiceError::Retained {
                count: held.len(),
                until: until.clone(),
            });
        }
        self.journal
            .record(JournalEntry::Deleted {
                sop_instance_uids: sops.clone(),
                at: now_ms(),
            })
            .await?;
        let blobs = self.index.delete_instances(sops).await?;
        for blob in &blobs {
            for bad in self.store.replicas().delete(&blob.object_key()).await {
                tracing::warn!(%blob, replica = bad.replica + 1, "deleting a copy failed: {}", bad.error);
            }
        }
        Ok(facts.len())
    }
}
