//! Users, API tokens, sessions and failed logins: the rows the auth module keeps.

/// A user as listed (never with the password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// The person a patient user is bound to.
    pub person: Option<String>,
    /// Every credential of a disabled user is refused; nothing of it is deleted.
    pub disabled: bool,
    /// The user must choose a new password before doing anything else (the first
    /// administrator, whose password was printed).
    pub must_change_password: bool,
    /// The issuer of the local patient keys of what the user stores (STOW-RS), whatever the
    /// files say; None: the user's name (an administrator: the data set's issuer).
    pub issuer: Option<String>,
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    /// The person a patient user is bound to (a person uid).
    pub person: Option<String>,
    pub must_change_password: bool,
    /// The issuer of the keys of what the user stores (see [`UserRow::issuer`]).
    pub issuer: Option<String>,
    /// The keys of `person` the binding confirms; None: every key the person holds.
    pub confirmed: Option<Vec<strata_mpi::LocalKey>>,
}

/// What signing in needs to know of a user.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub role: String,
    pub password_hash: String,
    pub disabled: bool,
    pub must_change_password: bool,
    /// See [`UserRow::issuer`].
    pub issuer: Option<String>,
}

/// An API token as listed: its row id names it, never the token or its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub user: String,
    pub label: Option<String>,
    pub created_at: i64,
    /// None: the token never expires (tokens made before expiry existed).
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A live browser session as listed: `id` is the first 16 hex digits of the SHA-256 of the
/// session id, enough to name it and useless to present as a credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub id: String,
    pub user: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Length of the public name of a session: a prefix of the hash of its secret id.
pub const SESSION_NAME_LEN: usize = 16;

/// Failed sign-ins within a window: of one user name, from one address, and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    pub name: i64,
    pub remote: i64,
    pub all: i64,
}

/// The holder of a live token or session, as authentication needs it.
#[derive(Debug, Clone)]
pub struct PrincipalRow {
    pub name: String,
    pub role: String,
    /// The person bound to the user (patients): row id, uid, and the person it was merged
    /// into, if it was.
    pub person: Option<(i64, String, Option<String>)>,
    pub must_change_password: bool,
}

/// The columns of a [`PrincipalRow`], from `users u` with its person `ps` left-joined.
pub(crate) const PRINCIPAL_COLUMNS: &str = "u.name, u.role, ps.id, ps.uid,
    (SELECT m.uid FROM persons m WHERE m.id = ps.merged_into), u.must_change_password";

pub(crate) fn principal_row(r: &crate::db::Row) -> Result<PrincipalRow, crate::IndexError> {
    let person = match (r.get::<Option<i64>>(2)?, r.get::<Option<String>>(3)?) {
        (Some(id), Some(uid)) => Some((id, uid, r.get(4)?)),
        _ => None,
    };
    Ok(PrincipalRow {
        name: r.get(0)?,
        role: r.get(1)?,
        person,
        must_change_password: r.get(5)?,
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
