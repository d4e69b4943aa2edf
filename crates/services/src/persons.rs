//! The person index's decisions: the manual operations (link, unlink, merge, unmerge, review,
//! demographics), each journaled inside the index transaction that applies it, and re-running
//! the matcher. Reading persons is the catalog's ([`strata_index::Index::persons`] and kin).

use crate::journal::{Journal, JournalEntry};
use crate::ServiceError;
use strata_core::audit::AuditEvent;
use strata_index::{Index, MpiChange, MpiOp};

#[derive(Clone)]
pub struct Persons {
    index: Index,
    journal: Journal,
}

impl Persons {
    pub fn new(index: Index, journal: Journal) -> Persons {
        Persons { index, journal }
    }

    /// Carries out a manual MPI operation: applied in the index, journaled on the write quorum
    /// inside the same transaction (a failed journal write undoes it), audited.
    pub async fn apply(
        &self,
        op: MpiOp,
        actor: String,
        audit: AuditEvent,
    ) -> Result<MpiChange, ServiceError> {
        let journal = self.journal.clone();
        let runtime = tokio::runtime::Handle::current();
        let change = self
            .index
            .mpi_op(
                op,
                actor,
                audit,
                Box::new(move |change: &MpiChange, stamp: i64| {
                    let entry = JournalEntry::Mpi {
                        change: Box::new(change.clone()),
                    };
                    runtime
                        .block_on(journal.record_at(entry, stamp))
                        .map_err(|e| e.to_string())
                }),
            )
            .await?;
        Ok(change)
    }

    /// Re-runs the matcher over the keys no person decided; returns how many moved. The
    /// matcher's own links are not journaled: reindex derives them again.
    pub async fn rematch(&self) -> Result<usize, ServiceError> {
        Ok(self.index.mpi_rematch().await?)
    }
}
