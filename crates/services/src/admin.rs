//! Administration: users (a patient user bound to one person; passwords, disabling, removal),
//! API tokens, sessions and the C-MOVE destinations. Every change but a session's end is
//! journaled before the index holds it, so `reindex` restores it (sessions are not kept
//! across a reindex). The doors audit what they ask of it.

use crate::journal::{Journal, JournalEntry};
use crate::ServiceError;
use std::path::{Path, PathBuf};
use strata_core::config::DimsePeer;
use strata_core::now_ms;
use strata_index::{BindRefusal, Index, NewUser, SessionRow, TokenRow, UserRow};

#[derive(Clone)]
pub struct Admin {
    index: Index,
    journal: Journal,
    /// `[[dimse.peers]]` of strata.toml: fixed, and found before the managed ones.
    configured_peers: Vec<DimsePeer>,
    data_dir: PathBuf,
}

impl Admin {
    pub fn new(
        index: Index,
        journal: Journal,
        configured_peers: Vec<DimsePeer>,
        data_dir: PathBuf,
    ) -> Admin {
        Admin {
            index,
            journal,
            configured_peers,
            data_dir,
        }
    }

    /// The users, for `strata user list`.
    pub async fn users(&self) -> Result<Vec<UserRow>, ServiceError> {
        Ok(self.index.users().await?)
    }

    /// The C-MOVE destinations: those of strata.toml, then those managed at run time.
    pub async fn peers(&self) -> Result<(Vec<DimsePeer>, Vec<DimsePeer>), ServiceError> {
        Ok((self.configured_peers.clone(), self.index.peers().await?))
    }

    /// On first start, with no users yet: creates `admin` with a random password, written to
    /// `<data>/initial-admin-password` (0600) and printed once. The password was printed, so it
    /// must be changed at the first sign-in before the session may do anything else.
    pub async fn ensure_initial_admin(&self) -> Result<(), ServiceError> {
        if self.index.count_users().await? > 0 {
            return Ok(());
        }
        let password = crate::auth::new_password();
        let path = self.data_dir.join("initial-admin-password");
        write_private(&path, &format!("{password}\n"))
            .map_err(|e| ServiceError::Setup(format!("writing {}: {e}", path.display())))?;
        self.create_user(
            "admin",
            "admin",
            crate::auth::hash_password(&password),
            None,
            true,
            None,
        )
        .await?;
        eprintln!(
            "strata: created user admin with password {password} (also in {}); it must be \
             changed at the first sign-in",
            path.display()
        );
        Ok(())
    }

    /// Adds a user (journaled, so reindex restores it); false if the name is taken. A patient
    /// user is bound to `person` (a live person of the MPI); no other role takes one. Refused
    /// (nothing stored) otherwise. `issuer` is the issuer of the local patient keys of what
    /// the user stores, whatever the files say (see [`Admin::set_issuer`]).
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: String,
        person: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<bool, ServiceError> {
        self.create_user(name, role, password_hash, person, false, issuer)
            .await
    }

    /// [`Admin::add_user`] for a password someone else chose (an administrator over the
    /// API): the user must change it at the first sign-in.
    pub async fn add_user_with_temporary_password(
        &self,
        name: &str,
        role: &str,
        password_hash: String,
        person: Option<&str>,
        issuer: Option<&str>,
    ) -> Result<bool, ServiceError> {
        self.create_user(name, role, password_hash, person, true, issuer)
            .await
    }

    async fn create_user(
        &self,
        name: &str,
        role: &str,
        password_hash: String,
        person: Option<&str>,
        must_change_password: bool,
        issuer: Option<&str>,
    ) -> Result<bool, ServiceError> {
        valid_name(name)?;
        let issuer = issuer.map(valid_issuer).transpose()?;
        match (role == "patient", person) {
            (true, None) => {
                return Err(ServiceError::Invalid(
                    "a patient user is bound to a person of the person index: give the person id"
                        .into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ServiceError::Invalid(format!(
                    "only a patient user is bound to a person, not a user of the {role} role"
                )))
            }
            (true, Some(p)) => self.check_bindable(p).await?,
            (false, None) => {}
        }
        if self
            .index
            .user_credentials(name.to_string())
            .await?
            .is_some()
        {
            return Ok(false);
        }
        // the binding confirms the keys the person holds now, and journals them, so that a
        // rebuild confirms these and not the keys the matcher adds to the person later
        let confirmed = match person {
            Some(p) => Some(self.index.person_keys(p.to_string()).await?),
            None => None,
        };
        let user = NewUser {
            name: name.into(),
            role: role.into(),
            password_hash,
            person: person.map(String::from),
            must_change_password,
            issuer,
            confirmed,
        };
        self.journal
            .record(JournalEntry::UserAdded {
                name: user.name.clone(),
                role: user.role.clone(),
                password_hash: user.password_hash.clone(),
                person: user.person.clone(),
                must_change_password,
                issuer: user.issuer.clone(),
                confirmed: user.confirmed.clone(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.create_user(user).await?)
    }

    /// Sets (None: clears) the issuer of the local patient keys of what a user stores over
    /// STOW-RS (journaled); false if there is no such user. Keys of instances stored before
    /// keep the issuer they were given.
    pub async fn set_issuer(&self, name: &str, issuer: Option<&str>) -> Result<bool, ServiceError> {
        valid_name(name)?;
        let issuer = issuer.map(valid_issuer).transpose()?;
        if self.index.user_credentials(name.into()).await?.is_none() {
            return Ok(false);
        }
        self.journal
            .record(JournalEntry::UserIssuerSet {
                name: name.into(),
                issuer: issuer.clone(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.set_user_issuer(name.into(), issuer).await?)
    }

    /// Replaces a user's password (journaled); false if there is no such user. Every session
    /// of the user ends but `keep_session` (the hash of the session that made the change).
    /// `must_change` makes the user change it again at the next sign-in: set when an
    /// administrator chose the password for someone else.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: String,
        must_change: bool,
        keep_session: Option<String>,
    ) -> Result<bool, ServiceError> {
        valid_name(name)?;
        if self.index.user_credentials(name.into()).await?.is_none() {
            return Ok(false);
        }
        self.journal
            .record(JournalEntry::PasswordChanged {
                name: name.into(),
                password_hash: password_hash.clone(),
                must_change_password: must_change,
                at: now_ms(),
            })
            .await?;
        Ok(self
            .index
            .set_password(name.into(), password_hash, must_change, keep_session)
            .await?)
    }

    /// Disables a user (every token and session refused, sessions ended) or enables them
    /// again (journaled); false if there is no such user. The last enabled administrator is
    /// never disabled: nobody could administer the archive then.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, ServiceError> {
        valid_name(name)?;
        if self.index.user_credentials(name.into()).await?.is_none() {
            return Ok(false);
        }
        if disabled {
            self.keep_one_admin(name, "disable").await?;
        }
        self.journal
            .record(JournalEntry::UserDisabled {
                name: name.into(),
                disabled,
                at: now_ms(),
            })
            .await?;
        Ok(self.index.set_disabled(name.into(), disabled).await?)
    }

    /// Removes a user with their tokens and sessions (journaled); false if there is no such
    /// user. The last enabled administrator is never removed.
    pub async fn remove_user(&self, name: &str) -> Result<bool, ServiceError> {
        valid_name(name)?;
        if self.index.user_credentials(name.into()).await?.is_none() {
            return Ok(false);
        }
        self.keep_one_admin(name, "remove").await?;
        self.journal
            .record(JournalEntry::UserRemoved {
                name: name.into(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.remove_user(name.into()).await?)
    }

    /// Refuses to `what` (disable, remove) `name` when it is the last enabled administrator.
    async fn keep_one_admin(&self, name: &str, what: &str) -> Result<(), ServiceError> {
        let users = self.index.users().await?;
        let admins: Vec<&UserRow> = users
            .iter()
            .filter(|u| u.role == "admin" && !u.disabled)
            .collect();
        if admins.len() == 1 && admins[0].name == name {
            return Err(ServiceError::Invalid(format!(
                "{name} is the last enabled administrator; refusing to {what} it"
            )));
        }
        Ok(())
    }

    /// The tokens (of one user, or all), revoked and expired ones included.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRow>, ServiceError> {
        Ok(self.index.tokens(user.map(String::from)).await?)
    }

    /// Revokes the token with row id `id` (journaled by its hash, as a revocation by the
    /// token is); the user it belonged to, None if no unrevoked token has that id.
    pub async fn revoke_token_id(&self, id: i64) -> Result<Option<String>, ServiceError> {
        let Some((hash, user)) = self.index.token_hash(id).await? else {
            return Ok(None);
        };
        let live = self
            .index
            .tokens(Some(user.clone()))
            .await?
            .iter()
            .any(|t| t.id == id && t.revoked_at.is_none());
        if !live {
            return Ok(None);
        }
        self.journal
            .record(JournalEntry::TokenRevoked {
                token_hash: hash.clone(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.revoke_token(hash).await?.then_some(user))
    }

    /// The live sessions (of one user, or all).
    pub async fn sessions(&self, user: Option<&str>) -> Result<Vec<SessionRow>, ServiceError> {
        Ok(self.index.sessions(user.map(String::from)).await?)
    }

    /// Ends the session named `id` (when it is `user`'s, if given); the user it belonged to,
    /// None if there was no such session.
    pub async fn end_session(
        &self,
        id: &str,
        user: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self
            .index
            .end_session(id.to_ascii_lowercase(), user.map(String::from))
            .await?)
    }

    async fn check_bindable(&self, person: &str) -> Result<(), ServiceError> {
        match self.index.bindable(person.to_string()).await? {
            Ok(()) => Ok(()),
            Err(BindRefusal::NoPerson | BindRefusal::NoUser) => {
                Err(ServiceError::Invalid(format!("no person {person}")))
            }
            Err(BindRefusal::Merged(into)) => Err(ServiceError::Invalid(format!(
                "person {person} was merged into {into}: bind to {into}"
            ))),
        }
    }

    /// Binds a patient user to another person (journaled): how an administrator restores the
    /// access of a patient whose person was merged away.
    pub async fn bind_user(&self, name: &str, person: &str) -> Result<(), ServiceError> {
        match self.index.user_credentials(name.to_string()).await? {
            None => return Err(ServiceError::Invalid(format!("no user named {name}"))),
            Some(c) if c.role != "patient" => {
                return Err(ServiceError::Invalid(format!(
                    "only a patient user is bound to a person; {name} is of the {} role",
                    c.role
                )))
            }
            Some(_) => {}
        }
        self.check_bindable(person).await?;
        let confirmed = self.index.person_keys(person.to_string()).await?;
        self.journal
            .record(JournalEntry::UserBound {
                name: name.into(),
                person: person.into(),
                confirmed: Some(confirmed.clone()),
                at: now_ms(),
            })
            .await?;
        match self
            .index
            .bind_user(name.to_string(), person.to_string(), Some(confirmed))
            .await?
        {
            Ok(()) => Ok(()),
            // changed between the check and the write: the journal entry replays to the same
            Err(_) => Err(ServiceError::Invalid(format!(
                "person {person} or user {name} changed meanwhile; try again"
            ))),
        }
    }

    /// Records a token for a user (journaled), live until `expires_at` (None: forever); its
    /// id, None if there is no such user.
    pub async fn add_token(
        &self,
        user: &str,
        token_hash: String,
        label: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<Option<i64>, ServiceError> {
        valid_name(user)?;
        if let Some(l) = &label {
            if l.chars().count() > MAX_LABEL_CHARS {
                return Err(ServiceError::Invalid(format!(
                    "a token label has at most {MAX_LABEL_CHARS} characters"
                )));
            }
        }
        if self
            .index
            .user_credentials(user.to_string())
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let at = now_ms();
        let entry = JournalEntry::TokenCreated {
            user: user.into(),
            token_hash: token_hash.clone(),
            label: label.clone(),
            expires_at,
            at,
        };
        self.journal.record(entry).await?;
        Ok(self
            .index
            .add_token(user.into(), token_hash, label, expires_at)
            .await?)
    }

    /// Revokes a token (journaled); false if no live token has that hash.
    pub async fn revoke_token(&self, token_hash: String) -> Result<bool, ServiceError> {
        if self
            .index
            .token_principal(token_hash.clone())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.journal
            .record(JournalEntry::TokenRevoked {
                token_hash: token_hash.clone(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.revoke_token(token_hash).await?)
    }

    /// Adds or changes a managed C-MOVE destination, for every door alike: refused (nothing
    /// written) unless `aet` is an AE title, `host` a host name or address and `port` not 0,
    /// and for a destination of strata.toml, which is changed there.
    pub async fn add_peer(
        &self,
        aet: &str,
        host: &str,
        port: u16,
    ) -> Result<DimsePeer, ServiceError> {
        let aet = aet.trim();
        if !valid_ae_title(aet) {
            return Err(ServiceError::Invalid(format!(
                "{:?} is not an AE title (1 to 16 characters, no backslash)",
                strata_core::audit::capped(aet, 32)
            )));
        }
        if host.is_empty()
            || host.len() > 253
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ServiceError::Invalid(format!(
                "{:?} is not a host name or address",
                strata_core::audit::capped(host, 64)
            )));
        }
        if port == 0 {
            return Err(ServiceError::Invalid("port 0 is not a port".into()));
        }
        if self.configured_peers.iter().any(|p| p.aet == aet) {
            return Err(ServiceError::Invalid(format!(
                "{aet} is defined in strata.toml; change it there"
            )));
        }
        let peer = DimsePeer {
            aet: aet.to_string(),
            host: host.to_string(),
            port,
            tls: false,
        };
        self.set_peer(peer.clone()).await?;
        Ok(peer)
    }

    /// Adds or changes a C-MOVE destination: journaled first, then indexed.
    pub async fn set_peer(&self, peer: DimsePeer) -> Result<(), ServiceError> {
        let at = now_ms();
        self.journal
            .record(JournalEntry::PeerSet {
                aet: peer.aet.clone(),
                host: peer.host.clone(),
                port: peer.port,
                at,
            })
            .await?;
        self.index.set_peer(peer).await?;
        Ok(())
    }

    /// Removes a C-MOVE destination; false if there was none by that name.
    pub async fn remove_peer(&self, aet: &str) -> Result<bool, ServiceError> {
        if !self.index.peers().await?.iter().any(|p| p.aet == aet) {
            return Ok(false);
        }
        self.journal
            .record(JournalEntry::PeerRemoved {
                aet: aet.to_string(),
                at: now_ms(),
            })
            .await?;
        Ok(self.index.remove_peer(aet.to_string()).await?)
    }

    /// The C-MOVE destination `aet`: from strata.toml first, else from the managed table.
    pub async fn peer(&self, aet: &str) -> Result<Option<DimsePeer>, ServiceError> {
        if let Some(p) = self.configured_peers.iter().find(|p| p.aet == aet) {
            return Ok(Some(p.clone()));
        }
        Ok(self.index.peers().await?.into_iter().find(|p| p.aet == aet))
    }
}

/// An AE title (PS3.5 6.2: 1 to 16 characters of the default repertoire, no backslash, no
/// control characters, not only spaces).
pub fn valid_ae_title(aet: &str) -> bool {
    !aet.trim().is_empty()
        && aet.len() <= 16
        && aet
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\')
}

/// Longest label a token may carry: it is listed and audited.
pub const MAX_LABEL_CHARS: usize = 128;

/// Refuses a name that is not a user name before anything is written.
fn valid_name(name: &str) -> Result<(), ServiceError> {
    if crate::auth::valid_user_name(name) {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{:?} is not a user name (1 to 64 letters, digits, . _ - @)",
            strata_core::audit::capped(name, 64)
        )))
    }
}

/// An issuer as keys hold it (upper case, runs of space folded: [`strata_mpi::local_issuer`]),
/// or why it is not one: empty, or longer than IssuerOfPatientID may be (64 characters, LO).
pub fn valid_issuer(issuer: &str) -> Result<String, ServiceError> {
    let norm = strata_mpi::local_issuer(Some(issuer), None);
    if issuer.trim().is_empty()
        || norm.chars().count() > 64
        || norm.contains('\\')
        || norm.chars().any(char::is_control)
    {
        return Err(ServiceError::Invalid(format!(
            "{:?} is not an issuer (1 to 64 characters, no backslash or control character)",
            strata_core::audit::capped(issuer, 64)
        )));
    }
    Ok(norm)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
