//! What a service could not do, once for all of them: each door maps it to its own answer (an
//! HTTP problem, a DIMSE status, a CLI message) in one place.

use strata_index::IndexError;
use strata_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no instance with SOP Instance UID {0}")]
    NotFound(String),
    /// Nothing of what a request names exists within the caller's scope; outside it the answer
    /// is the same, so it never confirms that someone else's study is here.
    #[error("no such study, series or instance")]
    NotInScope,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot convert the instance: {0}")]
    Convert(String),
    /// What the request needs would hold more of an instance in memory than the configuration
    /// allows; nothing was read.
    #[error("{0}")]
    TooLarge(String),
    /// The memory for this request is taken by others now; it may succeed later.
    #[error("{0}")]
    Busy(String),
    #[error("{count} instance(s) must be kept until {until} (retention)")]
    Retained { count: usize, until: String },
    /// A legal hold covers the study: nothing of it may be deleted or replaced.
    #[error("study {study} is under a legal hold: nothing of it may be deleted or replaced")]
    Held { study: String },
    /// A request that cannot be carried out as asked (a user without the person their role
    /// needs, say); nothing was changed.
    #[error("{0}")]
    Invalid(String),
}
