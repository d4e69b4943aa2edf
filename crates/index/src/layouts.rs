//! Readers' own viewer layouts, per kind of study: the hanging protocol the viewer applies
//! before the archive's rules (schemas/index/0032_viewer_layouts.sql). The layout is kept as
//! the JSON the door checked; the index does not read it.

use crate::db::Connection;
use crate::params;
use crate::IndexError;

/// `user`'s layouts, as (kind, layout JSON), by kind.
pub(crate) fn of_user(c: &Connection, user: &str) -> Result<Vec<(String, String)>, IndexError> {
    c.prepare_cached("SELECT kind, layout FROM viewer_layouts WHERE username = ?1 ORDER BY kind")?
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Remembers `layout` as `user`'s for `kind` (None forgets it).
pub(crate) fn put(
    c: &Connection,
    user: &str,
    kind: &str,
    layout: Option<&str>,
    now: i64,
) -> Result<(), IndexError> {
    match layout {
        Some(l) => c.execute(
            "INSERT INTO viewer_layouts (username, kind, layout, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username, kind)
             DO UPDATE SET layout = excluded.layout, updated_at = excluded.updated_at",
            params![user, kind, l, now],
        )?,
        None => c.execute(
            "DELETE FROM viewer_layouts WHERE username = ?1 AND kind = ?2",
            params![user, kind],
        )?,
    };
    Ok(())
}
