//! Who is calling: bearer tokens and permission checks.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use postern_audit::{AuditEvent, EventKind, Protocol};
use postern_core::Permission;
use postern_store::TokenScope;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::extract::ClientAddr;
use crate::ApiState;

/// Longest bearer token looked up (Postern's are far shorter).
const MAX_TOKEN_LEN: usize = 512;

/// A signed-in caller: the user a valid bearer token belongs to.
pub struct Caller {
    /// User name.
    pub user: String,
    /// The token presented (needed to revoke it on logout).
    pub token: Zeroizing<String>,
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "not signed in: send `Authorization: Bearer <token>` (get a token with `postern admin login`)",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => {
            return Err(ApiError::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ))
        }
    };
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(expired());
    }
    Ok(token)
}

fn expired() -> ApiError {
    ApiError::unauthorized(
        "the token is invalid or has expired: sign in again with `postern admin login`",
    )
}

/// A caller whose token may be limited to enrolling a second factor (a password-only
/// sign-in while one is required): only the enrolment routes take it.
pub struct EnrollingCaller {
    /// User name.
    pub user: String,
    /// The token presented.
    pub token: Zeroizing<String>,
    /// What the token may do.
    pub scope: TokenScope,
}

async fn resolve(parts: &Parts, st: &ApiState) -> Result<EnrollingCaller, ApiError> {
    let token = bearer(parts)?;
    // The token query itself refuses users disabled or locked after signing in.
    let Some((user, scope)) = st.store.resolve_scoped_token(token).await? else {
        return Err(expired());
    };
    Ok(EnrollingCaller {
        user,
        token: Zeroizing::new(token.to_string()),
        scope,
    })
}

impl FromRequestParts<ApiState> for EnrollingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        resolve(parts, st).await
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        let c = resolve(parts, st).await?;
        if c.scope != TokenScope::Full {
            return Err(ApiError::forbidden(
                "a second factor is required: enrol one with `postern mfa enroll` first",
            ));
        }
        Ok(Caller {
            user: c.user,
            token: c.token,
        })
    }
}

impl Caller {
    /// Succeeds when the caller holds any of `wanted`; otherwise 403 naming what is missing.
    pub async fn require(&self, st: &ApiState, wanted: &[Permission]) -> Result<(), ApiError> {
        let held = st.store.permissions(&self.user).await?;
        if held.iter().any(|p| wanted.contains(p)) {
            return Ok(());
        }
        let names: Vec<&str> = wanted.iter().map(|p| p.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "user {} lacks the permission for this ({} needed); an admin can grant it through a role's `permissions`",
            self.user,
            names.join(" or ")
        )))
    }

    /// Requires [`Permission::Admin`].
    pub async fn require_admin(&self, st: &ApiState) -> Result<(), ApiError> {
        self.require(st, &[Permission::Admin]).await
    }

    fn change_event(&self, client: &ClientAddr, detail: serde_json::Value) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::AdminChange);
        e.protocol = Some(Protocol::Api);
        e.user = Some(self.user.as_str().into());
        e.client_addr = client.audit();
        e.detail = Some(detail);
        e
    }

    /// Records an `admin_change` event by this caller and waits until it is durable.
    /// `detail` is `{action, kind, name}`: never a secret.
    pub async fn record_change(
        &self,
        st: &ApiState,
        client: &ClientAddr,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        st.audit
            .record_durable(self.change_event(client, detail))
            .await?;
        Ok(())
    }

    /// As [`Caller::record_change`], without waiting for durability (a later durable
    /// event from the same task covers it: the writer keeps order).
    pub async fn record_change_queued(
        &self,
        st: &ApiState,
        client: &ClientAddr,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        st.audit.record(self.change_event(client, detail)).await?;
        Ok(())
    }
}
