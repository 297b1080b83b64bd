//! People's SSH public keys (each person registers their own; admins manage anyone's) and
//! the SSH logins' public half and host-key pin.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use postern_core::{Kind, Permission, UserKeyView};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::ApiState;

/// A person acting on their own keys, or an admin on anyone's.
async fn may_manage(st: &ApiState, caller: &Caller, user: &str) -> Result<(), ApiError> {
    if caller.user == user {
        return Ok(());
    }
    let admin = st
        .store
        .permissions(&caller.user)
        .await?
        .contains(&Permission::Admin);
    if admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "user {} may manage only their own SSH keys (an admin manages others')",
            caller.user
        )))
    }
}

/// `GET /api/v1/users/{name}/ssh-keys`
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<UserKeyView>>, ApiError> {
    may_manage(&st, &caller, &name).await?;
    Ok(Json(st.store.user_keys(Some(&name)).await?))
}

/// `GET /api/v1/ssh-keys`: everyone's keys (admins).
pub async fn list_all(
    State(st): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<UserKeyView>>, ApiError> {
    caller.require_admin(&st).await?;
    Ok(Json(st.store.user_keys(None).await?))
}

/// `POST /api/v1/users/{name}/ssh-keys` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// One line of a `.pub` file.
    public_key: String,
}

/// `POST /api/v1/users/{name}/ssh-keys`: registers a key (one key belongs to one person).
pub async fn add(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<AddKey>,
) -> Result<(StatusCode, Json<UserKeyView>), ApiError> {
    may_manage(&st, &caller, &name).await?;
    let view = st.store.add_user_key(&name, &req.public_key).await?;
    caller
        .record_change(
            &st,
            &client,
            json!({ "action": "add_ssh_key", "kind": Kind::User, "name": name,
                    "fingerprint": view.fingerprint }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `DELETE /api/v1/users/{name}/ssh-keys/{fingerprint}`: live sessions opened with the key
/// end.
pub async fn remove(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath((name, fingerprint)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    may_manage(&st, &caller, &name).await?;
    if !st.store.delete_user_key(&name, &fingerprint).await? {
        return Err(ApiError::not_found(format!(
            "user {name} has no SSH key {fingerprint}; list them with `postern key ls`"
        )));
    }
    caller
        .record_change(
            &st,
            &client,
            json!({ "action": "delete_ssh_key", "kind": Kind::User, "name": name,
                    "fingerprint": fingerprint }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/ssh-logins/{name}/public-key` answer.
#[derive(Serialize)]
pub struct PublicKey {
    public_key: String,
}

/// `GET /api/v1/ssh-logins/{name}/public-key`: what the target's `authorized_keys` needs.
pub async fn login_public_key(
    State(st): State<ApiState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PublicKey>, ApiError> {
    caller.require_admin(&st).await?;
    let Some(v) = st.store.get(Kind::SshLogin, &name).await? else {
        return Err(ApiError::not_found(format!(
            "there is no ssh-login {name}; list them with `postern get ssh-logins`"
        )));
    };
    match v.get("public_key").and_then(|k| k.as_str()) {
        Some(k) => Ok(Json(PublicKey {
            public_key: k.to_string(),
        })),
        None => Err(ApiError::not_found(format!(
            "ssh-login {name} signs in with a password: it has no public key"
        ))),
    }
}

/// `POST /api/v1/ssh-logins/{name}/forget-host-key`: the next connection pins the key the
/// target shows.
pub async fn forget_host_key(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin(&st).await?;
    if !st.store.forget_ssh_host_key(&name).await? {
        return Err(ApiError::not_found(format!(
            "there is no ssh-login {name}; list them with `postern get ssh-logins`"
        )));
    }
    caller
        .record_change(
            &st,
            &client,
            json!({ "action": "forget_host_key", "kind": Kind::SshLogin, "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
