//! The tamper-evident hash chain over audit events.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::AuditEvent;

/// The end of the chain: the last sequence number and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChainHead {
    /// Last sequence number written (0 when empty).
    pub seq: u64,
    /// Hash of that event (64 zeros when empty).
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: "0".repeat(64),
        }
    }
}

/// Where a chain stops verifying.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// An event's `prev_hash` is not the previous event's hash (deleted or reordered events).
    #[error("event {seq}: link broken (an event before it was removed, inserted or reordered)")]
    Link {
        /// The event.
        seq: u64,
    },
    /// An event's content does not match its hash (edited event).
    #[error("event {seq}: content does not match its hash (the event was altered)")]
    Content {
        /// The event.
        seq: u64,
    },
    /// Sequence numbers are not consecutive.
    #[error("event {seq}: sequence gap after {prev}")]
    Gap {
        /// The event.
        seq: u64,
        /// The one before it.
        prev: u64,
    },
}

/// The hash of an event: SHA-256 of its JSON with `hash` empty.
pub fn event_hash(e: &AuditEvent) -> String {
    let mut copy = e.clone();
    copy.hash.clear();
    let bytes = serde_json::to_vec(&copy).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Links `e` after `head`, advances `head`, and appends the event's final JSON and a
/// newline to `out` (a batch's lines are built in one buffer: no allocation per event).
///
/// The event is serialised once: `hash` is the last field, so the JSON hashed (with
/// `"hash":""`) becomes the stored JSON by splicing the digest into that empty string.
pub fn link_into(head: &mut ChainHead, e: &mut AuditEvent, out: &mut Vec<u8>) {
    e.seq = head.seq + 1;
    e.prev_hash = std::mem::take(&mut head.hash);
    e.hash.clear();
    let start = out.len();
    if let Err(err) = serde_json::to_writer(&mut *out, e) {
        // Strings and numbers into memory do not fail; if it ever did, the chain still gets
        // a well-formed, verifiable event saying so — not a line no reader can parse.
        out.truncate(start);
        *e = unserialisable(e, &err);
        let _ = serde_json::to_writer(&mut *out, e);
    }
    let digest = hex::encode(Sha256::digest(&out[start..]));
    if out.ends_with(b"\"hash\":\"\"}") {
        out.truncate(out.len() - 2);
        out.extend_from_slice(digest.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b'\n');
    head.seq = e.seq;
    head.hash.clone_from(&digest);
    e.hash = digest;
}

/// What is kept of an event whose JSON could not be written: its place in the chain, when,
/// what kind and who — plain strings, which always serialise — and why the rest is missing.
fn unserialisable(e: &AuditEvent, err: &serde_json::Error) -> AuditEvent {
    let mut kept = AuditEvent::new(e.kind);
    kept.seq = e.seq;
    kept.ts.clone_from(&e.ts);
    kept.prev_hash.clone_from(&e.prev_hash);
    kept.protocol = e.protocol;
    kept.session.clone_from(&e.session);
    kept.user.clone_from(&e.user);
    kept.client_addr.clone_from(&e.client_addr);
    kept.datasource.clone_from(&e.datasource);
    kept.db_user.clone_from(&e.db_user);
    kept.error = Some(format!(
        "Postern could not serialise this audit event ({err}); only when, what kind and who \
         are kept"
    ));
    kept
}

/// Verifies a run of consecutive events starting after `start` (genesis for a full log).
/// Returns the head after the last event.
pub fn verify_chain<'a>(
    start: &ChainHead,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Result<ChainHead, ChainError> {
    let mut head = start.clone();
    for e in events {
        if e.seq != head.seq + 1 {
            return Err(ChainError::Gap {
                seq: e.seq,
                prev: head.seq,
            });
        }
        if e.prev_hash != head.hash {
            return Err(ChainError::Link { seq: e.seq });
        }
        if event_hash(e) != e.hash {
            return Err(ChainError::Content { seq: e.seq });
        }
        head = ChainHead {
            seq: e.seq,
            hash: e.hash.clone(),
        };
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn chain(n: usize) -> Vec<AuditEvent> {
        let events = (0..n).map(|i| {
            let mut e = AuditEvent::new(EventKind::Statement);
            e.statement = Some(format!("select {i}").into());
            e
        });
        crate::SealedBatch::link(&mut ChainHead::genesis(), events).events
    }

    #[test]
    fn an_unserialisable_event_keeps_its_place_and_says_why() {
        let mut head = ChainHead::genesis();
        let mut e = AuditEvent::new(EventKind::Statement);
        e.user = Some("alice".into());
        e.statement = Some("select 1".into());
        e.seq = 7;
        e.prev_hash = "ab".repeat(32);
        let err = serde_json::from_str::<u8>("x").unwrap_err();
        let mut kept = unserialisable(&e, &err);
        assert_eq!(
            (kept.seq, kept.kind, kept.ts.as_str()),
            (7, e.kind, e.ts.as_str())
        );
        assert_eq!(
            (kept.user.clone(), kept.prev_hash.clone()),
            (e.user, e.prev_hash)
        );
        assert_eq!(kept.statement, None);
        assert!(kept
            .error
            .as_deref()
            .unwrap()
            .contains("could not serialise"));
        // And it links and verifies like any other event.
        let mut out = Vec::new();
        link_into(&mut head, &mut kept, &mut out);
        let line = std::str::from_utf8(&out).unwrap().trim_end();
        let back: AuditEvent = serde_json::from_str(line).unwrap();
        verify_chain(&ChainHead::genesis(), [&back]).unwrap();
    }

    #[test]
    fn batch_lines_are_the_events_json() {
        let mut head = ChainHead::genesis();
        let events = (0..4).map(|i| {
            let mut e = AuditEvent::new(EventKind::Statement);
            e.statement = Some(format!("select '{i}\n\"'").into());
            e
        });
        let b = crate::SealedBatch::link(&mut head, events);
        let text = std::str::from_utf8(&b.lines).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        for (line, e) in lines.iter().zip(&b.events) {
            assert_eq!(*line, serde_json::to_string(e).unwrap());
            let back: AuditEvent = serde_json::from_str(line).unwrap();
            assert_eq!(&back, e);
        }
        assert_eq!(head.seq, 4);
        assert_eq!(head.hash, b.events[3].hash);
        verify_chain(&ChainHead::genesis(), &b.events).unwrap();
    }

    #[test]
    fn valid_chain_verifies() {
        let c = chain(5);
        let head = verify_chain(&ChainHead::genesis(), &c).unwrap();
        assert_eq!(head.seq, 5);
        // JSON round trip keeps hashes valid.
        let back: Vec<AuditEvent> = c
            .iter()
            .map(|e| serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap())
            .collect();
        verify_chain(&ChainHead::genesis(), &back).unwrap();
    }

    #[test]
    fn tampering_detected() {
        let mut c = chain(5);
        c[2].statement = Some("select 'edited'".into());
        assert_eq!(
            verify_chain(&ChainHead::genesis(), &c),
            Err(ChainError::Content { seq: 3 })
        );
        let mut c = chain(5);
        c.remove(2);
        assert!(matches!(
            verify_chain(&ChainHead::genesis(), &c),
            Err(ChainError::Gap { seq: 4, prev: 2 })
        ));
        let mut c = chain(5);
        c[3].seq = 3;
        c.remove(2);
        assert!(verify_chain(&ChainHead::genesis(), &c).is_err());
    }
}
