//! `POST /api/v1/policy/check`: what Postern decides for a user's SQL on a datasource,
//! without running anything.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use postern_core::Permission;
use postern_policy::{
    decide, evaluate, Context, Decision, FirewallAction, FirewallInput, FirewallRule,
    FirewallVerdict, Mode,
};
use postern_sql::mask::{ends_with_line_comment, log_text};
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
    let (rules, mode) = st.store.statement_policy(&req.user, &ds.name).await?;
    let roles: Vec<String> = st
        .store
        .role_grants(&req.user)
        .await?
        .into_iter()
        .map(|g| g.role)
        .collect();
    let firewall_rules = ds
        .firewall
        .iter()
        .map(FirewallRule::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let lex = LexSettings::default();
    let sql = req.sql;
    // Parsing is CPU work: keep it off the async threads.
    let analysis = tokio::task::spawn_blocking(move || {
        let a = analyse(&sql, lex);
        let raw: Vec<String> = split_statements(&sql)
            .into_iter()
            .map(str::to_string)
            .collect();
        let comment_terminated = ends_with_line_comment(&sql);
        (a, raw, comment_terminated, sql)
    })
    .await
    .map_err(|e| ApiError::internal(format!("analysis task failed: {e}")))?;
    let (analysis, raw_texts, comment_terminated, sql) = analysis;
    let analysis =
        analysis.map_err(|e| ApiError::bad_request(format!("the SQL does not parse: {e}")))?;
    let firewall = if mode == Mode::Passthrough {
        None
    } else {
        evaluate(
            &firewall_rules,
            &FirewallInput {
                datasource: &ds.name,
                roles: &roles,
                client: req.client.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
                now: time::OffsetDateTime::now_utc(),
                text: &sql,
                analysis: &analysis,
                comment_terminated,
            },
        )
    };
    let firewall_denial = firewall.as_ref().and_then(|v| match v.action {
        FirewallAction::Deny => Some(Decision::Deny {
            reason: format!("refused by firewall rule {}", v.rule),
            rule: Some(format!("firewall: {}", v.rule)),
        }),
        // The check shows admins which rule decided; the client would see only this.
        FirewallAction::DenySilently => Some(Decision::Deny {
            reason: "refused by Postern's policy".into(),
            rule: Some(format!("firewall: {}", v.rule)),
        }),
        FirewallAction::Allow | FirewallAction::AllowAndAlert => None,
    });
    let allow_list: Vec<&str> = ds.allow_list.iter().map(String::as_str).collect();
    let path = req
        .search_path
        .unwrap_or_else(|| vec!["public".to_string()]);
    let prepared = HashMap::new();
    let statements: Vec<StatementVerdict> = analysis
        .statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let raw = raw_texts.get(i).map(String::as_str).unwrap_or_default();
            let decision = match &firewall_denial {
                Some(d) => d.clone(),
                None => decide(
                    &s,
                    &Context {
                        datasource: &ds.name,
                        database: &ds.database,
                        search_path: Some(&path),
                        existing_schemas: None,
                        mode,
                        rules: &rules,
                        catalog_read: true,
                        prepared: &prepared,
                        allow_listed: allow_list.contains(&postern_store::allow_list_form(raw)),
                    },
                ),
            };
            StatementVerdict {
                statement: log_text(raw, lex).masked.into_owned(),
                decision,
                analysis: s,
            }
        })
        .collect();
    Ok(Json(CheckResponse {
        mode,
        firewall,
        allowed: statements.iter().all(|s| s.decision.allowed()),
        statements,
    }))
}
