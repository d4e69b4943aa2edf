//! The audit trail's rows: appended with their chain hash, restored as they were, read back.

use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::rows::*;
use crate::IndexError;

/// Appends `e`, chained from the last event (under `key`: see [`strata_core::audit`]).
pub(super) fn append_audit(
    c: &Connection,
    key: Option<&strata_core::audit::AuditKey>,
    e: &strata_core::audit::AuditEvent,
) -> Result<(), IndexError> {
    // Cached statements: every request that touches patient data comes through here.
    // The id is the last one's plus one, written out: the chain's order is the ids', on either
    // engine (one writer appends), and no sequence can skip a number.
    let (last, prev): (i64, String) = c
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row(params![], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_else(|| (0, strata_core::audit::GENESIS.to_string()));
    let hash = strata_core::audit::next_hash(key, &prev, e);
    c.prepare_cached(
        "INSERT INTO audit (id, at, actor, role, action, patient_id, study_uid, outcome, remote, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![last + 1, e.at, e.actor, e.role, e.action, e.patient_id, e.study_uid, e.outcome.as_str(), e.remote, e.detail, prev, hash])?;
    Ok(())
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
    sql.push_str(" ORDER BY id");
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
