//! The master person index's tables: which person each local patient key belongs to, the
//! blocking keys that find candidates, the review queue, the separations people asserted, and
//! the history of every decision. The matching itself (normalise, score, decide) is
//! [`strata_mpi`]'s; this file only stores and reads what it needs and decides.
//!
//! Every manual operation returns an [`MpiChange`]: the resulting membership of every person it
//! touched, stated whole, plus its history entry. The archive journals it in the same
//! transaction (the job fails if the journal write does), and `reindex` applies the journaled
//! changes in order over the matcher's re-derived links, so manual decisions survive a rebuild.

use super::IndexError;
use crate::db::{Connection, OptionalExtension};
use crate::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use strata_core::now_ms;
use strata_mpi::LocalKey;
use strata_mpi::{self as mpi, Decision, Identity, Model, Normalised};

/// Most candidate local keys scored for one incoming key: bounds matching time when a blocking
/// key is very common (a default birth date, say).
const MAX_CANDIDATES: usize = 2000;

/// The matcher's actor name in history rows.
pub const MATCHER: &str = "matcher";

/// What the MPI could not do, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    #[error("no person {0}")]
    NoPerson(String),
    #[error("person {0} was merged into {1}")]
    Merged(String, String),
    #[error("no local patient key {issuer}/{patient_id}")]
    NoKey { issuer: String, patient_id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("no review item {0}")]
    NoReview(i64),
}

/// One person's membership after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonState {
    pub person: String,
    pub keys: Vec<LocalKey>,
    pub merged_into: Option<String>,
    /// Of `keys`, those no person decided (the matcher linked them alone): a replay makes
    /// them members again but not decided, so a rebuild widens no patient's scope. Absent
    /// from entries written before it was kept, which replay every key as decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecided: Vec<LocalKey>,
}

/// A manual MPI decision as journaled: replaying it over any index state gives the same links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MpiChange {
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub persons: Vec<PersonState>,
    /// Pairs of keys asserted to be different persons.
    #[serde(default)]
    pub separations: Vec<(LocalKey, LocalKey)>,
    /// Keys whose open review item this change closes, with the new status.
    #[serde(default)]
    pub reviews_closed: Vec<(LocalKey, String)>,
    /// Demographics set by hand.
    #[serde(default)]
    pub demographics: Option<(LocalKey, Identity)>,
    /// Free detail for the history (scores, the review item).
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// A manual operation.
#[derive(Debug, Clone)]
pub enum MpiOp {
    Link {
        person: String,
        key: LocalKey,
    },
    Unlink {
        person: String,
        key: LocalKey,
    },
    Merge {
        into: String,
        from: String,
    },
    Unmerge {
        into: String,
        from: String,
    },
    Review {
        id: i64,
        accept: Option<String>,
    },
    Demographics {
        key: LocalKey,
        identity: Box<Identity>,
    },
}

// ---------------------------------------------------------------------------------------------
// At ingest

/// Called for every stored instance after its patient row is upserted: a new local key is
/// matched and assigned a person; a known key's demographics are refreshed (no re-match: a key's
/// person changes only by a decision).
pub(super) fn on_patient(
    c: &Connection,
    patient_fk: i64,
    identity: &Identity,
    other_ids: &[LocalKey],
) -> Result<(), IndexError> {
    let (person, manual_demo, stored): (Option<i64>, bool, Option<String>) = c
        .prepare_cached(
            "SELECT person_fk, demographics_manual, demographics FROM patients WHERE id = ?1",
        )?
        .query_row([patient_fk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if manual_demo {
        return Ok(());
    }
    let normalised = Normalised::new(identity);
    let json = serde_json::to_string(&normalised).expect("demographics serialise");
    if stored.as_deref() != Some(json.as_str()) {
        set_demographics(c, patient_fk, &normalised, &json)?;
    }
    if person.is_none() {
        match_new_key(c, patient_fk, &normalised, other_ids)?;
    }
    Ok(())
}

fn set_demographics(
    c: &Connection,
    patient_fk: i64,
    n: &Normalised,
    json: &str,
) -> Result<(), IndexError> {
    c.prepare_cached("UPDATE patients SET demographics = ?2 WHERE id = ?1")?
        .execute(params![patient_fk, json])?;
    c.prepare_cached("DELETE FROM mpi_blocks WHERE patient_fk = ?1")?
        .execute([patient_fk])?;
    let mut insert = c.prepare_cached(
        "INSERT INTO mpi_blocks (block_key, patient_fk) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for key in n.block_keys() {
        insert.execute(params![key, patient_fk])?;
    }
    Ok(())
}

/// Decides the person of a local key the archive has not seen before.
fn match_new_key(
    c: &Connection,
    patient_fk: i64,
    n: &Normalised,
    other_ids: &[LocalKey],
) -> Result<Decision, IndexError> {
    lock_matching(c, patient_fk, n, other_ids)?;
    let model = model(c)?;
    let candidates = candidates(c, patient_fk, n)?;
    let outcome = mpi::decide(&model, n, &candidates);
    // OtherPatientIDsSequence: the sender asserts these keys are the same patient.
    let mut asserted = BTreeSet::new();
    for k in other_ids {
        if let Some(p) = key_person(c, k)? {
            asserted.insert(p);
        }
    }
    let scored = serde_json::to_value(&outcome.scored).expect("scores serialise");
    let (decision, person, reason) = mpi::decide_with_other_ids(&outcome, &asserted);
    let detail = serde_json::json!({ "reason": reason, "candidates": scored });
    match (decision, person) {
        (Decision::Linked, Some(p)) => {
            assign(c, patient_fk, p)?;
            history(
                c,
                "auto_link",
                MATCHER,
                Some(p),
                None,
                Some(patient_fk),
                &detail,
            )?;
        }
        (Decision::Review, _) => {
            let p = new_person(c, Some(patient_fk))?;
            assign(c, patient_fk, p)?;
            let candidates = review_candidates(c, &outcome.scored)?;
            c.prepare_cached(
                "INSERT INTO mpi_review (patient_fk, candidates, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                patient_fk,
                candidates.to_string(),
                reason,
                now_ms()
            ])?;
            history(
                c,
                "review",
                MATCHER,
                Some(p),
                None,
                Some(patient_fk),
                &detail,
            )?;
        }
        _ => {
            let p = new_person(c, Some(patient_fk))?;
            assign(c, patient_fk, p)?;
            history(c, "new", MATCHER, Some(p), None, Some(patient_fk), &detail)?;
        }
    }
    Ok(decision)
}

/// Holds, until the transaction ends, the locks of everything a new key's match reads: its
/// blocking keys (the candidates), its own key and the keys the sender asserted are the same
/// patient. Another archive process matching a key of the same patient on the same PostgreSQL
/// index at the same moment shares one of them, so it waits, and matches once this transaction
/// committed: against the person made here, not beside it.
fn lock_matching(
    c: &Connection,
    patient_fk: i64,
    n: &Normalised,
    other_ids: &[LocalKey],
) -> Result<(), IndexError> {
    if c.dialect() != crate::db::Dialect::Postgres {
        return Ok(()); // one process writes an embedded index, one transaction at a time
    }
    let own = local_key(c, patient_fk)?;
    let keys: Vec<String> = std::iter::once(&own)
        .chain(other_ids)
        .map(|k| format!("K:{}\0{}", k.issuer, k.patient_id))
        .chain(n.block_keys())
        .collect();
    c.lock_names("mpi match", keys.iter().map(String::as_str))
}

/// The lock of the person index's decisions (manual operations, a re-match): one at a time
/// across every archive process writing the same PostgreSQL index, each reading the persons
/// as the one before left them.
const DECISIONS_LOCK: i64 = 7_449_217_238;

/// The candidates of a review item as stored: person uid and score, best first.
fn review_candidates(
    c: &Connection,
    scored: &[mpi::ScoredCandidate],
) -> Result<serde_json::Value, IndexError> {
    let mut out = vec![];
    for s in scored.iter().take(5) {
        out.push(serde_json::json!({ "person": person_uid(c, s.person)?, "score": s.score }));
    }
    Ok(serde_json::Value::Array(out))
}

/// Local keys sharing a blocking key with `n`, with their person, never one a person separated
/// from `patient_fk`.
fn candidates(
    c: &Connection,
    patient_fk: i64,
    n: &Normalised,
) -> Result<Vec<(i64, Normalised)>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT p.id, p.person_fk, p.demographics FROM mpi_blocks b
         JOIN patients p ON p.id = b.patient_fk
         WHERE b.block_key = ?1 AND p.id != ?2 AND p.person_fk IS NOT NULL
           AND p.demographics IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM mpi_separations s
                           WHERE (s.a = ?2 AND s.b = p.id) OR (s.a = p.id AND s.b = ?2))
         LIMIT ?3",
    )?;
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for key in n.block_keys() {
        let rows = stmt.query_map(params![key, patient_fk, MAX_CANDIDATES as i64], |r| {
            Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<String>(2)?))
        })?;
        for row in rows {
            let (id, person, json) = row?;
            if out.len() >= MAX_CANDIDATES {
                return Ok(out);
            }
            if seen.insert(id) {
                if let Ok(d) = serde_json::from_str::<Normalised>(&json) {
                    out.push((person, d));
                }
            }
        }
    }
    Ok(out)
}

/// The last stored model parsed, beside its JSON. A stored model carries its value
/// frequencies (a hundred kilobytes or more of JSON), too much to parse at every match; it
/// changes only when an estimate replaces it, and comparing the JSON read against the one
/// parsed is exact whatever database it came from and costs far less than parsing.
static LAST_MODEL: Mutex<Option<(String, Arc<Model>)>> = Mutex::new(None);

/// The matcher's model: the stored estimate, else the prior.
pub(super) fn model(c: &Connection) -> Result<Arc<Model>, IndexError> {
    let json: Option<String> = c
        .query_row("SELECT model FROM mpi_model WHERE id = 1", params![], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(json) = json else {
        return Ok(Arc::new(Model::default()));
    };
    let mut last = LAST_MODEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((parsed, model)) = last.as_ref() {
        if *parsed == json {
            return Ok(model.clone());
        }
    }
    // A model stored by a version that graded some field in other levels is not used: the
    // prior stands in until the next estimate replaces it.
    let model: Arc<Model> = Arc::new(
        serde_json::from_str(&json)
            .ok()
            .filter(Model::has_current_levels)
            .unwrap_or_default(),
    );
    *last = Some((json, model.clone()));
    Ok(model)
}

/// Stores a newly estimated model.
pub(super) fn set_model(c: &Connection, model: &Model, records: i64) -> Result<(), IndexError> {
    c.execute(
        "INSERT INTO mpi_model (id, model, records, estimated_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET model = excluded.model, records = excluded.records,
            estimated_at = excluded.estimated_at",
        params![
            serde_json::to_string(model).expect("model serialises"),
            records,
            now_ms()
        ],
    )?;
    Ok(())
}

/// Every local key's normalised demographics (what EM estimates from) and how many there are
/// now against how many the stored model was estimated from.
pub(super) fn model_inputs(c: &Connection) -> Result<(Vec<Normalised>, i64), IndexError> {
    let estimated: i64 = c
        .query_row(
            "SELECT records FROM mpi_model WHERE id = 1",
            params![],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let mut stmt = c.prepare("SELECT demographics FROM patients WHERE demographics IS NOT NULL")?;
    let rows = stmt.query_map(params![], |r| r.get::<String>(0))?;
    let mut out = vec![];
    for row in rows {
        if let Ok(n) = serde_json::from_str(&row?) {
            out.push(n);
        }
    }
    Ok((out, estimated))
}

/// Registers a local key from demographics alone (a patient master file migrated before its
/// images arrive): the same matching as at ingest. Returns the decision, or None when the key
/// was already known.
pub(super) fn register(
    c: &Connection,
    identity: &Identity,
) -> Result<Option<Decision>, IndexError> {
    let name = person_name(identity);
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let inserted = c.execute(
        "INSERT INTO patients (patient_id, issuer, patient_name, patient_name_key,
            name_phonetic, birth_date, sex, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        params![
            identity.patient_id,
            identity.issuer,
            opt(&name),
            opt(&name).map(|n| mpi::name_key(&n)),
            opt(&name).map(|n| mpi::phonetic_key(&n)),
            opt(&identity.birth_date),
            opt(&identity.sex),
            now_ms()
        ],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    let fk = c.last_insert_rowid()?;
    let n = Normalised::new(identity);
    set_demographics(c, fk, &n, &serde_json::to_string(&n).expect("serialises"))?;
    Ok(Some(match_new_key(c, fk, &n, &[])?))
}

// ---------------------------------------------------------------------------------------------
// Small pieces

fn assign(c: &Connection, patient_fk: i64, person: i64) -> Result<(), IndexError> {
    c.prepare_cached("UPDATE patients SET person_fk = ?2 WHERE id = ?1")?
        .execute(params![patient_fk, person])?;
    Ok(())
}

/// A new person. Founded by a key, its id is derived from that key, so that `reindex`, which
/// replays keys in the order they arrived, gives auto-created persons the same ids again.
fn new_person(c: &Connection, founder: Option<i64>) -> Result<i64, IndexError> {
    let derived = match founder {
        Some(fk) => {
            let (pid, issuer): (String, String) = c
                .prepare_cached("SELECT patient_id, issuer FROM patients WHERE id = ?1")?
                .query_row([fk], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let digest = Sha256::new()
                .chain_update(b"strata person\0")
                .chain_update(issuer.as_bytes())
                .chain_update(b"\0")
                .chain_update(pid.as_bytes())
                .finalize();
            Some(hex::encode(&digest[..10]))
        }
        None => None,
    };
    let taken = |uid: &str| -> Result<bool, IndexError> {
        Ok(c.prepare_cached("SELECT 1 FROM persons WHERE uid = ?1")?
            .query_row([uid], |_| Ok(()))
            .optional()?
            .is_some())
    };
    let uid = match derived {
        Some(uid) if !taken(&uid)? => uid,
        _ => hex::encode(rand::random::<[u8; 10]>()),
    };
    insert_person(c, &uid)
}

fn insert_person(c: &Connection, uid: &str) -> Result<i64, IndexError> {
    c.prepare_cached("INSERT INTO persons (uid, created_at) VALUES (?1, ?2)")?
        .execute(params![uid, now_ms()])?;
    c.last_insert_rowid()
}

fn person_uid(c: &Connection, id: i64) -> Result<String, IndexError> {
    c.prepare_cached("SELECT uid FROM persons WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
}

fn key_person(c: &Connection, k: &LocalKey) -> Result<Option<i64>, IndexError> {
    Ok(
        c.prepare_cached("SELECT person_fk FROM patients WHERE issuer = ?1 AND patient_id = ?2")?
            .query_row(params![k.issuer, k.patient_id], |r| r.get::<Option<i64>>(0))
            .optional()?
            .flatten(),
    )
}

fn key_id(c: &Connection, k: &LocalKey) -> Result<i64, IndexError> {
    c.prepare_cached("SELECT id FROM patients WHERE issuer = ?1 AND patient_id = ?2")?
        .query_row(params![k.issuer, k.patient_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| {
            MpiError::NoKey {
                issuer: k.issuer.clone(),
                patient_id: k.patient_id.clone(),
            }
            .into()
        })
}

fn local_key(c: &Connection, patient_fk: i64) -> Result<LocalKey, IndexError> {
    c.prepare_cached("SELECT issuer, patient_id FROM patients WHERE id = ?1")?
        .query_row([patient_fk], |r| {
            Ok(LocalKey {
                issuer: r.get(0)?,
                patient_id: r.get(1)?,
            })
        })
}

/// A live (not merged) person by uid.
fn live_person(c: &Connection, uid: &str) -> Result<i64, IndexError> {
    let row: Option<(i64, Option<i64>)> = c
        .prepare_cached("SELECT id, merged_into FROM persons WHERE uid = ?1")?
        .query_row([uid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Err(MpiError::NoPerson(uid.into()).into()),
        Some((_, Some(into))) => Err(MpiError::Merged(uid.into(), person_uid(c, into)?).into()),
        Some((id, None)) => Ok(id),
    }
}

fn person_keys(c: &Connection, person: i64) -> Result<Vec<(i64, LocalKey)>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, issuer, patient_id FROM patients WHERE person_fk = ?1 ORDER BY issuer, patient_id",
    )?;
    let rows = stmt.query_map([person], |r| {
        Ok((
            r.get(0)?,
            LocalKey {
                issuer: r.get(1)?,
                patient_id: r.get(2)?,
            },
        ))
    })?;
    rows.collect::<Result<_, _>>()
}

fn state(c: &Connection, person: i64) -> Result<PersonState, IndexError> {
    let merged: Option<i64> = c.query_row(
        "SELECT merged_into FROM persons WHERE id = ?1",
        [person],
        |r| r.get(0),
    )?;
    let keys = person_keys(c, person)?;
    let mut undecided = Vec::new();
    for (fk, k) in &keys {
        if !is_manual(c, *fk)? {
            undecided.push(k.clone());
        }
    }
    Ok(PersonState {
        person: person_uid(c, person)?,
        keys: keys.into_iter().map(|(_, k)| k).collect(),
        merged_into: merged.map(|m| person_uid(c, m)).transpose()?,
        undecided,
    })
}

fn history(
    c: &Connection,
    action: &str,
    actor: &str,
    person: Option<i64>,
    other: Option<i64>,
    patient_fk: Option<i64>,
    detail: &serde_json::Value,
) -> Result<(), IndexError> {
    c.execute(
        "INSERT INTO mpi_history (at, action, actor, person_fk, other_fk, patient_fk, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            now_ms(),
            action,
            actor,
            person,
            other,
            patient_fk,
            detail.to_string()
        ],
    )?;
    Ok(())
}

fn separate(c: &Connection, a: i64, b: i64) -> Result<(), IndexError> {
    let (a, b) = (a.min(b), a.max(b));
    c.execute(
        "INSERT INTO mpi_separations (a, b) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![a, b],
    )?;
    Ok(())
}

fn close_reviews(
    c: &Connection,
    patient_fk: i64,
    status: &str,
    actor: &str,
) -> Result<(), IndexError> {
    c.execute(
        "UPDATE mpi_review SET status = ?2, decided_by = ?3, decided_at = ?4
         WHERE patient_fk = ?1 AND status = 'open'",
        params![patient_fk, status, actor, now_ms()],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Manual operations

/// Carries out a manual operation and returns the change to journal.
pub(super) fn apply_op(c: &Connection, op: &MpiOp, actor: &str) -> Result<MpiChange, IndexError> {
    c.lock(DECISIONS_LOCK)?;
    let mut change = MpiChange {
        action: String::new(),
        actor: actor.to_string(),
        at: now_ms(),
        persons: vec![],
        separations: vec![],
        reviews_closed: vec![],
        demographics: None,
        detail: serde_json::Value::Null,
    };
    match op {
        MpiOp::Link { person, key } => {
            let to = live_person(c, person)?;
            let fk = key_id(c, key)?;
            let from = key_person(c, key)?;
            change.action = "link".into();
            if from == Some(to) && is_manual(c, fk)? {
                return Err(MpiError::Conflict(format!(
                    "{}/{} is already linked to person {person}",
                    key.issuer, key.patient_id
                ))
                .into());
            }
            // A link to the person the matcher chose confirms it: from now on the key is the
            // person's by decision (and in a patient user's scope).
            move_key(c, fk, to)?;
            close_reviews(c, fk, "resolved", actor)?;
            change.reviews_closed.push((key.clone(), "resolved".into()));
            history(
                c,
                "link",
                actor,
                Some(to),
                from,
                Some(fk),
                &serde_json::json!({}),
            )?;
            change.persons.push(state(c, to)?);
            if let Some(from) = from {
                change.persons.push(state(c, from)?);
            }
        }
        MpiOp::Unlink { person, key } => {
            let from = live_person(c, person)?;
            let fk = key_id(c, key)?;
            if key_person(c, key)? != Some(from) {
                return Err(MpiError::Conflict(format!(
                    "{}/{} is not linked to person {person}",
                    key.issuer, key.patient_id
                ))
                .into());
            }
            let rest: Vec<(i64, LocalKey)> = person_keys(c, from)?
                .into_iter()
                .filter(|(id, _)| *id != fk)
                .collect();
            if rest.is_empty() {
                return Err(MpiError::Conflict(format!(
                    "{}/{} is the only identity of person {person}",
                    key.issuer, key.patient_id
                ))
                .into());
            }
            let to = new_person(c, None)?;
            move_key(c, fk, to)?;
            for (other, other_key) in &rest {
                separate(c, fk, *other)?;
                change.separations.push((key.clone(), other_key.clone()));
            }
            close_reviews(c, fk, "resolved", actor)?;
            change.reviews_closed.push((key.clone(), "resolved".into()));
            between(
                c,
                &mut change,
                "unlink",
                (from, to),
                Some(fk),
                serde_json::json!({}),
            )?;
        }
        MpiOp::Merge { into, from } => {
            let to = live_person(c, into)?;
            let src = live_person(c, from)?;
            if to == src {
                return Err(
                    MpiError::Conflict("a person cannot be merged into itself".into()).into(),
                );
            }
            let moved = person_keys(c, src)?;
            for (fk, _) in &moved {
                move_key(c, *fk, to)?;
            }
            c.execute(
                "UPDATE persons SET merged_into = ?2 WHERE id = ?1",
                params![src, to],
            )?;
            let keys: Vec<&LocalKey> = moved.iter().map(|(_, k)| k).collect();
            let detail = serde_json::json!({ "keys": keys });
            between(c, &mut change, "merge", (to, src), None, detail)?;
        }
        MpiOp::Unmerge { into, from } => {
            let to = live_person(c, into)?;
            let src: i64 = c
                .query_row(
                    "SELECT id FROM persons WHERE uid = ?1 AND merged_into = ?2",
                    params![from, to],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    MpiError::Conflict(format!("person {from} is not merged into {into}"))
                })?;
            let detail: String = c.query_row(
                "SELECT detail FROM mpi_history WHERE action = 'merge' AND person_fk = ?1
                   AND other_fk = ?2 ORDER BY id DESC LIMIT 1",
                params![to, src],
                |r| r.get(0),
            )?;
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let keys: Vec<LocalKey> =
                serde_json::from_value(detail["keys"].clone()).unwrap_or_default();
            c.execute("UPDATE persons SET merged_into = NULL WHERE id = ?1", [src])?;
            for k in &keys {
                if key_person(c, k)? == Some(to) {
                    move_key(c, key_id(c, k)?, src)?;
                }
            }
            between(c, &mut change, "unmerge", (to, src), None, detail)?;
        }
        MpiOp::Review { id, accept } => {
            let row: Option<(i64, String, String)> = c
                .query_row(
                    "SELECT patient_fk, status, candidates FROM mpi_review WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (fk, status, candidates) = row.ok_or(MpiError::NoReview(*id))?;
            if status != "open" {
                return Err(
                    MpiError::Conflict(format!("review item {id} is already {status}")).into(),
                );
            }
            let key = local_key(c, fk)?;
            let from = key_person(c, &key)?;
            let status = match accept {
                Some(person) => {
                    let to = live_person(c, person)?;
                    move_key(c, fk, to)?;
                    history(
                        c,
                        "accept",
                        actor,
                        Some(to),
                        from,
                        Some(fk),
                        &serde_json::json!({ "review": id }),
                    )?;
                    change.persons.push(state(c, to)?);
                    if let Some(from) = from.filter(|f| *f != to) {
                        change.persons.push(state(c, from)?);
                    }
                    "accepted"
                }
                None => {
                    // Not the same as any candidate: the key keeps its own person, for good.
                    let candidates: Vec<serde_json::Value> =
                        serde_json::from_str(&candidates).unwrap_or_default();
                    for cand in candidates {
                        let Some(uid) = cand["person"].as_str() else {
                            continue;
                        };
                        let Some(p): Option<i64> = c
                            .query_row("SELECT id FROM persons WHERE uid = ?1", [uid], |r| r.get(0))
                            .optional()?
                        else {
                            continue;
                        };
                        for (other, other_key) in person_keys(c, p)? {
                            if other != fk {
                                separate(c, fk, other)?;
                                change.separations.push((key.clone(), other_key));
                            }
                        }
                    }
                    c.execute("UPDATE patients SET mpi_manual = 1 WHERE id = ?1", [fk])?;
                    history(
                        c,
                        "reject",
                        actor,
                        from,
                        None,
                        Some(fk),
                        &serde_json::json!({ "review": id }),
                    )?;
                    if let Some(from) = from {
                        change.persons.push(state(c, from)?);
                    }
                    "rejected"
                }
            };
            close_reviews(c, fk, status, actor)?;
            change.reviews_closed.push((key, status.into()));
            change.action = if status == "accepted" {
                "accept".into()
            } else {
                "reject".into()
            };
            change.detail = serde_json::json!({ "review": id });
        }
        MpiOp::Demographics { key, identity } => {
            let fk = key_id(c, key)?;
            apply_demographics(c, fk, identity)?;
            history(
                c,
                "demographics",
                actor,
                key_person(c, key)?,
                None,
                Some(fk),
                &serde_json::to_value(identity).unwrap_or_default(),
            )?;
            change.action = "demographics".into();
            change.demographics = Some((key.clone(), (**identity).clone()));
        }
    }
    Ok(change)
}

/// Records an operation between two persons in `change`: a history row on each (naming the
/// other), the action and its detail, and both resulting memberships.
fn between(
    c: &Connection,
    change: &mut MpiChange,
    action: &str,
    (a, b): (i64, i64),
    patient_fk: Option<i64>,
    detail: serde_json::Value,
) -> Result<(), IndexError> {
    history(
        c,
        action,
        &change.actor,
        Some(a),
        Some(b),
        patient_fk,
        &detail,
    )?;
    history(
        c,
        action,
        &change.actor,
        Some(b),
        Some(a),
        patient_fk,
        &detail,
    )?;
    change.action = action.into();
    change.detail = detail;
    change.persons.push(state(c, a)?);
    change.persons.push(state(c, b)?);
    Ok(())
}

/// Whether a person decided this key's person (a link, a merge, a review, a user's binding).
fn is_manual(c: &Connection, patient_fk: i64) -> Result<bool, IndexError> {
    c.prepare_cached("SELECT mpi_manual FROM patients WHERE id = ?1")?
        .query_row([patient_fk], |r| r.get(0))
}

/// A person's keys become theirs by decision: a user bound to the person sees them. `keys`
/// names the keys the binding confirmed (those the person held when it was decided), and only
/// those still the person's are confirmed; None (a binding journaled before the keys were
/// kept) confirms every key the person holds now. Keys the matcher adds later wait for a
/// decision of their own.
pub(super) fn confirm_keys(
    c: &Connection,
    person: i64,
    keys: Option<&[LocalKey]>,
) -> Result<(), IndexError> {
    match keys {
        None => {
            c.prepare_cached("UPDATE patients SET mpi_manual = 1 WHERE person_fk = ?1")?
                .execute([person])?;
        }
        Some(keys) => {
            let mut stmt = c.prepare_cached(
                "UPDATE patients SET mpi_manual = 1
                 WHERE person_fk = ?1 AND issuer = ?2 AND patient_id = ?3",
            )?;
            for k in keys {
                stmt.execute(params![person, k.issuer, k.patient_id])?;
            }
        }
    }
    Ok(())
}

/// The keys a person holds now: what binding a user to them confirms.
pub(super) fn keys_of(c: &Connection, uid: &str) -> Result<Vec<LocalKey>, IndexError> {
    let id = live_person(c, uid)?;
    Ok(person_keys(c, id)?.into_iter().map(|(_, k)| k).collect())
}

fn move_key(c: &Connection, patient_fk: i64, person: i64) -> Result<(), IndexError> {
    c.execute(
        "UPDATE patients SET person_fk = ?2, mpi_manual = 1 WHERE id = ?1",
        params![patient_fk, person],
    )?;
    Ok(())
}

/// An identity's name as a DICOM PN (Family^Given^Middle, empty trailing parts dropped).
fn person_name(identity: &Identity) -> String {
    [
        identity.family_name.as_str(),
        identity.given_name.as_str(),
        identity.middle_name.as_str(),
    ]
    .join("^")
    .trim_end_matches('^')
    .to_string()
}

fn apply_demographics(c: &Connection, fk: i64, identity: &Identity) -> Result<(), IndexError> {
    let name = person_name(identity);
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    c.execute(
        "UPDATE patients SET patient_name = ?2, patient_name_key = ?3, name_phonetic = ?4,
            birth_date = ?5, sex = ?6, demographics_manual = 1 WHERE id = ?1",
        params![
            fk,
            opt(&name),
            opt(&name).map(|n| mpi::name_key(&n)),
            opt(&name).map(|n| mpi::phonetic_key(&n)),
            opt(&identity.birth_date),
            opt(&identity.sex)
        ],
    )?;
    let key = opt(&name).map(|n| mpi::name_key(&n));
    super::records::rename_studies(c, fk, key.as_deref())?;
    let n = Normalised::new(identity);
    set_demographics(c, fk, &n, &serde_json::to_string(&n).expect("serialises"))
}

/// Applies a journaled change (reindex): memberships, separations, closed reviews and
/// demographics, skipping keys this index does not hold (their instances were deleted).
pub(super) fn replay(c: &Connection, change: &MpiChange) -> Result<(), IndexError> {
    if let Some((key, identity)) = &change.demographics {
        if let Ok(fk) = key_id(c, key) {
            apply_demographics(c, fk, identity)?;
        }
    }
    let mut ids = BTreeMap::new();
    for s in &change.persons {
        let id = match c
            .query_row("SELECT id FROM persons WHERE uid = ?1", [&s.person], |r| {
                r.get(0)
            })
            .optional()?
        {
            Some(id) => id,
            None => insert_person(c, &s.person)?,
        };
        ids.insert(s.person.clone(), id);
    }
    for s in &change.persons {
        let id = ids[&s.person];
        let merged = s.merged_into.as_ref().and_then(|m| ids.get(m).copied());
        c.execute(
            "UPDATE persons SET merged_into = ?2 WHERE id = ?1",
            params![id, merged],
        )?;
        for k in &s.keys {
            if let Ok(fk) = key_id(c, k) {
                if s.undecided.contains(k) {
                    // a member by the matcher's link alone: decided by no one
                    c.execute(
                        "UPDATE patients SET person_fk = ?2 WHERE id = ?1",
                        params![fk, id],
                    )?;
                } else {
                    move_key(c, fk, id)?;
                }
            }
        }
    }
    for (a, b) in &change.separations {
        if let (Ok(a), Ok(b)) = (key_id(c, a), key_id(c, b)) {
            separate(c, a, b)?;
        }
    }
    for (k, status) in &change.reviews_closed {
        if let Ok(fk) = key_id(c, k) {
            if status == "rejected" {
                c.execute("UPDATE patients SET mpi_manual = 1 WHERE id = ?1", [fk])?;
            }
            close_reviews(c, fk, status, &change.actor)?;
        }
    }
    let first = change.persons.first().map(|s| ids[&s.person]);
    let second = change.persons.get(1).map(|s| ids[&s.person]);
    c.execute(
        "INSERT INTO mpi_history (at, action, actor, person_fk, other_fk, patient_fk, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
        params![
            change.at,
            change.action,
            change.actor,
            first,
            second,
            change.detail.to_string()
        ],
    )?;
    Ok(())
}

/// Re-runs the matcher over every local key no person decided, in the order they arrived:
/// a key moves only when the matcher links it to another person. Returns how many moved.
pub(super) fn rematch(c: &Connection) -> Result<usize, IndexError> {
    c.lock(DECISIONS_LOCK)?;
    let model = model(c)?;
    let keys: Vec<(i64, i64, String)> = {
        let mut stmt = c.prepare(
            "SELECT id, person_fk, demographics FROM patients
             WHERE mpi_manual = 0 AND person_fk IS NOT NULL AND demographics IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map(params![], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut moved = 0;
    for (fk, person, json) in keys {
        let Ok(n) = serde_json::from_str::<Normalised>(&json) else {
            continue;
        };
        let cands = candidates(c, fk, &n)?;
        let outcome = mpi::decide(&model, &n, &cands);
        if let (Decision::Linked, Some(p)) = (outcome.decision, outcome.person) {
            if p != person {
                assign(c, fk, p)?;
                let detail =
                    serde_json::json!({ "reason": "rematch", "candidates": outcome.scored });
                history(
                    c,
                    "auto_link",
                    MATCHER,
                    Some(p),
                    Some(person),
                    Some(fk),
                    &detail,
                )?;
                moved += 1;
            }
        }
    }
    Ok(moved)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One local key as the person view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Identifier {
    pub issuer: String,
    pub patient_id: String,
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// Linked by a person's decision rather than by the matcher.
    pub manual: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonStudy {
    pub study_uid: String,
    pub study_date: Option<String>,
    pub description: Option<String>,
    pub accession_number: Option<String>,
    pub modalities: String,
    pub issuer: String,
    pub patient_id: String,
    pub num_instances: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub action: String,
    pub actor: String,
    pub other_person: Option<String>,
    pub identifier: Option<LocalKey>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonView {
    pub id: String,
    pub merged_into: Option<String>,
    pub identifiers: Vec<Identifier>,
    pub studies: Vec<PersonStudy>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PersonSearch {
    pub name: Option<String>,
    pub birthdate: Option<String>,
    pub sex: Option<String>,
    pub identifier: Option<String>,
    /// The person of a study (Study Instance UID).
    pub study: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonSummary {
    pub id: String,
    pub identifiers: Vec<Identifier>,
}

fn identifiers(c: &Connection, person: i64) -> Result<Vec<Identifier>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT issuer, patient_id, patient_name, birth_date, sex, mpi_manual FROM patients
         WHERE person_fk = ?1 ORDER BY issuer, patient_id",
    )?;
    let rows = stmt.query_map([person], |r| {
        Ok(Identifier {
            issuer: r.get(0)?,
            patient_id: r.get(1)?,
            name: r.get(2)?,
            birth_date: r.get(3)?,
            sex: r.get(4)?,
            manual: r.get(5)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

/// Persons with a local key matching every given criterion. Names match case- and
/// accent-insensitively by prefix of the family name, or by its phonetic code.
pub(super) fn search(c: &Connection, q: &PersonSearch) -> Result<Vec<PersonSummary>, IndexError> {
    let mut sql = String::from(
        "SELECT DISTINCT p.person_fk FROM patients p JOIN persons ps ON ps.id = p.person_fk
         WHERE ps.merged_into IS NULL",
    );
    let mut args: Vec<String> = vec![];
    if let Some(name) = q.name.as_deref().filter(|s| !s.trim().is_empty()) {
        let key = mpi::name_key(name.trim());
        let family = key.split(['^', ' ', ',']).next().unwrap_or("").to_string();
        let code = mpi::phonetic(&family);
        args.push(format!("{}%", key.replace('%', "")));
        let a = args.len();
        if code.is_empty() {
            sql.push_str(&format!(" AND p.patient_name_key LIKE ?{a}"));
        } else {
            args.push(format!("{code}^%"));
            sql.push_str(&format!(
                " AND (p.patient_name_key LIKE ?{a} OR p.name_phonetic LIKE ?{})",
                a + 1
            ));
        }
    }
    if let Some(b) = q.birthdate.as_deref().filter(|s| !s.is_empty()) {
        args.push(b.replace('-', ""));
        sql.push_str(&format!(" AND p.birth_date = ?{}", args.len()));
    }
    if let Some(s) = q.sex.as_deref().filter(|s| !s.is_empty()) {
        args.push(s.to_uppercase());
        sql.push_str(&format!(" AND p.sex = ?{}", args.len()));
    }
    if let Some(id) = q.identifier.as_deref().filter(|s| !s.is_empty()) {
        match id.split_once('|') {
            Some((issuer, pid)) => {
                args.push(strata_mpi::local_issuer(Some(issuer), None));
                args.push(pid.to_string());
                sql.push_str(&format!(
                    " AND p.issuer = ?{} AND p.patient_id = ?{}",
                    args.len() - 1,
                    args.len()
                ));
            }
            None => {
                args.push(id.to_string());
                sql.push_str(&format!(" AND p.patient_id = ?{}", args.len()));
            }
        }
    }
    if let Some(study) = q.study.as_deref().filter(|s| !s.is_empty()) {
        args.push(study.to_string());
        sql.push_str(&format!(
            " AND p.id = (SELECT patient_fk FROM studies WHERE study_uid = ?{})",
            args.len()
        ));
    }
    let limit = q.limit.unwrap_or(100).min(1000);
    sql.push_str(&format!(" ORDER BY p.person_fk LIMIT {limit}"));
    let mut stmt = c.prepare(&sql)?;
    let persons: Vec<i64> = stmt
        .query_map(&args, |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = vec![];
    for p in persons {
        out.push(PersonSummary {
            id: person_uid(c, p)?,
            identifiers: identifiers(c, p)?,
        });
    }
    Ok(out)
}

/// Everything about one person: identities, studies across hospitals, link history. With
/// `only` (a patient's own person), any other person is None, and the history is left out: it
/// names other persons and the staff who decided.
pub(super) fn person(
    c: &Connection,
    uid: &str,
    only: Option<i64>,
) -> Result<Option<PersonView>, IndexError> {
    let row: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT id, merged_into FROM persons WHERE uid = ?1",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, merged)) = row.filter(|(id, _)| only.is_none_or(|o| o == *id)) else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT st.study_uid, st.study_date, st.study_description, st.accession_number,
                (SELECT string_agg(m, ',' ORDER BY m) FROM
                    (SELECT DISTINCT se.modality AS m FROM series se WHERE se.study_fk = st.id) AS ms),
                p.issuer, p.patient_id, st.num_instances
         FROM studies st JOIN patients p ON p.id = st.patient_fk
         WHERE p.person_fk = ?1 AND (?2 = 0 OR p.mpi_manual = 1)
         ORDER BY st.study_date DESC NULLS LAST, st.study_time DESC NULLS LAST, st.id",
    )?;
    let studies = stmt
        .query_map(params![id, only.is_some()], |r| {
            Ok(PersonStudy {
                study_uid: r.get(0)?,
                study_date: r.get(1)?,
                description: r.get(2)?,
                accession_number: r.get(3)?,
                modalities: r.get::<Option<String>>(4)?.unwrap_or_default(),
                issuer: r.get(5)?,
                patient_id: r.get(6)?,
                num_instances: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT h.at, h.action, h.actor, h.person_fk, h.other_fk, h.patient_fk, h.detail
         FROM mpi_history h WHERE h.person_fk = ?1 ORDER BY h.id",
    )?;
    type Row = (
        i64,
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
    );
    let rows: Vec<Row> = stmt
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut history = vec![];
    for (at, action, actor, _, other, patient, detail) in
        rows.into_iter().filter(|_| only.is_none())
    {
        history.push(HistoryEntry {
            at,
            action,
            actor,
            other_person: other.map(|o| person_uid(c, o)).transpose()?,
            identifier: patient.map(|p| local_key(c, p)).transpose()?,
            detail: serde_json::from_str(&detail).unwrap_or_default(),
        });
    }
    Ok(Some(PersonView {
        id: uid.to_string(),
        merged_into: merged.map(|m| person_uid(c, m)).transpose()?,
        identifiers: identifiers(c, id)?
            .into_iter()
            .filter(|i| only.is_none() || i.manual)
            .collect(),
        studies,
        history,
    }))
}

/// The person of a study (its local key's person), for the viewer's link to the person view.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub identifier: Identifier,
    pub person: Option<String>,
    pub reason: String,
    pub candidates: serde_json::Value,
    pub status: String,
    pub created_at: i64,
}

/// Review items, open ones only unless `all`.
pub(super) fn review_items(c: &Connection, all: bool) -> Result<Vec<ReviewItem>, IndexError> {
    let mut stmt = c.prepare(
        "SELECT r.id, r.patient_fk, r.reason, r.candidates, r.status, r.created_at,
                p.issuer, p.patient_id, p.patient_name, p.birth_date, p.sex, p.mpi_manual, p.person_fk
         FROM mpi_review r JOIN patients p ON p.id = r.patient_fk
         WHERE ?1 OR r.status = 'open' ORDER BY r.id",
    )?;
    let rows: Vec<(ReviewItem, Option<i64>)> = stmt
        .query_map([all], |r| {
            Ok((
                ReviewItem {
                    id: r.get(0)?,
                    reason: r.get(2)?,
                    candidates: serde_json::from_str(&r.get::<String>(3)?).unwrap_or_default(),
                    status: r.get(4)?,
                    created_at: r.get(5)?,
                    identifier: Identifier {
                        issuer: r.get(6)?,
                        patient_id: r.get(7)?,
                        name: r.get(8)?,
                        birth_date: r.get(9)?,
                        sex: r.get(10)?,
                        manual: r.get(11)?,
                    },
                    person: None,
                },
                r.get(12)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(mut item, p)| {
            item.person = p.map(|p| person_uid(c, p)).transpose()?;
            Ok(item)
        })
        .collect()
}

/// What matching demographics gave: the decision, the person linked, scored persons.
pub type MatchAnswer = (Decision, Option<String>, Vec<(String, f64)>);

/// Scores demographics against the persons they block with, without storing anything.
pub(super) fn match_only(c: &Connection, identity: &Identity) -> Result<MatchAnswer, IndexError> {
    let model = model(c)?;
    let n = Normalised::new(identity);
    let cands = candidates(c, -1, &n)?;
    let outcome = mpi::decide(&model, &n, &cands);
    let scored = outcome
        .scored
        .iter()
        .map(|s| Ok((person_uid(c, s.person)?, s.score)))
        .collect::<Result<_, IndexError>>()?;
    Ok((
        outcome.decision,
        outcome.person.map(|p| person_uid(c, p)).transpose()?,
        scored,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsed model is reused while the stored one is unchanged, and never outlives it.
    #[test]
    fn the_model_read_follows_the_stored_one() {
        // the tables as the migrations make them, not typed again here
        let mut raw = rusqlite::Connection::open_in_memory().unwrap();
        crate::sqlite::migrate(&mut raw).unwrap();
        let c = Connection::sqlite(&raw);
        assert_eq!(*model(&c).unwrap(), Model::default());
        let first = Model {
            match_proportion: 0.01,
            ..Model::default()
        };
        set_model(&c, &first, 10).unwrap();
        let read = model(&c).unwrap();
        assert_eq!(read.match_proportion, 0.01);
        assert!(Arc::ptr_eq(&read, &model(&c).unwrap()));
        let second = Model {
            match_proportion: 0.02,
            ..first
        };
        set_model(&c, &second, 10).unwrap();
        assert_eq!(model(&c).unwrap().match_proportion, 0.02);
    }
}
