//! Where the workers that walk the archive have got to, and where the decision journal's clock
//! has got to.

use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::records::blob;
use crate::rows::*;
use crate::IndexError;
use strata_core::now_ms;

pub(super) fn worker_progress(
    c: &Connection,
    worker: &str,
) -> Result<Option<WorkerProgress>, IndexError> {
    c.prepare_cached(
        "SELECT worker, pass, cursor, done, pass_started_at, last_pass_finished_at,
                    last_pass_blobs
             FROM worker_progress WHERE worker = ?1",
    )?
    .query_row([worker], |r| {
        Ok(WorkerProgress {
            worker: r.get(0)?,
            pass: r.get(1)?,
            cursor: r.get::<Option<String>>(2)?.map(blob).transpose()?,
            done: r.get(3)?,
            pass_started_at: r.get(4)?,
            last_pass_finished_at: r.get(5)?,
            last_pass_blobs: r.get(6)?,
        })
    })
    .optional()
}

pub(super) fn set_worker_progress(c: &Connection, p: &WorkerProgress) -> Result<(), IndexError> {
    c.prepare_cached(
        "INSERT INTO worker_progress (worker, pass, cursor, done, pass_started_at,
            last_pass_finished_at, last_pass_blobs, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (worker) DO UPDATE SET pass = excluded.pass, cursor = excluded.cursor,
            done = excluded.done, pass_started_at = excluded.pass_started_at,
            last_pass_finished_at = excluded.last_pass_finished_at,
            last_pass_blobs = excluded.last_pass_blobs, updated_at = excluded.updated_at",
    )?
    .execute(params![
        p.worker,
        p.pass,
        p.cursor.map(|b| b.to_hex()),
        p.done,
        p.pass_started_at,
        p.last_pass_finished_at,
        p.last_pass_blobs,
        now_ms()
    ])?;
    Ok(())
}

/// The next stamp of the decision journal: the later of `now` and the last stamp plus one.
/// On PostgreSQL the clock's row stays locked until the transaction ends, so stamps follow the
/// order in which the transactions that took them commit, across archive processes.
pub(super) fn journal_stamp(c: &Connection, now: i64) -> Result<i64, IndexError> {
    c.prepare_cached(
        "UPDATE journal_clock SET at = CASE WHEN at + 1 > ?1 THEN at + 1 ELSE ?1 END
         WHERE id = 1 RETURNING at",
    )?
    .query_row([now], |r| r.get(0))
}
