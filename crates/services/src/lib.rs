//! The archive's work (layer 2): each service holds the engines it needs (store, index, render
//! pool, metrics) and the part of the configuration that concerns it, and nothing else.
//!
//! - [`ingest`]: the one path in. Every instance, from any door, is inspected, addressed,
//!   stored on the replicas and indexed, and acknowledged only then.
//! - [`journal`]: decisions the blobs cannot tell, kept on the replicas for reindex.
//! - [`reads`]: instances read back with read-repair, converted, resolved within a scope.
//! - [`pictures`]: stored frames decoded on the render pool and rendered as a view asks.
//! - [`media`]: studies exported as a ZIP of PS3.10 media (DICOMDIR, the instances as stored,
//!   a page with a picture of each series), streamed as it is built.
//! - [`maintenance`]: the repair worker, the scrub, the audit export, stale staging, the MPI's
//!   re-estimation.
//! - [`reindex`]: the index rebuilt from one replica.
//! - [`admin`]: users, tokens and the AE table. [`auth`]: roles, permissions, principals,
//!   credentials, signing in and out. [`audit`]: the audit trail as the doors write it.
//! - [`retention`]: how long a record is kept, legal holds, expiry batches, rejection notes and
//!   deletion. [`persons`]: the MPI's decisions.
//! - [`deidentify`]: de-identified copies for research projects, keyed per project.
//! - [`reports`]: measurements as a TID 1500 Measurement Report and key images as a Key
//!   Object Selection, built as instances of their study and read back.
//! - [`sends`]: studies pushed to another archive as background jobs with per-instance outcomes.
//! - [`letters`]: access letters, with which a patient takes an encrypted copy of their studies.
//! - [`tiers`]: hot and cold tiers: the policy, the move to erasure-coded shards, restore on
//!   read, the shards' scrub. [`usage`]: bytes and cost per tier and store, and how reads
//!   decay with a study's age.
//!
//! A service never speaks a protocol: the doors map its answers ([`ServiceError`], the
//! ingest's [`ingest::IngestError`]) to DIMSE statuses and HTTP problems.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod deidentify;
mod error;
pub mod ingest;
pub mod journal;
pub mod letters;
pub mod maintenance;
pub mod media;
pub mod persons;
pub mod pictures;
pub mod reads;
pub mod reindex;
pub mod reports;
pub mod retention;
pub mod sends;
pub mod tiers;
pub mod usage;

pub use error::ServiceError;
