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

/// Links `e` after `head`, advances `head`, and returns the event's final JSON.
///
/// The event is serialised once: `hash` is the last field, so the JSON hashed (with
/// `"hash":""`) becomes the stored JSON by splicing the digest into that empty string.
pub fn link(head: &mut ChainHead, e: &mut AuditEvent) -> String {
    e.seq = head.seq + 1;
    e.prev_hash = std::mem::take(&mut head.hash);
    e.hash.clear();
    let mut json = serde_json::to_string(e).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(json.as_bytes()));
    if json.ends_with("\"hash\":\"\"}") {
        json.truncate(json.len() - 2);
        json.push_str(&digest);
        json.push_str("\"}");
    }
    e.hash = digest;
    head.seq = e.seq;
    head.hash = e.hash.clone();
    json
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
        let mut head = ChainHead::genesis();
        (0..n)
            .map(|i| {
                let mut e = AuditEvent::new(EventKind::Statement);
                e.statement = Some(format!("select {i}").into());
                let json = link(&mut head, &mut e);
                assert_eq!(json, serde_json::to_string(&e).unwrap());
                e
            })
            .collect()
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
