//! The audit trail as the doors write and read it: an event for every access to patient data
//! and every refusal, change and sign-in. The trail is kept in the index (append-only,
//! hash-chained under the archive's audit key) and copied to the replicas by the audit export
//! in sealed batches, against which [`AuditTrail::verify`] checks it.

use crate::maintenance::AUDIT_PREFIX;
use crate::ServiceError;
use futures::TryFutureExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use strata_core::audit::{verify, AuditEvent, StoredEvent, Verdict, KEYED_PREFIX};
use strata_index::{AuditFilter, Index};
use strata_store::Store;

/// The sealed record on the replicas naming the first event id from which this archive's chain
/// is keyed: from there on an unkeyed event was written by someone without the key, even where
/// nothing was exported yet to compare it with.
pub const KEYED_FROM_KEY: &str = "audit-keyed.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyedFrom {
    keyed_from: i64,
}

#[derive(Clone)]
pub struct AuditTrail {
    index: Index,
    store: Arc<Store>,
}

impl AuditTrail {
    pub fn new(index: Index, store: Arc<Store>) -> AuditTrail {
        AuditTrail { index, store }
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

    /// The whole trail checked: the index's chain under the audit key, then every event
    /// exported to the replicas found unchanged in the index. The chain alone names an event
    /// changed, inserted or removed in the middle; the sealed copies (which whoever writes the
    /// index cannot forge) also name a tail cut from the end, or a trail rebuilt whole.
    pub async fn verify(&self) -> Result<Verdict, ServiceError> {
        let events = self.events(AuditFilter::default()).await?;
        let verdict = verify(Some(self.store.audit_key()), events.iter().cloned());
        if !matches!(verdict, Verdict::Intact { .. }) {
            return Ok(verdict);
        }
        if let Some(from) = self.keyed_from().await {
            let unkeyed = events
                .iter()
                .find(|e| e.id >= from && !e.hash.starts_with(KEYED_PREFIX));
            if let Some(e) = unkeyed {
                return Ok(Verdict::Broken {
                    id: e.id,
                    reason: format!(
                        "its hash is unkeyed and the chain is keyed from event {from} on (the trail was rewritten)"
                    ),
                });
            }
        }
        let sealed = self.sealed_copies().await?;
        Ok(compare_with_sealed(&events, &sealed).unwrap_or(verdict))
    }

    /// Seals on the replicas, once per archive, the id from which its chain is keyed: the next
    /// event's, the first time an archive that keys its chain opens (every event from then on
    /// is keyed). Replicas that cannot be written now are written at a later opening.
    pub async fn mark_keyed(&self) -> Result<(), ServiceError> {
        if self.keyed_from().await.is_some() {
            return Ok(());
        }
        let body = serde_json::to_vec(&KeyedFrom {
            keyed_from: self.index.audit_last_id().await? + 1,
        })
        .expect("a number serialises");
        self.store.put_record(KEYED_FROM_KEY, &body).await?;
        Ok(())
    }

    /// The sealed id from which the chain is keyed, from the first replica that holds it.
    async fn keyed_from(&self) -> Option<i64> {
        for r in 0..self.store.replicas().len() {
            if let Ok(body) = self.store.get_record(r, KEYED_FROM_KEY).await {
                if let Ok(k) = serde_json::from_slice::<KeyedFrom>(&body) {
                    return Some(k.keyed_from);
                }
            }
        }
        None
    }

    /// The events exported to the replicas, by id, from every replica that can be read (a
    /// batch is sealed under the master key: one that fails to open is passed over, and another
    /// replica's copy serves).
    async fn sealed_copies(&self) -> Result<BTreeMap<i64, StoredEvent>, ServiceError> {
        let mut sealed = BTreeMap::new();
        for r in 0..self.store.replicas().len() {
            let keys = match self.store.replicas().list_keys(r, AUDIT_PREFIX).await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(replica = r + 1, "listing the exported audit trail: {e}");
                    continue;
                }
            };
            for key in keys {
                let batch = match self.store.get_record(r, &key).await {
                    Ok(body) => {
                        serde_json::from_slice::<Vec<StoredEvent>>(&body).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                match batch {
                    Ok(events) => {
                        for e in events {
                            sealed.entry(e.id).or_insert(e);
                        }
                    }
                    Err(e) => tracing::warn!(replica = r + 1, "audit batch {key}: {e}"),
                }
            }
        }
        Ok(sealed)
    }
}

/// The first exported event the index lacks or holds otherwise, as a broken verdict; None when
/// every sealed copy is found as it was.
fn compare_with_sealed(
    index: &[StoredEvent],
    sealed: &BTreeMap<i64, StoredEvent>,
) -> Option<Verdict> {
    let held: BTreeMap<i64, &StoredEvent> = index.iter().map(|e| (e.id, e)).collect();
    sealed.values().find_map(|copy| {
        let reason = match held.get(&copy.id) {
            None => "it was exported to the replicas and is missing from the index (events were removed)",
            Some(e) if e.event != copy.event || e.hash != copy.hash || e.prev_hash != copy.prev_hash => {
                "it differs from its sealed copy on the replicas (the event was changed)"
            }
            Some(_) => return None,
        };
        Some(Verdict::Broken {
            id: copy.id,
            reason: reason.into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::audit::Outcome;

    fn stored(id: i64, actor: &str) -> StoredEvent {
        StoredEvent {
            id,
            event: AuditEvent::now(actor, "admin", "test", Outcome::Success),
            prev_hash: format!("p{id}"),
            hash: format!("h{id}"),
        }
    }

    #[test]
    fn the_first_sealed_event_missing_or_changed_in_the_index_is_named() {
        let index: Vec<StoredEvent> = (1..=4).map(|i| stored(i, "a")).collect();
        let sealed = |events: Vec<StoredEvent>| -> BTreeMap<i64, StoredEvent> {
            events.into_iter().map(|e| (e.id, e)).collect()
        };
        // the index may hold more than was exported
        assert_eq!(
            compare_with_sealed(&index, &sealed(index[..3].to_vec())),
            None
        );
        let mut changed = index[..3].to_vec();
        changed[1].event = index[1].event.clone();
        changed[1].event.actor = "b".into();
        assert!(matches!(
            compare_with_sealed(&index, &sealed(changed)),
            Some(Verdict::Broken { id: 2, reason }) if reason.contains("sealed copy")
        ));
        let more: Vec<StoredEvent> = (1..=6).map(|i| stored(i, "a")).collect();
        let mut cut = index.clone();
        cut.iter_mut()
            .zip(&more)
            .for_each(|(c, m)| c.event = m.event.clone());
        assert!(matches!(
            compare_with_sealed(&cut, &sealed(more)),
            Some(Verdict::Broken { id: 5, reason }) if reason.contains("missing")
        ));
    }
}
