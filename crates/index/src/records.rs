//! Instances and the rows around them (patients, studies, series, history): the SQL that
//! writes an ingested instance, reads it back, lists, counts and deletes.

use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::rows::*;
use crate::IndexError;
use strata_core::config::OnConflict;
use strata_core::{now_ms, BlobId};
use strata_dicom::record::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};

use strata_mpi::name_key;

pub(crate) fn blob(s: String) -> Result<BlobId, IndexError> {
    s.parse()
        .map_err(|e| IndexError::Column(0, format!("blob id {s:?}: {e}")))
}

// Every instance names its patient, study and series again. A row is written only when the
// instance changes something in it: an update rewrites the row and, column by column, the entry
// of every index on a column it sets, whether the value changed or not (9 of the 19 pages an
// instance of a known series wrote to the WAL were such rewrites).

/// Whether `new` changes a column that keeps what it has unless an instance gives a value.
fn fills<T: PartialEq>(new: &Option<T>, stored: &Option<T>) -> bool {
    new.is_some() && new != stored
}

/// Whether any of `given` changes the column stored beside it (see [`fills`]).
fn fills_any(given: &[&Option<String>], stored: &[Option<String>]) -> bool {
    given.iter().zip(stored).any(|(g, st)| fills(g, st))
}

/// `N` TEXT (or NULL) columns of a row, from column `first` on.
fn texts<const N: usize>(
    r: &crate::db::Row,
    first: usize,
) -> Result<[Option<String>; N], IndexError> {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for (i, v) in out.iter_mut().enumerate() {
        *v = r.get(first + i)?;
    }
    Ok(out)
}

fn upsert_patient(c: &Connection, p: &PatientRecord, now: i64) -> Result<i64, IndexError> {
    type Stored = (i64, bool, Option<String>, Option<String>, Option<String>);
    let stored: Option<Stored> = c
        .prepare_cached(
            "SELECT id, demographics_manual, patient_name, birth_date, sex FROM patients
             WHERE patient_id = ?1 AND issuer = ?2",
        )?
        .query_row(params![p.patient_id, p.issuer], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    match stored {
        // An administrator corrected this key's demographics: later instances do not undo it.
        Some((id, true, ..)) => return Ok(id),
        // the same demographics again: nothing to write
        Some((id, false, name, birth_date, sex))
            if name == p.name && birth_date == p.birth_date && sex == p.sex =>
        {
            return Ok(id)
        }
        _ => {}
    }
    let renamed = matches!(&stored, Some((_, false, name, ..)) if *name != p.name);
    let key = p.name.as_deref().map(name_key);
    let id = c.prepare_cached("INSERT INTO patients (patient_id, issuer, patient_name, patient_name_key, birth_date, sex, updated_at, name_phonetic)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (patient_id, issuer) DO UPDATE SET
            patient_name = excluded.patient_name, patient_name_key = excluded.patient_name_key,
            name_phonetic = excluded.name_phonetic,
            birth_date = excluded.birth_date, sex = excluded.sex, updated_at = excluded.updated_at
         RETURNING id")?.query_row(
        params![
            p.patient_id,
            p.issuer,
            p.name,
            key,
            p.birth_date,
            p.sex,
            now,
            p.name.as_deref().map(strata_mpi::phonetic_key)
        ],
        |r| r.get(0),
    )?;
    if renamed {
        rename_studies(c, id, key.as_deref())?;
    }
    Ok(id)
}

/// Keeps the folded name each study of a patient carries (for name searches of studies) equal
/// to the patient's, after the patient's name changed.
pub(crate) fn rename_studies(
    c: &Connection,
    patient: i64,
    name_key: Option<&str>,
) -> Result<(), IndexError> {
    c.prepare_cached("UPDATE studies SET patient_name_key = ?2 WHERE patient_fk = ?1")?
        .execute(params![patient, name_key])?;
    Ok(())
}

fn upsert_study(
    c: &Connection,
    s: &StudyRecord,
    patient: i64,
    now: i64,
) -> Result<i64, IndexError> {
    type Stored = (i64, [Option<String>; 6]);
    let stored: Option<Stored> = c
        .prepare_cached(
            "SELECT id, study_date, study_time, accession_number, study_id, study_description,
                    referring_physician FROM studies WHERE study_uid = ?1",
        )?
        .query_row([&s.uid], |r| Ok((r.get(0)?, texts(r, 1)?)))
        .optional()?;
    if let Some((id, stored)) = stored {
        let given = [
            &s.date,
            &s.time,
            &s.accession_number,
            &s.study_id,
            &s.description,
            &s.referring_physician,
        ];
        if !fills_any(&given, &stored) {
            return Ok(id);
        }
    }
    // A study keeps the patient it was first stored under: a later instance claiming the same
    // Study Instance UID for another patient does not move the study.
    c.prepare_cached(
        "INSERT INTO studies (study_uid, patient_fk, study_date, study_time, accession_number,
                              study_id, study_description, referring_physician, updated_at,
                              patient_name_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 (SELECT p.patient_name_key FROM patients p WHERE p.id = ?2))
         ON CONFLICT (study_uid) DO UPDATE SET
            study_date = coalesce(excluded.study_date, studies.study_date),
            study_time = coalesce(excluded.study_time, studies.study_time),
            accession_number = coalesce(excluded.accession_number, studies.accession_number),
            study_id = coalesce(excluded.study_id, studies.study_id),
            study_description = coalesce(excluded.study_description, studies.study_description),
            referring_physician = coalesce(excluded.referring_physician, studies.referring_physician),
            updated_at = excluded.updated_at
         RETURNING id",
    )?
    .query_row(
        params![
            s.uid,
            patient,
            s.date,
            s.time,
            s.accession_number,
            s.study_id,
            s.description,
            s.referring_physician,
            now
        ],
        |r| r.get(0),
    )
}

/// Returns the series id and whether it was new.
fn upsert_series(
    c: &Connection,
    s: &SeriesRecord,
    study: i64,
    now: i64,
) -> Result<(i64, bool), IndexError> {
    type Stored = (i64, Option<i64>, [Option<String>; 5]);
    let existing: Option<Stored> = c
        .prepare_cached(
            "SELECT id, series_number, modality, series_description, body_part, series_date,
                    series_time FROM series WHERE series_uid = ?1",
        )?
        .query_row([&s.uid], |r| Ok((r.get(0)?, r.get(1)?, texts(r, 2)?)))
        .optional()?;
    if let Some((id, number, stored)) = existing {
        let given = [&s.modality, &s.description, &s.body_part, &s.date, &s.time];
        if !fills(&s.number, &number) && !fills_any(&given, &stored) {
            return Ok((id, false));
        }
        c.prepare_cached("UPDATE series SET modality = coalesce(?2, modality), series_number = coalesce(?3, series_number),
                series_description = coalesce(?4, series_description), body_part = coalesce(?5, body_part),
                series_date = coalesce(?6, series_date), series_time = coalesce(?7, series_time),
                updated_at = ?8 WHERE id = ?1")?.execute(
            params![id, s.modality, s.number, s.description, s.body_part, s.date, s.time, now],
        )?;
        return Ok((id, false));
    }
    // Another archive process writing the same PostgreSQL index may have inserted the series
    // since the read above: its row is then updated as any known series' is.
    let inserted: Option<i64> = c
        .prepare_cached(
            "INSERT INTO series (series_uid, study_fk, modality, series_number, series_description,
                                 body_part, series_date, series_time, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (series_uid) DO NOTHING RETURNING id",
        )?
        .query_row(
            params![
                s.uid,
                study,
                s.modality,
                s.number,
                s.description,
                s.body_part,
                s.date,
                s.time,
                now
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = inserted else {
        return upsert_series(c, s, study, now);
    };
    c.prepare_cached("UPDATE studies SET num_series = num_series + 1 WHERE id = ?1")?
        .execute([study])?;
    Ok((id, true))
}

pub(super) fn insert_instance(
    c: &Connection,
    rec: &InstanceRecord,
    on_conflict: OnConflict,
) -> Result<InsertOutcome, IndexError> {
    let now = now_ms();
    let i = &rec.instance;
    let existing: Option<(i64, String, i64, i64)> = c
        .prepare_cached("SELECT id, blob_id, size, received_at FROM instances WHERE sop_uid = ?1")?
        .query_row([&i.sop_uid], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let previous = match existing {
        Some((_, b, _, _)) if b == i.blob_id.to_hex() => return Ok(InsertOutcome::AlreadyPresent),
        Some((_, b, _, _)) if on_conflict == OnConflict::Reject => {
            return Ok(InsertOutcome::Conflict { stored: blob(b)? })
        }
        Some((id, b, size, received_at)) => {
            c.prepare_cached(
                "INSERT INTO instance_history (sop_uid, blob_id, size, received_at, replaced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![i.sop_uid, b, size, received_at, now])?;
            remove_instance_row(c, id)?;
            Some(blob(b)?)
        }
        None => None,
    };
    let patient = upsert_patient(c, &rec.patient, now)?;
    super::mpi::on_patient(c, patient, &rec.patient.identity(), &rec.patient.other_ids)?;
    let study = upsert_study(c, &rec.study, patient, now)?;
    let (series, _) = upsert_series(c, &rec.series, study, now)?;
    c.prepare_cached(
        "INSERT INTO instances (sop_uid, series_fk, sop_class_uid, instance_number, blob_id,
            transfer_syntax, size, frames, rows, columns, content_date, content_time, metadata,
            source, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        i.sop_uid,
        series,
        i.sop_class_uid,
        i.number,
        i.blob_id.to_hex(),
        i.transfer_syntax,
        i.size as i64,
        i.frames,
        i.rows,
        i.columns,
        i.content_date,
        i.content_time,
        i.metadata,
        i.source,
        i.received_at
    ])?;
    c.prepare_cached("UPDATE series SET num_instances = num_instances + 1 WHERE id = ?1")?
        .execute([series])?;
    c.prepare_cached("UPDATE studies SET num_instances = num_instances + 1 WHERE id = ?1")?
        .execute([study])?;
    Ok(match previous {
        Some(previous) => InsertOutcome::Replaced { previous },
        None => InsertOutcome::Inserted,
    })
}

/// Removes an instance row and keeps the counters true; empty series and studies go too.
pub(super) fn remove_instance_row(c: &Connection, id: i64) -> Result<(), IndexError> {
    let (series, study): (i64, i64) = c.query_row(
        "SELECT s.id, s.study_fk FROM instances i JOIN series s ON s.id = i.series_fk WHERE i.id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    c.execute("DELETE FROM instances WHERE id = ?1", [id])?;
    c.execute(
        "UPDATE series SET num_instances = num_instances - 1 WHERE id = ?1",
        [series],
    )?;
    c.execute(
        "UPDATE studies SET num_instances = num_instances - 1 WHERE id = ?1",
        [study],
    )?;
    if c.execute(
        "DELETE FROM series WHERE id = ?1 AND num_instances = 0",
        [series],
    )? > 0
    {
        c.execute(
            "UPDATE studies SET num_series = num_series - 1 WHERE id = ?1",
            [study],
        )?;
        c.execute(
            "DELETE FROM studies WHERE id = ?1 AND num_series = 0",
            [study],
        )?;
    }
    Ok(())
}

pub(super) fn stored_instance(
    c: &Connection,
    sop_uid: &str,
) -> Result<Option<StoredInstance>, IndexError> {
    c.prepare_cached(
        "SELECT i.sop_uid, i.blob_id, i.size, i.transfer_syntax, p.patient_id, st.study_uid
         FROM instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk
              JOIN patients p ON p.id = st.patient_fk
         WHERE i.sop_uid = ?1",
    )?
    .query_row([sop_uid], |r| {
        Ok(StoredInstance {
            sop_uid: r.get(0)?,
            blob_id: blob(r.get(1)?)?,
            size: r.get::<i64>(2)? as u64,
            transfer_syntax: r.get(3)?,
            patient_id: r.get(4)?,
            study_uid: r.get(5)?,
        })
    })
    .optional()
}

pub(super) fn study_summaries(c: &Connection) -> Result<Vec<StudySummary>, IndexError> {
    let mut stmt = c.prepare(
        "SELECT st.study_uid, p.patient_name, p.patient_id, p.issuer, st.study_date,
                (SELECT string_agg(m, '\\' ORDER BY m) FROM
                    (SELECT DISTINCT modality AS m FROM series WHERE study_fk = st.id AND modality IS NOT NULL) AS ms),
                st.study_description, st.num_series, st.num_instances
         FROM studies st JOIN patients p ON p.id = st.patient_fk
         ORDER BY p.patient_name NULLS FIRST, st.study_date NULLS FIRST, st.study_uid",
    )?;
    let rows = stmt.query_map(params![], |r| {
        Ok(StudySummary {
            study_uid: r.get(0)?,
            patient_name: r.get(1)?,
            patient_id: r.get(2)?,
            issuer: r.get(3)?,
            study_date: r.get(4)?,
            modalities: r.get::<Option<String>>(5)?.unwrap_or_default(),
            description: r.get(6)?,
            num_series: r.get(7)?,
            num_instances: r.get(8)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

pub(super) fn counts(c: &Connection) -> Result<Counts, IndexError> {
    c.query_row(
        "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),
                (SELECT count(*) FROM series), (SELECT count(*) FROM instances)",
        params![],
        |r| {
            Ok(Counts {
                patients: r.get(0)?,
                studies: r.get(1)?,
                series: r.get(2)?,
                instances: r.get(3)?,
            })
        },
    )
}

pub(super) fn blob_ids(c: &Connection) -> Result<Vec<BlobId>, IndexError> {
    let mut stmt = c.prepare(
        "SELECT blob_id FROM instances WHERE blob_id NOT IN (SELECT blob_id FROM cold_blobs WHERE hot = 0)
         UNION SELECT blob_id FROM instance_history
            WHERE blob_id NOT IN (SELECT blob_id FROM cold_blobs WHERE hot = 0)
         ORDER BY 1",
    )?;
    let rows = stmt.query_map(params![], |r| blob(r.get(0)?))?;
    rows.collect::<Result<_, _>>()
}

pub(super) fn blob_ids_after(
    c: &Connection,
    after: Option<&BlobId>,
    limit: usize,
) -> Result<Vec<BlobId>, IndexError> {
    let mut stmt = c.prepare_cached(
        // `> ''` from the start: a bound the index can seek to, which `?1 IS NULL OR` is not
        "SELECT blob_id FROM instances WHERE blob_id > ?1
            AND blob_id NOT IN (SELECT blob_id FROM cold_blobs WHERE hot = 0)
         UNION SELECT blob_id FROM instance_history WHERE blob_id > ?1
            AND blob_id NOT IN (SELECT blob_id FROM cold_blobs WHERE hot = 0)
         ORDER BY 1 LIMIT ?2",
    )?;
    let after = after.map(BlobId::to_hex).unwrap_or_default();
    let rows = stmt.query_map(params![after, limit as i64], |r| blob(r.get(0)?))?;
    rows.collect::<Result<_, _>>()
}

pub(super) fn instance_blobs(c: &Connection) -> Result<Vec<(String, BlobId)>, IndexError> {
    let mut stmt = c.prepare("SELECT sop_uid, blob_id FROM instances ORDER BY sop_uid")?;
    let rows = stmt.query_map(params![], |r| Ok((r.get(0)?, blob(r.get(1)?)?)))?;
    rows.collect::<Result<_, _>>()
}

pub(super) fn instances_under(
    c: &Connection,
    study: &str,
    series: Option<&str>,
    sop: Option<&str>,
    person: Option<i64>,
    share: Option<i64>,
) -> Result<Vec<InstanceRef>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT p.patient_id, st.study_uid, se.series_uid, i.sop_uid, i.sop_class_uid, i.blob_id,
                i.transfer_syntax, i.size, i.metadata
         FROM instances i JOIN series se ON se.id = i.series_fk JOIN studies st ON st.id = se.study_fk
              JOIN patients p ON p.id = st.patient_fk
         WHERE st.study_uid = ?1 AND (CAST(?2 AS TEXT) IS NULL OR se.series_uid = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR i.sop_uid = ?3)
           AND (CAST(?4 AS BIGINT) IS NULL OR (p.person_fk = ?4 AND p.mpi_manual = 1))
           AND (CAST(?5 AS BIGINT) IS NULL OR EXISTS (SELECT 1 FROM share_studies sh
                WHERE sh.share_fk = ?5 AND sh.study_uid = st.study_uid))
         ORDER BY se.series_number NULLS FIRST, se.id, i.instance_number NULLS FIRST, i.id",
    )?;
    let rows = stmt.query_map(params![study, series, sop, person, share], |r| {
        Ok(InstanceRef {
            patient_id: r.get(0)?,
            study_uid: r.get(1)?,
            series_uid: r.get(2)?,
            sop_uid: r.get(3)?,
            sop_class_uid: r.get(4)?,
            blob_id: blob(r.get(5)?)?,
            transfer_syntax: r.get(6)?,
            size: r.get::<i64>(7)? as u64,
            metadata: r.get(8)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

/// The studies of instances `sops` (of those the index holds), each once.
pub(super) fn studies_of_instances(
    c: &Connection,
    sops: &[String],
) -> Result<Vec<String>, IndexError> {
    let mut stmt = c.prepare_cached(
        "SELECT st.study_uid FROM instances i JOIN series se ON se.id = i.series_fk
              JOIN studies st ON st.id = se.study_fk WHERE i.sop_uid = ?1",
    )?;
    let mut out: Vec<String> = Vec::new();
    for sop in sops {
        if let Some(study) = stmt.query_row([sop], |r| r.get(0)).optional()? {
            if !out.contains(&study) {
                out.push(study);
            }
        }
    }
    Ok(out)
}

/// Removes instances (and their history) from the index; returns the blobs they used. With
/// `unless_held`, refuses ([`IndexError::Held`]) and removes nothing when a hold in force covers
/// a study of theirs, checked in the deletion's own transaction, so a hold placed after the
/// caller's own check still counts.
pub(super) fn delete_instances(
    c: &Connection,
    sops: &[String],
    unless_held: bool,
) -> Result<Vec<BlobId>, IndexError> {
    let studies = studies_of_instances(c, sops)?;
    if unless_held {
        let mut patient =
            c.prepare_cached("SELECT patient_fk FROM studies WHERE study_uid = ?1")?;
        for study in &studies {
            let fk: i64 = patient.query_row([study], |r| r.get(0))?;
            if crate::lifecycle::is_held(c, study, fk)? {
                return Err(IndexError::Held(study.clone()));
            }
        }
    }
    let mut blobs = Vec::new();
    for sop in sops {
        let row: Option<(i64, String)> = c
            .query_row(
                "SELECT id, blob_id FROM instances WHERE sop_uid = ?1",
                [sop],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, b)) = row {
            blobs.push(blob(b)?);
            remove_instance_row(c, id)?;
        }
        let mut stmt =
            c.prepare_cached("SELECT blob_id FROM instance_history WHERE sop_uid = ?1")?;
        for b in stmt.query_map([sop], |r| r.get::<String>(0))? {
            blobs.push(blob(b?)?);
        }
        c.execute("DELETE FROM instance_history WHERE sop_uid = ?1", [sop])?;
    }
    crate::lifecycle::forget_cold(c, &blobs)?;
    let mut gone = c.prepare_cached(
        "DELETE FROM study_tiers WHERE study_uid = ?1
            AND NOT EXISTS (SELECT 1 FROM studies st WHERE st.study_uid = ?1)",
    )?;
    for study in studies {
        gone.execute([study])?;
    }
    Ok(blobs)
}
