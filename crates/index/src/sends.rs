//! Sends (studies pushed to a peer, one row per instance with its outcome) and shares (a
//! read-only token limited to chosen studies).

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use crate::IndexError;

/// A send job as the index holds it, with its items counted by outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendJob {
    pub id: i64,
    pub created_by: String,
    /// `ae` or `dicomweb`.
    pub target_kind: String,
    pub target: String,
    /// `queued`, `running`, `done` (every instance sent) or `failed` (some could not be).
    pub state: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub total: i64,
    pub sent: i64,
    pub failed: i64,
    pub pending: i64,
}

/// One instance of a send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendItem {
    pub position: i64,
    pub study_uid: String,
    pub sop_uid: String,
    /// `pending`, `sent` or `failed`.
    pub outcome: String,
    pub attempts: i64,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// A pending item is not tried before then (ms).
    pub next_at: i64,
}

/// A send to create: who asks, where to, and the instances (study, SOP instance UID) in order.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub created_by: String,
    pub target_kind: String,
    pub target: String,
    pub items: Vec<(String, String)>,
    pub now: i64,
}

/// What became of one item after an attempt.
#[derive(Debug, Clone)]
pub struct ItemAttempt {
    pub position: i64,
    /// `sent`, `pending` (tried again at `next_at`) or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    pub next_at: i64,
}

/// A share as the index holds it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    pub id: i64,
    pub created_by: String,
    pub label: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub studies: Vec<String>,
}

const JOB_COLUMNS: &str = "j.id, j.created_by, j.target_kind, j.target, j.state, j.created_at,
    j.started_at, j.finished_at,
    (SELECT COUNT(*) FROM send_items i WHERE i.job_fk = j.id),
    (SELECT COUNT(*) FROM send_items i WHERE i.job_fk = j.id AND i.outcome = 'sent'),
    (SELECT COUNT(*) FROM send_items i WHERE i.job_fk = j.id AND i.outcome = 'failed'),
    (SELECT COUNT(*) FROM send_items i WHERE i.job_fk = j.id AND i.outcome = 'pending')";

fn job(r: &Row) -> Result<SendJob, IndexError> {
    Ok(SendJob {
        id: r.get(0)?,
        created_by: r.get(1)?,
        target_kind: r.get(2)?,
        target: r.get(3)?,
        state: r.get(4)?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        total: r.get(8)?,
        sent: r.get(9)?,
        failed: r.get(10)?,
        pending: r.get(11)?,
    })
}

fn item(r: &Row) -> Result<SendItem, IndexError> {
    Ok(SendItem {
        position: r.get(0)?,
        study_uid: r.get(1)?,
        sop_uid: r.get(2)?,
        outcome: r.get(3)?,
        attempts: r.get(4)?,
        error: r.get(5)?,
        next_at: r.get(6)?,
    })
}

const ITEM_COLUMNS: &str = "position, study_uid, sop_uid, outcome, attempts, error, next_at";

/// Creates a queued send with its items, all pending; returns its id.
pub(super) fn create_send(c: &Connection, new: &NewSend) -> Result<i64, IndexError> {
    c.execute(
        "INSERT INTO send_jobs (created_by, target_kind, target, state, created_at)
         VALUES (?1, ?2, ?3, 'queued', ?4)",
        params![new.created_by, new.target_kind, new.target, new.now],
    )?;
    let id = c.last_insert_rowid()?;
    let mut insert = c.prepare_cached(
        "INSERT INTO send_items (job_fk, position, study_uid, sop_uid, outcome, attempts, next_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5)",
    )?;
    for (position, (study, sop)) in new.items.iter().enumerate() {
        insert.execute(params![id, position as i64, study, sop, new.now])?;
    }
    Ok(id)
}

/// The most recent sends first, at most `limit`.
pub(super) fn send_jobs(c: &Connection, limit: i64) -> Result<Vec<SendJob>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM send_jobs j ORDER BY j.id DESC LIMIT ?1"
    ))?
    .query_map(params![limit], job)?
    .collect()
}

/// The sends not yet over (queued or running), oldest first.
pub(super) fn active_send_jobs(c: &Connection) -> Result<Vec<SendJob>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM send_jobs j WHERE j.state IN ('queued', 'running')
         ORDER BY j.id"
    ))?
    .query_map(params![], job)?
    .collect()
}

pub(super) fn send_job(c: &Connection, id: i64) -> Result<Option<SendJob>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM send_jobs j WHERE j.id = ?1"
    ))?
    .query_row(params![id], job)
    .optional()
}

/// A send's items in order.
pub(super) fn send_items(c: &Connection, id: i64) -> Result<Vec<SendItem>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM send_items WHERE job_fk = ?1 ORDER BY position"
    ))?
    .query_map(params![id], item)?
    .collect()
}

/// Up to `limit` pending items of a send due by `now`, in order.
pub(super) fn due_send_items(
    c: &Connection,
    id: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<SendItem>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM send_items
         WHERE job_fk = ?1 AND outcome = 'pending' AND next_at <= ?2
         ORDER BY position LIMIT ?3"
    ))?
    .query_map(params![id, now, limit], item)?
    .collect()
}

/// Records the attempts just made on some items of a send (each counts one more attempt).
pub(super) fn record_send_attempts(
    c: &Connection,
    id: i64,
    attempts: &[ItemAttempt],
) -> Result<(), IndexError> {
    let mut update = c.prepare_cached(
        "UPDATE send_items SET outcome = ?3, error = ?4, next_at = ?5, attempts = attempts + 1
         WHERE job_fk = ?1 AND position = ?2",
    )?;
    for a in attempts {
        update.execute(params![id, a.position, a.outcome, a.error, a.next_at])?;
    }
    Ok(())
}

/// Sets a send's state: `running` stamps its start (once), `done` and `failed` its end.
pub(super) fn set_send_state(
    c: &Connection,
    id: i64,
    state: &str,
    now: i64,
) -> Result<(), IndexError> {
    c.execute(
        "UPDATE send_jobs SET state = ?2,
            started_at = CASE WHEN ?2 = 'running' THEN COALESCE(started_at, ?3) ELSE started_at END,
            finished_at = CASE WHEN ?2 IN ('done', 'failed') THEN ?3 ELSE NULL END
         WHERE id = ?1",
        params![id, state, now],
    )?;
    Ok(())
}

/// Puts the failed items of a send back in the queue, as if never tried; returns how many.
pub(super) fn retry_send(c: &Connection, id: i64, now: i64) -> Result<usize, IndexError> {
    let n = c.execute(
        "UPDATE send_items SET outcome = 'pending', attempts = 0, next_at = ?2
         WHERE job_fk = ?1 AND outcome = 'failed'",
        params![id, now],
    )?;
    if n > 0 {
        c.execute(
            "UPDATE send_jobs SET state = 'queued', finished_at = NULL WHERE id = ?1",
            params![id],
        )?;
    }
    Ok(n)
}

/// Creates a share of `studies` until `expires_at`; returns its id.
pub(super) fn create_share(
    c: &Connection,
    token_hash: &str,
    created_by: &str,
    label: Option<&str>,
    now: i64,
    expires_at: i64,
    studies: &[String],
) -> Result<i64, IndexError> {
    c.execute(
        "INSERT INTO shares (token_hash, created_by, label, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, created_by, label, now, expires_at],
    )?;
    let id = c.last_insert_rowid()?;
    let mut insert = c.prepare_cached(
        "INSERT INTO share_studies (share_fk, study_uid) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
    )?;
    for study in studies {
        insert.execute(params![id, study])?;
    }
    Ok(id)
}

fn share_studies(c: &Connection, id: i64) -> Result<Vec<String>, IndexError> {
    c.prepare_cached("SELECT study_uid FROM share_studies WHERE share_fk = ?1 ORDER BY study_uid")?
        .query_map(params![id], |r| r.get(0))?
        .collect()
}

const SHARE_COLUMNS: &str = "id, created_by, label, created_at, expires_at, revoked_at";

fn share_row(r: &Row) -> Result<Share, IndexError> {
    Ok(Share {
        id: r.get(0)?,
        created_by: r.get(1)?,
        label: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
        studies: Vec::new(),
    })
}

/// The shares' studies filled in.
fn with_studies(c: &Connection, shares: Vec<Share>) -> Result<Vec<Share>, IndexError> {
    shares
        .into_iter()
        .map(|mut s| {
            s.studies = share_studies(c, s.id)?;
            Ok(s)
        })
        .collect()
}

/// Every share, the most recent first.
pub(super) fn shares(c: &Connection) -> Result<Vec<Share>, IndexError> {
    let rows = c
        .prepare_cached(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares ORDER BY id DESC"
        ))?
        .query_map(params![], share_row)?
        .collect::<Result<Vec<_>, _>>()?;
    with_studies(c, rows)
}

/// The live share (neither revoked nor expired at `now`) whose token hashes to `token_hash`.
pub(super) fn share_by_token(
    c: &Connection,
    token_hash: &str,
    now: i64,
) -> Result<Option<Share>, IndexError> {
    let found = c
        .prepare_cached(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares
             WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2"
        ))?
        .query_row(params![token_hash, now], share_row)
        .optional()?;
    Ok(with_studies(c, found.into_iter().collect())?.pop())
}

/// Revokes a share; false when there is no such live share.
pub(super) fn revoke_share(c: &Connection, id: i64, now: i64) -> Result<bool, IndexError> {
    Ok(c.execute(
        "UPDATE shares SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )? == 1)
}
