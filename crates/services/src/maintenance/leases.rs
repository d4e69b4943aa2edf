//! This process as one node of an archive whose index several nodes share: its id and role,
//! and the leases through which the work that must happen once per archive (repair, scrub,
//! audit export, MPI re-estimation) runs on one node at a time. A worker takes or renews its
//! lease before each round and renews it every third of its length while it works and rests;
//! a node that dies stops renewing, and another takes the work over once the lease expires.
//! On the embedded index (one process) every lease is this node's.

use crate::ServiceError;
use rand::RngCore;
use std::time::Duration;
use strata_core::config::NodeRole;
use strata_core::now_ms;
use strata_index::{Index, Lease, LeaseClaim};

/// This process among the nodes sharing the index.
#[derive(Clone)]
pub struct Node {
    id: String,
    role: NodeRole,
    /// This process, told apart from an earlier run of the same node: a node started again
    /// after a crash waits for its old leases to expire, as any other node would, so two
    /// processes given the same id by mistake never both hold one.
    incarnation: String,
    lease: Duration,
    index: Index,
}

impl Node {
    pub fn new(index: Index, id: String, role: NodeRole, lease: Duration) -> Node {
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Node {
            id,
            role,
            incarnation: hex::encode(bytes),
            lease,
            index,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn role(&self) -> NodeRole {
        self.role
    }

    /// How often a held lease is renewed, and a standby node asks again: a third of its
    /// length, so a holder misses two renewals before it could lose it, and a dead holder is
    /// replaced within a third of a lease of its expiry.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    fn claim(&self, name: &str) -> LeaseClaim {
        LeaseClaim {
            name: name.to_string(),
            holder: self.id.clone(),
            incarnation: self.incarnation.clone(),
            now: now_ms(),
            duration_ms: self.lease.as_millis() as i64,
        }
    }

    /// Takes or renews the lease on `name`; the lease as it stands after, and whether this
    /// process holds it.
    pub async fn acquire(&self, name: &str) -> Result<(Lease, bool), ServiceError> {
        let claim = self.claim(name);
        let lease = self.index.acquire_lease(claim.clone()).await?;
        let held = lease.held_by(&claim);
        Ok((lease, held))
    }

    /// Renews the lease on `name` (held since `lease`) every [`Node::renew_every`] for as
    /// long as it is held; returns why it no longer is: another node took it, or it could not
    /// be renewed for so long that it may be about to expire (its last third begun). `renewed`
    /// hears of every renewal.
    pub async fn keep(&self, name: &str, mut lease: Lease, renewed: impl Fn(&Lease)) -> String {
        loop {
            tokio::time::sleep(self.renew_every()).await;
            match self.acquire(name).await {
                Ok((l, true)) => {
                    renewed(&l);
                    lease = l;
                }
                Ok((l, false)) => return format!("node {} took the lease over", l.holder),
                Err(e) => {
                    tracing::warn!(worker = name, "renewing the lease: {e}");
                    let margin = self.renew_every().as_millis() as i64;
                    if now_ms() >= lease.expires_at - margin {
                        return format!("the lease could not be renewed: {e}");
                    }
                }
            }
        }
    }

    /// Frees the leases this process holds (it is stopping): another node takes them over at
    /// once instead of after their expiry. Returns how many.
    pub async fn release(&self) -> Result<usize, ServiceError> {
        Ok(self
            .index
            .release_leases(self.id.clone(), self.incarnation.clone(), now_ms())
            .await?)
    }
}

/// A time of the index's (ms) as an operator reads it (RFC 3339, UTC).
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}
