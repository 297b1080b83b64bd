//! Admin routes over resources: list, get, put, delete, apply, set a password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use postern_core::{ApplyChange, ApplyDocument, ApplyOutcome, Kind, Permission};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::ApiState;

fn parse_kind(s: &str) -> Result<Kind, ApiError> {
    Kind::parse(s).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown resource kind `{s}`: use users, roles, masking-policies, datasources or \
             credentials"
        ))
    })
}

/// `GET /api/v1/{kind}`: every resource of a kind, as views (never secrets).
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    ApiPath(kind): ApiPath<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let kind = parse_kind(&kind)?;
    caller.require_admin(&st).await?;
    Ok(Json(st.store.list(kind).await?))
}

/// `GET /api/v1/{kind}/{name}`: one resource.
pub async fn get_one(
    State(st): State<ApiState>,
    caller: Caller,
    ApiPath((kind, name)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = parse_kind(&kind)?;
    caller.require_admin(&st).await?;
    match st.store.get(kind, &name).await? {
        Some(v) => Ok(Json(v)),
        None => Err(missing(kind, &name)),
    }
}

fn missing(kind: Kind, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "{kind} {name} does not exist; list them with `postern get {}`",
        kind.plural()
    ))
}

/// `DELETE /api/v1/{kind}/{name}`.
pub async fn delete_one(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath((kind, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = parse_kind(&kind)?;
    caller.require_admin(&st).await?;
    if !st.store.delete(kind, &name).await? {
        return Err(missing(kind, &name));
    }
    caller
        .record_change(
            &st,
            &client,
            json!({ "action": "delete", "kind": kind, "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/{kind}/{name}`: creates or updates one resource from its spec. The body's
/// `name` may be left out; when present it must match the URL.
pub async fn put_one(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<ApplyChange>, ApiError> {
    let kind = parse_kind(&kind)?;
    caller.require_admin(&st).await?;
    let doc = single_doc(kind, &name, body)?;
    let changes = st.store.apply(&doc).await?;
    record_changes(&st, &caller, &client, &changes).await?;
    changes
        .into_iter()
        .find(|c| c.kind == kind && c.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::internal(format!("apply of {kind} {name} reported no change")))
}

/// An apply document holding only the resource in `body`.
fn single_doc(kind: Kind, name: &str, body: Value) -> Result<ApplyDocument, ApiError> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object: the {kind}'s fields"
        )));
    };
    match map.get("name") {
        None => {
            map.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the body names {kind} {other} but the URL names {name}; make them match (or leave `name` out of the body)"
            )))
        }
    }
    let v = Value::Object(map);
    let mut doc = ApplyDocument::default();
    match kind {
        Kind::Datasource => doc.datasource.push(spec(kind, v)?),
        Kind::Credential => doc.credential.push(spec(kind, v)?),
        Kind::SshLogin => doc.ssh_login.push(spec(kind, v)?),
        Kind::MaskingPolicy => doc.masking_policy.push(spec(kind, v)?),
        Kind::Role => doc.role.push(spec(kind, v)?),
        Kind::User => doc.user.push(spec(kind, v)?),
    }
    Ok(doc)
}

fn spec<T: DeserializeOwned>(kind: Kind, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid {kind}: {e}")))
}

/// `POST /api/v1/apply`: makes the store hold everything in the document, in one
/// transaction. Answers one line per resource.
pub async fn apply(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiJson(doc): ApiJson<ApplyDocument>,
) -> Result<Json<Vec<ApplyChange>>, ApiError> {
    caller.require_admin(&st).await?;
    let changes = st.store.apply(&doc).await?;
    record_changes(&st, &caller, &client, &changes).await?;
    Ok(Json(changes))
}

/// Records one `admin_change` per created or updated resource. Only the last waits for
/// durability: the writer keeps order, so the earlier ones are durable by then too.
async fn record_changes(
    st: &ApiState,
    caller: &Caller,
    client: &ClientAddr,
    changes: &[ApplyChange],
) -> Result<(), ApiError> {
    let changed: Vec<&ApplyChange> = changes
        .iter()
        .filter(|c| c.outcome != ApplyOutcome::Unchanged)
        .collect();
    for (i, c) in changed.iter().enumerate() {
        let action = match c.outcome {
            ApplyOutcome::Created => "create",
            _ => "update",
        };
        let detail = json!({ "action": action, "kind": c.kind, "name": c.name });
        if i + 1 == changed.len() {
            caller.record_change(st, client, detail).await?;
        } else {
            caller.record_change_queued(st, client, detail).await?;
        }
    }
    Ok(())
}

/// `POST /api/v1/users/{name}/password` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    password: Zeroizing<String>,
    /// Required when a user who is not an admin changes their own password.
    #[serde(default)]
    current_password: Option<Zeroizing<String>>,
}

/// `POST /api/v1/users/{name}/password`: an admin sets anyone's password; a user may set
/// their own by also giving the current one.
pub async fn set_password(
    State(st): State<ApiState>,
    caller: Caller,
    client: ClientAddr,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let is_admin = st
        .store
        .permissions(&caller.user)
        .await?
        .contains(&Permission::Admin);
    if !is_admin {
        if caller.user != name {
            return Err(ApiError::forbidden(
                "only an admin can change another user's password",
            ));
        }
        let Some(current) = &req.current_password else {
            return Err(ApiError::bad_request(
                "give `current_password` to change your own password",
            ));
        };
        if !st.store.verify_password(&name, current).await? {
            return Err(ApiError::forbidden("the current password is wrong"));
        }
    }
    st.store.set_password(&name, &req.password).await?;
    caller
        .record_change(
            &st,
            &client,
            json!({ "action": "set_password", "kind": Kind::User, "name": name }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
