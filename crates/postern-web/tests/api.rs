//! The API router against a real store, without TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{env, sample_doc, ALICE_PW, UPSTREAM_PW};
use postern_store::AuditFilter;
use serde_json::json;

async fn events(store: &postern_store::Store, kind: &str) -> Vec<postern_audit::AuditEvent> {
    store
        .audit_search(&AuditFilter {
            kind: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let e = env().await;
    let (s, v) = e.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (s, v) = e.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().contains("# EOF"), "{v}");
}

#[tokio::test]
async fn login_logout_whoami() {
    let e = env().await;
    let (s, v) = e.call(Method::GET, "/api/v1/whoami", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"].as_str().unwrap().contains("postern admin login"));

    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "user": "admin", "password": e.admin_pw })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "admin");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = v["token"].as_str().unwrap().to_string();

    let (s, v) = e
        .call(Method::GET, "/api/v1/whoami", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({ "user": "admin", "permissions": ["admin"] }));

    let (s, _) = e
        .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e
        .call(Method::GET, "/api/v1/whoami", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let ok = events(&e.store, "login_success").await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].user.as_deref(), Some("admin"));
    assert_eq!(ok[0].protocol, Some(postern_audit::Protocol::Api));
}

#[tokio::test]
async fn refused_logins_look_alike_and_are_audited() {
    let e = env().await;
    let admin = e.admin().await;
    e.call(
        Method::POST,
        "/api/v1/apply",
        Some(&admin),
        Some(sample_doc()),
    )
    .await;
    let (_, _) = e
        .call(
            Method::PUT,
            "/api/v1/users/alice",
            Some(&admin),
            Some(json!({ "roles": ["dba"], "disabled": true })),
        )
        .await;
    let mut answers = Vec::new();
    for (user, pw) in [
        ("admin", "wrong-password"),
        ("nobody", "whatever-password"),
        ("alice", ALICE_PW),
    ] {
        let (s, v) = e
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "user": user, "password": pw })),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        answers.push(v);
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0]["error"], "invalid user name or password");

    let refused = events(&e.store, "login_failure").await;
    let reasons: Vec<_> = refused
        .iter()
        .map(|ev| (ev.user.as_deref().unwrap(), ev.error.as_deref().unwrap()))
        .collect();
    assert!(
        reasons.contains(&("admin", "wrong password")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&("nobody", "unknown user")));
    assert!(reasons.contains(&("alice", "user is disabled")));
    let all = serde_json::to_string(&e.store.audit_all().await.unwrap()).unwrap();
    assert!(!all.contains("wrong-password") && !all.contains(ALICE_PW));
}

#[tokio::test]
async fn apply_list_get_and_no_secrets() {
    let e = env().await;
    let admin = e.admin().await;
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&admin),
            Some(sample_doc()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outcome"] == "created"));
    let (_, v) = e
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&admin),
            Some(sample_doc()),
        )
        .await;
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outcome"] == "unchanged"));

    let (s, v) = e
        .call(Method::GET, "/api/v1/users", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = v.as_array().unwrap().iter().map(|u| &u["name"]).collect();
    assert_eq!(names, [&json!("admin"), &json!("alice")]);

    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/credentials/shop-rw",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["has_password"], true);
    assert!(!v.to_string().contains(UPSTREAM_PW));

    let (s, v) = e
        .call(Method::GET, "/api/v1/roles/nope", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("role nope"));
    let (s, _) = e
        .call(Method::GET, "/api/v1/tables", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Four creations audited once each, by admin, without secrets.
    let changes = events(&e.store, "admin_change").await;
    assert_eq!(changes.len(), 4);
    assert!(changes.iter().all(|c| c.user.as_deref() == Some("admin")));
    assert!(changes
        .iter()
        .any(|c| c.detail
            == Some(json!({"action": "create", "kind": "credential", "name": "shop-rw"}))));
    let all = serde_json::to_string(&e.store.audit_all().await.unwrap()).unwrap();
    assert!(!all.contains(UPSTREAM_PW) && !all.contains(ALICE_PW) && !all.contains(&e.admin_pw));
}

#[tokio::test]
async fn put_and_delete_one() {
    let e = env().await;
    let admin = e.admin().await;
    e.call(
        Method::POST,
        "/api/v1/apply",
        Some(&admin),
        Some(sample_doc()),
    )
    .await;
    let (s, v) = e
        .call(
            Method::PUT,
            "/api/v1/roles/auditors",
            Some(&admin),
            Some(json!({ "permissions": ["audit-read"] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"kind": "role", "name": "auditors", "outcome": "created"})
    );
    let (s, v) = e
        .call(
            Method::PUT,
            "/api/v1/roles/auditors",
            Some(&admin),
            Some(json!({ "name": "other" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("make them match"));
    let (s, v) = e
        .call(
            Method::PUT,
            "/api/v1/roles/auditors",
            Some(&admin),
            Some(json!({ "permisions": [] })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("permisions"), "{v}");

    let (s, v) = e
        .call(
            Method::DELETE,
            "/api/v1/datasources/shop",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(v["error"].as_str().unwrap().contains("shop-rw"));
    let (s, _) = e
        .call(
            Method::DELETE,
            "/api/v1/credentials/shop-rw",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e
        .call(
            Method::DELETE,
            "/api/v1/credentials/shop-rw",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let deletes: Vec<_> = events(&e.store, "admin_change")
        .await
        .into_iter()
        .filter(|c| c.detail.as_ref().unwrap()["action"] == "delete")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].detail,
        Some(json!({"action": "delete", "kind": "credential", "name": "shop-rw"}))
    );
}

/// Masking policies through the generic resource routes: apply (JSON key
/// `masking-policy`), list, get, put, the conflict while a role grants one, delete.
#[tokio::test]
async fn masking_policies() {
    let e = env().await;
    let admin = e.admin().await;
    let mut doc = sample_doc();
    doc["masking-policy"] = json!([{
        "name": "pii",
        "priority": 10,
        "rules": [
            { "name": "emails", "on": "*.*.*.*.*email*", "function": "email" },
            { "name": "ssn", "on": "shop.*.public.customers.ssn", "function": "partial(0, 4)" }
        ]
    }]);
    doc["role"][0]["masking"] = json!(["pii"]);
    doc["role"][0]["reveal"] = json!(["pii/ssn"]);
    let (s, v) = e
        .call(Method::POST, "/api/v1/apply", Some(&admin), Some(doc))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v[2],
        json!({"kind": "masking-policy", "name": "pii", "outcome": "created"})
    );

    let (s, v) = e
        .call(Method::GET, "/api/v1/masking-policies", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["rules"][1]["function"], "partial(0, 4)");
    assert_eq!(v[0]["rules"][1]["allow_filter"], false);
    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/masking-policy/pii",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["priority"], 10);
    let (s, v) = e
        .call(Method::GET, "/api/v1/roles/dba", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["masking"], json!(["pii"]));
    assert_eq!(v["reveal"], json!(["pii/ssn"]));

    // PUT one: a bad function is the caller's fault, with the rule named.
    let (s, v) = e
        .call(
            Method::PUT,
            "/api/v1/masking-policies/strict",
            Some(&admin),
            Some(json!({ "rules": [{ "name": "n", "on": "*.*.*.*.notes", "function": "blur" }] })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("masking-policy strict: rules[0].function:"),
        "{v}"
    );
    let (s, v) = e
        .call(
            Method::PUT,
            "/api/v1/masking-policies/strict",
            Some(&admin),
            Some(json!({ "rules": [{ "name": "n", "on": "*.*.*.*.notes", "function": "null" }] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"kind": "masking-policy", "name": "strict", "outcome": "created"})
    );

    // Delete: refused while role dba uses pii; strict goes.
    let (s, v) = e
        .call(
            Method::DELETE,
            "/api/v1/masking-policies/pii",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(v["error"].as_str().unwrap().contains("role dba"), "{v}");
    let (s, _) = e
        .call(
            Method::DELETE,
            "/api/v1/masking-policies/strict",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/masking-policies/strict",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("postern get masking-policies"),
        "{v}"
    );
    let deletes: Vec<_> = events(&e.store, "admin_change")
        .await
        .into_iter()
        .filter_map(|c| c.detail)
        .filter(|d| d["action"] == "delete")
        .collect();
    assert_eq!(
        deletes,
        [json!({"action": "delete", "kind": "masking-policy", "name": "strict"})]
    );
}

#[tokio::test]
async fn permissions_are_enforced() {
    let e = env().await;
    let admin = e.admin().await;
    e.call(
        Method::POST,
        "/api/v1/apply",
        Some(&admin),
        Some(sample_doc()),
    )
    .await;
    let alice = e.login("alice", ALICE_PW).await;
    for (m, uri) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/audit/verify"),
        (Method::DELETE, "/api/v1/users/admin"),
    ] {
        let (s, v) = e.call(m, uri, Some(&alice), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}");
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("lacks the permission"));
    }
    let (s, _) = e
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&alice),
            Some(sample_doc()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // An audit-read role opens the audit log, and only that.
    e.call(
        Method::PUT,
        "/api/v1/roles/auditors",
        Some(&admin),
        Some(json!({ "permissions": ["audit-read"] })),
    )
    .await;
    e.call(
        Method::PUT,
        "/api/v1/users/alice",
        Some(&admin),
        Some(json!({ "roles": ["dba", "auditors"] })),
    )
    .await;
    let (s, _) = e
        .call(Method::GET, "/api/v1/audit", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = e
        .call(Method::GET, "/api/v1/users", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn passwords() {
    let e = env().await;
    let admin = e.admin().await;
    e.call(
        Method::POST,
        "/api/v1/apply",
        Some(&admin),
        Some(sample_doc()),
    )
    .await;
    let alice = e.login("alice", ALICE_PW).await;
    let uri = "/api/v1/users/alice/password";

    // Alice: only her own, and only with the current one.
    let (s, _) = e
        .call(
            Method::POST,
            "/api/v1/users/admin/password",
            Some(&alice),
            Some(json!({ "password": "taken-over-123" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = e
        .call(
            Method::POST,
            uri,
            Some(&alice),
            Some(json!({ "password": "alice-new-pw-1" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = e
        .call(
            Method::POST,
            uri,
            Some(&alice),
            Some(json!({ "password": "alice-new-pw-1", "current_password": "nope-nope" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = e
        .call(
            Method::POST,
            uri,
            Some(&alice),
            Some(json!({ "password": "alice-new-pw-1", "current_password": ALICE_PW })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    e.login("alice", "alice-new-pw-1").await;

    // Admin: anyone's; the policy is enforced.
    let (s, v) = e
        .call(
            Method::POST,
            uri,
            Some(&admin),
            Some(json!({ "password": "short" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("at least"));
    let (s, _) = e
        .call(
            Method::POST,
            uri,
            Some(&admin),
            Some(json!({ "password": "alice-by-admin-2" })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e
        .call(
            Method::POST,
            "/api/v1/users/ghost/password",
            Some(&admin),
            Some(json!({ "password": "ghost-password-3" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    e.login("alice", "alice-by-admin-2").await;

    let sets = events(&e.store, "admin_change")
        .await
        .into_iter()
        .filter(|c| c.detail.as_ref().unwrap()["action"] == "set_password")
        .count();
    assert_eq!(sets, 2);
    let all = serde_json::to_string(&e.store.audit_all().await.unwrap()).unwrap();
    assert!(!all.contains("alice-new-pw-1") && !all.contains("alice-by-admin-2"));
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let e = env().await;
    let admin = e.admin().await;
    // Not JSON.
    let req = Request::post("/api/v1/apply")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (s, v) = e.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
    // Unknown field.
    let (s, v) = e
        .call(
            Method::POST,
            "/api/v1/apply",
            Some(&admin),
            Some(json!({ "userz": [] })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("userz"));
    // Too large.
    let big = "x".repeat(postern_web::MAX_BODY + 10);
    let req = Request::post("/api/v1/apply")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!("{{\"user\":[{{\"name\":\"{big}\"}}]}}")))
        .unwrap();
    let (s, v) = e.send(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].is_string());
    // Unknown route, wrong method, bad token, bad query.
    let (s, v) = e.call(Method::GET, "/nope", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].is_string());
    let (s, v) = e
        .call(Method::DELETE, "/api/v1/apply", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(v["error"].is_string());
    let (s, _) = e
        .call(Method::GET, "/api/v1/users", Some("pst_forged"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = e
        .call(Method::GET, "/api/v1/audit?limit=lots", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
    let (s, v) = e
        .call(
            Method::GET,
            "/api/v1/audit?since=yesterday",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("RFC 3339"));
}

#[tokio::test]
async fn audit_search_and_verify() {
    let e = env().await;
    let admin = e.admin().await;
    e.call(
        Method::POST,
        "/api/v1/apply",
        Some(&admin),
        Some(sample_doc()),
    )
    .await;
    e.login("alice", ALICE_PW).await;

    let (s, v) = e
        .call(Method::GET, "/api/v1/audit?user=alice", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let evs = v.as_array().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["kind"], "login_success");

    let (_, v) = e
        .call(
            Method::GET,
            "/api/v1/audit?kind=admin_change&limit=2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = e
        .call(
            Method::GET,
            "/api/v1/audit?since=2999-01-01T00:00:00%2B01:00",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(v, json!([]));

    let (s, v) = e
        .call(Method::GET, "/api/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
    // admin login, 4 creations, alice login (this search's own answers are not events).
    assert_eq!(v["events"], 6);
    assert_eq!(v["head_seq"], 6);
}

/// Statement literals in clear are shown only to admins and `view-clear-sql-log` holders.
#[tokio::test]
async fn clear_statements_only_for_permitted_readers() {
    let e = env().await;
    let admin = e.admin().await;
    let doc = json!({
        "role": [
            { "name": "auditor", "permissions": ["audit-read"] },
            { "name": "clear-auditor", "permissions": ["audit-read", "view-clear-sql-log"] }
        ],
        "user": [
            { "name": "carol", "roles": ["auditor"], "password": "carol-password-1" },
            { "name": "dave", "roles": ["clear-auditor"], "password": "dave-password-1" }
        ]
    });
    let (s, v) = e
        .call(Method::POST, "/api/v1/apply", Some(&admin), Some(doc))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut ev = postern_audit::AuditEvent::new(postern_audit::EventKind::Statement);
    ev.user = Some("bob".into());
    ev.statement = Some("select * from t where card = ?".into());
    ev.statement_clear = Some("select * from t where card = '4111111111111111'".into());
    ev.parameters = vec![Some("4111111111111111".into()), None];
    e.audit.record_durable(ev).await.unwrap();

    let search = |token: String| {
        let e = &e;
        async move {
            let (s, v) = e
                .call(
                    Method::GET,
                    "/api/v1/audit?kind=statement",
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v[0].clone()
        }
    };
    let masked = search(e.login("carol", "carol-password-1").await).await;
    assert_eq!(masked["statement"], "select * from t where card = ?");
    assert!(masked.get("statement_clear").is_none(), "{masked}");
    assert!(masked.get("parameters").is_none(), "{masked}");
    for token in [e.login("dave", "dave-password-1").await, admin.clone()] {
        let clear = search(token).await;
        assert_eq!(
            clear["statement_clear"],
            "select * from t where card = '4111111111111111'"
        );
        assert_eq!(
            clear["parameters"],
            serde_json::json!(["4111111111111111", null])
        );
    }
    // The chain still verifies: readers see a view, the stored events are whole.
    let (_, v) = e
        .call(Method::GET, "/api/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(v["ok"], true, "{v}");
}
