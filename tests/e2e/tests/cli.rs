//! The `postern` binary's admin commands against a running server, end to end: login,
//! declarative apply (idempotent), get, user passwd, delete, audit search and verify — and
//! psql through the proxy with what the CLI configured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_e2e::{pg, unique, Cli, Postern};

#[tokio::test(flavor = "multi_thread")]
async fn admin_cli_end_to_end() {
    let pg = pg();
    let up = pg.upstream(None).await;
    let postern = Postern::start().await;
    let admin_pw = postern
        .handle
        .bootstrap_password
        .clone()
        .expect("first start creates the admin");
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();

    // Not logged in yet: exit code 4 and a message that says what to do.
    let out = cli.run(&["get", "users"], None);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("postern admin login"));

    // A wrong admin password is refused.
    let out = cli.run(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin",
        ],
        Some("not-the-password\n"),
    );
    assert!(!out.status.success());

    cli.ok(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin",
        ],
        Some(&format!("{admin_pw}\n")),
    );

    // Declarative apply, twice: created, then unchanged.
    let alias = unique("cli_ds");
    let user = unique("cli_user");
    let file = cli.home.path().join("resources.yaml");
    std::fs::write(
        &file,
        format!(
            "datasource:\n  - name: {alias}\n    type: postgres\n    host: {host}\n    port: {port}\n    database: {db}\n    tls: disable\n\
             credential:\n  - name: {alias}-rw\n    datasource: {alias}\n    username: {role}\n    password: ${{CLI_TEST_UPSTREAM_PW}}\n\
             role:\n  - name: {alias}-users\n    credentials: [{alias}-rw]\n\
             user:\n  - name: {user}\n    roles: [{alias}-users]\n    password: first-password-1\n",
            host = pg.host,
            port = pg.port,
            db = up.db,
            role = up.role,
        ),
    )
    .unwrap();
    std::env::set_var("CLI_TEST_UPSTREAM_PW", &up.password);
    let first = cli.ok(&["apply", "-f", file.to_str().unwrap()], None);
    assert!(first.contains("created"), "{first}");
    assert!(!first.contains("unchanged"), "{first}");
    let second = cli.ok(&["apply", "-f", file.to_str().unwrap()], None);
    assert!(
        second.contains("unchanged") && !second.contains("created") && !second.contains("updated"),
        "{second}"
    );

    // get: the credential is listed, its password never.
    let creds = cli.ok(&["get", "credentials", "-o", "json"], None);
    assert!(creds.contains(&format!("{alias}-rw")), "{creds}");
    assert!(!creds.contains(&up.password), "{creds}");
    let one = cli.ok(&["get", "datasource", &alias], None);
    assert!(one.contains(&up.db), "{one}");

    // A masking policy (TOML this time): applied with a role granting it and revealing one
    // of its rules, shown by `get`, kept while the role uses it, then deleted.
    let mp = format!("{alias}-pii");
    let masking_file = cli.home.path().join("masking.toml");
    let masking_doc = |granted: bool| {
        let grants = if granted {
            format!("masking = [\"{mp}\"]\nreveal = [\"{mp}/ssn\"]\n")
        } else {
            String::new()
        };
        format!(
            "[[masking-policy]]\nname = \"{mp}\"\npriority = 5\n\n\
             [[masking-policy.rules]]\nname = \"emails\"\non = \"*.*.*.*.*email*\"\nfunction = \"email\"\n\n\
             [[masking-policy.rules]]\nname = \"ssn\"\non = \"{alias}.*.public.customers.ssn\"\nfunction = \"partial(0, 4)\"\n\n\
             [[role]]\nname = \"{alias}-users\"\ncredentials = [\"{alias}-rw\"]\n{grants}"
        )
    };
    std::fs::write(&masking_file, masking_doc(true)).unwrap();
    let report = cli.ok(&["apply", "-f", masking_file.to_str().unwrap()], None);
    let line = |kind: &str, name: &str| {
        report
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([kind, name]))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
    };
    assert_eq!(
        line("masking-policy", &mp).as_deref(),
        Some("created"),
        "{report}"
    );
    assert_eq!(
        line("role", &format!("{alias}-users")).as_deref(),
        Some("updated"),
        "{report}"
    );
    let listed = cli.ok(&["get", "masking-policies"], None);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&mp))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [mp.as_str(), "5", "emails,ssn"]
    );
    let roles = cli.ok(&["get", "roles"], None);
    assert!(
        roles.lines().next().unwrap_or_default().contains("MASKING"),
        "{roles}"
    );
    assert!(roles.contains(&format!("{mp}/ssn")), "{roles}");
    let out = cli.run(&["delete", "masking-policy", &mp], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("role {alias}-users")), "{err}");
    std::fs::write(&masking_file, masking_doc(false)).unwrap();
    cli.ok(&["apply", "-f", masking_file.to_str().unwrap()], None);
    let out = cli.ok(&["delete", "mp", &mp], None);
    assert_eq!(out.trim(), format!("deleted masking-policy {mp}"));
    assert!(!cli
        .run(&["get", "masking-policy", &mp], None)
        .status
        .success());

    // user passwd from stdin, then psql with the new password.
    cli.ok(
        &["user", "passwd", &user, "--password-stdin"],
        Some("second-password-2\n"),
    );
    let port = postern.pg_port().to_string();
    let psql = |pw: &str| {
        pg.tool("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                &user,
                "-d",
                &alias,
                "-At",
                "-c",
                "select 'via cli'",
            ])
            .env("PGPASSWORD", pw)
            .output()
            .unwrap()
    };
    assert!(!psql("first-password-1").status.success());
    let out = psql("second-password-2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via cli");

    // The audit trail, through the CLI.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let found = cli.ok(
        &[
            "audit",
            "search",
            "--user",
            &user,
            "--kind",
            "statement",
            "--json",
        ],
        None,
    );
    assert!(found.contains("select 'via cli'"), "{found}");
    let admin_changes = cli.ok(
        &["audit", "search", "--kind", "admin_change", "--json"],
        None,
    );
    assert!(admin_changes.contains(&alias), "{admin_changes}");
    assert!(!admin_changes.contains(&up.password) && !admin_changes.contains("second-password-2"));
    let verify = cli.ok(&["audit", "verify"], None);
    assert!(verify.to_lowercase().contains("ok"), "{verify}");

    // delete: the user is gone and can no longer log in.
    cli.ok(&["delete", "user", &user], None);
    let out = cli.run(&["get", "user", &user], None);
    assert!(!out.status.success());
    assert!(!psql("second-password-2").status.success());

    postern.stop().await;
    up.drop_all().await;
}

/// `postern policy check` through the API: the role's privileges and mode as applied from
/// a file decide, per statement, with the reason; the exit code says whether all passed.
#[tokio::test(flavor = "multi_thread")]
async fn policy_check_cli() {
    let postern = Postern::start().await;
    let admin_pw = postern.handle.bootstrap_password.clone().unwrap();
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();
    cli.ok(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin",
        ],
        Some(&format!("{admin_pw}\n")),
    );
    let alias = unique("pol_ds");
    let user = unique("pol_user");
    let file = cli.home.path().join("policy.yaml");
    std::fs::write(
        &file,
        format!(
            "datasources:\n  - name: {alias}\n    host: 127.0.0.1\n    port: 5432\n    database: shop\n\
             \x20   firewall:\n      - {{name: no-tautologies, action: deny, when: [tautology]}}\n\
             \x20   allow_list: [\"set constraints all immediate\"]\n\
             roles:\n  - name: {alias}-readers\n    modes: {{{alias}: protected}}\n    privileges:\n\
             \x20     - {{allow: [SELECT], on: \"{alias}.shop.public.products\"}}\n\
             \x20     - {{deny: [ALL], on: \"{alias}.*.*.salaries\"}}\n\
             users:\n  - {{name: {user}, roles: [{alias}-readers]}}\n"
        ),
    )
    .unwrap();
    cli.ok(&["apply", "-f", file.to_str().unwrap()], None);

    let check = |sql: &str| {
        cli.run(
            &[
                "policy",
                "check",
                "--user",
                &user,
                "--datasource",
                &alias,
                sql,
            ],
            None,
        )
    };
    let out = check("select * from products where id = 42");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("mode: protected") && text.contains("ALLOW"),
        "{text}"
    );
    // The statement is shown with its literal masked.
    assert!(text.contains("id = ?") && !text.contains("42"), "{text}");

    let out = check(
        "select * from products; select * from orders; update products set price = 0 where id = 1",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "DENY: no role of yours grants SELECT on {alias}.shop.public.orders"
        )),
        "{text}"
    );
    assert!(text.contains("UPDATE on"), "{text}");
    assert_eq!(text.matches("ALLOW").count(), 1, "{text}");

    // A deny rule wins over a broader allow, and is named.
    let out = check("select * from public.salaries");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("denied by role"), "{text}");

    // The datasource's firewall decides before privileges, and is named.
    let out = check("select * from products where id = 1 or 1=1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DENY: firewall rule no-tautologies"),
        "{text}"
    );
    // PROTECTED mode refuses what it cannot analyse, unless the exact text is allow-listed.
    let out = check("set constraints all deferred");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot analyse"), "{text}");
    let out = check("set constraints all immediate;");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("allow-list"), "{text}");

    // --json carries the analysis too; stdin works.
    let out = cli.run(
        &[
            "policy",
            "check",
            "--user",
            &user,
            "--datasource",
            &alias,
            "--json",
            "-",
        ],
        Some("with o as (select * from orders) select * from o"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["statements"][0]["analysis"]["accesses"][0]["object"]["name"],
        "orders"
    );

    // The shipped example file applies as it is (every privilege, mode and firewall rule
    // in it passes the server's checks).
    for var in ["SHOP_RW_PASSWORD", "SHOP_RO_PASSWORD", "ALICE_PASSWORD"] {
        std::env::set_var(var, "example-secret-Pw1");
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for f in ["postern-apply.yaml", "postern-apply.toml"] {
        let path = example.join(f);
        cli.ok(&["apply", "-f", path.to_str().unwrap()], None);
    }
    let out = cli.run(
        &[
            "policy",
            "check",
            "--user",
            "bob",
            "--datasource",
            "shop",
            "select * from public.salaries",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("denied by role analyst"), "{text}");
    // Firewall rules see the client address: DDL from the office network passes the
    // firewall (with an alert) and then meets bob's privileges; from elsewhere the
    // firewall refuses it first.
    let ddl = |client: Option<&str>| {
        let mut args = vec!["policy", "check", "--user", "bob", "--datasource", "shop"];
        if let Some(c) = client {
            args.extend(["--client", c]);
        }
        args.push("create table t (a int)");
        String::from_utf8_lossy(&cli.run(&args, None).stdout).into_owned()
    };
    let office = ddl(Some("10.1.2.3"));
    assert!(
        office.contains("firewall rule office-ddl applies: allow-and-alert"),
        "{office}"
    );
    assert!(office.contains("no role of yours grants DDL"), "{office}");
    let elsewhere = ddl(None);
    assert!(
        elsewhere.contains("DENY: firewall rule no-ddl-elsewhere"),
        "{elsewhere}"
    );

    // A MySQL datasource is checked with the MySQL analyser: a database is a schema, so a
    // table is `datasource.db.db.table`; backticks, `#` comments and USE read as MySQL does.
    let mydoc = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(
        mydoc.path(),
        "datasources:\n  - {name: shopmy, type: mysql, host: 127.0.0.1, port: 3306, database: ShopDB}\n\
         roles:\n  - name: my-reader\n    privileges:\n      - {allow: [SELECT], on: shopmy.shopdb.shopdb.products}\n\
         users:\n  - {name: myuser, roles: [my-reader]}\n",
    )
    .unwrap();
    cli.ok(&["apply", "-f", mydoc.path().to_str().unwrap()], None);
    let my_check = |sql: &str| {
        let out = cli.run(
            &[
                "policy",
                "check",
                "--user",
                "myuser",
                "--datasource",
                "shopmy",
                sql,
            ],
            None,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = my_check("SELECT * FROM `products` # a comment");
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = my_check("SELECT * FROM products /*! JOIN secrets */");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("shopmy.shopdb.shopdb.secrets"), "{text}");
    let (code, text) = my_check("USE mysql");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("database mysql"), "{text}");

    // Bad input gets a clear error and exit code 1.
    let out = check("selec 1");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not parse"));
    let out = cli.run(
        &[
            "policy",
            "check",
            "--user",
            "nobody",
            "--datasource",
            &alias,
            "select 1",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}
