//! Signing in and out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use postern_audit::{AuditEvent, EventKind, Protocol};
use postern_core::Permission;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientAddr};
use crate::ApiState;

/// Longest user name recorded in a refused-login event.
const MAX_AUDITED_NAME: usize = 128;

/// The one answer to every refused password, so names cannot be probed.
const INVALID: &str = "invalid user name or password";

/// `POST /api/v1/auth/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    user: String,
    password: Zeroizing<String>,
}

/// `POST /api/v1/auth/login` answer.
#[derive(Serialize)]
pub struct LoginResponse {
    token: String,
    expires_at: String,
    user: String,
}

/// `GET /api/v1/whoami` answer.
#[derive(Serialize)]
pub struct WhoAmI {
    user: String,
    permissions: Vec<Permission>,
}

fn login_event(kind: EventKind, user: &str, client: &ClientAddr) -> AuditEvent {
    let mut e = AuditEvent::new(kind);
    e.protocol = Some(Protocol::Api);
    let name: String = user.chars().take(MAX_AUDITED_NAME).collect();
    e.user = Some(name.into());
    e.client_addr = client.audit();
    e
}

/// Signs in with a password and returns a bearer token.
///
/// Unknown users and wrong passwords get the same answer, and both pay for a full argon2
/// verification (the store checks unknown names against a decoy hash), so neither the text
/// nor the timing tells them apart. Every refusal is on record before the caller hears it.
pub async fn login(
    State(st): State<ApiState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let info = st.store.login_info(&req.user).await?;
    let password_ok = st.store.verify_password(&req.user, &req.password).await?;
    let refusal = match &info {
        None => Some("unknown user"),
        Some(i) if i.disabled => Some("user is disabled"),
        Some(_) if !password_ok => Some("wrong password"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        let mut e = login_event(EventKind::LoginFailure, &req.user, &client);
        e.error = Some(reason.to_string());
        st.audit.record_durable(e).await?;
        tracing::info!(user = %log_name(&req.user), reason, "API sign-in refused");
        return Err(ApiError::unauthorized(INVALID));
    }
    let token = st.store.create_api_token(&req.user, st.token_ttl).await?;
    st.audit
        .record_durable(login_event(EventKind::LoginSuccess, &req.user, &client))
        .await?;
    Ok(Json(LoginResponse {
        token,
        expires_at: expires_at(st.token_ttl),
        user: req.user,
    }))
}

/// A user name safe to log: bounded, control characters replaced.
fn log_name(user: &str) -> String {
    user.chars()
        .take(MAX_AUDITED_NAME)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// RFC 3339 UTC time `ttl` from now (seconds precision).
fn expires_at(ttl: std::time::Duration) -> String {
    let now = time::OffsetDateTime::now_utc();
    let at = time::Duration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(now);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Revokes the token the request carries.
pub async fn logout(State(st): State<ApiState>, caller: Caller) -> Result<StatusCode, ApiError> {
    st.store.revoke_api_token(&caller.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the token belongs to and what they may do.
pub async fn whoami(State(st): State<ApiState>, caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    let permissions = st.store.permissions(&caller.user).await?;
    Ok(Json(WhoAmI {
        user: caller.user,
        permissions,
    }))
}
