//! Real servers for the tests (dev only). Nothing here is a mock: each is the program users run,
//! started on loopback in a temporary folder.
//!
//! - [`postgres`]: one PostgreSQL cluster per test process, a fresh database per caller.
//! - [`ports`]: ports for the servers the tests start.

pub mod ports;
pub mod postgres;
