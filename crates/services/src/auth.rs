//! Who may do what. Users have one role; a role grants permissions (ARCHITECTURE.md, Roles).
//! People sign in with a password (argon2) and get a browser session; programs use API tokens.
//! Tokens and session ids are 256-bit random values shown once; only their SHA-256 is stored.
//! The HTTP door extracts the caller of a request; what a caller may do is decided here.
//!
//! Guessing passwords is slowed three ways: failures of one user name, from one address and
//! in all are counted over 15 minutes, and once any count is past its free allowance every
//! attempt that matches it waits before its password is even checked (so a right guess is as
//! slow as a wrong one). An attempt counts as a failure from the moment it arrives until its
//! password is shown right, so guesses sent together are slowed as if sent one by one; at
//! most a few passwords are checked at once. A user name that does
//! not exist is checked against a dummy hash, so it takes as long as one that does.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ServiceError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
pub use strata_index::Scope;
use strata_index::{Index, LoginFailures, PrincipalRow};
use tokio::sync::Semaphore;

/// A session lasts a working day.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// How long an API token lives unless its creator says otherwise: a quarter, so a forgotten
/// token dies on its own.
pub const DEFAULT_TOKEN_DAYS: i64 = 90;
/// Longest lifetime a token may be given: ten years.
pub const MAX_TOKEN_DAYS: i64 = 3650;
/// Failed sign-ins counted over this window for throttling.
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failures of one user name allowed in the window before its attempts are delayed: enough
/// for a person who mistypes.
const FREE_FAILURES_PER_NAME: i64 = 3;
/// Failures from one address allowed in the window: an office behind one address mistypes too.
const FREE_FAILURES_PER_REMOTE: i64 = 20;
/// Failures from everywhere allowed in the window before every attempt is delayed: guessing
/// spread over many addresses and names.
const FREE_FAILURES_ALL: i64 = 200;
/// Longest delay of a sign-in.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Passwords checked at once: each argon2 check takes tens of milliseconds and 19 MiB, so a
/// flood of sign-ins queues here instead of taking the machine.
const CHECKS_AT_ONCE: usize = 4;
/// Shortest and longest password accepted (the upper bound keeps argon2 input reasonable).
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 1024;

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
    /// Save measurements and key images of a study as DICOM documents (a Measurement Report,
    /// a Key Object Selection): the readers' own findings, never images.
    Report,
    /// Export studies as media (a ZIP of the original instances with a DICOMDIR and a page
    /// of pictures): the roles that may take original objects away.
    Export,
    /// Delete studies, series, instances.
    Delete,
    /// Search the master person index and score demographics against it: identities across
    /// every patient, so never a patient's.
    FindPersons,
    /// Send studies to another archive (an AE or a DICOMweb peer), and share studies with
    /// one by a read-only token: original objects leave for another system.
    Send,
    /// Issue, list and revoke access letters, with which a patient takes an encrypted copy of
    /// their studies without an account: the staff roles that may take original objects away
    /// themselves (admin, integrator), since a letter hands them on.
    IssueLetters,
    /// Legal holds, expiry batches (proposing, approving, dismissing) and the instances
    /// rejection notes took out of use: administrators only.
    Retention,
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
            Role::Radiologist => matches!(p, Search | Metadata | Rendered | Report | FindPersons),
            Role::Integrator => matches!(
                p,
                Search
                    | Metadata
                    | OriginalPixels
                    | Export
                    | Rendered
                    | Store
                    | FindPersons
                    | Send
                    | IssueLetters
            ),
            Role::Modality => matches!(p, Store),
            Role::Patient => matches!(p, Search | Metadata | Rendered | OriginalPixels | Export),
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
    /// The user must change their password before a session of theirs may do anything else.
    pub must_change_password: bool,
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
            must_change_password: row.must_change_password,
        })
    }
}

/// What begins every share token, so it is told from an API token before any lookup.
pub const SHARE_PREFIX: &str = "shr_";
/// Longest a share lasts.
pub const MAX_SHARE_HOURS: i64 = 24 * 90;

impl Principal {
    /// The holder of a share token: the receiving system pulling the shared studies, by
    /// DICOMweb reads alone ([`Principal::may`]), within [`Scope::Share`].
    pub fn of_share(share: &strata_index::Share) -> Principal {
        Principal {
            user: format!("share:{}", share.id),
            role: Role::Integrator,
            scope: Scope::Share(share.id),
            person: None,
            must_change_password: false,
        }
    }

    /// Whether this caller holds a share token.
    pub fn is_share(&self) -> bool {
        matches!(self.scope, Scope::Share(_))
    }

    /// Whether this caller may do what `p` covers: its role's permissions, and for the holder
    /// of a share token the reads alone (search, metadata, instances, rendered pictures).
    pub fn may(&self, p: Permission) -> bool {
        if self.is_share() {
            return matches!(
                p,
                Permission::Search
                    | Permission::Metadata
                    | Permission::OriginalPixels
                    | Permission::Rendered
            );
        }
        self.role.may(p)
    }

    /// The role as the audit trail and refusals name it (`share` for a share token).
    pub fn role_name(&self) -> &'static str {
        if self.is_share() {
            "share"
        } else {
            self.role.as_str()
        }
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
    /// A new session: its id (shown once, only its hash is kept), the user's role, and whether
    /// the user must change their password before doing anything else.
    Session {
        id: String,
        role: Role,
        must_change_password: bool,
    },
    /// Wrong user name or password; the failures counted now (see [`throttle`]).
    Refused { failures: LoginFailures },
    /// The password was right but the account is disabled.
    Disabled,
}

/// Credentials: who holds a token or a session, signing in and out.
#[derive(Clone)]
pub struct Access {
    index: Index,
    /// Password checks running at once ([`CHECKS_AT_ONCE`]).
    checks: Arc<Semaphore>,
}

impl Access {
    pub fn new(index: Index) -> Access {
        Access {
            index,
            checks: Arc::new(Semaphore::new(CHECKS_AT_ONCE)),
        }
    }

    /// The holder of API token `token`, if it is live (not revoked, not expired, its user
    /// not disabled).
    pub async fn by_token(&self, token: &str) -> Result<Option<Holder>, ServiceError> {
        if token.starts_with(SHARE_PREFIX) {
            let share = self.index.share_by_token(secret_hash(token)).await?;
            return Ok(share.map(|s| Holder::Principal(Principal::of_share(&s))));
        }
        let row = self.index.token_principal(secret_hash(token)).await?;
        Ok(row.map(holder))
    }

    /// A new share of `studies` for `hours` by `user`: its id and its token (shown once; only
    /// its hash is kept).
    pub async fn create_share(
        &self,
        user: &str,
        label: Option<String>,
        studies: Vec<String>,
        hours: f64,
    ) -> Result<(i64, String), ServiceError> {
        if !(hours > 0.0 && hours <= MAX_SHARE_HOURS as f64) {
            return Err(ServiceError::Invalid(format!(
                "valid_hours must be more than 0 and at most {MAX_SHARE_HOURS}"
            )));
        }
        if studies.is_empty() || studies.iter().any(|s| s.trim().is_empty()) {
            return Err(ServiceError::Invalid(
                "a share names one or more studies".into(),
            ));
        }
        let token = new_secret(SHARE_PREFIX);
        let expires_at = strata_core::now_ms() + (hours * 3_600_000.0).round().max(1.0) as i64;
        let id = self
            .index
            .create_share(
                secret_hash(&token),
                user.to_string(),
                label,
                expires_at,
                studies,
            )
            .await?;
        Ok((id, token))
    }

    /// Every share, the most recent first.
    pub async fn shares(&self) -> Result<Vec<strata_index::Share>, ServiceError> {
        Ok(self.index.shares().await?)
    }

    /// Revokes a share; false when there is no such live share.
    pub async fn revoke_share(&self, id: i64) -> Result<bool, ServiceError> {
        Ok(self.index.revoke_share(id).await?)
    }

    /// The holder of session `id`, if it is live.
    pub async fn by_session(&self, id: &str) -> Result<Option<Holder>, ServiceError> {
        let row = self.index.session_principal(secret_hash(id)).await?;
        Ok(row.map(holder))
    }

    /// Checks a user name and password from `remote` (an address, without a port); a new
    /// session when they are right and the user is not disabled. Throttled (see the module).
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
        remote: &str,
    ) -> Result<SignIn, ServiceError> {
        let checked = self.check_password(user, password, remote).await?;
        let (role, must_change_password) = match checked {
            Checked::Right { disabled: true, .. } => return Ok(SignIn::Disabled),
            Checked::Right {
                role,
                must_change_password,
                ..
            } => (role, must_change_password),
            Checked::Wrong(failures) => return Ok(SignIn::Refused { failures }),
        };
        let id = new_secret("sid_");
        let expires = strata_core::now_ms() + SESSION_LIFETIME_MS;
        self.index
            .create_session(secret_hash(&id), user.to_string(), expires)
            .await?;
        Ok(SignIn::Session {
            id,
            role,
            must_change_password,
        })
    }

    /// Whether `password` is `user`'s (the old password of a change), throttled and counted
    /// as a sign-in is.
    pub async fn password_is(
        &self,
        user: &str,
        password: &str,
        remote: &str,
    ) -> Result<bool, ServiceError> {
        Ok(matches!(
            self.check_password(user, password, remote).await?,
            Checked::Right { .. }
        ))
    }

    /// The throttled check of a password: the attempt is counted as a failure at once (so a
    /// burst of attempts made together is throttled as if they came one by one), waits as long
    /// as the failures before it ask, checks the password (against a dummy hash for a user who
    /// does not exist) and forgets the attempt if it was right. A name that is not a valid
    /// user name is never stored: its attempt is counted under an empty name (per address and
    /// in all).
    async fn check_password(
        &self,
        user: &str,
        password: &str,
        remote: &str,
    ) -> Result<Checked, ServiceError> {
        let name = if valid_user_name(user) { user } else { "" };
        let (attempt, failures) = self
            .index
            .login_attempt(name.into(), remote.into(), FAILURE_WINDOW_MS)
            .await?;
        let before = LoginFailures {
            name: failures.name - 1,
            remote: failures.remote - 1,
            all: failures.all - 1,
        };
        let delay = throttle(before);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let creds = match name {
            "" => None,
            _ => self.index.user_credentials(name.to_string()).await?,
        };
        let valid = {
            let _permit = self
                .checks
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let pw = password.to_string();
            let hash = creds.as_ref().map(|c| c.password_hash.clone());
            tokio::task::spawn_blocking(move || match hash {
                Some(h) => verify_password(&pw, &h),
                None => {
                    // the same work as for a real user, so timing tells nothing
                    verify_password(&pw, dummy_hash());
                    false
                }
            })
            .await
            .unwrap_or(false)
        };
        if let Some(c) = creds.filter(|_| valid) {
            if let Some(role) = Role::parse(&c.role) {
                self.index.login_succeeded(attempt).await?;
                return Ok(Checked::Right {
                    role,
                    disabled: c.disabled,
                    must_change_password: c.must_change_password,
                });
            }
        }
        Ok(Checked::Wrong(failures))
    }

    /// Ends session `id`.
    pub async fn sign_out(&self, id: &str) -> Result<(), ServiceError> {
        Ok(self.index.delete_session(secret_hash(id)).await?)
    }
}

/// What a password check found.
enum Checked {
    Right {
        role: Role,
        disabled: bool,
        must_change_password: bool,
    },
    Wrong(LoginFailures),
}

/// How long an attempt waits given the failures counted before it: nothing while every count
/// is below its free allowance, then 2 s, doubling with each failure past the most exceeded
/// allowance, up to [`MAX_DELAY`].
pub fn throttle(f: LoginFailures) -> Duration {
    let excess = (f.name - FREE_FAILURES_PER_NAME)
        .max(f.remote - FREE_FAILURES_PER_REMOTE)
        .max(f.all - FREE_FAILURES_ALL)
        + 1;
    if excess <= 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1 << excess.min(4)).min(MAX_DELAY)
}

/// An argon2 hash of nothing anyone knows, with the parameters of real ones: what a password
/// given for a user that does not exist is checked against.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_password()))
}

/// Whether `password` may be someone's new password; why not otherwise.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(format!(
            "the password may have at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// When a token made now for `days` days expires; None when `days` is out of range.
pub fn token_expiry(days: Option<i64>) -> Option<i64> {
    let days = days.unwrap_or(DEFAULT_TOKEN_DAYS);
    (1..=MAX_TOKEN_DAYS)
        .contains(&days)
        .then(|| strata_core::now_ms() + days * 24 * 3600 * 1000)
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

/// What a user name may be: 1 to 64 of letters, digits, `.`, `_`, `-` and `@` (an e-mail
/// address fits). Checked before anything with the name is written or audited.
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
        assert!(Role::Radiologist.may(Permission::Report));
        assert!(!Role::Patient.may(Permission::Report));
        assert!(!Role::Integrator.may(Permission::Report));
        assert!(!Role::Patient.may(Permission::Delete));
        assert!(!Role::Patient.may(Permission::FindPersons));
        assert!(!Role::Patient.may(Permission::Administer));
        assert!(Role::Integrator.may(Permission::OriginalPixels));
        assert!(!Role::Integrator.may(Permission::Delete));
        assert!(Role::Integrator.may(Permission::IssueLetters));
        assert!(!Role::Radiologist.may(Permission::IssueLetters));
        assert!(!Role::Patient.may(Permission::IssueLetters));
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
            must_change_password: false,
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

    #[test]
    fn sign_ins_slow_down_per_name_per_address_and_in_all() {
        let f = |name, remote, all| LoginFailures { name, remote, all };
        assert_eq!(throttle(f(2, 19, 199)), Duration::ZERO);
        assert_eq!(throttle(f(3, 3, 3)), Duration::from_secs(2));
        assert_eq!(throttle(f(4, 4, 4)), Duration::from_secs(4));
        assert_eq!(throttle(f(1, 20, 20)), Duration::from_secs(2));
        assert_eq!(throttle(f(0, 0, 200)), Duration::from_secs(2));
        assert_eq!(throttle(f(0, 0, 10_000)), MAX_DELAY);
    }

    #[test]
    fn new_passwords_and_token_lifetimes_are_bounded() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
        assert!(token_expiry(Some(0)).is_none());
        assert!(token_expiry(Some(MAX_TOKEN_DAYS + 1)).is_none());
        let in90 = token_expiry(None).unwrap() - strata_core::now_ms();
        assert!((in90 - DEFAULT_TOKEN_DAYS * 86_400_000).abs() < 60_000);
        assert!(!valid_user_name(""));
        assert!(!valid_user_name(&"a".repeat(65)));
        assert!(!valid_user_name("a b"));
        assert!(valid_user_name("jane.doe@example.org"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn guessing_from_everywhere_or_in_a_burst_is_slowed() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("everywhere.db")).unwrap();
        // failures from as many names and addresses as the global allowance: the next
        // attempt, from a fresh name and address, waits
        for i in 0..FREE_FAILURES_ALL {
            let remote = format!("10.0.{}.{}", i / 256, i % 256);
            let attempt = index.login_attempt(format!("n{i}"), remote, FAILURE_WINDOW_MS);
            attempt.await.unwrap();
        }
        let access = Access::new(index);
        let start = Instant::now();
        let r = access.sign_in("fresh", "guess", "192.0.2.1").await.unwrap();
        let all = FREE_FAILURES_ALL + 1;
        let counted = LoginFailures {
            name: 1,
            remote: 1,
            all,
        };
        assert!(matches!(r, SignIn::Refused { failures } if failures == counted));
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );

        // five guesses at one name sent together: each counts against the next, so the last
        // waits as if they had come one by one
        let index = Index::open(&dir.path().join("burst.db")).unwrap();
        let access = Access::new(index);
        let start = Instant::now();
        let burst = (0..5).map(|_| {
            let access = access.clone();
            tokio::spawn(async move { access.sign_in("rad", "guess", "192.0.2.2").await })
        });
        for r in futures::future::join_all(burst).await {
            assert!(matches!(r.unwrap().unwrap(), SignIn::Refused { .. }));
        }
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
