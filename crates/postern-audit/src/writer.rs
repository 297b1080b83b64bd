//! The single writer task and the handle sessions use to reach it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::chain::{link_into, ChainHead};
use crate::event::AuditEvent;
use crate::sink::{AuditSink, SealedBatch};

/// The audit writer has stopped; the caller must refuse what it was about to do.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is not accepting events (Postern is shutting down); the action was refused")]
pub struct AuditClosed;

struct Envelope {
    event: AuditEvent,
    ack: Option<oneshot::Sender<()>>,
}

/// A handle to the audit log. Cheap to clone; one per session.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Envelope>,
}

impl AuditLog {
    /// Queues an event, waiting while the queue is full (back-pressure, never a drop).
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditClosed> {
        self.tx
            .send(Envelope { event, ack: None })
            .await
            .map_err(|_| AuditClosed)
    }

    /// Queues an event and waits until it is durable in every sink. Use before telling a
    /// client about a denial, so the denial is on record first.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditClosed> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Envelope {
                event,
                ack: Some(ack),
            })
            .await
            .map_err(|_| AuditClosed)?;
        done.await.map_err(|_| AuditClosed)
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer: batches events, chains them, and persists each batch in every sink.
pub struct AuditWriter {
    rx: mpsc::Receiver<Envelope>,
    sinks: Vec<Box<dyn AuditSink>>,
    head: ChainHead,
    batch_max: usize,
    window: Duration,
}

impl AuditWriter {
    /// A writer continuing the chain after `head`, with a queue of `capacity` events.
    pub fn new(
        capacity: usize,
        sinks: Vec<Box<dyn AuditSink>>,
        head: ChainHead,
    ) -> (AuditLog, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            AuditLog { tx },
            Self {
                rx,
                sinks,
                head,
                batch_max: 1024,
                window: Duration::from_millis(5),
            },
        )
    }

    /// Sets the group-commit window: after the first event of a batch arrives, the writer
    /// waits this long for more before writing. Longer windows mean fewer writes, fsyncs
    /// and cross-thread wake-ups per event; `record_durable` callers wait up to this much
    /// longer. Zero writes as soon as anything is queued.
    pub fn with_group_commit_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Runs the writer on a thread of its own, at a lower CPU priority (`nice` added to the
    /// thread's niceness; Linux only, best effort), and returns a handle that completes when
    /// the writer has drained the queue and stopped.
    ///
    /// Why a thread: linking and packing a batch is a burst of CPU work (JSON, SHA-256, LZ4,
    /// SQLite) that, on a runtime worker, would hold up every session scheduled behind it.
    /// Why lower priority: statements come first; the writer uses what is left. It cannot
    /// fall behind for good — when its queue is full, sessions wait for it (back-pressure).
    /// Threads the writer starts (SQLite's, file I/O) inherit its priority.
    pub fn spawn_thread(self, nice: i32) -> std::io::Result<AuditThread> {
        let (done_tx, done) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("postern-audit-io")
            .build()?;
        std::thread::Builder::new()
            .name("postern-audit".into())
            .spawn(move || {
                lower_priority(nice);
                rt.block_on(self.run());
                // Dropping the runtime waits for the file I/O it started.
                drop(rt);
                let _ = done_tx.send(());
            })?;
        Ok(AuditThread { done })
    }

    /// Runs until every [`AuditLog`] handle is dropped and the queue is drained.
    pub async fn run(mut self) {
        let mut batch: Vec<Envelope> = Vec::with_capacity(self.batch_max);
        let mut sealed = SealedBatch {
            events: Vec::with_capacity(self.batch_max),
            lines: Vec::with_capacity(256 * 1024),
        };
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            if self.rx.recv_many(&mut batch, self.batch_max).await == 0 {
                return;
            }
            if !self.window.is_zero() && batch.len() < self.batch_max {
                // While the writer sleeps no waker is registered, so senders queue events
                // without waking it: one wake-up per window instead of one per event.
                tokio::time::sleep(self.window).await;
                while batch.len() < self.batch_max {
                    match self.rx.try_recv() {
                        Ok(env) => batch.push(env),
                        Err(_) => break,
                    }
                }
            }
            sealed.clear();
            for env in batch.drain(..) {
                let mut event = env.event;
                link_into(&mut self.head, &mut event, &mut sealed.lines);
                sealed.events.push(event);
                acks.extend(env.ack);
            }
            for sink in self.sinks.iter_mut() {
                let mut delay = Duration::from_millis(50);
                loop {
                    match sink.write_batch(&sealed).await {
                        Ok(()) => break,
                        Err(e) => {
                            // Never drop: hold the batch (and, through back-pressure, the
                            // sessions) until the sink is back.
                            tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64,
                                "audit sink failed; sessions wait until it recovers");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }
}

/// The audit writer running on its own thread ([`AuditWriter::spawn_thread`]).
pub struct AuditThread {
    done: oneshot::Receiver<()>,
}

impl AuditThread {
    /// Waits until the writer has stopped (every [`AuditLog`] dropped, the queue written).
    pub async fn join(self) {
        let _ = self.done.await;
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // On Linux, niceness belongs to the thread: this one and those it starts.
    let tid = rustix::thread::gettid();
    let res = rustix::process::getpriority_process(Some(tid))
        .and_then(|now| rustix::process::setpriority_process(Some(tid), now.saturating_add(nice)));
    if let Err(e) = res {
        tracing::debug!(error = %e, "audit writer: cannot lower its CPU priority; runs at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::verify_chain;
    use crate::event::EventKind;
    use crate::sink::{JsonlSink, SinkError};
    use std::sync::{Arc, Mutex};

    struct Flaky {
        fail_first: usize,
        seen: Arc<Mutex<Vec<AuditEvent>>>,
    }

    #[async_trait::async_trait]
    impl AuditSink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn write_batch(&mut self, batch: &SealedBatch) -> Result<(), SinkError> {
            if self.fail_first > 0 {
                self.fail_first -= 1;
                return Err(SinkError {
                    sink: "flaky".into(),
                    message: "down".into(),
                });
            }
            self.seen
                .lock()
                .unwrap()
                .extend(batch.events.iter().cloned());
            Ok(())
        }
    }

    #[tokio::test]
    async fn nothing_dropped_through_failures_and_backpressure() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let sinks: Vec<Box<dyn AuditSink>> = vec![
            Box::new(Flaky {
                fail_first: 2,
                seen: seen.clone(),
            }),
            Box::new(JsonlSink::new(&file)),
        ];
        let (log, writer) = AuditWriter::new(4, sinks, ChainHead::genesis());
        let task = tokio::spawn(writer.run());
        let mut senders = Vec::new();
        for t in 0..4 {
            let log = log.clone();
            senders.push(tokio::spawn(async move {
                for i in 0..50 {
                    let mut e = AuditEvent::new(EventKind::Statement);
                    e.statement = Some(format!("{t}-{i}").into());
                    log.record(e).await.unwrap();
                }
            }));
        }
        for s in senders {
            s.await.unwrap();
        }
        log.record_durable(AuditEvent::new(EventKind::SessionClose))
            .await
            .unwrap();
        drop(log);
        task.await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 201);
        verify_chain(&ChainHead::genesis(), seen.iter()).unwrap();
        let lines = std::fs::read_to_string(&file).unwrap();
        assert_eq!(lines.lines().count(), 201);
    }
}
