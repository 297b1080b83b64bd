//! Audit is not logging.
//!
//! Every event goes through a bounded channel to one writer task that assigns it a sequence
//! number, links it into a SHA-256 hash chain, and hands batches to durable sinks (the store
//! and a JSON-lines file). When the channel is full, senders wait: back-pressure, never a
//! dropped event. When a sink fails, the writer retries the same batch until it succeeds,
//! so sessions stall rather than act unaudited.

pub mod chain;
pub mod event;
pub mod sink;
pub mod writer;

pub use chain::{verify_chain, ChainError, ChainHead};
pub use event::{
    format_ts, now_ts, AuditEvent, Decision, EventKind, MaskedColumn, Protocol, SessionIdent,
};
pub use sink::{AuditSink, JsonlSink, SealedBatch, SinkError};
pub use writer::{AuditClosed, AuditLog, AuditThread, AuditWriter};
