//! Recordings of SSH sessions: the list, and one recording with the check that its file is
//! the one the audit trail vouches for.

use axum::extract::State;
use axum::Json;
use postern_core::Permission;
use postern_store::SshRecording;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::ApiState;

/// Who may see everyone's recordings (others see their own).
const READERS: [Permission; 2] = [Permission::Admin, Permission::AuditRead];

/// Largest recording the API hands out in one answer.
const MAX_CAST: u64 = 64 << 20;

/// `GET /api/v1/ssh/sessions` query.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    user: Option<String>,
    login: Option<String>,
    limit: Option<u32>,
}

async fn may_read_all(st: &ApiState, caller: &Caller) -> bool {
    caller.require(st, &READERS).await.is_ok()
}

/// `GET /api/v1/ssh/sessions`: recordings, newest first. Admins and audit readers see
/// everyone's; others only their own.
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SessionsQuery>,
) -> Result<Json<Vec<SshRecording>>, ApiError> {
    let user = if may_read_all(&st, &caller).await {
        q.user
    } else {
        if q.user.as_deref().is_some_and(|u| u != caller.user) {
            return Err(ApiError::forbidden(format!(
                "user {} may list only their own recordings (admin or audit-read needed for others')",
                caller.user
            )));
        }
        Some(caller.user.clone())
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(
        st.store
            .ssh_recordings(user.as_deref(), q.login.as_deref(), limit)
            .await?,
    ))
}

/// `GET /api/v1/ssh/sessions/{id}` answer.
#[derive(Serialize)]
pub struct Recording {
    recording: SshRecording,
    /// The asciicast v2 text.
    cast: String,
    /// Whether the file's SHA-256 is the one recorded when it ended (`null` while the
    /// session is open).
    intact: Option<bool>,
}

/// `GET /api/v1/ssh/sessions/{id}`: one recording with its asciicast text.
pub async fn get_one(
    State(st): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Recording>, ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "no recording {id}; list them with `postern sessions ls`"
        ))
    };
    let Some(rec) = st.store.ssh_recording(&id).await? else {
        return Err(missing());
    };
    if rec.user != caller.user && !may_read_all(&st, &caller).await {
        return Err(missing());
    }
    let meta = tokio::fs::metadata(&rec.file).await.map_err(|e| {
        ApiError::not_found(format!(
            "the file of recording {id} is gone from the server: {e}"
        ))
    })?;
    if meta.len() > MAX_CAST {
        return Err(ApiError::bad_request(format!(
            "recording {id} is {} MiB, more than the API hands out; copy {} from the server",
            meta.len() >> 20,
            rec.file
        )));
    }
    let bytes = tokio::fs::read(&rec.file)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", rec.file)))?;
    let intact = rec.sha256.as_ref().map(|want| {
        let got = sha2::Sha256::digest(&bytes);
        hex::encode(got) == *want
    });
    let cast = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Json(Recording {
        recording: rec,
        cast,
        intact,
    }))
}
