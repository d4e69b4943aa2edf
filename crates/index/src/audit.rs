//! The audit trail's rows: appended with their chain hash, restored as they were, read back.

use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::rows::*;
use crate::IndexError;
use std::cell::RefCell;

/// The lock a transaction holds from reading the chain's last event until it commits the
/// events it chained after it: two archive processes writing one PostgreSQL index take turns
/// there, so no two events follow the same one (the chain would fork) or take the same id.
const AUDIT_LOCK: i64 = 7_449_217_237;

/// The audit events a PostgreSQL transaction has appended, chained when it is about to commit
/// ([`append_queued`]): the chain's lock is then held only for the appends and the commit, not
/// while the transaction's other writes wait on locks another archive process holds. A lock
/// taken last cannot close a circle of waits.
#[derive(Default)]
pub(crate) struct AuditQueue(RefCell<Vec<QueuedEvent>>);

struct QueuedEvent {
    key: Option<strata_core::audit::AuditKey>,
    event: strata_core::audit::AuditEvent,
}

impl AuditQueue {
    /// How many events wait: a mark to [`AuditQueue::truncate`] back to.
    pub(crate) fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Forgets the events appended after `mark` (their job was rolled back).
    pub(crate) fn truncate(&self, mark: usize) {
        self.0.borrow_mut().truncate(mark);
    }

    /// Forgets every waiting event (their transaction was rolled back).
    pub(crate) fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// Appends `e`, chained from the last event (under `key`: see [`strata_core::audit`]). On the
/// writer's PostgreSQL connection the event waits in its transaction's [`AuditQueue`].
pub(super) fn append_audit(
    c: &Connection,
    key: Option<&strata_core::audit::AuditKey>,
    e: &strata_core::audit::AuditEvent,
) -> Result<(), IndexError> {
    if let Some(queue) = c.audit_queue() {
        queue.0.borrow_mut().push(QueuedEvent {
            key: key.cloned(),
            event: e.clone(),
        });
        return Ok(());
    }
    let (last, prev) = last_event(c)?;
    insert_chained(c, key, last + 1, &prev, e)?;
    Ok(())
}

/// Chains the events waiting in `c`'s queue after the last event, holding the chain's lock
/// until the transaction ends; the queue is emptied.
pub(crate) fn append_queued(c: &Connection) -> Result<(), IndexError> {
    let Some(queue) = c.audit_queue() else {
        return Ok(());
    };
    let events = std::mem::take(&mut *queue.0.borrow_mut());
    if events.is_empty() {
        return Ok(());
    }
    c.lock(AUDIT_LOCK)?;
    let (mut last, mut prev) = last_event(c)?;
    for q in &events {
        last += 1;
        prev = insert_chained(c, q.key.as_ref(), last, &prev, &q.event)?;
    }
    Ok(())
}

/// The id and hash of the last event (0 and the genesis hash before the first).
fn last_event(c: &Connection) -> Result<(i64, String), IndexError> {
    // Cached statements: every request that touches patient data comes through here.
    // The id is the last one's plus one, written out: the chain's order is the ids', on either
    // engine (one writer appends at a time), and no sequence can skip a number.
    Ok(
        c.prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
            .query_row(params![], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or_else(|| (0, strata_core::audit::GENESIS.to_string())),
    )
}

/// Inserts `e` as event `id` after the event hashed `prev`; returns its own hash.
fn insert_chained(
    c: &Connection,
    key: Option<&strata_core::audit::AuditKey>,
    id: i64,
    prev: &str,
    e: &strata_core::audit::AuditEvent,
) -> Result<String, IndexError> {
    let hash = strata_core::audit::next_hash(key, prev, e);
    c.prepare_cached(
        "INSERT INTO audit (id, at, actor, role, action, patient_id, study_uid, outcome, remote, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![id, e.at, e.actor, e.role, e.action, e.patient_id, e.study_uid, e.outcome.as_str(), e.remote, e.detail, prev, hash])?;
    Ok(hash)
}

pub(super) fn restore_audit(
    c: &Connection,
    e: &strata_core::audit::StoredEvent,
) -> Result<(), IndexError> {
    let v = &e.event;
    c.execute(
        "INSERT INTO audit (id, at, actor, role, action, patient_id, study_uid, outcome, remote, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO NOTHING",
        params![e.id, v.at, v.actor, v.role, v.action, v.patient_id, v.study_uid, v.outcome.as_str(), v.remote, v.detail, e.prev_hash, e.hash],
    )?;
    Ok(())
}

pub(super) fn audit_events(
    c: &Connection,
    f: &AuditFilter,
) -> Result<Vec<strata_core::audit::StoredEvent>, IndexError> {
    let mut sql = String::from(
        "SELECT id, at, actor, role, action, patient_id, study_uid, outcome, remote, detail, prev_hash, hash
         FROM audit WHERE 1 = 1",
    );
    let mut p: Vec<crate::db::Value> = Vec::new();
    let mut add = |cond: &str, v: crate::db::Value| {
        sql.push_str(&format!(" AND {cond} ?{}", p.len() + 1));
        p.push(v);
    };
    if let Some(id) = f.after_id {
        add("id >", id.into());
    }
    if let Some(a) = &f.actor {
        add("actor =", a.clone().into());
    }
    if let Some(a) = &f.action {
        add("action =", a.clone().into());
    }
    if let Some(a) = &f.patient_id {
        add("patient_id =", a.clone().into());
    }
    if let Some(t) = f.since {
        add("at >=", t.into());
    }
    if let Some(t) = f.until {
        add("at <=", t.into());
    }
    sql.push_str(if f.newest_first {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id"
    });
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(p, |r| {
        let outcome: String = r.get(7)?;
        Ok(strata_core::audit::StoredEvent {
            id: r.get(0)?,
            event: strata_core::audit::AuditEvent {
                at: r.get(1)?,
                actor: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                patient_id: r.get(5)?,
                study_uid: r.get(6)?,
                outcome: strata_core::audit::Outcome::parse(&outcome)
                    .unwrap_or(strata_core::audit::Outcome::Failure),
                remote: r.get(8)?,
                detail: r.get(9)?,
            },
            prev_hash: r.get(10)?,
            hash: r.get(11)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}
