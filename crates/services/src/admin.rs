//! Administration: users (a patient user bound to one person), API tokens and the C-MOVE
//! destinations. Every change is journaled before the index holds it, so `reindex` restores it.

use crate::journal::{Journal, JournalEntry};
use crate::ServiceError;
use std::path::{Path, PathBuf};
use strata_core::config::DimsePeer;
use strata_core::now_ms;
use strata_index::{BindRefusal, Index, UserRow};

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
    /// `<data>/initial-admin-password` (0600) and printed once.
    pub async fn ensure_initial_admin(&self) -> Result<(), ServiceError> {
        if self.index.count_users().await? > 0 {
            return Ok(());
        }
        let password = crate::auth::new_password();
        let path = self.data_dir.join("initial-admin-password");
        write_private(&path, &format!("{password}\n"))
            .map_err(|e| ServiceError::Setup(format!("writing {}: {e}", path.display())))?;
        self.add_user(
            "admin",
            "admin",
            crate::auth::hash_password(&password),
            None,
        )
        .await?;
        eprintln!(
            "strata: created user admin with password {password} (also in {}); sign in and change it",
            path.display()
        );
        Ok(())
    }

    /// Adds a user (journaled, so reindex restores it); false if the name is taken. A patient
    /// user is bound to `person` (a live person of the MPI); no other role takes one. Refused
    /// (nothing stored) otherwise.
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: String,
        person: Option<&str>,
    ) -> Result<bool, ServiceError> {
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
        let at = now_ms();
        let entry = JournalEntry::UserAdded {
            name: name.into(),
            role: role.into(),
            password_hash: password_hash.clone(),
            person: person.map(String::from),
            at,
        };
        self.journal.record(entry).await?;
        Ok(self
            .index
            .create_user(
                name.into(),
                role.into(),
                password_hash,
                person.map(String::from),
            )
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
            Some((role, _)) if role != "patient" => {
                return Err(ServiceError::Invalid(format!(
                    "only a patient user is bound to a person; {name} is of the {role} role"
                )))
            }
            Some(_) => {}
        }
        self.check_bindable(person).await?;
        self.journal
            .record(JournalEntry::UserBound {
                name: name.into(),
                person: person.into(),
                at: now_ms(),
            })
            .await?;
        match self
            .index
            .bind_user(name.to_string(), person.to_string())
            .await?
        {
            Ok(()) => Ok(()),
            // changed between the check and the write: the journal entry replays to the same
            Err(_) => Err(ServiceError::Invalid(format!(
                "person {person} or user {name} changed meanwhile; try again"
            ))),
        }
    }

    /// Records a token for a user (journaled); false if there is no such user.
    pub async fn add_token(
        &self,
        user: &str,
        token_hash: String,
        label: Option<String>,
    ) -> Result<bool, ServiceError> {
        if self
            .index
            .user_credentials(user.to_string())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let at = now_ms();
        let entry = JournalEntry::TokenCreated {
            user: user.into(),
            token_hash: token_hash.clone(),
            label: label.clone(),
            at,
        };
        self.journal.record(entry).await?;
        Ok(self.index.add_token(user.into(), token_hash, label).await?)
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
