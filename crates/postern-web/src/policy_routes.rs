//! `POST /api/v1/policy/check`: what Postern decides for a user's SQL on a datasource,
//! without running anything.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use postern_core::Permission;
use postern_policy::{decide, Context, Decision, Mode};
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
    let (rules, mode) = st.store.statement_policy(&req.user, &ds.name).await?;
    let lex = LexSettings::default();
    let sql = req.sql;
    // Parsing is CPU work: keep it off the async threads.
    let analysis = tokio::task::spawn_blocking(move || {
        let a = analyse(&sql, lex);
        let split = pg_statement_texts(&sql);
        (a, split)
    })
    .await
    .map_err(|e| ApiError::internal(format!("analysis task failed: {e}")))?;
    let (analysis, texts) = analysis;
    let analysis =
        analysis.map_err(|e| ApiError::bad_request(format!("the SQL does not parse: {e}")))?;
    let path = req
        .search_path
        .unwrap_or_else(|| vec!["public".to_string()]);
    let prepared = HashMap::new();
    let cx = Context {
        datasource: &ds.name,
        database: &ds.database,
        search_path: Some(&path),
        existing_schemas: None,
        mode,
        rules: &rules,
        catalog_read: true,
        prepared: &prepared,
        allow_listed: false,
    };
    let statements: Vec<StatementVerdict> = analysis
        .statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| StatementVerdict {
            statement: texts.get(i).cloned().unwrap_or_default(),
            decision: decide(&s, &cx),
            analysis: s,
        })
        .collect();
    Ok(Json(CheckResponse {
        mode,
        allowed: statements.iter().all(|s| s.decision.allowed()),
        statements,
    }))
}

/// The statements of `sql`, each with its literals masked.
fn pg_statement_texts(sql: &str) -> Vec<String> {
    split_statements(sql)
        .into_iter()
        .map(|s| log_text(s, LexSettings::default()).masked)
        .collect()
}
