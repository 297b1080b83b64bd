//! `POST /api/v1/policy/check`: what Postern decides for a user's SQL on a datasource,
//! without running anything.

use axum::extract::State;
use axum::Json;
use postern_core::Permission;
use std::collections::HashMap;

use postern_core::DatasourceSpec;
use postern_policy::{
    judge, Arrival, Decision, FirewallVerdict, Mode, PlannedMask, Policy, SessionMasking,
    SessionView,
};
use postern_sql::mask::log_text;
use postern_sql::pg::{analyse, split_statements, LexSettings};
use postern_sql::Statement;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::ApiState;

/// Works out the masking a user's session on a datasource would get (the upstream catalog
/// it reads is needed to know what the rules cover). The server wires in the PostgreSQL
/// proxy's implementation; the API crate stays free of wire protocols.
#[async_trait::async_trait]
pub trait MaskingProbe: Send + Sync {
    /// `Ok(None)` when no masking rule may apply; else the session's masking (`None`
    /// inside when the rules cover nothing there) and its search_path. Errors say what
    /// failed, for the admin.
    async fn session_masking(
        &self,
        user: &str,
        ds: &DatasourceSpec,
        policy: &Policy,
    ) -> Result<Option<(Option<SessionMasking>, Vec<String>)>, String>;
}

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
    /// The result columns Postern would mask.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    masked: Vec<PlannedMask>,
}

/// Whether masking applies, as far as the check could tell.
#[derive(Serialize)]
pub struct MaskingStatus {
    /// Rules (`policy/rule`) the user is subject to on this datasource and database.
    rules: Vec<String>,
    /// Why the masking plan could not be worked out (the upstream catalog could not be
    /// read): the decisions shown then ignore masking.
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable: Option<String>,
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
    /// Masking, when rules may apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    masking: Option<MaskingStatus>,
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
    let mysql = ds.kind == postern_core::DatasourceType::Mysql;
    // Parsing is CPU work: keep it off the async threads.
    let (analysis, raw_texts, sql) = tokio::task::spawn_blocking(move || {
        let (a, raw) = if mysql {
            (
                postern_sql::mysql::analyse(&sql),
                postern_sql::mysql::split_statements(&sql),
            )
        } else {
            (analyse(&sql, lex), split_statements(&sql))
        };
        let raw: Vec<String> = raw.into_iter().map(str::to_string).collect();
        (a, raw, sql)
    })
    .await
    .map_err(|e| ApiError::internal(format!("analysis task failed: {e}")))?;
    let explicit_path = req.search_path.is_some();
    // MySQL: the "search_path" is the current database (the datasource's, unless given).
    let path = req.search_path.unwrap_or_else(|| {
        if mysql {
            vec![ds.database.to_lowercase()]
        } else {
            vec!["public".to_string()]
        }
    });
    let session = SessionView {
        search_path: Some(path.clone()),
        initial_search_path: path.clone(),
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
    // The masking plan, as a session would make it (same catalog query, same guards).
    let (masking_status, masking) = match &st.masking_probe {
        Some(probe) if mode != Mode::Passthrough => {
            match probe.session_masking(&req.user, &ds, &policy).await {
                Ok(None) => (None, None),
                Ok(Some((m, session_path))) => (
                    Some(MaskingStatus {
                        rules: policy.masking_rules().map(|r| r.name.clone()).collect(),
                        unavailable: None,
                    }),
                    // Without an explicit --search-path, names resolve as in a session: through
                    // the upstream's own search_path.
                    m.map(|m| {
                        (
                            m,
                            if explicit_path {
                                path.clone()
                            } else {
                                session_path
                            },
                        )
                    }),
                ),
                Err(e) => (
                    Some(MaskingStatus {
                        rules: policy.masking_rules().map(|r| r.name.clone()).collect(),
                        unavailable: Some(e),
                    }),
                    None,
                ),
            }
        }
        _ => (None, None),
    };
    let prepared = HashMap::new();
    let statements: Vec<StatementVerdict> = analysis
        .statements
        .into_iter()
        .zip(judgement.decisions)
        .enumerate()
        .map(|(i, (s, mut decision))| {
            let raw = raw_texts.get(i).map(String::as_str).unwrap_or_default();
            let mut masked = Vec::new();
            if let (Some((m, path)), postern_sql::Statement::Analysed(facts), true) =
                (&masking, &s, decision.allowed())
            {
                match m.plan(facts, &prepared, path, mode) {
                    Ok(Some(plan)) => masked = m.explain(facts, &plan, path),
                    Ok(None) => {}
                    Err(r) => {
                        decision = Decision::Deny {
                            reason: r.reason,
                            rule: r.rule,
                        }
                    }
                }
            }
            StatementVerdict {
                statement: if mysql {
                    postern_sql::mysql_mask::mysql_log_text(raw)
                        .masked
                        .into_owned()
                } else {
                    log_text(raw, lex).masked.into_owned()
                },
                decision,
                analysis: s,
                masked,
            }
        })
        .collect();
    let firewall = judgement.firewall;
    Ok(Json(CheckResponse {
        mode,
        firewall,
        allowed: statements.iter().all(|s| s.decision.allowed()),
        masking: masking_status,
        statements,
    }))
}
