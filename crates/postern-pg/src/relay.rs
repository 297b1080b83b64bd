//! The relay loop: both directions of one session driven by one task.
//!
//! Bytes read from a peer stay in that direction's buffer and are written to the other
//! peer from the same buffer: no copy, no per-message allocation. Messages Postern must
//! see (queries, statement outcomes) are parsed in place; everything else — rows, COPY
//! data — streams through without being buffered whole. Writes happen once per read batch,
//! so a burst of pipelined messages costs one syscall, and a direction stops reading while
//! its buffer is full (back-pressure instead of unbounded memory).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::codec::{frame_header, CodecError, MAX_MESSAGE};
use crate::gate::{Gate, GateOut, Lexing};
use crate::masker::Masker;
use crate::tracker::Tracker;

/// Stop reading from a peer once this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes reserved for each read.
const READ_CHUNK: usize = 16 * 1024;
/// Hand completed statements to the auditor at least this often.
const STATEMENT_BATCH: usize = 64;

/// Who did something wrong or went away.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// I/O with the client failed.
    #[error("client connection: {0}")]
    ClientIo(std::io::Error),
    /// I/O with the upstream failed.
    #[error("upstream connection: {0}")]
    UpstreamIo(std::io::Error),
    /// The client broke the protocol.
    #[error("client protocol violation: {0}")]
    ClientProtocol(CodecError),
    /// The upstream broke the protocol.
    #[error("upstream protocol violation: {0}")]
    UpstreamProtocol(CodecError),
}

/// Why the relay ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client closed its side.
    ClientClosed,
    /// The upstream closed its side.
    UpstreamClosed,
}

/// What one turn of the relay produced.
#[derive(Debug)]
pub enum Step {
    /// Statements completed: drain [`Relay::tracker`]`.completed`.
    Statements,
    /// The store changed: reload the gate's policy ([`Gate::set_policy`]) and step again
    /// (the waiting message is judged then).
    Reload,
    /// The session is over.
    Done(RelayEnd),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

struct Direction {
    side: Side,
    buf: BytesMut,
    /// Leading bytes of `buf` that are processed and may be written.
    fwd: usize,
    /// Bytes of a streamed message still to come after `buf`'s processed part.
    pass: usize,
    /// Total size of an inspected message not yet complete in `buf`.
    need: usize,
    eof: bool,
    unflushed: bool,
    /// Processing stopped at a message the gate will judge after a policy reload.
    held: bool,
    /// Where the processed bytes are rebuilt when messages are replaced (masked rows,
    /// refusals): one copy per batch instead of moving the buffer's tail per message.
    /// Empty between batches; its allocation is kept.
    out: BytesMut,
}

impl Direction {
    fn new(side: Side, initial: BytesMut) -> Self {
        Self {
            side,
            buf: initial,
            fwd: 0,
            pass: 0,
            need: 0,
            eof: false,
            unflushed: false,
            held: false,
            out: BytesMut::new(),
        }
    }

    fn wants_read(&self) -> bool {
        !self.eof && (self.buf.len() < HIGH_WATER || (self.fwd == 0 && self.buf.len() < self.need))
    }

    fn inspected(&self, ty: u8, masker: Option<&Masker>) -> bool {
        match self.side {
            Side::Client => matches!(
                ty,
                b'Q' | b'P' | b'B' | b'E' | b'C' | b'S' | b'F' | b'c' | b'f' | b'D'
            ),
            Side::Server => {
                matches!(ty, b'C' | b'E' | b'I' | b's' | b'Z' | b'G' | b'W' | b'S')
                    || masker.is_some_and(|m| {
                        matches!(ty, b'T' | b'n' | b'N') || (ty == b'D' && m.rows_need_masking())
                    })
            }
        }
    }

    /// Makes `out` hold the processed bytes up to `fwd` (the message at `fwd` is being
    /// replaced); `copied` is how much of `buf` `out` already stands for.
    fn rebuild_to_fwd(&mut self, copied: Option<usize>) {
        let from = copied.unwrap_or(0);
        self.out.extend_from_slice(&self.buf[from..self.fwd]);
    }

    /// Ends a batch with replaced messages: `buf` becomes `out` followed by what of `buf`
    /// was not replaced, positions moved accordingly.
    fn finish_rebuild(&mut self, copied: usize) {
        let (old_len, new_len) = (copied, self.out.len());
        self.out.extend_from_slice(&self.buf[copied..]);
        std::mem::swap(&mut self.buf, &mut self.out);
        self.out.clear();
        let moved = |at: usize| at - old_len + new_len;
        self.fwd = moved(self.fwd);
        if self.need > 0 {
            self.need = moved(self.need);
        }
    }

    /// Advances `fwd` over every message (or streamed part of one) now available. Returns
    /// `true` when it stopped at a message the gate can judge only after a policy reload.
    fn process(
        &mut self,
        tracker: &mut Tracker,
        gate: &mut Option<Gate>,
        masker: &mut Option<Masker>,
    ) -> Result<bool, CodecError> {
        let mut copied = None;
        let held = self.process_messages(tracker, gate, masker, &mut copied)?;
        if let Some(copied) = copied {
            self.finish_rebuild(copied);
        }
        Ok(held)
    }

    /// [`Direction::process`]'s loop; `copied` is set once a message is replaced and then
    /// tells how much of `buf` is already rebuilt in `out`.
    fn process_messages(
        &mut self,
        tracker: &mut Tracker,
        gate: &mut Option<Gate>,
        masker: &mut Option<Masker>,
        copied: &mut Option<usize>,
    ) -> Result<bool, CodecError> {
        loop {
            let avail = self.buf.len() - self.fwd;
            if self.pass > 0 {
                if avail == 0 {
                    return Ok(false);
                }
                let n = self.pass.min(avail);
                self.fwd += n;
                self.pass -= n;
                continue;
            }
            let rest = &self.buf[self.fwd..];
            let Some((ty, total)) = frame_header(rest, MAX_MESSAGE)? else {
                return Ok(false);
            };
            if self.inspected(ty, masker.as_ref()) {
                if rest.len() < total {
                    self.need = self.fwd + total;
                    return Ok(false);
                }
                self.need = 0;
                let body = &rest[5..total];
                let replacement = match (self.side, gate.as_mut()) {
                    (Side::Client, None) => {
                        tracker.client_message(ty, body, None)?;
                        None
                    }
                    (Side::Client, Some(g)) => {
                        let lex = Lexing {
                            standard_conforming_strings: tracker.standard_conforming_strings,
                            utf8_client: tracker.utf8_client,
                        };
                        match g.client_message(ty, body, lex)? {
                            GateOut::Forward(ruling) => {
                                if let Some(m) = masker.as_mut() {
                                    m.client_message(
                                        ty,
                                        body,
                                        ruling.as_ref().map(|r| r.masks.clone()),
                                    );
                                }
                                tracker.client_message(ty, body, ruling)?;
                                None
                            }
                            GateOut::Replace(with, ruling) => {
                                if let Some(m) = masker.as_mut() {
                                    m.client_message(ty, &with[5..], None);
                                }
                                // The audit trail records what the client sent.
                                tracker.client_message(ty, body, Some(ruling))?;
                                Some(with)
                            }
                            GateOut::Stale => return Ok(true),
                        }
                    }
                    (Side::Server, None) => {
                        tracker.server_message(ty, body);
                        None
                    }
                    (Side::Server, Some(g)) => match g.server_message(ty, body) {
                        Some(with) => {
                            if let Some(m) = masker.as_mut() {
                                m.server_message(ty, &with[5..]);
                            }
                            tracker.server_message(ty, &with[5..]);
                            Some(with)
                        }
                        None if ty == b'D' => {
                            if let Some(m) = masker.as_mut() {
                                if m.masks_row() {
                                    if let Some(cols) = m.take_masked() {
                                        tracker.masked(cols);
                                    }
                                    let from = copied.unwrap_or(0);
                                    self.out.extend_from_slice(&self.buf[from..self.fwd]);
                                    m.rewrite_row(body, &mut self.out)?;
                                    *copied = Some(self.fwd + total);
                                }
                            }
                            None
                        }
                        None => {
                            // Errors and notices about masked data lose their text.
                            let scrubbed = masker.as_ref().and_then(|m| m.scrub(ty, body));
                            let body = scrubbed.as_ref().map_or(body, |w| &w[5..]);
                            if let Some(m) = masker.as_mut() {
                                m.server_message(ty, body);
                                if let Some(cols) = m.take_masked() {
                                    tracker.masked(cols);
                                }
                            }
                            let before = tracker.completed.len();
                            tracker.server_message(ty, body);
                            // Told before the client's next message can be judged.
                            if tracker.completed[before..]
                                .iter()
                                .any(crate::tracker::changes_schema)
                            {
                                g.schema_changed();
                            }
                            if ty == b'Z' {
                                confirm_search_path(g, &tracker.completed[before..]);
                            }
                            scrubbed
                        }
                    },
                };
                if let Some(with) = replacement {
                    self.rebuild_to_fwd(*copied);
                    self.out.extend_from_slice(&with);
                    *copied = Some(self.fwd + total);
                }
                self.fwd += total;
            } else {
                let n = total.min(rest.len());
                self.fwd += n;
                self.pass = total - n;
            }
        }
    }
}

/// Tells the gate which lone `SET search_path` statements the server has now confirmed:
/// completed without error, outside a transaction block. Done before the next client
/// message is judged, so a client that waits for ReadyForQuery sees the exact path.
fn confirm_search_path(gate: &mut Gate, just_completed: &[crate::tracker::Completed]) {
    for done in just_completed {
        if let Some(r) = &done.ruling {
            if let (Some((path, at)), None, Some(b'I')) =
                (&r.search_path, &done.error, done.ready_status)
            {
                gate.confirm_search_path(path, *at);
            }
        }
    }
}

/// A running relay between a client and its upstream (any byte streams; in production
/// [`crate::stream::PgStream`], in tests in-memory pipes).
pub struct Relay<'a, C, U> {
    client: &'a mut C,
    upstream: &'a mut U,
    c2s: Direction,
    s2c: Direction,
    /// Statement tracking; `completed` is filled as outcomes arrive.
    pub tracker: Tracker,
    /// The statement gate (every proxied session has one; a bare relay has none).
    pub gate: Option<Gate>,
    /// Result masking, when the session masks anything.
    pub masker: Option<Masker>,
}

impl<'a, C, U> Relay<'a, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Starts relaying. `from_client` / `from_upstream` hold bytes already read past the
    /// handshake.
    pub fn new(
        client: &'a mut C,
        upstream: &'a mut U,
        from_client: BytesMut,
        from_upstream: BytesMut,
    ) -> Self {
        Self {
            client,
            upstream,
            c2s: Direction::new(Side::Client, from_client),
            s2c: Direction::new(Side::Server, from_upstream),
            tracker: Tracker::new(),
            gate: None,
            masker: None,
        }
    }

    /// The upstream and the relay's buffer of bytes read from it, when Postern may run a
    /// query of its own there: the upstream answered everything, outside a transaction
    /// block ([`Tracker::idle`]), and nothing of it or for it is waiting in the buffers.
    pub fn idle_upstream(&mut self) -> Option<(&mut U, &mut BytesMut)> {
        let idle = self.tracker.idle()
            && self.s2c.buf.is_empty()
            && self.s2c.pass == 0
            && !self.s2c.eof
            && self.c2s.fwd == 0
            && self.c2s.pass == 0;
        idle.then_some((&mut *self.upstream, &mut self.s2c.buf))
    }

    /// Runs until statements complete or the session ends.
    pub async fn step(&mut self) -> Result<Step, RelayError> {
        poll_fn(|cx| self.poll_step(cx)).await
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, RelayError>> {
        loop {
            let mut progress = pump(
                &mut self.c2s,
                self.client,
                self.upstream,
                &mut self.tracker,
                &mut self.gate,
                &mut self.masker,
                cx,
            )?;
            progress |= pump(
                &mut self.s2c,
                self.upstream,
                self.client,
                &mut self.tracker,
                &mut self.gate,
                &mut self.masker,
                cx,
            )?;
            let done = self.tracker.completed.len();
            if done >= STATEMENT_BATCH || (done > 0 && !progress) {
                return Poll::Ready(Ok(Step::Statements));
            }
            if self.c2s.held && self.c2s.fwd == 0 {
                // Everything before the held message has been sent on.
                return Poll::Ready(Ok(Step::Reload));
            }
            if self.s2c.eof && self.s2c.fwd == 0 && !self.s2c.unflushed {
                return Poll::Ready(Ok(Step::Done(RelayEnd::UpstreamClosed)));
            }
            if self.c2s.eof && self.c2s.fwd == 0 && !self.c2s.unflushed {
                return Poll::Ready(Ok(Step::Done(RelayEnd::ClientClosed)));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

fn pump<S, D>(
    dir: &mut Direction,
    src: &mut S,
    dst: &mut D,
    tracker: &mut Tracker,
    gate: &mut Option<Gate>,
    masker: &mut Option<Masker>,
    cx: &mut Context<'_>,
) -> Result<bool, RelayError>
where
    S: AsyncRead + Unpin,
    D: AsyncWrite + Unpin,
{
    type IoErr = fn(std::io::Error) -> RelayError;
    let (read_err, write_err, proto_err): (IoErr, IoErr, fn(CodecError) -> RelayError) =
        match dir.side {
            Side::Client => (
                RelayError::ClientIo,
                RelayError::UpstreamIo,
                RelayError::ClientProtocol,
            ),
            Side::Server => (
                RelayError::UpstreamIo,
                RelayError::ClientIo,
                RelayError::UpstreamProtocol,
            ),
        };
    let mut progress = false;
    // A message held for a policy reload is judged again even if nothing new arrives.
    let reading = dir.wants_read() && !dir.held;
    if reading {
        if dir.buf.capacity() - dir.buf.len() < READ_CHUNK / 4 {
            dir.buf.reserve(READ_CHUNK);
        }
        match poll_read_buf(Pin::new(&mut *src), cx, &mut dir.buf) {
            Poll::Ready(Ok(0)) => {
                dir.eof = true;
                progress = true;
            }
            Poll::Ready(Ok(_)) => progress = true,
            Poll::Ready(Err(e)) => return Err(read_err(e)),
            Poll::Pending => {}
        }
    }
    if reading || dir.held {
        dir.held = dir.process(tracker, gate, masker).map_err(proto_err)?;
    }
    while dir.fwd > 0 {
        match Pin::new(&mut *dst).poll_write(cx, &dir.buf[..dir.fwd]) {
            Poll::Ready(Ok(0)) => return Err(write_err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                dir.buf.advance(n);
                dir.fwd -= n;
                dir.need = dir.need.saturating_sub(n);
                dir.unflushed = true;
                progress = true;
            }
            Poll::Ready(Err(e)) => return Err(write_err(e)),
            Poll::Pending => break,
        }
    }
    if dir.fwd == 0 && dir.unflushed {
        match Pin::new(&mut *dst).poll_flush(cx) {
            Poll::Ready(Ok(())) => dir.unflushed = false,
            Poll::Ready(Err(e)) => return Err(write_err(e)),
            Poll::Pending => {}
        }
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Client and server ends are driven by the test; bytes written in tiny pieces must
    /// arrive intact and in order, and statements complete with their outcomes.
    #[tokio::test]
    async fn relays_split_writes_and_tracks_statements() {
        let (mut client_app, mut client_side) = duplex(64);
        let (mut server_side, mut server_app) = duplex(64);
        let task = tokio::spawn(async move {
            let mut relay = Relay::new(
                &mut client_side,
                &mut server_side,
                BytesMut::new(),
                BytesMut::new(),
            );
            let mut completed = Vec::new();
            loop {
                match relay.step().await.unwrap() {
                    Step::Statements => completed.append(&mut relay.tracker.completed),
                    Step::Reload => unreachable!("no gate"),
                    Step::Done(end) => return (end, completed),
                }
            }
        });
        let query = msg(b'Q', b"select 1\0");
        for chunk in query.chunks(3) {
            client_app.write_all(chunk).await.unwrap();
        }
        let mut got = vec![0u8; query.len()];
        server_app.read_exact(&mut got).await.unwrap();
        assert_eq!(got, query);
        // A large row streams through a 64-byte pipe without being buffered whole.
        let row = msg(b'D', &vec![7u8; 100_000]);
        let mut reply = row.clone();
        reply.extend(msg(b'C', b"SELECT 1\0"));
        reply.extend(msg(b'Z', b"I"));
        let writer = tokio::spawn(async move {
            server_app.write_all(&reply).await.unwrap();
            server_app
        });
        let mut got = vec![0u8; row.len() + 14 + 6];
        client_app.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..row.len()], &row[..]);
        let _server_app = writer.await.unwrap();
        drop(client_app);
        let (end, completed) = task.await.unwrap();
        assert_eq!(end, RelayEnd::ClientClosed);
        assert_eq!(completed.len(), 1);
        assert_eq!(&*completed[0].statement, "select 1");
        assert_eq!(completed[0].rows, Some(1));
    }

    #[tokio::test]
    async fn oversized_client_message_is_a_protocol_error() {
        let (mut client_app, mut client_side) = duplex(64);
        let (mut server_side, _server_app) = duplex(64);
        client_app
            .write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, 0])
            .await
            .unwrap();
        let mut relay = Relay::new(
            &mut client_side,
            &mut server_side,
            BytesMut::new(),
            BytesMut::new(),
        );
        match relay.step().await {
            Err(RelayError::ClientProtocol(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
