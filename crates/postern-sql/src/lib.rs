//! SQL analysis for Postern's statement-level decisions: for each statement, what it reads,
//! writes, calls, defines and changes in the session, as a typed value ([`Analysis`]).
//!
//! Pure: no I/O, no policy. The PostgreSQL analyser ([`pg`]) uses PostgreSQL's own
//! grammar; a statement it cannot analyse is reported as [`Statement::Unanalysable`],
//! never guessed.

pub mod analysis;
pub mod cache;
pub mod flow;
pub mod mask;
pub mod mysql;
pub mod mysql_flow;
pub mod mysql_mask;
pub mod pg;
pub mod tree;

pub use analysis::{
    Access, Action, Analysis, Flags, ObjectName, SessionEffect, Statement, StatementFacts,
    StatementKind, SyntaxError,
};
pub use flow::{ColumnFlow, Output, Refs};
