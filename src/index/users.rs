//! Users, API tokens, sessions and failed logins: the rows the auth module keeps.

use super::{now_ms, Index, IndexError};
use rusqlite::{params, OptionalExtension};

/// A user as listed (never with the password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

impl Index {
    pub async fn count_users(&self) -> Result<i64, IndexError> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    /// Creates a user; false if the name is taken.
    pub async fn create_user(
        &self,
        name: String,
        role: String,
        password_hash: String,
    ) -> Result<bool, IndexError> {
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role, password_hash, now_ms()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, IndexError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT name, role, created_at FROM users ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok(UserRow {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
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

    /// (user, role) holding a live token.
    pub async fn token_principal(
        &self,
        token_hash: String,
    ) -> Result<Option<(String, String)>, IndexError> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_fk
                 WHERE t.token_hash = ?1 AND t.revoked_at IS NULL",
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
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

    /// (user, role) of a live session.
    pub async fn session_principal(
        &self,
        id_hash: String,
    ) -> Result<Option<(String, String)>, IndexError> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.id = s.user_fk
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
                params![id_hash, now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
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
