//! Users, API tokens, sessions and failed logins: the rows the auth module keeps.

/// A user as listed (never with the password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// The person a patient user is bound to.
    pub person: Option<String>,
}

/// The holder of a live token or session, as authentication needs it.
#[derive(Debug, Clone)]
pub struct PrincipalRow {
    pub name: String,
    pub role: String,
    /// The person bound to the user (patients): row id, uid, and the person it was merged
    /// into, if it was.
    pub person: Option<(i64, String, Option<String>)>,
}

/// The columns of a [`PrincipalRow`], from `users u` with its person `ps` left-joined.
pub(crate) const PRINCIPAL_COLUMNS: &str = "u.name, u.role, ps.id, ps.uid,
    (SELECT m.uid FROM persons m WHERE m.id = ps.merged_into)";

pub(crate) fn principal_row(r: &rusqlite::Row) -> rusqlite::Result<PrincipalRow> {
    let person = match (r.get::<_, Option<i64>>(2)?, r.get::<_, Option<String>>(3)?) {
        (Some(id), Some(uid)) => Some((id, uid, r.get(4)?)),
        _ => None,
    };
    Ok(PrincipalRow {
        name: r.get(0)?,
        role: r.get(1)?,
        person,
    })
}

/// Why a user cannot be bound to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindRefusal {
    NoPerson,
    /// The person was merged into this one.
    Merged(String),
    NoUser,
}
