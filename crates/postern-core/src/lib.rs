//! Postern's domain model and pure decisions.
//!
//! This crate performs no I/O: it holds the resource types shared by the store, the API,
//! the CLI and the protocol proxies, and the functions that decide who may do what.
//! Keeping it pure is what makes the decisions table-testable.

pub mod access;
pub mod model;
pub mod names;

pub use access::{choose_credential, AccessDenied, RoleGrants};
pub use model::*;
pub use names::{split_login, LoginTarget};
