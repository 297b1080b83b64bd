//! `POST /api/v1/policy/check`: what Postern decides for a user's SQL on a datasource,
//! without running anything.

use axum::extract::State;
use axum::Json;
use postern_core::Permission;
use postern_policy::{judge, Arrival, Decision, FirewallVerdict, Mode, SessionView};
use postern_sql::mask::log_text;
use postern_sql::pg::{analyse, split_statements, LexSettings};
use postern_sql::Statement;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::ApiState;

/// Longest SQL text accepted for a check.
const MAX_SQL: usize = 256 * 1024;

/// The request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    user: String,
    datasource: String,
    sql: String,
    /// The session's search_path (default `public`).
    #[serde(default)]
    search_path: Option<Vec<String>>,
    /// The client address firewall rules see (default 127.0.0.1).
    #[serde(default)]
    client: Option<std::net::IpAddr>,
}

/// One statement's verdict.
#[derive(Serialize)]
pub struct StatementVerdict {
    /// The statement with literals masked.
    statement: String,
    /// What Postern understood of it.
    analysis: Statement,
    /// Allowed or denied, and why.
    decision: Decision,
}

/// The answer.
#[derive(Serialize)]
pub struct CheckResponse {
    /// The user's effective mode on the datasource.
    mode: Mode,
    /// The firewall rule that applied to the whole text, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall: Option<FirewallVerdict>,
    /// Whether every statement is allowed.
    allowed: bool,
    /// Per statement, in order.
    statements: Vec<StatementVerdict>,
}

/// `POST /api/v1/policy/check` (admin): `{user, datasource, sql, search_path?}`.
pub async fn check(
    State(st): State<ApiState>,
    caller: Caller,
    Json(req): Json<CheckRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    caller.require(&st, &[Permission::Admin]).await?;
    if req.sql.len() > MAX_SQL {
        return Err(ApiError::bad_request(format!(
            "the SQL text is longer than {MAX_SQL} bytes"
        )));
    }
    let ds = st.store.datasource(&req.datasource).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no datasource {:?} (list them with `postern get datasources`)",
            req.datasource
        ))
    })?;
    if st.store.login_info(&req.user).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no user {:?} (list them with `postern get users`)",
            req.user
        )));
    }
    let policy = st.store.session_policy(&req.user, &ds).await?;
    let mode = policy.mode;
    let lex = LexSettings::default();
    let sql = req.sql;
    // Parsing is CPU work: keep it off the async threads.
    let (analysis, raw_texts, sql) = tokio::task::spawn_blocking(move || {
        let a = analyse(&sql, lex);
        let raw: Vec<String> = split_statements(&sql)
            .into_iter()
            .map(str::to_string)
            .collect();
        (a, raw, sql)
    })
    .await
    .map_err(|e| ApiError::internal(format!("analysis task failed: {e}")))?;
    let path = req
        .search_path
        .unwrap_or_else(|| vec!["public".to_string()]);
    let session = SessionView {
        search_path: Some(path.clone()),
        initial_search_path: path,
        ..SessionView::default()
    };
    let judgement = judge(
        &policy,
        &session,
        &sql,
        &analysis,
        Arrival {
            client: req.client.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            now: time::OffsetDateTime::now_utc(),
        },
    );
    let analysis =
        analysis.map_err(|e| ApiError::bad_request(format!("the SQL does not parse: {e}")))?;
    let statements: Vec<StatementVerdict> = analysis
        .statements
        .into_iter()
        .zip(judgement.decisions)
        .enumerate()
        .map(|(i, (s, decision))| {
            let raw = raw_texts.get(i).map(String::as_str).unwrap_or_default();
            StatementVerdict {
                statement: log_text(raw, lex).masked.into_owned(),
                decision,
                analysis: s,
            }
        })
        .collect();
    let firewall = judgement.firewall;
    Ok(Json(CheckResponse {
        mode,
        firewall,
        allowed: statements.iter().all(|s| s.decision.allowed()),
        statements,
    }))
}
