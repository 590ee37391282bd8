//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod pki;
#[cfg(feature = "cli")]
pub mod process;
#[cfg(feature = "runtime")]
pub mod server;
pub mod vectors;
