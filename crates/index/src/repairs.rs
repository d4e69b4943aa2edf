//! The repair queue: copies found bad, waiting to be rewritten from a good one, with backoff.

use crate::db::Connection;
use crate::params;
use crate::records::blob;
use crate::rows::*;
use crate::IndexError;
use strata_core::{now_ms, BlobId};

pub(super) fn enqueue_repair(
    c: &Connection,
    b: &BlobId,
    replica: usize,
    reason: &str,
) -> Result<(), IndexError> {
    let now = now_ms();
    c.execute(
        "INSERT INTO repair_queue (blob_id, replica, reason, queued_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (blob_id, replica) DO UPDATE SET reason = excluded.reason",
        params![b.to_hex(), replica as i64, reason, now],
    )?;
    Ok(())
}

fn repair_rows(
    c: &Connection,
    sql: &str,
    p: impl crate::db::Params,
) -> Result<Vec<RepairItem>, IndexError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt.query_map(p, |r| {
        Ok(RepairItem {
            blob_id: blob(r.get(0)?)?,
            replica: r.get::<i64>(1)? as usize,
            reason: r.get(2)?,
            attempts: r.get(3)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

pub(super) fn due_repairs(
    c: &Connection,
    now: i64,
    limit: usize,
) -> Result<Vec<RepairItem>, IndexError> {
    repair_rows(
        c,
        "SELECT blob_id, replica, reason, attempts FROM repair_queue
         WHERE next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2",
        params![now, limit as i64],
    )
}

pub(super) fn repairs_for(c: &Connection, b: &BlobId) -> Result<Vec<RepairItem>, IndexError> {
    repair_rows(
        c,
        "SELECT blob_id, replica, reason, attempts FROM repair_queue WHERE blob_id = ?1",
        [b.to_hex()],
    )
}

pub(super) fn repair_done(c: &Connection, b: &BlobId, replica: usize) -> Result<(), IndexError> {
    c.execute(
        "DELETE FROM repair_queue WHERE blob_id = ?1 AND replica = ?2",
        params![b.to_hex(), replica as i64],
    )?;
    Ok(())
}

/// Exponential back-off from 5 s, capped at an hour, so a replica that is down for a while is
/// not hammered and comes back into sync soon after it returns.
pub(super) fn repair_failed(
    c: &Connection,
    item: &RepairItem,
    reason: &str,
    now: i64,
) -> Result<(), IndexError> {
    let delay = (5_000i64 << item.attempts.clamp(0, 10)).min(3_600_000);
    c.execute(
        "UPDATE repair_queue SET attempts = attempts + 1, reason = ?3, next_attempt_at = ?4
         WHERE blob_id = ?1 AND replica = ?2",
        params![
            item.blob_id.to_hex(),
            item.replica as i64,
            reason,
            now + delay
        ],
    )?;
    Ok(())
}
