//! People's SSH keys and the SSH logins' public key and host-key pin, through the router.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{env, Env};
use postern_store::AuditFilter;
use serde_json::{json, Value};

/// A fresh ed25519 public key line (`ssh-ed25519 AAAA… comment`).
fn public_key(comment: &str) -> String {
    let private = postern_vault::ssh::generate_ed25519(comment).unwrap();
    postern_vault::ssh::public_of_private(&private).unwrap()
}

/// A fingerprint as a path segment (`SHA256:` base64 may hold `/` and `+`).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Users kim and lee (no permissions), an SSH login `web` with a generated key and `db` with
/// a password; returns the admin's, kim's and lee's tokens.
async fn world(e: &Env) -> (String, String, String) {
    let admin = e.admin().await;
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&admin),
            Some(json!({
                "ssh-login": [
                    { "name": "web", "host": "web1.internal", "user": "deploy" },
                    { "name": "db", "host": "db1.internal", "user": "root",
                      "password": "Target-Secret-91c" }
                ],
                "role": [{ "name": "ops", "ssh": { "logins": ["web", "db"] } }],
                "user": [
                    { "name": "kim", "roles": ["ops"], "password": "kim-password-123" },
                    { "name": "lee", "roles": ["ops"], "password": "lee-password-123" }
                ]
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let kim = e.login("kim", "kim-password-123").await;
    let lee = e.login("lee", "lee-password-123").await;
    (admin, kim, lee)
}

async fn changes(e: &Env, action: &str) -> Vec<Value> {
    e.store
        .audit_search(&AuditFilter {
            kind: Some("admin_change".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|ev| ev.detail)
        .filter(|d| d["action"] == action)
        .collect()
}

#[tokio::test]
async fn people_manage_their_own_keys_and_admins_anyones() {
    let e = env().await;
    let (admin, kim, lee) = world(&e).await;
    let line = public_key("kim@laptop");
    let keys = "/api/v1/users/kim/ssh-keys";

    let (s, v) = e
        .call(
            Method::POST,
            keys,
            Some(&kim),
            Some(json!({ "public_key": line })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"], "kim");
    assert_eq!(v["algorithm"], "ssh-ed25519");
    assert_eq!(v["comment"], "kim@laptop");
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    assert!(fp.starts_with("SHA256:"), "{fp}");

    // Adding one's own key again changes nothing.
    let (s, v) = e
        .call(
            Method::POST,
            keys,
            Some(&kim),
            Some(json!({ "public_key": line })),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let (s, v) = e.call(Method::GET, keys, Some(&kim), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["fingerprint"], fp.as_str());

    // The same key for someone else is a conflict that says what to do.
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/users/lee/ssh-keys",
            Some(&lee),
            Some(json!({ "public_key": line })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("already belongs to another user"), "{msg}");
    assert!(msg.contains("ssh-keygen"), "{msg}");

    // lee may neither read, add to nor remove from kim's keys, nor list everyone's.
    let other = public_key("lee");
    let one = format!("{keys}/{}", seg(&fp));
    for (method, uri, body) in [
        (Method::GET, keys.to_string(), None),
        (
            Method::POST,
            keys.to_string(),
            Some(json!({ "public_key": other })),
        ),
        (Method::DELETE, one.clone(), None),
        (Method::GET, "/api/v1/ssh-keys".to_string(), None),
    ] {
        let (s, v) = e.call(method.clone(), &uri, Some(&lee), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}: {v}");
    }
    let (_, v) = e.call(Method::GET, keys, Some(&kim), None).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "untouched: {v}");

    // Bad input: not a key, a private key, an unknown field, an unknown user.
    for body in [
        json!({ "public_key": "not a key" }),
        json!({ "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----" }),
    ] {
        let (s, v) = e.call(Method::POST, keys, Some(&kim), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let (s, v) = e
        .call(
            Method::POST,
            keys,
            Some(&kim),
            Some(json!({ "public_key": line, "user": "lee" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/users/nobody/ssh-keys",
            Some(&admin),
            Some(json!({ "public_key": other })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // An admin manages anyone's keys and lists everyone's.
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/users/lee/ssh-keys",
            Some(&admin),
            Some(json!({ "public_key": other })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let lee_fp = v["fingerprint"].as_str().unwrap().to_string();
    let (s, v) = e
        .call(Method::GET, "/api/v1/ssh-keys", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let users: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["kim", "lee"]);
    let (s, v) = e
        .call(
            Method::DELETE,
            &format!("/api/v1/users/lee/ssh-keys/{}", seg(&lee_fp)),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");

    // kim removes her key (the fingerprint URL-encoded); a second removal is a 404.
    let (s, v) = e.call(Method::DELETE, &one, Some(&kim), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = e.call(Method::DELETE, &one, Some(&kim), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("postern key ls"),
        "{v}"
    );
    let (_, v) = e.call(Method::GET, keys, Some(&kim), None).await;
    assert_eq!(v, json!([]));

    // Every change is audited with the fingerprint, never the key itself.
    let added = changes(&e, "add_ssh_key").await;
    assert!(
        added
            .iter()
            .any(|d| d["name"] == "kim" && d["fingerprint"] == fp.as_str()),
        "{added:?}"
    );
    assert!(added
        .iter()
        .any(|d| d["name"] == "lee" && d["fingerprint"] == lee_fp.as_str()));
    let deleted = changes(&e, "delete_ssh_key").await;
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    let body = line.split_whitespace().nth(1).unwrap();
    for d in added.iter().chain(&deleted) {
        assert!(!d.to_string().contains(body), "no key material: {d}");
    }
}

#[tokio::test]
async fn login_public_key_and_forget_host_key_are_for_admins() {
    let e = env().await;
    let (admin, kim, _) = world(&e).await;

    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/ssh-logins/web/public-key",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let line = v["public_key"].as_str().unwrap();
    assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
    assert!(line.ends_with(" postern:web"), "{line}");
    assert_eq!(v.as_object().unwrap().len(), 1, "only the public key: {v}");
    postern_vault::ssh::parse_public_key(line).unwrap();

    // A password login has no key; an unknown login is not found; both say so.
    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/ssh-logins/db/public-key",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("password"), "{v}");
    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/ssh-logins/nope/public-key",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("postern get ssh-logins"),
        "{v}"
    );

    // Not for others.
    for (method, uri) in [
        (Method::GET, "/api/v1/ssh-logins/web/public-key"),
        (Method::POST, "/api/v1/ssh-logins/web/forget-host-key"),
    ] {
        let (s, v) = e.call(method, uri, Some(&kim), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {v}");
    }
    assert!(changes(&e, "forget_host_key").await.is_empty());

    // A pinned key is forgotten (audited); an unknown login is a 404.
    assert!(e
        .store
        .pin_ssh_host_key("web", &postern_vault_host_key())
        .await
        .unwrap());
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/ssh-logins/web/forget-host-key",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(
        e.store
            .pin_ssh_host_key("web", "ssh-ed25519 AAAA")
            .await
            .unwrap(),
        "the pin was cleared, so first use pins again"
    );
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/ssh-logins/nope/forget-host-key",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let forgot = changes(&e, "forget_host_key").await;
    assert_eq!(forgot.len(), 1, "{forgot:?}");
    assert_eq!(forgot[0]["name"], "web");
}

/// A host key line, as a target would show it.
fn postern_vault_host_key() -> String {
    public_key("target")
}
