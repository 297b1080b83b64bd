//! Audit search and chain verification.

use axum::extract::State;
use axum::Json;
use postern_audit::{format_ts, verify_chain, AuditEvent, ChainHead, EventKind};
use postern_core::Permission;
use postern_store::AuditFilter;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::ApiState;

/// Who may read the audit log.
const READERS: [Permission; 2] = [Permission::Admin, Permission::AuditRead];

/// Most events one search returns.
const MAX_LIMIT: u32 = 10_000;

/// `GET /api/v1/audit` query.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    user: Option<String>,
    datasource: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/audit`: events matching every given filter, newest first as the store
/// returns them. `statement_clear` and `parameters` are left out unless the caller is an admin or holds
/// `view-clear-sql-log`. `since`/`until` are RFC 3339 times (any offset) or dates (`2024-05-01`,
/// midnight UTC).
pub async fn search(
    State(st): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    caller.require(&st, &READERS).await?;
    let filter = to_filter(q)?;
    let mut events = st.store.audit_search(&filter).await?;
    // Statement literals in clear only for those allowed to see them.
    if caller
        .require(&st, &[Permission::Admin, Permission::ViewClearSqlLog])
        .await
        .is_err()
    {
        for e in &mut events {
            e.statement_clear = None;
            e.parameters.clear();
        }
    }
    Ok(Json(events))
}

fn to_filter(q: AuditQuery) -> Result<AuditFilter, ApiError> {
    if let Some(k) = &q.kind {
        if EventKind::parse(k).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown event kind `{k}`: use login_success, login_failure, session_open, session_close, statement, admin_change or server_start"
            )));
        }
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(AuditFilter {
        user: non_empty(q.user),
        datasource: non_empty(q.datasource),
        kind: non_empty(q.kind),
        since: non_empty(q.since)
            .map(|s| normalize_time("since", &s))
            .transpose()?,
        until: non_empty(q.until)
            .map(|s| normalize_time("until", &s))
            .transpose()?,
        limit: Some(q.limit.unwrap_or(100).clamp(1, MAX_LIMIT)),
    })
}

/// Rewrites a time in the events' own format (UTC, microseconds), so that the store's
/// text comparison orders it correctly.
fn normalize_time(field: &str, s: &str) -> Result<String, ApiError> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            Date::parse(s, format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{field}` must be an RFC 3339 time such as 2024-05-01T12:00:00Z, or a date such as 2024-05-01"
            ))
        })?
        ;
    // The store compares times as text in the audit events' own format.
    Ok(format_ts(t))
}

/// `GET /api/v1/audit/verify` answer.
#[derive(Serialize, Deserialize, Debug)]
pub struct VerifyReport {
    /// Whether the whole chain verifies.
    pub ok: bool,
    /// Events checked.
    pub events: usize,
    /// The last verified event's sequence number.
    pub head_seq: u64,
    /// Where and how the chain breaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/audit/verify`: checks the hash chain over every stored event, from the
/// first. Loads the whole log in memory.
pub async fn verify(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    caller.require(&st, &READERS).await?;
    let events = st.store.audit_all().await?;
    let n = events.len();
    // Hashing every event is CPU work: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        verify_chain(&ChainHead::genesis(), events.iter()).map_err(|e| {
            // The last good event is the one before the failing one.
            let seq = match &e {
                postern_audit::ChainError::Link { seq }
                | postern_audit::ChainError::Content { seq }
                | postern_audit::ChainError::Gap { seq, .. } => *seq,
            };
            (seq, e.to_string())
        })
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(match result {
        Ok(head) => VerifyReport {
            ok: true,
            events: n,
            head_seq: head.seq,
            error: None,
        },
        Err((seq, msg)) => VerifyReport {
            ok: false,
            events: n,
            head_seq: seq.saturating_sub(1),
            error: Some(msg),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_normalize_to_event_format() {
        assert_eq!(
            normalize_time("since", "2024-05-01T14:00:00+02:00").unwrap(),
            "2024-05-01T12:00:00.000000Z"
        );
        assert_eq!(
            normalize_time("since", "2024-05-01").unwrap(),
            "2024-05-01T00:00:00.000000Z"
        );
        assert!(normalize_time("since", "yesterday").is_err());
    }

    #[test]
    fn filter_rejects_unknown_kind_and_clamps_limit() {
        let q = AuditQuery {
            kind: Some("nope".into()),
            ..Default::default()
        };
        assert!(to_filter(q).is_err());
        let q = AuditQuery {
            limit: Some(1_000_000),
            user: Some(String::new()),
            ..Default::default()
        };
        let f = to_filter(q).unwrap();
        assert_eq!(f.limit, Some(MAX_LIMIT));
        assert_eq!(f.user, None);
    }
}
