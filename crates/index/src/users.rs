//! Users, API tokens, sessions and failed logins: the rows the auth module keeps.

use super::{now_ms, Index, IndexError};
use rusqlite::{params, OptionalExtension};

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
const PRINCIPAL_COLUMNS: &str = "u.name, u.role, ps.id, ps.uid,
    (SELECT m.uid FROM persons m WHERE m.id = ps.merged_into)";

fn principal_row(r: &rusqlite::Row) -> rusqlite::Result<PrincipalRow> {
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

impl Index {
    pub async fn count_users(&self) -> Result<i64, IndexError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    /// Creates a user; false if the name is taken. `person` (a person uid) binds a patient
    /// user; a person that does not exist (any more) leaves the user unbound, so it sees
    /// nothing until bound again (callers check the person first with [`Index::bindable`]).
    pub async fn create_user(
        &self,
        name: String,
        role: String,
        password_hash: String,
        person: Option<String>,
    ) -> Result<bool, IndexError> {
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO users (name, role, password_hash, created_at, person_fk)
                 VALUES (?1, ?2, ?3, ?4,
                         (SELECT id FROM persons WHERE uid = ?5 AND merged_into IS NULL))
                 ON CONFLICT (name) DO NOTHING",
                params![name, role, password_hash, now_ms(), person],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Whether a user may be bound to the person `uid`: it exists and was not merged away.
    pub async fn bindable(&self, uid: String) -> Result<Result<(), BindRefusal>, IndexError> {
        self.read(move |c| {
            let row: Option<Option<String>> = c
                .query_row(
                    "SELECT (SELECT m.uid FROM persons m WHERE m.id = ps.merged_into)
                     FROM persons ps WHERE ps.uid = ?1",
                    [uid],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match row {
                None => Err(BindRefusal::NoPerson),
                Some(Some(into)) => Err(BindRefusal::Merged(into)),
                Some(None) => Ok(()),
            })
        })
        .await
    }

    /// Binds a user to the person `uid` (a live one), replacing any earlier binding.
    pub async fn bind_user(
        &self,
        name: String,
        uid: String,
    ) -> Result<Result<(), BindRefusal>, IndexError> {
        self.write(move |c| {
            let person: Option<(i64, Option<i64>)> = c
                .query_row(
                    "SELECT id, merged_into FROM persons WHERE uid = ?1",
                    [&uid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let id = match person {
                None => return Ok(Err(BindRefusal::NoPerson)),
                Some((_, Some(into))) => {
                    let into: String =
                        c.query_row("SELECT uid FROM persons WHERE id = ?1", [into], |r| {
                            r.get(0)
                        })?;
                    return Ok(Err(BindRefusal::Merged(into)));
                }
                Some((id, None)) => id,
            };
            let n = c.execute(
                "UPDATE users SET person_fk = ?2 WHERE name = ?1",
                params![name, id],
            )?;
            Ok(if n == 1 {
                Ok(())
            } else {
                Err(BindRefusal::NoUser)
            })
        })
        .await
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, IndexError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT u.name, u.role, u.created_at, ps.uid
                 FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk ORDER BY u.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(UserRow {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    person: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// (role, password hash) of a user.
    pub async fn user_credentials(
        &self,
        name: String,
    ) -> Result<Option<(String, String)>, IndexError> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    /// Records a token for a user; false if there is no such user.
    pub async fn add_token(
        &self,
        user: String,
        token_hash: String,
        label: Option<String>,
    ) -> Result<bool, IndexError> {
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO api_tokens (user_fk, token_hash, label, created_at)
                 SELECT id, ?2, ?3, ?4 FROM users WHERE name = ?1",
                params![user, token_hash, label, now_ms()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Revokes a token; false if no live token has that hash.
    pub async fn revoke_token(&self, token_hash: String) -> Result<bool, IndexError> {
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![token_hash, now_ms()],
            )? == 1)
        })
        .await
    }

    /// The user holding a live token.
    pub async fn token_principal(
        &self,
        token_hash: String,
    ) -> Result<Option<PrincipalRow>, IndexError> {
        self.read_point(|c| {
            // The token as a subquery, not a join: SQLite marks the join's statement to be
            // re-planned whenever its parameter is bound, which would undo the statement cache.
            Ok(c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk
                 WHERE u.id = (SELECT t.user_fk FROM api_tokens t
                               WHERE t.token_hash = ?1 AND t.revoked_at IS NULL)"
            ))?
            .query_row([token_hash], principal_row)
            .optional()?)
        })
    }

    pub async fn create_session(
        &self,
        id_hash: String,
        user: String,
        expires_at: i64,
    ) -> Result<(), IndexError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO sessions (id_hash, user_fk, created_at, expires_at)
                 SELECT ?1, id, ?3, ?4 FROM users WHERE name = ?2",
                params![id_hash, user, now_ms(), expires_at],
            )?;
            // expired sessions go when new ones come
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [now_ms()])?;
            Ok(())
        })
        .await
    }

    /// The user of a live session.
    pub async fn session_principal(
        &self,
        id_hash: String,
    ) -> Result<Option<PrincipalRow>, IndexError> {
        self.read_point(|c| {
            // A subquery, as for tokens (token_principal says why).
            Ok(c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM users u LEFT JOIN persons ps ON ps.id = u.person_fk
                 WHERE u.id = (SELECT s.user_fk FROM sessions s
                               WHERE s.id_hash = ?1 AND s.expires_at > ?2)"
            ))?
            .query_row(params![id_hash, now_ms()], principal_row)
            .optional()?)
        })
    }

    pub async fn delete_session(&self, id_hash: String) -> Result<(), IndexError> {
        self.write(move |c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
        .await
    }

    /// Records a failed login and returns how many failures the name had in `window_ms`.
    pub async fn login_failed(&self, name: String, window_ms: i64) -> Result<i64, IndexError> {
        self.write(move |c| {
            let now = now_ms();
            c.execute(
                "DELETE FROM login_failures WHERE at < ?1",
                [now - window_ms],
            )?;
            c.execute(
                "INSERT INTO login_failures (name, at) VALUES (?1, ?2)",
                params![name, now],
            )?;
            Ok(c.query_row(
                "SELECT count(*) FROM login_failures WHERE name = ?1",
                [name],
                |r| r.get(0),
            )?)
        })
        .await
    }
}
