//! Second factor and account holds: TOTP enrolment, admin reset, locks, and approvals of
//! native-tool logins.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use postern_audit::{AuditEvent, EventKind, Protocol};
use postern_core::Permission;
use postern_login::{totp, Outcome, PendingView};
use postern_store::TokenScope;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::{Caller, EnrollingCaller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::login::{client_ip, expires_at};
use crate::ApiState;

fn event(user: &str, client: &ClientAddr, detail: serde_json::Value) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::SecondFactor);
    e.protocol = Some(Protocol::Api);
    e.user = Some(user.into());
    e.client_addr = client.audit();
    e.detail = Some(detail);
    e
}

/// `POST /api/v1/mfa/enroll` answer: what the authenticator app needs.
#[derive(Serialize)]
pub struct Enrolment {
    /// The secret, base32.
    secret: Zeroizing<String>,
    /// The `otpauth://` URI (what the QR code holds).
    uri: Zeroizing<String>,
}

/// Starts enrolling a TOTP factor for the caller; it counts once confirmed.
pub async fn enroll(
    State(st): State<ApiState>,
    caller: EnrollingCaller,
) -> Result<Json<Enrolment>, ApiError> {
    let secret = totp::new_secret();
    st.store.mfa_begin(&caller.user, &secret).await?;
    Ok(Json(Enrolment {
        secret: totp::secret_base32(&secret),
        uri: totp::otpauth_uri(&secret, &caller.user, "Postern"),
    }))
}

/// `POST /api/v1/mfa/confirm` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    code: Zeroizing<String>,
}

/// `POST /api/v1/mfa/confirm` answer.
#[derive(Serialize)]
pub struct Confirmed {
    /// Single-use recovery codes, shown this once.
    recovery_codes: Vec<String>,
    /// A full token, when the caller signed in only to enrol.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// Confirms the enrolment with a first code from the app; returns recovery codes.
pub async fn confirm(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: EnrollingCaller,
    ApiJson(req): ApiJson<Confirm>,
) -> Result<Json<Confirmed>, ApiError> {
    let Some(secret) = st.store.mfa_pending_secret(&caller.user).await? else {
        return Err(ApiError::bad_request(
            "no enrolment in progress: start one with `postern mfa enroll`",
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Some(step) = totp::verify(&secret, &req.code, now, st.login.config().totp_skew_steps)
    else {
        st.login
            .failed(&caller.user, client_ip(&client), Protocol::Api)
            .await;
        return Err(ApiError::bad_request(
            "that code does not match: check the app's clock and type the current code",
        ));
    };
    let (codes, hashes) = totp::new_recovery_codes();
    st.store.mfa_confirm(&caller.user, step, &hashes).await?;
    st.audit
        .record_durable(event(
            &caller.user,
            &client,
            serde_json::json!({ "action": "enrolled" }),
        ))
        .await?;
    let (token, expires) = if caller.scope == TokenScope::Enroll {
        st.store.revoke_api_token(&caller.token).await?;
        let t = st
            .store
            .create_api_token(&caller.user, st.token_ttl)
            .await?;
        (Some(t), Some(expires_at(st.token_ttl)))
    } else {
        (None, None)
    };
    Ok(Json(Confirmed {
        recovery_codes: codes,
        token,
        expires_at: expires,
    }))
}

/// `GET /api/v1/mfa`: the caller's second-factor state.
pub async fn status(
    State(st): State<ApiState>,
    caller: EnrollingCaller,
) -> Result<Json<postern_store::MfaStatus>, ApiError> {
    Ok(Json(st.store.mfa_status(&caller.user).await?))
}

/// Ends what `name` holds now: API tokens, client certificates (a factor reset often means
/// a lost or stolen device, which may hold one) and logins waiting for approval (their live
/// proxy sessions end on their own: the store's change counter moved).
async fn cut_access(st: &ApiState, name: &str, by: &str) -> Result<(), ApiError> {
    st.store.revoke_user_tokens(name).await?;
    st.store.revoke_user_certs(name, by).await?;
    st.login.approvals.forget_user(name);
    Ok(())
}

/// Records the admin change `action` on user `name`.
async fn record_user_change(
    caller: &Caller,
    st: &ApiState,
    client: &ClientAddr,
    action: &str,
    name: &str,
) -> Result<(), ApiError> {
    caller
        .record_change(
            st,
            client,
            serde_json::json!({ "action": action, "kind": "user", "name": name }),
        )
        .await
}

/// `DELETE /api/v1/users/{name}/mfa` (admin): removes a user's factor; they enrol again.
pub async fn reset(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&st, &[Permission::Admin]).await?;
    st.store.mfa_reset(&name).await?;
    cut_access(&st, &name, &caller.user).await?;
    record_user_change(&caller, &st, &client, "mfa-reset", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/users/{name}/lock` (admin): refuses the user's logins and ends their
/// sessions until unlocked.
pub async fn lock(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&st, &[Permission::Admin]).await?;
    if name == caller.user {
        return Err(ApiError::bad_request(
            "you cannot lock yourself out; ask another admin",
        ));
    }
    st.store.set_locked(&name, true).await?;
    cut_access(&st, &name, &caller.user).await?;
    record_user_change(&caller, &st, &client, "lock", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/users/{name}/unlock` (admin): lifts the admin lock and any lockout from
/// failed logins.
pub async fn unlock(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&st, &[Permission::Admin]).await?;
    st.store.set_locked(&name, false).await?;
    st.login.unlock_user(&name);
    record_user_change(&caller, &st, &client, "unlock", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/approvals/{id}`: a pending approval (whose login, from where, for what).
pub async fn approval(
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PendingView>, ApiError> {
    st.login
        .approvals
        .get(&id)
        .map(Json)
        .ok_or_else(no_approval)
}

/// `GET /api/v1/approvals`: the caller's pending approvals.
pub async fn my_approvals(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<PendingView>>, ApiError> {
    Ok(Json(st.login.approvals.of_user(&caller.user)))
}

fn no_approval() -> ApiError {
    ApiError::not_found(
        "no such login is waiting for approval (it may have timed out or been answered): \
         connect again and use the id it shows",
    )
}

/// `POST /api/v1/approvals/{id}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// The TOTP (or recovery) code of the user whose login it is.
    code: Zeroizing<String>,
    /// `false` refuses the login (still needs the code).
    #[serde(default = "yes")]
    approve: bool,
}

fn yes() -> bool {
    true
}

/// Approves (or refuses) a waiting login with the user's code. No token needed: the code
/// is the proof, and wrong codes are limited per approval and counted as failed logins.
pub async fn decide(
    State(st): State<ApiState>,
    client: ClientAddr,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Decide>,
) -> Result<StatusCode, ApiError> {
    let Some(view) = st.login.approvals.get(&id) else {
        return Err(no_approval());
    };
    let ip = client_ip(&client);
    if let Err(d) = st.login.admit(&view.user, ip) {
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, d.message));
    }
    if !st.login.check_code(&view.user, &req.code).await? {
        st.login.failed(&view.user, ip, Protocol::Api).await;
        let denied = st.login.approvals.wrong_code(&id);
        st.audit
            .record_durable(event(
                &view.user,
                &client,
                serde_json::json!({ "action": "approval code wrong", "approval": id, "denied": denied }),
            ))
            .await?;
        return Err(ApiError::unauthorized(if denied {
            "wrong code; too many wrong codes, so the login was refused"
        } else {
            "wrong code: use the current code of your authenticator app"
        }));
    }
    let (outcome, action) = if req.approve {
        (Outcome::Approved, "approved")
    } else {
        (Outcome::Denied("refused by the user".into()), "refused")
    };
    // Resolved first, so the audit trail records only an approval that took effect (one
    // that timed out meanwhile is a 404 with nothing recorded as approved).
    if !st.login.approvals.resolve(&id, outcome) {
        return Err(no_approval());
    }
    st.audit
        .record_durable(event(
            &view.user,
            &client,
            serde_json::json!({ "action": action, "approval": id, "source": view.source, "target": view.target }),
        ))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
