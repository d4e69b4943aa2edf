//! De-identified copies of stored instances for research projects (PS3.15 Annex E; the
//! transform itself is [`strata_dicom::deidentify`]).
//!
//! A project is a name. Its key is derived from the archive's master key and the name (see
//! `MasterKey::project_key`), so no table keeps projects: every export under one name agrees
//! on UIDs, pseudonyms and date shifts, exports under two names cannot be linked, and linking a
//! pseudonym back to a patient takes the master key. The stored originals are only read.
//!
//! The doors audit what they hand out: this service reads, the caller records the read.

use crate::ServiceError;
use futures::StreamExt;
use std::sync::Arc;
use strata_core::config::DeidentifyConfig;
use strata_dicom::deidentify::{deidentify, Deidentified, DeidentifyError, ProjectKey};
use strata_index::{Index, InstanceRef, Scope};
use strata_store::Store;

use crate::reads::{Reads, Then};

/// The longest project name: it names a key, and appears in every report and audit event.
const MAX_PROJECT_NAME: usize = 64;

#[derive(Clone)]
pub struct Deidentification {
    store: Arc<Store>,
    index: Index,
    reads: Reads,
    config: Arc<DeidentifyConfig>,
}

/// A de-identification project: its name and the key derived for it.
#[derive(Clone)]
pub struct Project {
    pub name: String,
    key: ProjectKey,
}

impl Deidentification {
    pub fn new(
        store: Arc<Store>,
        index: Index,
        reads: Reads,
        config: DeidentifyConfig,
    ) -> Deidentification {
        Deidentification {
            store,
            index,
            reads,
            config: Arc::new(config),
        }
    }

    /// The options, safe-list and pixel rules in force (from `[deidentify]`).
    pub fn config(&self) -> &DeidentifyConfig {
        &self.config
    }

    /// The project `name` with its key; a name must be 1 to 64 letters, digits, `.`, `_` or `-`
    /// (it is compared byte for byte: two spellings would be two projects).
    pub fn project(&self, name: &str) -> Result<Project, ServiceError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_PROJECT_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(ServiceError::Invalid(format!(
                "{:?} is not a project name (1 to {MAX_PROJECT_NAME} letters, digits, . _ -)",
                strata_core::audit::capped(name, MAX_PROJECT_NAME)
            )));
        }
        Ok(Project {
            name: name.to_string(),
            key: ProjectKey::from_bytes(*self.store.project_key(name)),
        })
    }

    /// One instance de-identified for `project`: Part-10 bytes in, Part-10 bytes and the report
    /// out. CPU-bound (a few milliseconds for a CT slice): async callers run it on a blocking
    /// thread. The media export calls this for each instance it writes.
    pub fn instance(
        &self,
        project: &Project,
        part10: &[u8],
    ) -> Result<Deidentified, DeidentifyError> {
        deidentify(part10, &project.key, &self.config)
    }

    /// The UID `uid` has in `project`: how a refused instance is named where only the project's
    /// UIDs may appear.
    pub fn project_uid(&self, project: &Project, uid: &str) -> String {
        project.key.uid(uid)
    }

    /// The instances of a study, in series and instance order; [`ServiceError::NotInScope`]
    /// when there are none.
    pub async fn study_instances(&self, study_uid: &str) -> Result<Vec<InstanceRef>, ServiceError> {
        let refs = self
            .index
            .instances_under(study_uid.to_string(), None, None, Scope::All)
            .await?;
        if refs.is_empty() {
            return Err(ServiceError::NotInScope);
        }
        Ok(refs)
    }

    /// Reads each of `refs` from the store and de-identifies it, `parallelism` at once on
    /// blocking threads, handing each outcome to `sink` in the order of `refs`. A refused
    /// instance (burned-in annotation, unreadable) is an outcome, not an error: the others go
    /// on. What the store cannot read, or the sink cannot take, ends the run.
    pub async fn each<E, S>(
        &self,
        project: &Project,
        refs: Vec<InstanceRef>,
        parallelism: usize,
        mut sink: S,
    ) -> Result<(), E>
    where
        E: From<ServiceError>,
        S: FnMut(&InstanceRef, Result<Deidentified, DeidentifyError>) -> Result<(), E>,
    {
        let mut outcomes = futures::stream::iter(refs.into_iter().map(|r| {
            let this = self.clone();
            let project = project.clone();
            async move {
                let held = this
                    .reads
                    .part10(&r.blob_id, r.size, &r.transfer_syntax, None, Then::Parse)
                    .await?;
                let outcome =
                    tokio::task::spawn_blocking(move || this.instance(&project, &held.bytes))
                        .await
                        .map_err(|e| ServiceError::Setup(format!("de-identifying: {e}")))?;
                Ok::<_, ServiceError>((r, outcome))
            }
        }))
        .buffered(parallelism.max(1));
        while let Some(next) = outcomes.next().await {
            let (r, outcome) = next?;
            sink(&r, outcome)?;
        }
        Ok(())
    }
}
