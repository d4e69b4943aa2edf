//! Access letters: credentials a provider hands a patient (or a guardian) for a copy of their
//! own studies without an account. A letter names a person; what it shows is what a patient
//! account bound to that person sees (its scope is [`crate::Scope::Person`]). Only hashes of
//! the letter's secrets are kept (schemas/index/0026_access_letters.sql says which and why).

use crate::db::{Connection, OptionalExtension};
use crate::params;
use crate::IndexError;

/// A letter as listed: its row id names it, never its code or a hash of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LetterRow {
    pub id: i64,
    /// The person's uid.
    pub person: String,
    pub issued_by: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// When the code was last presented and accepted.
    pub last_used_at: Option<i64>,
    pub downloads: i64,
}

/// A letter to issue: the hashes of its secrets, whose it is, for how long.
#[derive(Debug, Clone)]
pub struct NewLetter {
    pub code_hash: String,
    pub passcode_hash: String,
    /// The person's uid.
    pub person: String,
    pub issued_by: String,
    /// When it is issued; it expires `expires_at`, counted from the same clock reading.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Why a letter cannot be issued for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetterRefusal {
    NoPerson,
    /// The person was merged into this one: issue the letter for it.
    Merged(String),
    /// None of the person's local keys was confirmed as theirs by a person's decision, so a
    /// letter would show nothing (a patient account's scope, and a letter's, is confirmed keys).
    NothingConfirmed,
}

/// The letter a code opens, as the letter door needs it.
#[derive(Debug, Clone)]
pub struct LetterHolder {
    pub letter: LetterRow,
    /// The person's row (the letter's scope).
    pub person_row: i64,
    /// The person it was merged into, if it was: the letter is refused until issued again.
    pub merged_into: Option<String>,
    pub passcode_hash: String,
}

const COLUMNS: &str = "l.id, p.uid, l.issued_by, l.issued_at, l.expires_at, l.revoked_at,
    l.revoked_by, l.last_used_at, l.downloads";

fn row(r: &crate::db::Row) -> Result<LetterRow, IndexError> {
    Ok(LetterRow {
        id: r.get(0)?,
        person: r.get(1)?,
        issued_by: r.get(2)?,
        issued_at: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
        revoked_by: r.get(6)?,
        last_used_at: r.get(7)?,
        downloads: r.get(8)?,
    })
}

/// Issues letter `l` at `now`, or says why not.
pub(crate) fn create(
    c: &Connection,
    l: &NewLetter,
    now: i64,
) -> Result<Result<LetterRow, LetterRefusal>, IndexError> {
    let person: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT id, merged_into FROM persons WHERE uid = ?1",
            [&l.person],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let id = match person {
        None => return Ok(Err(LetterRefusal::NoPerson)),
        Some((_, Some(into))) => {
            let into: String =
                c.query_row("SELECT uid FROM persons WHERE id = ?1", [into], |r| {
                    r.get(0)
                })?;
            return Ok(Err(LetterRefusal::Merged(into)));
        }
        Some((id, None)) => id,
    };
    let confirmed: i64 = c.query_row(
        "SELECT count(*) FROM patients WHERE person_fk = ?1 AND mpi_manual = 1",
        [id],
        |r| r.get(0),
    )?;
    if confirmed == 0 {
        return Ok(Err(LetterRefusal::NothingConfirmed));
    }
    let letter: i64 = c.query_row(
        "INSERT INTO access_letters (code_hash, passcode_hash, person_fk, issued_by, issued_at,
                                     expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            l.code_hash,
            l.passcode_hash,
            id,
            l.issued_by,
            now,
            l.expires_at
        ],
        |r| r.get(0),
    )?;
    let written = by_id(c, letter)?;
    Ok(Ok(written.ok_or_else(|| {
        IndexError::NoRow(format!("access letter {letter}"))
    })?))
}

/// Letter `id`, if there is one.
pub(crate) fn by_id(c: &Connection, id: i64) -> Result<Option<LetterRow>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM access_letters l JOIN persons p ON p.id = l.person_fk
         WHERE l.id = ?1"
    ))?
    .query_row([id], row)
    .optional()
}

/// Every letter (or one person's), newest first.
pub(crate) fn all(c: &Connection, person: Option<String>) -> Result<Vec<LetterRow>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM access_letters l JOIN persons p ON p.id = l.person_fk
         WHERE CAST(?1 AS TEXT) IS NULL OR p.uid = ?1 ORDER BY l.id DESC"
    ))?
    .query_map([person], row)?
    .collect()
}

/// Revokes letter `id` at `now` (a letter already revoked keeps its first revocation); the
/// letter as it is then, None when there is no such letter.
pub(crate) fn revoke(
    c: &Connection,
    id: i64,
    by: &str,
    now: i64,
) -> Result<Option<LetterRow>, IndexError> {
    c.execute(
        "UPDATE access_letters SET revoked_at = ?2, revoked_by = ?3
         WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now, by],
    )?;
    by_id(c, id)
}

/// The letter whose code hashes to `code_hash`, revoked and expired ones included (the door
/// says which it is).
pub(crate) fn by_code(c: &Connection, code_hash: &str) -> Result<Option<LetterHolder>, IndexError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS}, p.id, (SELECT m.uid FROM persons m WHERE m.id = p.merged_into),
                l.passcode_hash
         FROM access_letters l JOIN persons p ON p.id = l.person_fk WHERE l.code_hash = ?1"
    ))?
    .query_row([code_hash], |r| {
        Ok(LetterHolder {
            letter: row(r)?,
            person_row: r.get(9)?,
            merged_into: r.get(10)?,
            passcode_hash: r.get(11)?,
        })
    })
    .optional()
}

/// Records that letter `id` was used at `now`, and counts a download when it was one.
pub(crate) fn used(c: &Connection, id: i64, download: bool, now: i64) -> Result<(), IndexError> {
    c.execute(
        "UPDATE access_letters SET last_used_at = ?2, downloads = downloads + ?3 WHERE id = ?1",
        params![id, now, i64::from(download)],
    )?;
    Ok(())
}
