//! The audit table: a durable sink for the audit writer, and searches over it.

use postern_audit::{AuditEvent, AuditSink, ChainHead, EventKind, Sealed, SinkError};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use crate::{Store, StoreError};

/// Results per search when no limit is given.
pub const DEFAULT_SEARCH_LIMIT: u32 = 100;
/// Largest number of results one search returns.
pub const MAX_SEARCH_LIMIT: u32 = 10_000;

/// Which audit events to return. Every field is optional; given fields must all match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AuditFilter {
    /// Postern user.
    pub user: Option<String>,
    /// Datasource alias.
    pub datasource: Option<String>,
    /// Event kind, snake_case (`login_failure`, `statement`, …).
    pub kind: Option<String>,
    /// Events at or after this time (RFC 3339, compared as text: `2024-05-01` works).
    pub since: Option<String>,
    /// Events before this time (RFC 3339, compared as text).
    pub until: Option<String>,
    /// Most events to return, newest first: 100 by default, at most 10000.
    pub limit: Option<u32>,
}

/// The store as an audit sink: each batch is inserted in one transaction.
#[derive(Clone)]
pub struct StoreAuditSink {
    pool: SqlitePool,
}

impl std::fmt::Debug for StoreAuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreAuditSink")
    }
}

fn sink_error(message: impl std::fmt::Display) -> SinkError {
    SinkError {
        sink: "store".into(),
        message: message.to_string(),
    }
}

/// Rows per INSERT statement (8 parameters each, well under SQLite's 32766).
const ROWS_PER_INSERT: usize = 500;

impl StoreAuditSink {
    async fn insert(&self, batch: &[Sealed]) -> Result<(), SinkError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sink_error)?;
        // One multi-row INSERT per chunk: the SQLite driver runs each statement on its own
        // worker thread, so a statement per row would cost a cross-thread round trip per event.
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let mut seqs = Vec::with_capacity(chunk.len());
            for s in chunk {
                seqs.push(
                    i64::try_from(s.event.seq)
                        .map_err(|_| sink_error("sequence number overflow"))?,
                );
            }
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO audit_events (seq, ts, kind, user, datasource, session, json, hash) ",
            );
            q.push_values(
                chunk.iter().zip(&seqs),
                |mut row, (Sealed { event: e, json }, seq)| {
                    row.push_bind(*seq)
                        .push_bind(e.ts.as_str())
                        .push_bind(e.kind.as_str())
                        .push_bind(e.user.as_deref())
                        .push_bind(e.datasource.as_deref())
                        .push_bind(e.session.as_deref())
                        .push_bind(json.as_str())
                        .push_bind(e.hash.as_str());
                },
            );
            q.push(" ON CONFLICT (seq) DO NOTHING");
            let done = q.build().execute(&mut *tx).await.map_err(sink_error)?;
            if done.rows_affected() as usize == chunk.len() {
                continue;
            }
            // Some rows were already there: a retry of a batch whose commit was reported
            // failed but happened is fine; a different event under the same number is a fork
            // of the chain.
            for (Sealed { event: e, .. }, seq) in chunk.iter().zip(&seqs) {
                let (stored,): (String,) =
                    sqlx::query_as("SELECT hash FROM audit_events WHERE seq = ?")
                        .bind(seq)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(sink_error)?;
                if stored != e.hash {
                    return Err(sink_error(format_args!(
                        "audit event {} is already stored with a different hash; is another \
                         Postern process writing to the same database?",
                        e.seq
                    )));
                }
            }
        }
        tx.commit().await.map_err(sink_error)
    }
}

#[async_trait::async_trait]
impl AuditSink for StoreAuditSink {
    fn name(&self) -> &str {
        "store"
    }

    async fn write_batch(&mut self, batch: &[Sealed]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.insert(batch).await
    }
}

fn parse_event(json: &str) -> Result<AuditEvent, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt(format_args!("an audit event ({e})")))
}

impl Store {
    /// A sink writing audit batches into this store.
    pub fn audit_sink(&self) -> StoreAuditSink {
        StoreAuditSink {
            pool: self.pool.clone(),
        }
    }

    /// The last stored event's sequence number and hash, or the genesis head when the
    /// table is empty: where the audit writer continues the chain.
    pub async fn audit_head(&self) -> Result<ChainHead, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((seq, hash)) => ChainHead {
                seq: u64::try_from(seq).map_err(|_| StoreError::corrupt("the audit sequence"))?,
                hash,
            },
            None => ChainHead::genesis(),
        })
    }

    /// Events matching `f`, newest first.
    pub async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        if let Some(k) = &f.kind {
            if EventKind::parse(k).is_none() {
                return Err(StoreError::Invalid(format!(
                    "unknown audit event kind {k:?}; kinds are snake_case, such as login_success, \
                     login_failure, session_open, session_close, statement, admin_change, server_start"
                )));
            }
        }
        let limit = f
            .limit
            .unwrap_or(DEFAULT_SEARCH_LIMIT)
            .min(MAX_SEARCH_LIMIT);
        let mut q = QueryBuilder::<Sqlite>::new("SELECT json FROM audit_events WHERE 1 = 1");
        for (column, op, value) in [
            ("user", "=", &f.user),
            ("datasource", "=", &f.datasource),
            ("kind", "=", &f.kind),
            ("ts", ">=", &f.since),
            ("ts", "<", &f.until),
        ] {
            if let Some(v) = value {
                q.push(format_args!(" AND {column} {op} ")).push_bind(v);
            }
        }
        q.push(" ORDER BY ts DESC, seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<(String,)> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.iter().map(|(j,)| parse_event(j)).collect()
    }

    /// Every event in ascending sequence order, for verifying the chain.
    pub async fn audit_all(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT json FROM audit_events ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|(j,)| parse_event(j)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::open_temp;
    use postern_audit::{chain, verify_chain};

    fn event(head: &mut ChainHead, kind: EventKind, user: &str, ds: &str, ts: &str) -> AuditEvent {
        let mut e = AuditEvent::new(kind);
        e.ts = ts.into();
        e.user = Some(user.into());
        e.datasource = Some(ds.into());
        e.session = Some("s1".into());
        chain::link(head, &mut e);
        e
    }

    fn sealed(events: &[AuditEvent]) -> Vec<Sealed> {
        events
            .iter()
            .map(|e| Sealed {
                event: e.clone(),
                json: serde_json::to_string(e).unwrap(),
            })
            .collect()
    }

    async fn seeded() -> (tempfile::TempDir, Store, Vec<AuditEvent>) {
        let (d, store) = open_temp().await;
        let mut head = ChainHead::genesis();
        let events = vec![
            event(
                &mut head,
                EventKind::LoginSuccess,
                "alice",
                "shop",
                "2024-05-01T10:00:00.000000Z",
            ),
            event(
                &mut head,
                EventKind::Statement,
                "alice",
                "shop",
                "2024-05-01T10:00:01.000000Z",
            ),
            event(
                &mut head,
                EventKind::LoginFailure,
                "bob",
                "crm",
                "2024-05-02T09:00:00.000000Z",
            ),
            event(
                &mut head,
                EventKind::Statement,
                "bob",
                "shop",
                "2024-05-03T09:00:00.000000Z",
            ),
        ];
        let mut sink = store.audit_sink();
        sink.write_batch(&sealed(&events[..3])).await.unwrap();
        sink.write_batch(&sealed(&events[3..])).await.unwrap();
        (d, store, events)
    }

    fn seqs(v: &[AuditEvent]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn head_and_full_chain() {
        let (_d, store) = open_temp().await;
        assert_eq!(store.audit_head().await.unwrap(), ChainHead::genesis());
        let (_d, store, events) = seeded().await;
        let head = store.audit_head().await.unwrap();
        assert_eq!(head.seq, 4);
        assert_eq!(head.hash, events[3].hash);
        let all = store.audit_all().await.unwrap();
        assert_eq!(all, events);
        assert_eq!(verify_chain(&ChainHead::genesis(), &all).unwrap(), head);
    }

    #[tokio::test]
    async fn retried_batch_is_idempotent_but_a_fork_is_refused() {
        let (_d, store, events) = seeded().await;
        let mut sink = store.audit_sink();
        sink.write_batch(&sealed(&events[2..])).await.unwrap();
        assert_eq!(store.audit_all().await.unwrap().len(), 4);
        let mut forked = events[3].clone();
        forked.statement = Some("select 'other'".into());
        forked.hash = chain::event_hash(&forked);
        let e = sink.write_batch(&sealed(&[forked])).await.unwrap_err();
        assert!(e.to_string().contains("different hash"), "{e}");
        assert_eq!(sink.name(), "store");
    }

    #[tokio::test]
    async fn search_filters() {
        let (_d, store, _) = seeded().await;
        let all = store.audit_search(&AuditFilter::default()).await.unwrap();
        assert_eq!(seqs(&all), vec![4, 3, 2, 1]);
        let f = |user: Option<&str>, ds: Option<&str>, kind: Option<&str>| AuditFilter {
            user: user.map(Into::into),
            datasource: ds.map(Into::into),
            kind: kind.map(Into::into),
            ..Default::default()
        };
        let s = |f| {
            let store = store.clone();
            async move { seqs(&store.audit_search(&f).await.unwrap()) }
        };
        assert_eq!(s(f(Some("alice"), None, None)).await, vec![2, 1]);
        assert_eq!(s(f(None, Some("shop"), None)).await, vec![4, 2, 1]);
        assert_eq!(s(f(None, None, Some("statement"))).await, vec![4, 2]);
        assert_eq!(
            s(f(Some("bob"), Some("shop"), Some("statement"))).await,
            vec![4]
        );
        assert_eq!(s(f(Some("carol"), None, None)).await, Vec::<u64>::new());
        let range = AuditFilter {
            since: Some("2024-05-01T10:00:01".into()),
            until: Some("2024-05-03".into()),
            ..Default::default()
        };
        assert_eq!(s(range).await, vec![3, 2]);
        let limited = AuditFilter {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(s(limited).await, vec![4, 3]);
        let e = store
            .audit_search(&f(None, None, Some("bogus")))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)));
    }

    #[test]
    fn filter_deserializes_from_partial_json() {
        let f: AuditFilter = serde_json::from_str(r#"{"user":"alice","limit":5}"#).unwrap();
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.limit, Some(5));
        assert!(f.kind.is_none());
    }
}
