//! Strata, a DICOM imaging archive.
//!
//! Every instance enters through one path, [`ingest`]: it is parsed and validated, addressed by a
//! keyed hash, sealed (AES-256-GCM) and written to every replica by the [`store`], and indexed in
//! SQLite by the [`index`]; only then is it acknowledged. The [`archive`] opens the store and the
//! index together from one [`config`] and does the work that needs both: reads with read-repair,
//! the repair worker, scrub and reindex. [`server`] is `strata serve`; [`metrics`] what it
//! exposes at `/metrics`; [`synth`] makes synthetic studies for tests and benchmarks.

pub mod archive;
pub mod audit;
pub mod auth;
pub mod config;
pub mod dicomweb;
pub mod dimse;
pub mod index;
pub mod ingest;
pub mod metrics;
pub mod mpi;
pub mod problem;
pub mod render;
pub mod server;
pub mod store;
pub mod synth;
pub mod web;
