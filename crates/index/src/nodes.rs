//! The node registry: one row per node serving the archive, written by its heartbeat, read by
//! the operator's console. Times are the writing node's clock (ms), as for leases.

use crate::db::Connection;
use crate::params;
use crate::IndexError;

/// A node as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    /// `all`, `ingest` or `render`.
    pub role: String,
    /// The HTTP URL it serves (empty until it listens).
    pub address: String,
    /// The strata version it runs.
    pub version: String,
    /// When its process started (ms).
    pub started_at: i64,
    /// Its last heartbeat (ms).
    pub last_seen: i64,
    /// Its load as JSON: rates over the last minute and what is in flight.
    pub load: serde_json::Value,
}

const COLUMNS: &str = "id, role, address, version, started_at, last_seen, load";

/// Writes (or rewrites) node `n`'s row, and forgets every node last seen before
/// `forget_before` (ms): one retired or renamed long ago is no longer listed.
pub(super) fn heartbeat(c: &Connection, n: &NodeRow, forget_before: i64) -> Result<(), IndexError> {
    c.prepare_cached(&format!(
        "INSERT INTO nodes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, address = excluded.address,
            version = excluded.version, started_at = excluded.started_at,
            last_seen = excluded.last_seen, load = excluded.load"
    ))?
    .execute(params![
        n.id,
        n.role,
        n.address,
        n.version,
        n.started_at,
        n.last_seen,
        n.load.to_string()
    ])?;
    c.prepare_cached("DELETE FROM nodes WHERE last_seen < ?1")?
        .execute(params![forget_before])?;
    Ok(())
}

/// Every node that ever wrote a heartbeat, by id.
pub(super) fn all(c: &Connection) -> Result<Vec<NodeRow>, IndexError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM nodes ORDER BY id"))?
        .query_map(params![], |r| {
            let load: String = r.get(6)?;
            Ok(NodeRow {
                id: r.get(0)?,
                role: r.get(1)?,
                address: r.get(2)?,
                version: r.get(3)?,
                started_at: r.get(4)?,
                last_seen: r.get(5)?,
                load: serde_json::from_str(&load).unwrap_or(serde_json::Value::Null),
            })
        })?
        .collect()
}
