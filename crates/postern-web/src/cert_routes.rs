//! Short-lived client certificates (`postern login`), the caller's datasources
//! (`postern db ls`), and revocation.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use postern_audit::{AuditEvent, EventKind, Protocol};
use postern_store::CertRecord;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, ClientAddr};
use crate::ApiState;

/// Largest certificate signing request accepted (an RSA-4096 one is under 2 KiB).
const MAX_CSR: usize = 16 * 1024;

/// Issues client certificates from the user CA.
pub struct CertIssuer {
    /// The user CA.
    pub ca: postern_vault::pki::Ca,
    /// Lifetime when the request names none.
    pub default_ttl: Duration,
    /// Longest lifetime issued.
    pub max_ttl: Duration,
}

/// Ports of Postern's front doors, as clients should connect to them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Listeners {
    /// The PostgreSQL port, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<u16>,
    /// The MySQL port, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<u16>,
}

fn issuer(st: &ApiState) -> Result<&CertIssuer, ApiError> {
    st.certs.as_deref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "this server issues no client certificates",
        )
    })
}

fn event(user: &str, client: &ClientAddr, detail: serde_json::Value) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Certificate);
    e.protocol = Some(Protocol::Api);
    e.user = Some(user.into());
    e.client_addr = client.audit();
    e.detail = Some(detail);
    e
}

/// `POST /api/v1/certs` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRequest {
    /// PKCS#10 request, PEM: its key becomes the certificate's.
    csr: String,
    /// Lifetime in seconds (default: the server's `auth.cert_ttl`).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /api/v1/certs` answer.
#[derive(Serialize)]
pub struct IssuedCert {
    user: String,
    serial: String,
    /// The certificate, PEM.
    certificate: String,
    not_after: String,
    /// The user CA certificate, PEM (what the proxies verify against).
    user_ca: String,
}

/// Issues a client certificate to the caller for the key in the request.
pub async fn issue(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: Caller,
    ApiJson(req): ApiJson<CertRequest>,
) -> Result<Json<IssuedCert>, ApiError> {
    let issuer = issuer(&st)?;
    if req.csr.len() > MAX_CSR {
        return Err(ApiError::bad_request(format!(
            "the certificate request is larger than {MAX_CSR} bytes"
        )));
    }
    let ttl = match req.ttl_seconds {
        None => issuer.default_ttl.min(issuer.max_ttl),
        Some(0) => return Err(ApiError::bad_request("ttl_seconds must be at least 1")),
        Some(s) if Duration::from_secs(s) > issuer.max_ttl => {
            return Err(ApiError::bad_request(format!(
                "a lifetime of {s} s is longer than this server issues ({} s, auth.cert_max_ttl); ask for less",
                issuer.max_ttl.as_secs()
            )))
        }
        Some(s) => Duration::from_secs(s),
    };
    let not_after = time::OffsetDateTime::now_utc()
        + time::Duration::try_from(ttl).map_err(ApiError::internal)?;
    let issued = issuer
        .ca
        .issue_client(&caller.user, &req.csr, not_after)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the certificate request is not a valid PKCS#10 request signed by its key ({e})"
            ))
        })?;
    let addr = client.audit();
    st.store
        .record_cert(
            &issued.serial,
            &caller.user,
            issued.not_after,
            addr.as_deref(),
        )
        .await?;
    let not_after = postern_audit::format_ts(issued.not_after);
    st.audit
        .record_durable(event(
            &caller.user,
            &client,
            serde_json::json!({ "action": "issued", "serial": issued.serial, "not_after": not_after }),
        ))
        .await?;
    Ok(Json(IssuedCert {
        user: caller.user,
        serial: issued.serial,
        certificate: issued.cert_pem,
        not_after,
        user_ca: issuer.ca.cert_pem.clone(),
    }))
}

/// `GET /api/v1/certs` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Whose certificates (admins: anyone's; default: everyone's for admins, else own).
    user: Option<String>,
}

/// Unexpired certificates: the caller's own, or (admins) anyone's.
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<CertRecord>>, ApiError> {
    let admin = caller.require_admin(&st).await.is_ok();
    let user = match (&q.user, admin) {
        (Some(u), false) if *u != caller.user => {
            return Err(ApiError::forbidden(
                "only admins may list other users' certificates",
            ))
        }
        (None, false) => Some(caller.user.clone()),
        (u, _) => u.clone(),
    };
    Ok(Json(st.store.list_certs(user.as_deref()).await?))
}

/// `POST /api/v1/certs/revoke` body: one certificate, or every one of a user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    serial: Option<String>,
    user: Option<String>,
}

/// `POST /api/v1/certs/revoke` answer.
#[derive(Serialize)]
pub struct Revoked {
    revoked: u64,
}

/// Revokes a certificate (the caller's own, or any for admins) or all of a user's
/// (admins, or the user themself). Sessions opened with them end within seconds.
pub async fn revoke(
    State(st): State<ApiState>,
    client: ClientAddr,
    caller: Caller,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<Revoked>, ApiError> {
    let admin = caller.require_admin(&st).await.is_ok();
    let revoked = match (&req.serial, &req.user) {
        (Some(serial), None) => {
            let serial = serial.trim().to_ascii_lowercase().replace(':', "");
            let owner = (!admin).then_some(caller.user.as_str());
            match st.store.revoke_cert(&serial, owner, &caller.user).await? {
                Some(r) => {
                    st.audit
                        .record_durable(event(
                            &r.user,
                            &client,
                            serde_json::json!({ "action": "revoked", "serial": r.serial, "not_after": r.not_after, "by": caller.user }),
                        ))
                        .await?;
                    1
                }
                None => {
                    return Err(ApiError::not_found(format!(
                        "no certificate with serial {serial}{}; list them with `postern cert ls`",
                        if admin { "" } else { " of yours" }
                    )))
                }
            }
        }
        (None, Some(user)) => {
            if !admin && *user != caller.user {
                return Err(ApiError::forbidden(
                    "only admins may revoke other users' certificates",
                ));
            }
            let n = st.store.revoke_user_certs(user, &caller.user).await?;
            if n > 0 {
                st.audit
                    .record_durable(event(
                        user,
                        &client,
                        serde_json::json!({ "action": "revoked", "count": n, "by": caller.user }),
                    ))
                    .await?;
            }
            n
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `serial` or `user`",
            ))
        }
    };
    Ok(Json(Revoked { revoked }))
}

/// One datasource the caller may reach.
#[derive(Serialize)]
pub struct MyDatasource {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    database: String,
}

/// `GET /api/v1/me/datasources` answer.
#[derive(Serialize)]
pub struct MyDatasources {
    user: String,
    datasources: Vec<MyDatasource>,
    /// Postern's ports to connect to.
    listeners: Listeners,
}

/// The datasources a role of the caller grants a credential for, and where to connect.
pub async fn my_datasources(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<MyDatasources>, ApiError> {
    let grants = st.store.role_grants(&caller.user).await?;
    let mut aliases: Vec<&str> = grants
        .iter()
        .flat_map(|g| g.credentials.iter().map(|(_, ds)| ds.as_str()))
        .collect();
    aliases.sort_unstable();
    aliases.dedup();
    let mut datasources = Vec::with_capacity(aliases.len());
    for alias in aliases {
        if let Some(ds) = st.store.datasource(alias).await? {
            datasources.push(MyDatasource {
                name: ds.name,
                kind: ds.kind.as_str(),
                database: ds.database,
            });
        }
    }
    Ok(Json(MyDatasources {
        user: caller.user,
        datasources,
        listeners: st.listeners,
    }))
}
