//! Postern's HTTPS JSON admin API.
//!
//! Every route lives under `/api/v1` and answers JSON; errors are `{"error": "..."}` with a
//! status that says whose fault it was (4xx: the caller's, with the fix in the message;
//! 5xx: Postern's, with the detail only in the server log).
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /api/v1/auth/login` | anyone | `{user, password, code?}` → `{token, expires_at, user}`; with `next: "totp"` (no token: send `code`) or `next: "enroll"` (a token that may only enrol) when a second factor is required |
//! | `GET /api/v1/auth/oidc` | anyone | single sign-on settings (`issuer`, `client_id`, `scopes`) and a single-use `nonce` |
//! | `POST /api/v1/auth/oidc` | anyone | `{id_token}` from the identity provider (with that nonce) → `{token, expires_at, user}` |
//! | `GET /api/v1/mfa` | signed in (also enrolling) | `{enrolled, recovery_codes_left}` |
//! | `POST /api/v1/mfa/enroll` | signed in (also enrolling) | `{secret, uri}` of a new TOTP factor |
//! | `POST /api/v1/mfa/confirm` | signed in (also enrolling) | `{code}` → `{recovery_codes, token?}` |
//! | `DELETE /api/v1/users/{name}/mfa` | admin | removes a user's factor (they enrol again) |
//! | `POST /api/v1/users/{name}/lock`, `/unlock` | admin | admin lock (ends live sessions); unlock also lifts lockouts |
//! | `GET /api/v1/approvals` | signed in | the caller's logins waiting for approval |
//! | `GET /api/v1/approvals/{id}` | anyone with the id | one waiting login |
//! | `POST /api/v1/approvals/{id}` | anyone with the id | `{code, approve?}`: the user's TOTP code approves (or refuses) it |
//! | `POST /api/v1/certs` | signed in | `{csr, ttl_seconds?}` → a client certificate for the caller from the user CA (`{serial, certificate, not_after, user_ca}`) |
//! | `GET /api/v1/certs` | signed in | unexpired certificates: own; admins anyone's (`?user=`) |
//! | `POST /api/v1/certs/revoke` | signed in | `{serial}` or `{user}`: own certificates; admins anyone's |
//! | `GET /api/v1/me/datasources` | signed in | the datasources the caller's roles reach, and Postern's ports |
//! | `POST /api/v1/auth/logout` | signed in | revokes the presented token |
//! | `GET /api/v1/whoami` | signed in | `{user, permissions}` |
//! | `GET /api/v1/{kind}` | admin | list `users`, `roles`, `masking-policies`, `datasources`, `credentials` |
//! | `GET /api/v1/{kind}/{name}` | admin | one resource (never its secret) |
//! | `PUT /api/v1/{kind}/{name}` | admin | create or update one resource (its spec as JSON) |
//! | `DELETE /api/v1/{kind}/{name}` | admin | delete one resource |
//! | `POST /api/v1/apply` | admin | an [`postern_core::ApplyDocument`] → list of changes |
//! | `POST /api/v1/users/{name}/password` | admin, or the user with `current_password` | `{password}` |
//! | `GET /api/v1/audit` | admin or `audit-read` | search events (`user`, `datasource`, `kind`, `since`, `until`, `limit`) |
//! | `GET /api/v1/audit/verify` | admin or `audit-read` | verifies the whole hash chain |
//! | `POST /api/v1/policy/check` | admin | `{user, datasource, sql, search_path?}` → the mode, and per statement its analysis and decision (nothing runs) |
//! | `GET /healthz` | anyone | liveness |
//! | `GET /metrics` | anyone | Prometheus text; holds counters only, no names or secrets — firewall the API port if even that must stay private |
//!
//! Authentication is `Authorization: Bearer <token>`, a token from `auth/login`. Every
//! successful change is recorded as an `admin_change` audit event before the answer goes
//! out; logins and refused logins are recorded too. Request bodies are limited to
//! [`MAX_BODY`] bytes.

mod audit_routes;
mod auth;
mod cert_routes;
mod error;
mod extract;
mod key_routes;
mod login;
mod mfa_routes;
mod ops;
pub mod policy_routes;
mod resources;
mod serve;
mod ssh_routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use postern_audit::AuditLog;
use postern_store::Store;

pub use cert_routes::{CertIssuer, Listeners};
pub use error::ApiError;
pub use serve::serve;

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// What the API handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Store,
    /// The audit log.
    pub audit: AuditLog,
    /// Metrics exposed on `/metrics`.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// Lifetime of the tokens `auth/login` issues.
    pub token_ttl: Duration,
    /// The login flow shared with the proxies (lockouts, second factor, approvals).
    pub login: Arc<postern_login::LoginFlow>,
    /// Issues client certificates (`None`: this server issues none).
    pub certs: Option<Arc<CertIssuer>>,
    /// Postern's ports, told to clients that ask where to connect.
    pub listeners: Listeners,
    /// Reads the upstream catalog a session's masking needs, so `policy/check` can show
    /// the masking plan (`None`: the check shows decisions only).
    pub masking_probe: Option<Arc<dyn policy_routes::MaskingProbe>>,
}

/// The API as an axum router, without TLS: [`serve`] runs it over HTTPS; tests call it
/// directly.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/auth/login", post(login::login))
        .route("/auth/logout", post(login::logout))
        .route("/auth/oidc", get(login::sso_start).post(login::sso_login))
        .route("/whoami", get(login::whoami))
        .route("/apply", post(resources::apply))
        .route("/audit", get(audit_routes::search))
        .route("/audit/verify", get(audit_routes::verify))
        .route("/ssh/sessions", get(ssh_routes::list))
        .route("/ssh-keys", get(key_routes::list_all))
        .route(
            "/users/{name}/ssh-keys",
            get(key_routes::list).post(key_routes::add),
        )
        .route(
            "/users/{name}/ssh-keys/{fingerprint}",
            axum::routing::delete(key_routes::remove),
        )
        .route(
            "/ssh-logins/{name}/public-key",
            get(key_routes::login_public_key),
        )
        .route(
            "/ssh-logins/{name}/forget-host-key",
            post(key_routes::forget_host_key),
        )
        .route("/ssh/sessions/{id}", get(ssh_routes::get_one))
        .route("/policy/check", post(policy_routes::check))
        .route("/users/{name}/password", post(resources::set_password))
        .route(
            "/users/{name}/mfa",
            axum::routing::delete(mfa_routes::reset),
        )
        .route("/users/{name}/lock", post(mfa_routes::lock))
        .route("/users/{name}/unlock", post(mfa_routes::unlock))
        .route("/mfa", get(mfa_routes::status))
        .route("/mfa/enroll", post(mfa_routes::enroll))
        .route("/mfa/confirm", post(mfa_routes::confirm))
        .route("/approvals", get(mfa_routes::my_approvals))
        .route("/certs", get(cert_routes::list).post(cert_routes::issue))
        .route("/certs/revoke", post(cert_routes::revoke))
        .route("/me/datasources", get(cert_routes::my_datasources))
        .route(
            "/approvals/{id}",
            get(mfa_routes::approval).post(mfa_routes::decide),
        )
        .route("/{kind}", get(resources::list))
        .route(
            "/{kind}/{name}",
            get(resources::get_one)
                .put(resources::put_one)
                .delete(resources::delete_one),
        );
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(ops::common_headers))
        .with_state(state)
}
