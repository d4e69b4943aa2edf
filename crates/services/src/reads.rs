//! Reading what is stored: an instance or a byte range of it, verified and decrypted by the
//! store, with read-repair (copies found missing or corrupt on the way are queued for repair);
//! conversion to another transfer syntax; and which instances a request names within the
//! caller's scope. Every door reads through here.

use crate::ServiceError;
use std::sync::Arc;
use strata_core::{BlobId, Metrics};
use strata_index::{Index, InstanceRef, Scope, StoredInstance};
use strata_store::{BadCopy, Store};

#[derive(Clone)]
pub struct Reads {
    store: Arc<Store>,
    index: Index,
    metrics: Arc<Metrics>,
}

impl Reads {
    pub fn new(store: Arc<Store>, index: Index, metrics: Arc<Metrics>) -> Reads {
        Reads {
            store,
            index,
            metrics,
        }
    }

    /// The instances under a study (and series, and instance) within `scope`, in series and
    /// instance order; [`ServiceError::NotInScope`] when there are none the scope may see, the
    /// same answer as for nothing there.
    pub async fn resolve(
        &self,
        study: &str,
        series: Option<&str>,
        sop: Option<&str>,
        scope: Scope,
    ) -> Result<Vec<InstanceRef>, ServiceError> {
        let found = self
            .index
            .instances_under(
                study.to_string(),
                series.map(String::from),
                sop.map(String::from),
                scope,
            )
            .await?;
        if found.is_empty() {
            return Err(ServiceError::NotInScope);
        }
        Ok(found)
    }

    /// How many replicas hold a durable copy of `blob`, and how many must (the write quorum):
    /// what a storage commitment reports.
    pub async fn copies(&self, blob: &BlobId) -> (usize, usize) {
        let replicas = self.store.replicas();
        (replicas.copies_present(blob).await, replicas.write_quorum())
    }

    /// Streams the stored instance `sop_uid` into `sink`, byte for byte as received. Copies found
    /// missing or corrupt on the way are queued for repair.
    pub async fn read_instance<S>(
        &self,
        sop_uid: &str,
        sink: S,
    ) -> Result<StoredInstance, ServiceError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let stored = self
            .index
            .instance(sop_uid)
            .await?
            .ok_or_else(|| ServiceError::NotFound(sop_uid.to_string()))?;
        self.read_blob(&stored.blob_id, sink).await?;
        Ok(stored)
    }

    /// Streams a blob's verified plaintext into `sink`, queueing repairs for bad copies.
    pub async fn read_blob<S>(&self, blob: &BlobId, sink: S) -> Result<(), ServiceError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let bad = self.store.read_to(blob, sink).await?;
        self.queue_repairs(blob, bad).await
    }

    /// Bytes `range` of a stored blob's plaintext, verified; bad copies are queued for repair.
    pub async fn read_blob_range(
        &self,
        blob: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, ServiceError> {
        let (bytes, bad) = self.store.read_range(blob, range).await?;
        self.queue_repairs(blob, bad).await?;
        Ok(bytes)
    }

    /// A stored instance as Part-10 bytes: as received when `target` is None or the stored
    /// syntax, else converted to `target` (pixel data decoded by dicom-pixeldata's codecs).
    pub async fn part10(
        &self,
        blob: &BlobId,
        stored_syntax: &str,
        target: Option<&str>,
    ) -> Result<Vec<u8>, ServiceError> {
        let mut bytes = Vec::new();
        self.read_blob(blob, |c| {
            bytes.extend_from_slice(c);
            Ok(())
        })
        .await?;
        match target {
            Some(t) if t != stored_syntax => {
                tokio::task::block_in_place(|| strata_dicom::transcode::transcode(&bytes, t))
                    .map_err(ServiceError::Convert)
            }
            _ => Ok(bytes),
        }
    }

    async fn queue_repairs(&self, blob: &BlobId, bad: Vec<BadCopy>) -> Result<(), ServiceError> {
        if bad.is_empty() {
            return Ok(());
        }
        let items = bad
            .into_iter()
            .map(|b| {
                self.metrics.replica_error(b.replica, "read");
                tracing::warn!(%blob, replica = b.replica + 1, "bad copy on read: {}; repair queued", b.error);
                (*blob, b.replica, format!("read: {}", b.error))
            })
            .collect();
        self.index.enqueue_repairs(items).await?;
        Ok(())
    }
}
