//! The audit trail as the doors write and read it: an event for every access to patient data
//! and every refusal, change and sign-in. The trail is kept in the index (append-only,
//! hash-chained) and copied to the replicas by the audit export.

use crate::ServiceError;
use futures::TryFutureExt;
use std::future::Future;
use strata_core::audit::{verify, AuditEvent, StoredEvent, Verdict};
use strata_index::{AuditFilter, Index};

#[derive(Clone)]
pub struct AuditTrail {
    index: Index,
}

impl AuditTrail {
    pub fn new(index: Index) -> AuditTrail {
        AuditTrail { index }
    }

    /// Appends the event of a change, an administrative act or a refusal; returns once it is
    /// durable, before the answer it records goes out.
    pub async fn record(&self, event: AuditEvent) -> Result<(), ServiceError> {
        Ok(self.index.audit(event).await?)
    }

    /// Appends the event of a read of patient data at once and returns a future the caller
    /// awaits before sending its answer: it resolves once the event is committed (its fsync
    /// follows within about a millisecond; see `Catalog::audit_read`).
    pub fn record_read(
        &self,
        event: AuditEvent,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send + 'static {
        self.index.audit_read(event).map_err(ServiceError::from)
    }

    /// The events matching `filter`, oldest first.
    pub async fn events(&self, filter: AuditFilter) -> Result<Vec<StoredEvent>, ServiceError> {
        Ok(self.index.audit_events(filter).await?)
    }

    /// The whole chain checked: intact, or where it first breaks.
    pub async fn verify(&self) -> Result<Verdict, ServiceError> {
        Ok(verify(self.events(AuditFilter::default()).await?))
    }
}
