//! Strata's shared vocabulary (layer 0): the words every other crate speaks, and nothing that
//! does work of its own.
//!
//! - [`config`]: one configuration, from defaults, `strata.toml`, `STRATA_*` variables and flags.
//! - [`clock`]: the archive's time, milliseconds since the Unix epoch.
//! - [`blob`]: [`BlobId`], the content address of a stored instance.
//! - [`audit`]: the audit event and its hash chain.
//! - [`metrics`]: the Prometheus registry served at `/metrics`, and the timer every store, index
//!   and render operation records its duration with.

pub mod audit;
pub mod blob;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod peers;

pub use blob::BlobId;
pub use clock::{now_ms, Clock};
pub use metrics::{InFlight, Load, Metrics};
