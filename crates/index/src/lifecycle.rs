//! A record's end: legal holds (`holds`), the facts retention decides by (one grouped query
//! per page of studies), expiry batches an administrator approves (`expiry_batches`,
//! `expiry_items`), and the instances rejection notes took out of the index
//! (`rejected_instances`) until they are purged.

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use crate::records::{blob, remove_instance_row};
use crate::IndexError;
use strata_core::BlobId;

/// A legal hold on a person or a study.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub id: i64,
    pub person: Option<String>,
    pub study_uid: Option<String>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: i64,
    pub released_by: Option<String>,
    pub released_at: Option<i64>,
}

/// What retention decides a study's end by.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StudyFacts {
    pub study_uid: String,
    #[serde(skip)]
    pub patient_fk: i64,
    pub study_date: Option<String>,
    pub birth_date: Option<String>,
    /// The latest study date of the person (of the patient key, when it has no person).
    pub last_study_date: Option<String>,
    pub modalities: Vec<String>,
    /// Where its instances came from (`dimse:AE`, `web:user`, `import`).
    pub sources: Vec<String>,
    pub last_received_at: i64,
    pub instances: u64,
    pub bytes: u64,
}

/// A batch of studies proposed for deletion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryBatch {
    pub id: i64,
    /// `proposed`, `approved` (deleting), `done` or `dismissed`.
    pub state: String,
    pub proposed_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub studies: u64,
    pub bytes: u64,
}

/// A study of an expiry batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryItem {
    pub study_uid: String,
    /// YYYYMMDD: when its retention ended, as the proposal computed it.
    pub retained_until: String,
    pub instances: u64,
    pub bytes: u64,
    /// `proposed` (waiting), `deleted`, `kept` (under a hold or retention when its turn came),
    /// or `dismissed` (its batch was).
    pub outcome: String,
}

/// An instance a rejection note took out of the index, with what its purge decides by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectedInstance {
    pub sop_uid: String,
    #[serde(skip)]
    pub blob_id: BlobId,
    pub size: u64,
    pub study_uid: String,
    pub series_uid: String,
    pub note_uid: String,
    pub code: String,
    pub rejected_at: i64,
    /// Its retention facts (one study's worth: this instance's).
    #[serde(skip)]
    pub facts: StudyFacts,
}

pub(super) fn place_hold(
    c: &Connection,
    person: Option<&str>,
    study: Option<&str>,
    reason: &str,
    by: &str,
    at: i64,
) -> Result<i64, IndexError> {
    c.execute(
        "INSERT INTO holds (person_uid, study_uid, reason, placed_by, placed_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![person, study, reason, by, at],
    )?;
    c.last_insert_rowid()
}

/// Releases hold `id`; false if there is no such hold in force.
pub(super) fn release_hold(c: &Connection, id: i64, by: &str, at: i64) -> Result<bool, IndexError> {
    Ok(c.execute(
        "UPDATE holds SET released_by = ?2, released_at = ?3
         WHERE id = ?1 AND released_at IS NULL",
        params![id, by, at],
    )? > 0)
}

pub(super) fn holds(c: &Connection, in_force_only: bool) -> Result<Vec<Hold>, IndexError> {
    c.prepare_cached(
        "SELECT id, person_uid, study_uid, reason, placed_by, placed_at, released_by, released_at
         FROM holds WHERE ?1 = 0 OR released_at IS NULL ORDER BY id",
    )?
    .query_map([i64::from(in_force_only)], |r| {
        Ok(Hold {
            id: r.get(0)?,
            person: r.get(1)?,
            study_uid: r.get(2)?,
            reason: r.get(3)?,
            placed_by: r.get(4)?,
            placed_at: r.get(5)?,
            released_by: r.get(6)?,
            released_at: r.get(7)?,
        })
    })?
    .collect()
}

/// Whether a hold in force covers study `study` of patient key `patient_fk`: one on the study,
/// or on the person the key is linked to, or on a person merged into that one.
pub(super) fn is_held(c: &Connection, study: &str, patient_fk: i64) -> Result<bool, IndexError> {
    let n: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM holds h WHERE h.released_at IS NULL AND (h.study_uid = ?1
                OR h.person_uid IN (SELECT pe.uid FROM patients p JOIN persons pe
                                        ON pe.id = p.person_fk OR pe.merged_into = p.person_fk
                                    WHERE p.id = ?2))",
        )?
        .query_row(params![study, patient_fk], |r| r.get(0))?;
    Ok(n > 0)
}

/// One row per study, series modality and instance source; [`merge_facts`] folds them.
const FACTS: &str = "SELECT st.study_uid, st.patient_fk, st.study_date, p.birth_date,
        COALESCE((SELECT MAX(s2.study_date) FROM studies s2 JOIN patients p2 ON p2.id = s2.patient_fk
                  WHERE p2.person_fk = p.person_fk),
                 (SELECT MAX(s3.study_date) FROM studies s3 WHERE s3.patient_fk = st.patient_fk)),
        se.modality, i.source, MAX(i.received_at), COUNT(i.id), CAST(SUM(i.size) AS BIGINT)
     FROM studies st JOIN patients p ON p.id = st.patient_fk
     JOIN series se ON se.study_fk = st.id JOIN instances i ON i.series_fk = se.id";
const FACTS_GROUP: &str = "GROUP BY st.study_uid, st.patient_fk, st.study_date, p.birth_date,
        p.person_fk, se.modality, i.source ORDER BY st.study_uid";

fn merge_facts(
    rows: impl Iterator<Item = Result<StudyFacts, IndexError>>,
) -> Result<Vec<StudyFacts>, IndexError> {
    let mut out: Vec<StudyFacts> = Vec::new();
    for row in rows {
        let row = row?;
        match out.last_mut() {
            Some(f) if f.study_uid == row.study_uid => {
                for m in row.modalities {
                    if !f.modalities.contains(&m) {
                        f.modalities.push(m);
                    }
                }
                for s in row.sources {
                    if !f.sources.contains(&s) {
                        f.sources.push(s);
                    }
                }
                f.last_received_at = f.last_received_at.max(row.last_received_at);
                f.instances += row.instances;
                f.bytes += row.bytes;
            }
            _ => out.push(row),
        }
    }
    Ok(out)
}

fn facts_row(r: &Row) -> Result<StudyFacts, IndexError> {
    Ok(StudyFacts {
        study_uid: r.get(0)?,
        patient_fk: r.get(1)?,
        study_date: r.get(2)?,
        birth_date: r.get(3)?,
        last_study_date: r.get(4)?,
        modalities: r.get::<Option<String>>(5)?.into_iter().collect(),
        sources: vec![r.get(6)?],
        last_received_at: r.get(7)?,
        instances: r.get::<i64>(8)? as u64,
        bytes: r.get::<i64>(9)? as u64,
    })
}

/// The facts of up to `limit` studies after `after`, in study order.
pub(super) fn facts_page(
    c: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StudyFacts>, IndexError> {
    let sql = format!(
        "{FACTS} WHERE st.study_uid IN (SELECT study_uid FROM studies
            WHERE study_uid > ?1 ORDER BY study_uid LIMIT ?2)
         {FACTS_GROUP}"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], facts_row)?;
    merge_facts(rows)
}

/// The facts of `studies` (those the index holds).
pub(super) fn facts_of(c: &Connection, studies: &[String]) -> Result<Vec<StudyFacts>, IndexError> {
    let sql = format!("{FACTS} WHERE st.study_uid = ?1 {FACTS_GROUP}");
    let mut stmt = c.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for s in studies {
        out.extend(merge_facts(stmt.query_map([s], facts_row)?)?);
    }
    Ok(out)
}

/// Records a proposed batch of the items whose study waits in no other batch (a proposal
/// running beside this one may have taken some); returns its id and how many it holds, or None
/// when every study was taken.
pub(super) fn propose_batch(
    c: &Connection,
    items: &[ExpiryItem],
    at: i64,
) -> Result<Option<(i64, usize)>, IndexError> {
    c.execute(
        "INSERT INTO expiry_batches (state, proposed_at) VALUES ('proposed', ?1)",
        [at],
    )?;
    let id = c.last_insert_rowid()?;
    // `expiry_items_waiting`: one waiting item per study
    let mut insert = c.prepare_cached(
        "INSERT INTO expiry_items (batch_fk, study_uid, retained_until, instances, bytes, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, 'proposed') ON CONFLICT DO NOTHING",
    )?;
    let mut taken = 0;
    for i in items {
        taken += insert.execute(params![
            id,
            i.study_uid,
            i.retained_until,
            i.instances as i64,
            i.bytes as i64
        ])?;
    }
    if taken == 0 {
        c.execute("DELETE FROM expiry_batches WHERE id = ?1", [id])?;
        return Ok(None);
    }
    Ok(Some((id, taken)))
}

const BATCH_COLUMNS: &str =
    "b.id, b.state, b.proposed_at, b.decided_by, b.decided_at, b.finished_at,
    (SELECT COUNT(*) FROM expiry_items e WHERE e.batch_fk = b.id),
    (SELECT CAST(COALESCE(SUM(e.bytes), 0) AS BIGINT) FROM expiry_items e WHERE e.batch_fk = b.id)";

fn batch_row(r: &Row) -> Result<ExpiryBatch, IndexError> {
    Ok(ExpiryBatch {
        id: r.get(0)?,
        state: r.get(1)?,
        proposed_at: r.get(2)?,
        decided_by: r.get(3)?,
        decided_at: r.get(4)?,
        finished_at: r.get(5)?,
        studies: r.get::<i64>(6)? as u64,
        bytes: r.get::<i64>(7)? as u64,
    })
}

/// The latest batches first.
pub(super) fn batches(c: &Connection, limit: usize) -> Result<Vec<ExpiryBatch>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {BATCH_COLUMNS} FROM expiry_batches b ORDER BY b.id DESC LIMIT ?1"
    ))?
    .query_map([limit as i64], batch_row)?
    .collect()
}

pub(super) fn batch(c: &Connection, id: i64) -> Result<Option<ExpiryBatch>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {BATCH_COLUMNS} FROM expiry_batches b WHERE b.id = ?1"
    ))?
    .query_row([id], batch_row)
    .optional()
}

pub(super) fn batch_items(c: &Connection, id: i64) -> Result<Vec<ExpiryItem>, IndexError> {
    c.prepare_cached(
        "SELECT study_uid, retained_until, instances, bytes, outcome FROM expiry_items
         WHERE batch_fk = ?1 ORDER BY study_uid",
    )?
    .query_map([id], |r| {
        Ok(ExpiryItem {
            study_uid: r.get(0)?,
            retained_until: r.get(1)?,
            instances: r.get::<i64>(2)? as u64,
            bytes: r.get::<i64>(3)? as u64,
            outcome: r.get(4)?,
        })
    })?
    .collect()
}

/// Moves batch `id` from state `from` to `to`, a decision of `by`; false if it was not in
/// state `from`.
pub(super) fn decide_batch(
    c: &Connection,
    id: i64,
    from: &str,
    to: &str,
    by: &str,
    at: i64,
) -> Result<bool, IndexError> {
    let moved = c.execute(
        "UPDATE expiry_batches SET state = ?3, decided_by = ?4, decided_at = ?5
         WHERE id = ?1 AND state = ?2",
        params![id, from, to, by, at],
    )? > 0;
    if moved && to == "dismissed" {
        // its studies wait no more: a later proposal may take them
        c.execute(
            "UPDATE expiry_items SET outcome = 'dismissed' WHERE batch_fk = ?1 AND outcome = 'proposed'",
            [id],
        )?;
    }
    Ok(moved)
}

/// Marks an approved batch's deletion finished.
pub(super) fn finish_batch(c: &Connection, id: i64, at: i64) -> Result<(), IndexError> {
    c.execute(
        "UPDATE expiry_batches SET state = 'done', finished_at = ?2 WHERE id = ?1 AND state = 'approved'",
        params![id, at],
    )?;
    Ok(())
}

pub(super) fn item_outcome(
    c: &Connection,
    id: i64,
    study: &str,
    outcome: &str,
) -> Result<(), IndexError> {
    c.execute(
        "UPDATE expiry_items SET outcome = ?3 WHERE batch_fk = ?1 AND study_uid = ?2",
        params![id, study, outcome],
    )?;
    Ok(())
}

/// Studies in a batch still proposed or being deleted: not proposed again.
pub(super) fn studies_pending(c: &Connection) -> Result<Vec<String>, IndexError> {
    c.prepare_cached("SELECT study_uid FROM expiry_items WHERE outcome = 'proposed' ORDER BY 1")?
        .query_map(params![], |r| r.get(0))?
        .collect()
}

/// Takes the instances a rejection note names out of the index, keeping what their purge needs;
/// only those of `study` (the note's own study) are taken, and those not stored yet are
/// remembered, to be refused when they come. Returns the SOP Instance UIDs taken.
pub(super) fn reject(
    c: &Connection,
    study: &str,
    sops: &[String],
    note: &str,
    code: &str,
    at: i64,
) -> Result<Vec<String>, IndexError> {
    let mut find = c.prepare_cached(
        "SELECT i.id, i.blob_id, i.size, se.series_uid, st.patient_fk, st.study_date,
                se.modality, i.source, i.received_at
         FROM instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk
         WHERE i.sop_uid = ?1 AND st.study_uid = ?2",
    )?;
    let mut keep = c.prepare_cached(
        "INSERT INTO rejected_instances (sop_uid, blob_id, size, study_uid, series_uid, patient_fk,
            study_date, modality, source, received_at, note_uid, code, rejected_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (sop_uid) DO NOTHING",
    )?;
    let mut ahead = c.prepare_cached(
        "INSERT INTO rejected_ahead (sop_uid, study_uid, note_uid, code, rejected_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sop_uid) DO NOTHING",
    )?;
    let mut taken = Vec::new();
    for sop in sops {
        let row = find
            .query_row(params![sop, study], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<String>(1)?,
                    r.get::<i64>(2)?,
                    r.get::<String>(3)?,
                    r.get::<i64>(4)?,
                    r.get::<Option<String>>(5)?,
                    r.get::<Option<String>>(6)?,
                    r.get::<String>(7)?,
                    r.get::<i64>(8)?,
                ))
            })
            .optional()?;
        let Some((id, blob_id, size, series, patient, date, modality, source, received)) = row
        else {
            // not here (yet): refused when it comes
            if !is_rejected(c, sop)? {
                ahead.execute(params![sop, study, note, code, at])?;
            }
            continue;
        };
        keep.execute(params![
            sop, blob_id, size, study, series, patient, date, modality, source, received, note,
            code, at
        ])?;
        remove_instance_row(c, id)?;
        taken.push(sop.clone());
    }
    Ok(taken)
}

/// Whether a rejection note took `sop` out of the index (purged since or not), or named it
/// before it arrived.
pub(super) fn is_rejected(c: &Connection, sop: &str) -> Result<bool, IndexError> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM rejected_instances WHERE sop_uid = ?1
             UNION ALL SELECT 1 FROM rejected_ahead WHERE sop_uid = ?1 LIMIT 1",
    )?
    .query_row([sop], |r| r.get::<i64>(0))
    .optional()?
    .is_some())
}

/// Rejected instances not purged yet, those rejected earliest first, up to `limit`; with
/// `before`, only those rejected before it; with `after` (a rejection time and SOP Instance
/// UID), only those after it in that order.
pub(super) fn rejected(
    c: &Connection,
    before: Option<i64>,
    after: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<RejectedInstance>, IndexError> {
    let (after_at, after_sop) = after.unwrap_or((i64::MIN, String::new()));
    c.prepare_cached(
        "SELECT r.sop_uid, r.blob_id, r.size, r.study_uid, r.series_uid, r.note_uid, r.code,
                r.rejected_at, r.patient_fk, r.study_date, p.birth_date,
                COALESCE((SELECT MAX(s2.study_date) FROM studies s2 JOIN patients p2 ON p2.id = s2.patient_fk
                          WHERE p2.person_fk = p.person_fk),
                         (SELECT MAX(s3.study_date) FROM studies s3 WHERE s3.patient_fk = r.patient_fk)),
                r.modality, r.source, r.received_at
         FROM rejected_instances r JOIN patients p ON p.id = r.patient_fk
         WHERE r.purged_at IS NULL AND (CAST(?1 AS BIGINT) IS NULL OR r.rejected_at < ?1)
           AND (r.rejected_at > ?3 OR (r.rejected_at = ?3 AND r.sop_uid > ?4))
         ORDER BY r.rejected_at, r.sop_uid LIMIT ?2",
    )?
    .query_map(params![before, limit as i64, after_at, after_sop], |r| {
        let study_uid: String = r.get(3)?;
        let size = r.get::<i64>(2)? as u64;
        Ok(RejectedInstance {
            sop_uid: r.get(0)?,
            blob_id: blob(r.get(1)?)?,
            size,
            series_uid: r.get(4)?,
            note_uid: r.get(5)?,
            code: r.get(6)?,
            rejected_at: r.get(7)?,
            facts: StudyFacts {
                study_uid: study_uid.clone(),
                patient_fk: r.get(8)?,
                study_date: r.get(9)?,
                birth_date: r.get(10)?,
                last_study_date: r.get(11)?,
                modalities: r.get::<Option<String>>(12)?.into_iter().collect(),
                sources: vec![r.get(13)?],
                last_received_at: r.get(14)?,
                instances: 1,
                bytes: size,
            },
            study_uid,
        })
    })?
    .collect()
}

/// Marks rejected instances purged (their rows stay, so they are refused if sent again) and
/// forgets their earlier versions; returns those purged and the blobs they used. With
/// `unless_held`, one whose study a hold in force covers is left as it is, checked in this
/// transaction.
pub(super) fn forget_rejected(
    c: &Connection,
    sops: &[String],
    unless_held: bool,
) -> Result<(Vec<String>, Vec<BlobId>), IndexError> {
    let (mut purged, mut blobs) = (Vec::new(), Vec::new());
    for sop in sops {
        let row: Option<(String, String, i64)> = c
            .query_row(
                "SELECT blob_id, study_uid, patient_fk FROM rejected_instances
                 WHERE sop_uid = ?1 AND purged_at IS NULL",
                [sop],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((b, study, patient_fk)) = row {
            if unless_held && is_held(c, &study, patient_fk)? {
                continue;
            }
            blobs.push(blob(b)?);
            c.execute(
                "UPDATE rejected_instances SET purged_at = ?2 WHERE sop_uid = ?1",
                params![sop, strata_core::now_ms()],
            )?;
        } else if unless_held {
            continue;
        }
        purged.push(sop.clone());
        let mut stmt =
            c.prepare_cached("SELECT blob_id FROM instance_history WHERE sop_uid = ?1")?;
        for b in stmt.query_map([sop], |r| r.get::<String>(0))? {
            blobs.push(blob(b?)?);
        }
        c.execute("DELETE FROM instance_history WHERE sop_uid = ?1", [sop])?;
    }
    forget_cold(c, &blobs)?;
    Ok((purged, blobs))
}

/// Forgets the cold tier's records of deleted blobs.
pub(super) fn forget_cold(c: &Connection, blobs: &[BlobId]) -> Result<(), IndexError> {
    let mut stmt = c.prepare_cached("DELETE FROM cold_blobs WHERE blob_id = ?1")?;
    for b in blobs {
        stmt.execute([b.to_hex()])?;
    }
    Ok(())
}
