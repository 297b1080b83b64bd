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
use postern_store::TokenScope;

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
    /// The TOTP (or recovery) code, when the user has a second factor.
    #[serde(default)]
    code: Option<Zeroizing<String>>,
}

/// `POST /api/v1/auth/login` answer.
#[derive(Serialize)]
pub struct LoginResponse {
    /// The bearer token; absent when a code is still needed (`next` = `totp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    user: String,
    /// What the client must do next: `totp` (send the login again with `code`) or
    /// `enroll` (the token may only enrol a second factor: `POST /mfa/enroll`, then
    /// `POST /mfa/confirm`). Absent when signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'static str>,
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

/// The address brute-force accounting counts a caller under.
pub(crate) fn client_ip(client: &ClientAddr) -> std::net::IpAddr {
    client
        .0
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// Records a refused sign-in, then returns the error for it.
async fn refused(
    st: &ApiState,
    user: &str,
    client: &ClientAddr,
    reason: &str,
    answer: ApiError,
) -> Result<Json<LoginResponse>, ApiError> {
    let mut e = login_event(EventKind::LoginFailure, user, client);
    e.error = Some(reason.to_string());
    st.audit.record_durable(e).await?;
    tracing::info!(user = %log_name(user), reason, "API sign-in refused");
    Err(answer)
}

/// Signs in with a password (and, when the user has one, a second-factor code) through
/// the shared login flow, and returns a bearer token.
///
/// Unknown users and wrong passwords get the same answer, and both pay for a full argon2
/// verification (the store checks unknown names against a decoy hash), so neither the text
/// nor the timing tells them apart. Failures count towards lockouts. Every refusal is on
/// record before the caller hears it.
pub async fn login(
    State(st): State<ApiState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let ip = client_ip(&client);
    let flow = &st.login;
    if let Err(d) = flow.admit(&req.user, ip) {
        let msg = match &d.hint {
            Some(h) => format!("{}; {h}", d.message),
            None => d.message.clone(),
        };
        return refused(
            &st,
            &req.user,
            &client,
            &d.reason,
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg),
        )
        .await;
    }
    let info = st.store.login_info(&req.user).await?;
    let mut method = "password";
    let refusal = if flow.directory_checks(info.as_ref()) {
        // The directory checks the password (and records the user and their roles).
        method = "ldap";
        match flow.directory_password(&req.user, &req.password).await {
            Ok(()) => None,
            Err(d) if d.kind == postern_login::DenialKind::Internal => {
                let mut e = login_event(EventKind::LoginFailure, &req.user, &client);
                e.error = Some(d.reason.clone());
                st.audit.record_durable(e).await?;
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, d.message));
            }
            Err(d) => Some(d.reason),
        }
    } else {
        let password_ok = st.store.verify_password(&req.user, &req.password).await?;
        match &info {
            None => Some("unknown user".to_string()),
            Some(i) if i.disabled => Some("user is disabled".to_string()),
            Some(i) if i.locked => Some("user is locked by an admin".to_string()),
            Some(_) if !password_ok => Some("wrong password".to_string()),
            Some(_) => None,
        }
    };
    if let Some(reason) = refusal {
        let reason = reason.as_str();
        flow.failed(&req.user, ip, Protocol::Api).await;
        return refused(
            &st,
            &req.user,
            &client,
            reason,
            ApiError::unauthorized(INVALID),
        )
        .await;
    }
    flow.succeeded(&req.user, ip);
    let mut factor = "not required";
    if flow.config().require_2fa {
        let status = st.store.mfa_status(&req.user).await?;
        if !status.enrolled {
            // Signed in only to enrol (the bootstrap admin's first login, a factor reset).
            let token = st
                .store
                .create_scoped_token(&req.user, ENROLL_TTL, TokenScope::Enroll)
                .await?;
            return Ok(Json(LoginResponse {
                token: Some(token),
                expires_at: Some(expires_at(ENROLL_TTL)),
                user: req.user,
                next: Some("enroll"),
            }));
        }
        let Some(code) = &req.code else {
            return Ok(Json(LoginResponse {
                token: None,
                expires_at: None,
                user: req.user,
                next: Some("totp"),
            }));
        };
        if !flow.check_code(&req.user, code).await? {
            flow.failed(&req.user, ip, Protocol::Api).await;
            return refused(
                &st,
                &req.user,
                &client,
                "wrong second-factor code",
                ApiError::unauthorized("the second-factor code is wrong, expired or already used"),
            )
            .await;
        }
        factor = "code";
    }
    let token = st.store.create_api_token(&req.user, st.token_ttl).await?;
    let mut e = login_event(EventKind::LoginSuccess, &req.user, &client);
    e.detail = Some(serde_json::json!({ "auth": method, "second_factor": factor }));
    st.audit.record_durable(e).await?;
    Ok(Json(LoginResponse {
        token: Some(token),
        expires_at: Some(expires_at(st.token_ttl)),
        user: req.user,
        next: None,
    }))
}

/// Lifetime of a token that may only enrol a second factor.
pub(crate) const ENROLL_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A user name safe to log: bounded, control characters replaced.
fn log_name(user: &str) -> String {
    user.chars()
        .take(MAX_AUDITED_NAME)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// RFC 3339 UTC time `ttl` from now (seconds precision).
pub(crate) fn expires_at(ttl: std::time::Duration) -> String {
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

/// `GET /api/v1/auth/oidc` answer: what the command-line client needs to sign in at the
/// identity provider, and a nonce for this one sign-in.
#[derive(Serialize)]
pub struct SsoStart {
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    nonce: String,
}

/// Starts a single sign-on: the provider's settings and a single-use nonce.
pub async fn sso_start(
    State(st): State<ApiState>,
    client: ClientAddr,
) -> Result<Json<SsoStart>, ApiError> {
    let Some(sso) = st.login.sso() else {
        return Err(ApiError::not_found(
            "single sign-on is not configured on this Postern ([oidc] in its configuration); sign in with a password",
        ));
    };
    let nonce = sso
        .issue_nonce(client_ip(&client))
        .map_err(|e| ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
    let s = sso.settings();
    Ok(Json(SsoStart {
        issuer: s.issuer.clone(),
        client_id: s.client_id.clone(),
        scopes: s.scopes.clone(),
        nonce,
    }))
}

/// `POST /api/v1/auth/oidc` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoLogin {
    id_token: Zeroizing<String>,
}

/// Signs in with an ID token from the identity provider (which stands for both factors).
pub async fn sso_login(
    State(st): State<ApiState>,
    client: ClientAddr,
    ApiJson(req): ApiJson<SsoLogin>,
) -> Result<Json<LoginResponse>, ApiError> {
    let who = match st.login.sso_login(&req.id_token).await {
        Ok(w) => w,
        Err(d) => {
            let status = if d.kind == postern_login::DenialKind::Internal {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            return refused(
                &st,
                "",
                &client,
                &d.reason,
                ApiError::new(status, d.message),
            )
            .await;
        }
    };
    let token = st.store.create_api_token(&who.user, st.token_ttl).await?;
    let mut e = login_event(EventKind::LoginSuccess, &who.user, &client);
    e.detail = Some(serde_json::json!({
        "auth": "oidc",
        "second_factor": "identity provider",
        "subject": who.subject,
        "groups": who.groups,
    }));
    st.audit.record_durable(e).await?;
    Ok(Json(LoginResponse {
        token: Some(token),
        expires_at: Some(expires_at(st.token_ttl)),
        user: who.user,
        next: None,
    }))
}
