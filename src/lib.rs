//! flotilla: stand up container clusters from one templated blueprint.
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes; everything else
//! lives here so the integration tests and benchmarks can reach it.

pub mod blueprint;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod docker;
pub mod engine;
pub mod error;
pub mod kinds;
pub mod manager;
pub mod names;
pub mod progress;
pub mod serve;
pub mod ssh;
pub mod state;
pub mod table;
pub mod template;
pub mod util;
