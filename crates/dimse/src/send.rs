//! The C-STORE side of sends: a send job's batch goes to a peer of the AE table on one
//! association, as C-MOVE's sub-operations do.

use futures::future::BoxFuture;
use std::sync::Arc;
use strata_archive::Archive;
use strata_services::sends::{Carrier, Target};

/// Carries send batches to AE-table peers by C-STORE.
pub struct StoreCarrier {
    archive: Arc<Archive>,
}

impl StoreCarrier {
    pub fn new(archive: Arc<Archive>) -> StoreCarrier {
        StoreCarrier { archive }
    }
}

impl Carrier for StoreCarrier {
    fn carry<'a>(
        &'a self,
        target: &'a Target,
        sops: &'a [String],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            match target {
                Target::Ae(peer) => super::retrieve::store_to(&self.archive, peer, sops).await,
                other => vec![Err(format!("{} is not an AE", other.name())); sops.len()],
            }
        })
    }
}
