//! The tiers' rows: each study's reads and tier (`study_tiers`), and the blobs whose shards are
//! durable on the cold stores (`cold_blobs`). The policy's scan is one grouped query over the
//! instances; the rest are point lookups and small writes.

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use crate::records::blob;
use crate::IndexError;
use strata_core::BlobId;

/// A study the tier policy may move: it is hot, old enough and unread long enough.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierCandidate {
    pub study_uid: String,
    pub instances: u64,
    /// The stored bytes of its instances.
    pub bytes: u64,
    /// When its last instance arrived (ms).
    pub last_received_at: i64,
    /// When it was last read (ms), if ever.
    pub last_read_at: Option<i64>,
}

/// What the tier policy asks of the index: among the `limit` studies after `after` (in study
/// order), those whose last instance arrived before `received_before`, unread since
/// `unread_since`, not restored until after `now`.
#[derive(Debug, Clone)]
pub struct TierQuery {
    pub received_before: i64,
    pub unread_since: i64,
    pub now: i64,
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of the tier policy's scan: the candidates among the studies it looked at, and the
/// last of those (where the next page starts; None: the scan is over).
#[derive(Debug, Clone, Default)]
pub struct TierPage {
    pub candidates: Vec<TierCandidate>,
    pub scanned_to: Option<String>,
}

/// A study's tier as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StudyTier {
    pub study_uid: String,
    /// `hot` or `cold`.
    pub tier: String,
    pub last_read_at: Option<i64>,
    pub reads: i64,
    pub cold_since: Option<i64>,
    pub restored_until: Option<i64>,
}

/// A blob whose every shard is durable on the cold stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdBlob {
    pub blob_id: BlobId,
    pub size: u64,
    pub k: u8,
    pub m: u8,
    pub stored_at: i64,
    /// Whether the replicas hold it too (a study not yet moved, or restored).
    pub hot: bool,
}

/// What the tiers hold, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierTotals {
    pub cold_studies: u64,
    pub restored_studies: u64,
    pub cold_blobs: u64,
    /// Bytes of blobs held by the cold stores only.
    pub cold_bytes: u64,
    /// Bytes of every stored instance (rejected ones not yet purged included), whichever tier.
    pub all_bytes: u64,
}

/// How many studies of one date were read on one day, as the audit trail tells (a study counts
/// once a day however often it was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadDays {
    pub study_date: Option<String>,
    /// Days since the Unix epoch.
    pub day: i64,
    pub studies: u64,
}

pub(super) fn note_reads(c: &Connection, studies: &[String], at: i64) -> Result<(), IndexError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO study_tiers (study_uid, last_read_at, reads) VALUES (?1, ?2, 1)
         ON CONFLICT (study_uid) DO UPDATE SET reads = study_tiers.reads + 1,
            last_read_at = CASE WHEN study_tiers.last_read_at IS NULL
                OR study_tiers.last_read_at < excluded.last_read_at
                THEN excluded.last_read_at ELSE study_tiers.last_read_at END",
    )?;
    for s in studies {
        stmt.execute(params![s, at])?;
    }
    Ok(())
}

/// A page of the scan: the page's studies first, by the unique index on their UIDs; then the
/// candidates among them, each study's instances reached through its series. (Grouping the
/// whole index and paging the groups read every instance for each page: 110 s for a scan of
/// 1,000,000 instances, against about 1 s so.)
pub(super) fn candidates(c: &Connection, q: &TierQuery) -> Result<TierPage, IndexError> {
    let after = q.after.as_deref().unwrap_or("");
    let last: Option<String> = c
        .prepare_cached(
            "SELECT MAX(study_uid) FROM (SELECT study_uid FROM studies WHERE study_uid > ?1
                ORDER BY study_uid LIMIT ?2) page",
        )?
        .query_row(params![after, q.limit as i64], |r| r.get(0))?;
    let Some(last) = last else {
        return Ok(TierPage::default());
    };
    let candidates = c
        .prepare_cached(
            "SELECT st.study_uid, COUNT(i.id), CAST(SUM(i.size) AS BIGINT), MAX(i.received_at),
                MAX(t.last_read_at)
         FROM studies st
         JOIN series se ON se.study_fk = st.id
         JOIN instances i ON i.series_fk = se.id
         LEFT JOIN study_tiers t ON t.study_uid = st.study_uid
         WHERE (t.tier IS NULL OR t.tier = 'hot')
           AND (t.last_read_at IS NULL OR t.last_read_at < ?2)
           AND (t.restored_until IS NULL OR t.restored_until < ?3)
           AND st.study_uid > ?4 AND st.study_uid <= ?5
         GROUP BY st.study_uid
         HAVING MAX(i.received_at) < ?1
         ORDER BY st.study_uid",
        )?
        .query_map(
            params![q.received_before, q.unread_since, q.now, after, last],
            |r| {
                Ok(TierCandidate {
                    study_uid: r.get(0)?,
                    instances: r.get::<i64>(1)? as u64,
                    bytes: r.get::<i64>(2)? as u64,
                    last_received_at: r.get(3)?,
                    last_read_at: r.get(4)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TierPage {
        candidates,
        scanned_to: Some(last),
    })
}

pub(super) fn study_modalities(c: &Connection, study: &str) -> Result<Vec<String>, IndexError> {
    c.prepare_cached(
        "SELECT DISTINCT se.modality FROM series se JOIN studies st ON se.study_fk = st.id
         WHERE st.study_uid = ?1 AND se.modality IS NOT NULL ORDER BY 1",
    )?
    .query_map([study], |r| r.get(0))?
    .collect()
}

pub(super) fn study_blobs(c: &Connection, study: &str) -> Result<Vec<(BlobId, u64)>, IndexError> {
    c.prepare_cached(
        "SELECT i.blob_id, MAX(i.size) FROM instances i
         JOIN series se ON i.series_fk = se.id JOIN studies st ON se.study_fk = st.id
         WHERE st.study_uid = ?1 GROUP BY i.blob_id ORDER BY 1",
    )?
    .query_map([study], |r| Ok((blob(r.get(0)?)?, r.get::<i64>(1)? as u64)))?
    .collect()
}

pub(super) fn studies_of_blob(c: &Connection, b: &BlobId) -> Result<Vec<String>, IndexError> {
    c.prepare_cached(
        "SELECT DISTINCT st.study_uid FROM instances i
         JOIN series se ON i.series_fk = se.id JOIN studies st ON se.study_fk = st.id
         WHERE i.blob_id = ?1 ORDER BY 1",
    )?
    .query_map([b.to_hex()], |r| r.get(0))?
    .collect()
}

pub(super) fn record_cold_blobs(c: &Connection, items: &[ColdBlob]) -> Result<(), IndexError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO cold_blobs (blob_id, size, k, m, stored_at, hot) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (blob_id) DO UPDATE SET size = excluded.size, k = excluded.k, m = excluded.m,
            stored_at = excluded.stored_at, hot = excluded.hot",
    )?;
    for b in items {
        stmt.execute(params![
            b.blob_id.to_hex(),
            b.size as i64,
            i64::from(b.k),
            i64::from(b.m),
            b.stored_at,
            i64::from(b.hot)
        ])?;
    }
    Ok(())
}

pub(super) fn set_blobs_hot(c: &Connection, blobs: &[BlobId], hot: bool) -> Result<(), IndexError> {
    let mut stmt = c.prepare_cached("UPDATE cold_blobs SET hot = ?2 WHERE blob_id = ?1")?;
    for b in blobs {
        stmt.execute(params![b.to_hex(), i64::from(hot)])?;
    }
    Ok(())
}

pub(super) fn set_study_tier(c: &Connection, t: &StudyTier) -> Result<(), IndexError> {
    c.prepare_cached(
        "INSERT INTO study_tiers (study_uid, tier, cold_since, restored_until, reads)
         VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (study_uid) DO UPDATE SET tier = excluded.tier,
            cold_since = excluded.cold_since, restored_until = excluded.restored_until",
    )?
    .execute(params![t.study_uid, t.tier, t.cold_since, t.restored_until])?;
    Ok(())
}

fn study_tier_row(r: &Row) -> Result<StudyTier, IndexError> {
    Ok(StudyTier {
        study_uid: r.get(0)?,
        tier: r.get(1)?,
        last_read_at: r.get(2)?,
        reads: r.get(3)?,
        cold_since: r.get(4)?,
        restored_until: r.get(5)?,
    })
}

const STUDY_TIER_COLUMNS: &str = "study_uid, tier, last_read_at, reads, cold_since, restored_until";

pub(super) fn study_tier(c: &Connection, study: &str) -> Result<Option<StudyTier>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {STUDY_TIER_COLUMNS} FROM study_tiers WHERE study_uid = ?1"
    ))?
    .query_row([study], study_tier_row)
    .optional()
}

/// Restored studies whose time in the hot tier is over at `now`.
pub(super) fn restored_expired(
    c: &Connection,
    now: i64,
    limit: usize,
) -> Result<Vec<StudyTier>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {STUDY_TIER_COLUMNS} FROM study_tiers
         WHERE tier = 'hot' AND restored_until IS NOT NULL AND restored_until < ?1
         ORDER BY study_uid LIMIT ?2"
    ))?
    .query_map(params![now, limit as i64], study_tier_row)?
    .collect()
}

fn cold_blob_row(r: &Row) -> Result<ColdBlob, IndexError> {
    Ok(ColdBlob {
        blob_id: blob(r.get(0)?)?,
        size: r.get::<i64>(1)? as u64,
        k: r.get::<i64>(2)? as u8,
        m: r.get::<i64>(3)? as u8,
        stored_at: r.get(4)?,
        hot: r.get::<i64>(5)? != 0,
    })
}

const COLD_BLOB_COLUMNS: &str = "blob_id, size, k, m, stored_at, hot";

pub(super) fn cold_blob(c: &Connection, b: &BlobId) -> Result<Option<ColdBlob>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {COLD_BLOB_COLUMNS} FROM cold_blobs WHERE blob_id = ?1"
    ))?
    .query_row([b.to_hex()], cold_blob_row)
    .optional()
}

pub(super) fn cold_blobs_after(
    c: &Connection,
    after: Option<&BlobId>,
    limit: usize,
) -> Result<Vec<ColdBlob>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {COLD_BLOB_COLUMNS} FROM cold_blobs
         WHERE blob_id > ?1 ORDER BY blob_id LIMIT ?2"
    ))?
    .query_map(
        params![after.map(BlobId::to_hex).unwrap_or_default(), limit as i64],
        cold_blob_row,
    )?
    .collect()
}

pub(super) fn totals(c: &Connection) -> Result<TierTotals, IndexError> {
    let (cold_studies, restored_studies) = c
        .prepare_cached(
            "SELECT COUNT(CASE WHEN tier = 'cold' THEN 1 END),
                    COUNT(CASE WHEN tier = 'hot' AND restored_until IS NOT NULL THEN 1 END)
             FROM study_tiers",
        )?
        .query_row(params![], |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)))?;
    let (cold_blobs, cold_bytes) = c
        .prepare_cached(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN hot = 0 THEN size ELSE 0 END), 0) AS BIGINT)
             FROM cold_blobs",
        )?
        .query_row(params![], |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)))?;
    let all_bytes: i64 = c
        .prepare_cached(
            "SELECT CAST(COALESCE((SELECT SUM(size) FROM instances), 0)
                      + COALESCE((SELECT SUM(size) FROM rejected_instances), 0) AS BIGINT)",
        )?
        .query_row(params![], |r| r.get(0))?;
    Ok(TierTotals {
        cold_studies: cold_studies as u64,
        restored_studies: restored_studies as u64,
        cold_blobs: cold_blobs as u64,
        cold_bytes: cold_bytes as u64,
        all_bytes: all_bytes as u64,
    })
}

/// Reads by one of `actions` (successful audit events), counted in SQL: per study date and
/// day, the studies read; and the studies read in all. What comes back is bounded by dates and
/// days, not by the trail's length.
pub(super) fn read_days(
    c: &Connection,
    actions: &[String],
) -> Result<(Vec<ReadDays>, u64), IndexError> {
    let marks: Vec<String> = (1..=actions.len()).map(|i| format!("?{i}")).collect();
    let reads = format!(
        "FROM audit a JOIN studies st ON st.study_uid = a.study_uid
         WHERE a.outcome = 'success' AND a.action IN ({})",
        marks.join(", ")
    );
    let params: Vec<&dyn crate::db::Param> =
        actions.iter().map(|a| a as &dyn crate::db::Param).collect();
    let counts = c
        .prepare(&format!(
            "SELECT st.study_date, a.at / 86400000, COUNT(DISTINCT a.study_uid) {reads}
             GROUP BY st.study_date, a.at / 86400000"
        ))?
        .query_map(&params[..], |r| {
            Ok(ReadDays {
                study_date: r.get(0)?,
                day: r.get(1)?,
                studies: r.get::<i64>(2)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let studies: i64 = c
        .prepare(&format!("SELECT COUNT(DISTINCT a.study_uid) {reads}"))?
        .query_row(&params[..], |r| r.get(0))?;
    Ok((counts, studies as u64))
}

/// The date of every study that has one.
pub(super) fn study_dates(c: &Connection) -> Result<Vec<String>, IndexError> {
    c.prepare_cached("SELECT study_date FROM studies WHERE study_date IS NOT NULL")?
        .query_map(params![], |r| r.get(0))?
        .collect()
}
