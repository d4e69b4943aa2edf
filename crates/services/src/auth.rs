//! Who may do what. Users have one role; a role grants permissions (ARCHITECTURE.md, Roles).
//! People sign in with a password (argon2) and get a browser session; programs use API tokens.
//! Tokens and session ids are 256-bit random values shown once; only their SHA-256 is stored.
//! The HTTP door extracts the caller of a request; what a caller may do is decided here.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ServiceError;
use std::time::Duration;
pub use strata_index::Scope;
use strata_index::{Index, PrincipalRow};

/// A session lasts a working day.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// Failed sign-ins of one user name counted over this window for throttling.
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures allowed in the window before each refusal is delayed.
const FREE_FAILURES: i64 = 3;
/// Longest delay of a refused sign-in.
const MAX_DELAY: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Radiologist,
    Integrator,
    Modality,
    Patient,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Find patients, studies, series, instances (QIDO-RS).
    Search,
    /// Read DICOM JSON metadata (no pixel data).
    Metadata,
    /// Read original DICOM objects and pixel data: instances, frames, bulk data, WADO-URI.
    OriginalPixels,
    /// See images rendered by the server (`/rendered`, thumbnails, WADO-URI JPEG/PNG, the
    /// stream): windowed 8-bit pictures, never the original pixel data.
    Rendered,
    /// Store instances (STOW-RS).
    Store,
    /// Delete studies, series, instances.
    Delete,
    /// Search the master person index and score demographics against it: identities across
    /// every patient, so never a patient's.
    FindPersons,
    /// Users, tokens, the audit trail, metrics, MPI decisions.
    Administer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Radiologist,
        Role::Integrator,
        Role::Modality,
        Role::Patient,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Radiologist => "radiologist",
            Role::Integrator => "integrator",
            Role::Modality => "modality",
            Role::Patient => "patient",
        }
    }

    /// A radiologist reads through the rendering pipeline and never receives original pixels;
    /// an integrator moves DICOM in and out in full; a modality only stores. A patient searches,
    /// reads, views and exports (original objects) — but only their own studies: what a
    /// permission covers is the caller's [`Principal::scope`], which the index applies to every
    /// read, so for a patient anything outside it does not exist (404, never 403, so no answer
    /// confirms that someone else's study is here). A patient never stores, deletes, searches
    /// the person index or administers anything.
    pub fn may(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Radiologist => matches!(p, Search | Metadata | Rendered | FindPersons),
            Role::Integrator => matches!(
                p,
                Search | Metadata | OriginalPixels | Rendered | Store | FindPersons
            ),
            Role::Modality => matches!(p, Store),
            Role::Patient => matches!(p, Search | Metadata | Rendered | OriginalPixels),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// Whose data this caller may see; handed to every index read (see [`Scope`]).
    pub scope: Scope,
    /// The person a patient user is bound to (its uid).
    pub person: Option<String>,
}

impl Principal {
    /// The principal of a stored user; Err says why the user may not act now. A patient is
    /// scoped to their person. A patient whose person was merged into another is refused until
    /// an administrator binds the account again: following the merge would hand them every
    /// study of the surviving person on the strength of one (possibly mistaken, and undoable)
    /// MPI decision, and an unmerge gives the same person back, so the binding is kept and
    /// works again then.
    pub fn from_row(row: PrincipalRow) -> Result<Principal, String> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| format!("user {} has an unknown role {:?}", row.name, row.role))?;
        let (scope, person) = match (role, row.person) {
            (Role::Patient, None) => {
                return Err(format!(
                    "patient account {} is bound to no person; an administrator binds it with \
                     `strata user bind`",
                    row.name
                ))
            }
            (Role::Patient, Some((_, uid, Some(into)))) => {
                return Err(format!(
                    "person {uid}, the person of patient account {}, was merged into another \
                     ({into}); an administrator must bind the account again (`strata user bind`)",
                    row.name
                ))
            }
            (Role::Patient, Some((id, uid, None))) => (Scope::Person(id), Some(uid)),
            (_, _) => (Scope::All, None),
        };
        Ok(Principal {
            user: row.name,
            role,
            scope,
            person,
        })
    }
}

/// Who holds a credential (a token or a session).
#[derive(Debug, Clone)]
pub enum Holder {
    Principal(Principal),
    /// A known user who may not act now (a patient account without a live person): the user,
    /// the role and why.
    Refused {
        user: String,
        role: String,
        why: String,
    },
}

/// How a sign-in ended.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// A new session: its id (shown once, only its hash is kept) and the user's role.
    Session { id: String, role: Role },
    /// Wrong user name or password; `failures` in the last 15 minutes for this name (after the
    /// first few, each refusal came only after a delay that doubles up to 8 s).
    Refused { failures: i64 },
}

/// Credentials: who holds a token or a session, signing in and out.
#[derive(Clone)]
pub struct Access {
    index: Index,
}

impl Access {
    pub fn new(index: Index) -> Access {
        Access { index }
    }

    /// The holder of API token `token`, if it is live.
    pub async fn by_token(&self, token: &str) -> Result<Option<Holder>, ServiceError> {
        let row = self.index.token_principal(secret_hash(token)).await?;
        Ok(row.map(holder))
    }

    /// The holder of session `id`, if it is live.
    pub async fn by_session(&self, id: &str) -> Result<Option<Holder>, ServiceError> {
        let row = self.index.session_principal(secret_hash(id)).await?;
        Ok(row.map(holder))
    }

    /// Checks a user name and password; a new session when they are right. Refusals are
    /// counted per name, and after the first few each one is answered only after a delay.
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<SignIn, ServiceError> {
        let creds = self.index.user_credentials(user.to_string()).await?;
        let valid = match &creds {
            Some((_, hash)) => {
                let (pw, hash) = (password.to_string(), hash.clone());
                tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        let role = creds.as_ref().and_then(|(r, _)| Role::parse(r));
        let (true, Some(role)) = (valid, role) else {
            let failures = self
                .index
                .login_failed(user.to_string(), FAILURE_WINDOW_MS)
                .await?;
            if failures > FREE_FAILURES {
                let delay =
                    Duration::from_secs(1 << (failures - FREE_FAILURES).min(4)).min(MAX_DELAY);
                tokio::time::sleep(delay).await;
            }
            return Ok(SignIn::Refused { failures });
        };
        let id = new_secret("sid_");
        let expires = strata_core::now_ms() + SESSION_LIFETIME_MS;
        self.index
            .create_session(secret_hash(&id), user.to_string(), expires)
            .await?;
        Ok(SignIn::Session { id, role })
    }

    /// Ends session `id`.
    pub async fn sign_out(&self, id: &str) -> Result<(), ServiceError> {
        Ok(self.index.delete_session(secret_hash(id)).await?)
    }
}

fn holder(row: PrincipalRow) -> Holder {
    let (user, role) = (row.name.clone(), row.role.clone());
    match Principal::from_row(row) {
        Ok(p) => Holder::Principal(p),
        Err(why) => Holder::Refused { user, role, why },
    }
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new secret (token or session id): 256 random bits, hex, with a prefix that says what it is.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// What is stored of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A password for the first administrator: 20 characters from an unambiguous alphabet.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn radiologists_never_get_original_pixels() {
        assert!(Role::Radiologist.may(Permission::Metadata));
        assert!(!Role::Radiologist.may(Permission::OriginalPixels));
        assert!(Role::Radiologist.may(Permission::Rendered));
        assert!(Role::Patient.may(Permission::Rendered));
        assert!(Role::Patient.may(Permission::OriginalPixels));
        assert!(!Role::Patient.may(Permission::Store));
        assert!(!Role::Patient.may(Permission::Delete));
        assert!(!Role::Patient.may(Permission::FindPersons));
        assert!(!Role::Patient.may(Permission::Administer));
        assert!(Role::Integrator.may(Permission::OriginalPixels));
        assert!(!Role::Integrator.may(Permission::Delete));
        assert!(Role::Admin.may(Permission::Delete));
        assert!(!Role::Modality.may(Permission::Search));
        assert_eq!(Role::parse("radiologist"), Some(Role::Radiologist));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn patients_are_scoped_to_their_live_person() {
        let row = |role: &str, person| PrincipalRow {
            name: "p".into(),
            role: role.into(),
            person,
        };
        let p = Principal::from_row(row("patient", Some((7, "ab".into(), None)))).unwrap();
        assert_eq!(p.scope, Scope::Person(7));
        assert_eq!(p.person.as_deref(), Some("ab"));
        let merged = Principal::from_row(row("patient", Some((7, "ab".into(), Some("cd".into())))));
        assert!(merged.unwrap_err().contains("merged into another (cd)"));
        assert!(Principal::from_row(row("patient", None)).is_err());
        let staff = Principal::from_row(row("radiologist", None)).unwrap();
        assert_eq!(staff.scope, Scope::All);
        assert!(Principal::from_row(row("root", None)).is_err());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret("stk_");
        assert!(a.starts_with("stk_") && a.len() == 68);
        assert_ne!(a, new_secret("stk_"));
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_eq!(new_password().len(), 20);
    }
}
