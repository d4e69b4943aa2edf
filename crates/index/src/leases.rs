//! Leases on the work that must happen once per archive when several nodes share the index:
//! one row per work, naming the node (and the process of it) that holds it until when. Taking
//! a lease and renewing it are one statement, so two nodes asking at once cannot both get it:
//! the row is taken when it is free (its expiry has passed) or already this process's.
//!
//! Times are the asking node's clock (ms). The nodes' clocks must agree to well within a
//! lease's length (NTP does); a node whose clock runs ahead takes expired leases early by as
//! much.

use crate::db::Connection;
use crate::params;
use crate::IndexError;

/// A lease as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// The work it is for (a worker's name).
    pub name: String,
    /// The node holding it.
    pub holder: String,
    /// The process of that node holding it: a node started again is a new holder.
    pub incarnation: String,
    /// When this holder took it (ms).
    pub acquired_at: i64,
    pub renewed_at: i64,
    /// From then on (ms) any node may take it.
    pub expires_at: i64,
}

/// A node's request for a lease: taken or renewed until `now + duration_ms` when free or
/// already its own.
#[derive(Debug, Clone)]
pub struct LeaseClaim {
    pub name: String,
    pub holder: String,
    pub incarnation: String,
    pub now: i64,
    pub duration_ms: i64,
}

impl Lease {
    /// Whether `claim`'s process is the one holding this lease.
    pub fn held_by(&self, claim: &LeaseClaim) -> bool {
        self.holder == claim.holder && self.incarnation == claim.incarnation
    }
}

const COLUMNS: &str = "name, holder, incarnation, acquired_at, renewed_at, expires_at";

fn lease(r: &crate::db::Row) -> Result<Lease, IndexError> {
    Ok(Lease {
        name: r.get(0)?,
        holder: r.get(1)?,
        incarnation: r.get(2)?,
        acquired_at: r.get(3)?,
        renewed_at: r.get(4)?,
        expires_at: r.get(5)?,
    })
}

/// Takes or renews the lease `claim` asks for, when it is free or already the claimant's;
/// returns the lease as it stands after (held by someone else when it was not free).
pub(super) fn acquire(c: &Connection, claim: &LeaseClaim) -> Result<Lease, IndexError> {
    c.prepare_cached(
        "INSERT INTO leases (name, holder, incarnation, acquired_at, renewed_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
            incarnation = excluded.incarnation,
            acquired_at = CASE WHEN leases.incarnation = excluded.incarnation
                THEN leases.acquired_at ELSE excluded.acquired_at END,
            renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
         WHERE (leases.holder = excluded.holder AND leases.incarnation = excluded.incarnation)
            OR leases.expires_at <= excluded.renewed_at",
    )?
    .execute(params![
        claim.name,
        claim.holder,
        claim.incarnation,
        claim.now,
        claim.now.saturating_add(claim.duration_ms)
    ])?;
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM leases WHERE name = ?1"))?
        .query_row([claim.name.as_str()], lease)
}

/// Frees every lease the process `incarnation` of node `holder` holds (it is stopping), so
/// another node takes them at once; returns how many.
pub(super) fn release(
    c: &Connection,
    holder: &str,
    incarnation: &str,
    now: i64,
) -> Result<usize, IndexError> {
    c.prepare_cached(
        "UPDATE leases SET expires_at = ?3
         WHERE holder = ?1 AND incarnation = ?2 AND expires_at > ?3",
    )?
    .execute(params![holder, incarnation, now])
}

/// Every lease, by name.
pub(super) fn all(c: &Connection) -> Result<Vec<Lease>, IndexError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM leases ORDER BY name"))?
        .query_map(params![], lease)?
        .collect()
}
