//! Durable destinations of audit batches.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::event::AuditEvent;

/// A sink failed to persist a batch; the writer retries it.
#[derive(Debug, thiserror::Error)]
#[error("audit sink {sink}: {message}")]
pub struct SinkError {
    /// Which sink.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

/// A batch of events linked into the chain, with their final JSON.
#[derive(Debug, Clone, Default)]
pub struct SealedBatch {
    /// The events, `seq` and hashes set, in chain order.
    pub events: Vec<AuditEvent>,
    /// Their JSON, one `\n`-terminated line per event in the same order: serialised once
    /// for every sink, in one buffer.
    pub lines: Vec<u8>,
}

impl SealedBatch {
    /// Links `events` after `head` (tests and tools; the writer links as events arrive).
    pub fn link(head: &mut crate::ChainHead, events: impl IntoIterator<Item = AuditEvent>) -> Self {
        let mut b = Self::default();
        for mut e in events {
            crate::chain::link_into(head, &mut e, &mut b.lines);
            b.events.push(e);
        }
        b
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.events.clear();
        self.lines.clear();
    }
}

/// A durable destination. `write_batch` returns only once the batch is durable (or failed).
#[async_trait::async_trait]
pub trait AuditSink: Send {
    /// Name for logs.
    fn name(&self) -> &str;
    /// Persists a batch of chained events, in order.
    async fn write_batch(&mut self, batch: &SealedBatch) -> Result<(), SinkError>;
}

/// Appends one JSON object per line to a file, syncing each batch to disk.
pub struct JsonlSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl JsonlSink {
    /// A sink appending to `path` (created with mode 0600 when missing).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
        }
    }

    async fn open(&self) -> std::io::Result<tokio::fs::File> {
        let mut o = tokio::fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        o.mode(0o600);
        o.open(&self.path).await
    }
}

#[async_trait::async_trait]
impl AuditSink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn write_batch(&mut self, batch: &SealedBatch) -> Result<(), SinkError> {
        let err = |e: std::io::Error| SinkError {
            sink: "jsonl".into(),
            message: e.to_string(),
        };
        if self.file.is_none() {
            self.file = Some(self.open().await.map_err(err)?);
        }
        // Never report a batch durable that was not written.
        let f = self.file.as_mut().ok_or_else(|| SinkError {
            sink: "jsonl".into(),
            message: "the file is not open".into(),
        })?;
        let res = async {
            f.write_all(&batch.lines).await?;
            f.sync_data().await
        }
        .await;
        if let Err(e) = res {
            // Reopen next time: the file may have been rotated or the disk remounted.
            self.file = None;
            return Err(err(e));
        }
        Ok(())
    }
}
