use super::*;
use crate::testutil::{open_temp, sample_doc, UPSTREAM_PW, USER_PW};
use ApplyOutcome::{Created, Unchanged, Updated};

fn outcomes(changes: &[ApplyChange]) -> Vec<(Kind, &str, ApplyOutcome)> {
    changes
        .iter()
        .map(|c| (c.kind, c.name.as_str(), c.outcome))
        .collect()
}

#[tokio::test]
async fn second_apply_is_all_unchanged() {
    let (_d, store) = open_temp().await;
    let doc = sample_doc();
    let first = store.apply(&doc).await.unwrap();
    assert_eq!(
        outcomes(&first),
        vec![
            (Kind::Datasource, "shop", Created),
            (Kind::Credential, "shop-rw", Created),
            (Kind::Role, "dba", Created),
            (Kind::User, "alice", Created),
        ]
    );
    let second = store.apply(&doc).await.unwrap();
    assert_eq!(second.len(), 4);
    assert!(second.iter().all(|c| c.outcome == Unchanged), "{second:?}");

    // Order and repetition inside lists do not count as changes.
    let mut shuffled = doc.clone();
    shuffled.role[0].credentials = vec!["shop-rw".into(), "shop-rw".into()];
    shuffled.user[0].roles = vec!["dba".into(), "dba".into()];
    let third = store.apply(&shuffled).await.unwrap();
    assert!(third.iter().all(|c| c.outcome == Unchanged), "{third:?}");
}

#[tokio::test]
async fn changes_are_detected_per_resource() {
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    store.apply(&doc).await.unwrap();

    doc.datasource[0].port = 6432;
    doc.credential[0].password = Some("rotated-upstream-pw".into());
    doc.role[0].permissions = vec![postern_core::Permission::AuditRead];
    doc.user[0].disabled = true;
    let changes = store.apply(&doc).await.unwrap();
    assert!(changes.iter().all(|c| c.outcome == Updated), "{changes:?}");
    assert_eq!(store.datasource("shop").await.unwrap().unwrap().port, 6432);
    let cred = store.upstream_credential("shop-rw").await.unwrap().unwrap();
    assert_eq!(cred.password.as_str(), "rotated-upstream-pw");

    // The same password again, or none at all, leaves the credential unchanged.
    assert!(store
        .apply(&doc)
        .await
        .unwrap()
        .iter()
        .all(|c| c.outcome == Unchanged));
    doc.credential[0].password = None;
    assert!(store
        .apply(&doc)
        .await
        .unwrap()
        .iter()
        .all(|c| c.outcome == Unchanged));
    let cred = store.upstream_credential("shop-rw").await.unwrap().unwrap();
    assert_eq!(cred.password.as_str(), "rotated-upstream-pw");
}

#[tokio::test]
async fn user_password_only_on_creation() {
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    store.apply(&doc).await.unwrap();
    store
        .set_password("alice", "changed-later-pw")
        .await
        .unwrap();
    doc.user[0].password = Some("some-other-password".into());
    let changes = store.apply(&doc).await.unwrap();
    assert_eq!(changes[3].outcome, Unchanged);
    assert!(store
        .verify_password("alice", "changed-later-pw")
        .await
        .unwrap());
    assert!(!store.verify_password("alice", USER_PW).await.unwrap());
}

#[tokio::test]
async fn reference_errors_name_the_missing_thing_and_write_nothing() {
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    doc.credential.clear();
    let e = store.apply(&doc).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)));
    assert_eq!(
        e.to_string(),
        "role dba refers to credential shop-rw, which does not exist; \
         define it in the same file or create it first"
    );
    for kind in Kind::ALL {
        assert!(store.list(kind).await.unwrap().is_empty(), "{kind} written");
    }

    let mut doc = sample_doc();
    doc.datasource.clear();
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "credential shop-rw refers to datasource shop, which does not exist; \
         define it in the same file or create it first"
    );

    let mut doc = sample_doc();
    doc.user[0].roles = vec!["dba".into(), "ghost".into()];
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "user alice refers to role ghost, which does not exist; \
         define it in the same file or create it first"
    );
    for kind in Kind::ALL {
        assert!(store.list(kind).await.unwrap().is_empty(), "{kind} written");
    }
}

#[tokio::test]
async fn references_to_stored_resources_resolve() {
    let (_d, store) = open_temp().await;
    let base = sample_doc();
    store.apply(&base).await.unwrap();
    let doc = ApplyDocument {
        user: vec![UserSpec {
            name: "bob".into(),
            roles: vec!["dba".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let changes = store.apply(&doc).await.unwrap();
    assert_eq!(outcomes(&changes), vec![(Kind::User, "bob", Created)]);
    // Created without a password: present, but cannot sign in yet.
    let info = store.login_info("bob").await.unwrap().unwrap();
    assert!(info.scram.is_none());
    let grants = store.role_grants("bob").await.unwrap();
    assert_eq!(
        grants[0].credentials,
        vec![("shop-rw".into(), "shop".into())]
    );
}

#[tokio::test]
async fn document_errors() {
    let (_d, store) = open_temp().await;

    let mut doc = sample_doc();
    doc.credential[0].password = None;
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "credential shop-rw has no password; a password is required when a credential is created"
    );

    let mut doc = sample_doc();
    doc.role[0].name = "a b".into();
    let e = store.apply(&doc).await.unwrap_err();
    assert!(
        e.to_string().starts_with("role name \"a b\" is invalid"),
        "{e}"
    );

    let mut doc = sample_doc();
    doc.datasource.push(doc.datasource[0].clone());
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "datasource shop appears twice in the document; keep one definition"
    );

    let mut doc = sample_doc();
    doc.user[0].password = Some("short".into());
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "user alice: a password must be at least 8 characters long"
    );

    let mut doc = sample_doc();
    doc.datasource[0].tls_ca = Some("not a pem".into());
    let e = store.apply(&doc).await.unwrap_err();
    assert!(e.to_string().starts_with("datasource shop: tls_ca"), "{e}");

    for kind in Kind::ALL {
        assert!(store.list(kind).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn password_sealed_under_its_own_name() {
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    doc.credential.push(CredentialSpec {
        name: "shop-ro".into(),
        datasource: "shop".into(),
        username: "reader".into(),
        password: Some("reader-pw".into()),
    });
    store.apply(&doc).await.unwrap();
    // Swap the sealed blobs: neither opens under the other's name.
    sqlx::query(
        "UPDATE credentials SET password = (SELECT password FROM credentials WHERE name = 'shop-ro') \
         WHERE name = 'shop-rw'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let e = store.upstream_credential("shop-rw").await.unwrap_err();
    assert!(!e.to_string().contains("reader-pw"));
    assert!(!e.to_string().contains(UPSTREAM_PW));
    // Re-applying the credential with its password repairs it.
    let changes = store.apply(&doc).await.unwrap();
    assert_eq!(changes[1].outcome, Updated);
    let c = store.upstream_credential("shop-rw").await.unwrap().unwrap();
    assert_eq!(c.password.as_str(), UPSTREAM_PW);
}

fn privilege(allow: &[&str], deny: &[&str], on: &str) -> postern_core::PrivilegeSpec {
    postern_core::PrivilegeSpec {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
        on: on.into(),
    }
}

#[tokio::test]
async fn role_privileges_and_modes_round_trip_and_decide_the_policy() {
    use postern_policy::{Mode, Privilege};
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    doc.role[0].privileges = vec![
        privilege(&["select", "INSERT"], &[], "shop.shop.public.*"),
        privilege(&[], &["ALL"], "shop.*.*.salaries"),
    ];
    doc.role[0].modes = [("shop".to_string(), "Masked".to_string())].into();
    doc.role.push(RoleSpec {
        name: "strict".into(),
        modes: [("shop".to_string(), "protected passthrough".to_string())].into(),
        ..Default::default()
    });
    store.apply(&doc).await.unwrap();
    // Stored in canonical form: applying the canonical spelling changes nothing.
    let got = store.get(Kind::Role, "dba").await.unwrap().unwrap();
    let role: RoleSpec = serde_json::from_value(got).unwrap();
    assert_eq!(role.privileges[0].allow, ["SELECT", "INSERT"]);
    assert_eq!(role.modes["shop"], "masked");
    let mut canonical = doc.clone();
    canonical.role[0] = role;
    let again = store.apply(&canonical).await.unwrap();
    assert!(again.iter().all(|c| c.outcome == Unchanged), "{again:?}");

    let (rules, mode) = store.statement_policy("alice", "shop").await.unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].role, "dba");
    assert!(rules[0].privileges.contains(&Privilege::Insert));
    assert_eq!(mode, Mode::Masked);
    // A second role with a stricter mode on the datasource wins.
    doc.user[0].roles.push("strict".into());
    store.apply(&doc).await.unwrap();
    assert_eq!(
        store.statement_policy("alice", "shop").await.unwrap().1,
        Mode::Protected
    );
    // No mode anywhere: protected; no roles: no rules.
    assert_eq!(
        store.statement_policy("alice", "other").await.unwrap().1,
        Mode::Protected
    );
    let (rules, _) = store.statement_policy("nobody", "shop").await.unwrap();
    assert!(rules.is_empty());
}

#[tokio::test]
async fn bad_privileges_and_modes_are_refused_with_their_path() {
    let (_d, store) = open_temp().await;
    type Edit = Box<dyn Fn(&mut RoleSpec)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|r| r.privileges = vec![privilege(&["selekt"], &[], "shop")]),
            "role dba: privileges[0].allow: unknown privilege \"selekt\"",
        ),
        (
            Box::new(|r| r.privileges = vec![privilege(&["select"], &[], "shop..x")]),
            "role dba: privileges[0].on:",
        ),
        (
            Box::new(|r| r.modes = [("shop".to_string(), "wide-open".to_string())].into()),
            "role dba: modes.shop: unknown mode",
        ),
        (
            Box::new(|r| r.modes = [("nowhere".to_string(), "masked".to_string())].into()),
            "refers to datasource nowhere",
        ),
    ];
    for (edit, want) in cases {
        let mut doc = sample_doc();
        edit(&mut doc.role[0]);
        let e = store.apply(&doc).await.unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    // Nothing was written by the failed applies.
    assert!(store.list(Kind::Role).await.unwrap().is_empty());
}

#[tokio::test]
async fn datasource_firewall_and_allow_list_round_trip() {
    use postern_core::{FirewallAction, FirewallRuleSpec};
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    doc.datasource[0].firewall = vec![FirewallRuleSpec {
        name: "no-tautologies".into(),
        action: FirewallAction::Deny,
        when: vec!["tautology".into()],
        regex: None,
        datasources: vec![],
        roles: vec![],
        source: vec!["10.0.0.0/8".into()],
        hours: Some("08:00-18:00".into()),
        days: vec!["mon".into()],
    }];
    doc.datasource[0].allow_list = vec!["  select odd_thing();  ".into(), "   ".into()];
    store.apply(&doc).await.unwrap();
    let ds = store.datasource("shop").await.unwrap().unwrap();
    assert_eq!(ds.firewall, doc.datasource[0].firewall);
    // Stored in the form it is compared in.
    assert_eq!(ds.allow_list, ["select odd_thing()"]);
    assert_eq!(
        postern_store_allow_form("select odd_thing() ;"),
        "select odd_thing()"
    );
    // Applying the stored form again is no change.
    let mut again = doc.clone();
    again.datasource[0] = ds;
    assert!(store
        .apply(&again)
        .await
        .unwrap()
        .iter()
        .all(|c| c.outcome == Unchanged));
    // A bad rule is refused with the datasource and field named.
    doc.datasource[0].firewall[0].when = vec!["tautologie".into()];
    let e = store.apply(&doc).await.unwrap_err().to_string();
    assert!(
        e.contains("datasource shop: firewall rule no-tautologies: when:"),
        "{e}"
    );
}

fn postern_store_allow_form(s: &str) -> &str {
    crate::allow_list_form(s)
}

/// The proxies trust only the allow-list `apply` sealed: entries written into the store by
/// other means, a damaged seal, or a seal copied from another datasource count for nothing.
#[tokio::test]
async fn allow_list_is_trusted_only_as_sealed() {
    let (_d, store) = open_temp().await;
    let mut doc = sample_doc();
    let mut other = doc.datasource[0].clone();
    other.name = "shop2".into();
    other.allow_list = vec!["select two()".into()];
    doc.datasource.push(other);
    doc.datasource[0].allow_list = vec!["select one()".into()];
    store.apply(&doc).await.unwrap();
    assert_eq!(
        store.trusted_allow_list("shop").await.unwrap(),
        ["select one()"]
    );
    assert!(store.trusted_allow_list("nope").await.unwrap().is_empty());

    // Hand-edited entries are not trusted: the sealed list still rules.
    sqlx::query(
        "UPDATE datasources SET allow_list = '[\"drop table orders\"]' WHERE name = 'shop'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(store.trusted_allow_list("shop").await.unwrap().is_empty());
    // Applying again re-seals what the admin wrote (not "unchanged").
    let report = store.apply(&doc).await.unwrap();
    assert!(
        report
            .iter()
            .any(|c| c.name == "shop" && c.outcome == Updated),
        "{report:?}"
    );
    assert_eq!(
        store.trusted_allow_list("shop").await.unwrap(),
        ["select one()"]
    );

    // A seal moved to another datasource does not open there.
    sqlx::query(
        "UPDATE datasources SET allow_list = (SELECT allow_list FROM datasources WHERE name = 'shop'), \
         allow_list_seal = (SELECT allow_list_seal FROM datasources WHERE name = 'shop') WHERE name = 'shop2'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(store.trusted_allow_list("shop2").await.unwrap().is_empty());
    // A missing seal for a non-empty list, and a damaged one, count as empty too.
    sqlx::query("UPDATE datasources SET allow_list_seal = NULL WHERE name = 'shop2'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert!(store.trusted_allow_list("shop2").await.unwrap().is_empty());
    sqlx::query("UPDATE datasources SET allow_list_seal = x'0102' WHERE name = 'shop'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert!(store.trusted_allow_list("shop").await.unwrap().is_empty());
}

fn masking_rule(name: &str, on: &str, function: &str) -> postern_core::MaskingRuleSpec {
    postern_core::MaskingRuleSpec {
        name: name.into(),
        on: on.into(),
        function: function.into(),
        allow_filter: false,
    }
}

/// The sample document plus a masking policy `pii` granted by role `dba`, and a role
/// `ssn-readers` (also held by alice) that reveals `pii/ssn`.
fn masking_doc() -> ApplyDocument {
    let mut doc = sample_doc();
    doc.masking_policy = vec![postern_core::MaskingPolicySpec {
        name: "pii".into(),
        description: "personal data".into(),
        priority: 10,
        rules: vec![
            masking_rule("emails", "*.*.*.*.*email*", "email"),
            masking_rule("cards", "shop.*.public.*.card_number", "credit_card"),
            masking_rule("ssn", "shop.*.public.customers.ssn", "partial(0, 4)"),
        ],
    }];
    doc.role[0].masking = vec!["pii".into()];
    doc.role.push(RoleSpec {
        name: "ssn-readers".into(),
        masking: vec!["pii".into()],
        reveal: vec!["pii/ssn".into()],
        ..Default::default()
    });
    doc.user[0].roles.push("ssn-readers".into());
    doc
}

#[tokio::test]
async fn masking_policies_apply_idempotently_and_update() {
    let (_d, store) = open_temp().await;
    let mut doc = masking_doc();
    let first = store.apply(&doc).await.unwrap();
    assert_eq!(
        outcomes(&first),
        vec![
            (Kind::Datasource, "shop", Created),
            (Kind::Credential, "shop-rw", Created),
            (Kind::MaskingPolicy, "pii", Created),
            (Kind::Role, "dba", Created),
            (Kind::Role, "ssn-readers", Created),
            (Kind::User, "alice", Created),
        ]
    );
    assert_eq!(
        store
            .get(Kind::MaskingPolicy, "pii")
            .await
            .unwrap()
            .unwrap(),
        serde_json::json!({
            "name": "pii",
            "description": "personal data",
            "priority": 10,
            "rules": [
                {"name": "emails", "on": "*.*.*.*.*email*", "function": "email", "allow_filter": false},
                {"name": "cards", "on": "shop.*.public.*.card_number", "function": "credit_card", "allow_filter": false},
                {"name": "ssn", "on": "shop.*.public.customers.ssn", "function": "partial(0, 4)", "allow_filter": false},
            ],
        })
    );
    let role = store.get(Kind::Role, "ssn-readers").await.unwrap().unwrap();
    assert_eq!(role["masking"], serde_json::json!(["pii"]));
    assert_eq!(role["reveal"], serde_json::json!(["pii/ssn"]));

    // Again, with blanks around patterns and functions and repeated list entries: no change.
    assert!(store
        .apply(&doc)
        .await
        .unwrap()
        .iter()
        .all(|c| c.outcome == Unchanged));
    let mut same = doc.clone();
    same.masking_policy[0].rules[0].function = "  email ".into();
    same.masking_policy[0].rules[0].on = " *.*.*.*.*email* ".into();
    same.role[1].masking = vec!["pii".into(), "pii".into()];
    same.role[1].reveal = vec!["pii/ssn".into(), "pii/ssn".into()];
    let again = store.apply(&same).await.unwrap();
    assert!(again.iter().all(|c| c.outcome == Unchanged), "{again:?}");

    // A change to the policy updates it alone; the stored view round-trips.
    let epoch = store.policy_epoch();
    let before = epoch.load(std::sync::atomic::Ordering::Acquire);
    doc.masking_policy[0].priority = 20;
    doc.masking_policy[0].rules[1].allow_filter = true;
    let changes = store.apply(&doc).await.unwrap();
    let updated: Vec<_> = outcomes(&changes)
        .into_iter()
        .filter(|c| c.2 != Unchanged)
        .collect();
    assert_eq!(updated, vec![(Kind::MaskingPolicy, "pii", Updated)]);
    assert!(epoch.load(std::sync::atomic::Ordering::Acquire) > before);
    let stored: postern_core::MaskingPolicySpec = serde_json::from_value(
        store
            .get(Kind::MaskingPolicy, "pii")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, doc.masking_policy[0]);

    // A role's grants and reveals count as changes to the role.
    doc.role[1].reveal.clear();
    let changes = store.apply(&doc).await.unwrap();
    assert!(changes
        .iter()
        .any(|c| c.name == "ssn-readers" && c.outcome == Updated));
    let role = store.get(Kind::Role, "ssn-readers").await.unwrap().unwrap();
    assert!(role.get("reveal").is_none(), "{role}");
}

#[tokio::test]
async fn masking_references_and_rules_are_checked() {
    let (_d, store) = open_temp().await;
    type Edit = Box<dyn Fn(&mut ApplyDocument)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d.role[0].masking = vec!["ghost".into()]),
            "role dba refers to masking-policy ghost, which does not exist; \
             define it in the same file or create it first",
        ),
        (
            Box::new(|d| d.role[1].reveal = vec!["pii/phones".into()]),
            "role ssn-readers refers to rule phones of masking-policy pii, which does not \
             exist; define it in the same file or create it first (the policy's rules: \
             emails, cards, ssn)",
        ),
        (
            Box::new(|d| d.role[1].reveal = vec!["ghost/ssn".into()]),
            "role ssn-readers refers to masking-policy ghost, which does not exist; \
             define it in the same file or create it first",
        ),
        (
            Box::new(|d| d.role[1].reveal = vec!["ssn".into()]),
            "role ssn-readers: reveal \"ssn\" does not name a masking rule; write it as \
             policy/rule (for example pii/ssn)",
        ),
        (
            Box::new(|d| d.masking_policy[0].rules[0].function = "scramble".into()),
            "masking-policy pii: rules[0].function: masking function \"scramble\": unknown \
             function;",
        ),
        (
            Box::new(|d| d.masking_policy[0].rules[2].on = "shop..public.customers.ssn".into()),
            "masking-policy pii: rules[2].on: ",
        ),
        (
            Box::new(|d| d.masking_policy[0].name = "p i i".into()),
            "masking-policy name \"p i i\" is invalid",
        ),
        (
            Box::new(|d| d.masking_policy.push(d.masking_policy[0].clone())),
            "masking-policy pii appears twice in the document; keep one definition",
        ),
    ];
    for (edit, want) in cases {
        let mut doc = masking_doc();
        edit(&mut doc);
        let e = store.apply(&doc).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
        assert!(e.to_string().starts_with(want), "{e}\nwanted: {want}");
    }
    // Nothing was written by the failed applies.
    for kind in Kind::ALL {
        assert!(store.list(kind).await.unwrap().is_empty(), "{kind} written");
    }

    // References to a stored policy resolve; dropping a rule a stored role still reveals
    // is refused, and allowed once the same document stops revealing it.
    store.apply(&masking_doc()).await.unwrap();
    let mut doc = ApplyDocument {
        masking_policy: masking_doc().masking_policy,
        ..Default::default()
    };
    doc.masking_policy[0].rules.pop();
    let e = store.apply(&doc).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "masking-policy pii no longer has rule ssn, which role ssn-readers reveals; keep the \
         rule, or remove \"pii/ssn\" from the role's reveal list (in the same file)"
    );
    let mut role: RoleSpec =
        serde_json::from_value(store.get(Kind::Role, "ssn-readers").await.unwrap().unwrap())
            .unwrap();
    role.reveal.clear();
    doc.role.push(role);
    let changes = store.apply(&doc).await.unwrap();
    assert_eq!(
        outcomes(&changes),
        vec![
            (Kind::MaskingPolicy, "pii", Updated),
            (Kind::Role, "ssn-readers", Updated),
        ]
    );
}

#[tokio::test]
async fn session_policy_holds_the_granted_masking_policies_and_reveals() {
    let (_d, store) = open_temp().await;
    let mut doc = masking_doc();
    doc.masking_policy.push(postern_core::MaskingPolicySpec {
        name: "strict".into(),
        priority: 20,
        rules: vec![masking_rule("notes", "*.*.*.*.notes", "null")],
        ..Default::default()
    });
    doc.user.push(UserSpec {
        name: "bob".into(),
        ..Default::default()
    });
    store.apply(&doc).await.unwrap();
    let ds = store.datasource("shop").await.unwrap().unwrap();

    // Both of alice's roles grant pii: it comes once; strict is granted to no one.
    let p = store.session_policy("alice", &ds).await.unwrap();
    let names: Vec<&str> = p.masking.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["pii"]);
    assert_eq!(p.masking[0].priority, 10);
    let rules: Vec<&str> = p.masking[0].rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(rules, ["pii/emails", "pii/cards", "pii/ssn"]);
    assert_eq!(
        p.revealed,
        std::collections::HashSet::from(["pii/ssn".to_string()])
    );
    // The rule selection sees it: ssn revealed, emails masked.
    let col = |table, column| postern_policy::ColumnRef {
        datasource: "shop",
        database: "shop",
        schema: "public",
        table,
        column,
    };
    let rule = |c| postern_policy::rule_for(&p.masking, &p.revealed, &c).map(|r| r.name.clone());
    assert_eq!(rule(col("customers", "ssn")), None);
    assert_eq!(
        rule(col("customers", "email")).as_deref(),
        Some("pii/emails")
    );

    // Granting strict too: both, by name.
    doc.role[0].masking.push("strict".into());
    store.apply(&doc).await.unwrap();
    let p = store.session_policy("alice", &ds).await.unwrap();
    let names: Vec<&str> = p.masking.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["pii", "strict"]);

    // No roles: nothing masked, nothing revealed.
    let p = store.session_policy("bob", &ds).await.unwrap();
    assert!(p.masking.is_empty() && p.revealed.is_empty());
}

#[tokio::test]
async fn masking_policy_delete_waits_for_its_roles() {
    let (_d, store) = open_temp().await;
    let mut doc = masking_doc();
    store.apply(&doc).await.unwrap();
    let e = store.delete(Kind::MaskingPolicy, "pii").await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)));
    assert_eq!(
        e.to_string(),
        "masking-policy pii is still used by roles dba, ssn-readers (in masking or reveal); \
         remove it from those roles first"
    );
    // A reveal alone still holds it.
    doc.role[0].masking.clear();
    doc.role[1].masking.clear();
    store.apply(&doc).await.unwrap();
    let e = store.delete(Kind::MaskingPolicy, "pii").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "masking-policy pii is still used by role ssn-readers (in masking or reveal); \
         remove it from that role first"
    );
    doc.role[1].reveal.clear();
    store.apply(&doc).await.unwrap();
    let epoch = store.policy_epoch();
    let before = epoch.load(std::sync::atomic::Ordering::Acquire);
    assert!(store.delete(Kind::MaskingPolicy, "pii").await.unwrap());
    assert!(epoch.load(std::sync::atomic::Ordering::Acquire) > before);
    assert!(!store.delete(Kind::MaskingPolicy, "pii").await.unwrap());
    assert!(store
        .get(Kind::MaskingPolicy, "pii")
        .await
        .unwrap()
        .is_none());
    assert!(store.list(Kind::MaskingPolicy).await.unwrap().is_empty());
}
