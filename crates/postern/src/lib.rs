//! Postern library: configuration, server wiring and the admin CLI client.
//!
//! The binary (`main.rs`) only parses the command line and calls into these modules, so
//! tests can start a whole server in-process with [`server::start`].

pub mod client;
pub mod config;
pub mod server;
