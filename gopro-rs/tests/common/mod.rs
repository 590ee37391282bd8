//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod server;
pub mod vectors;
