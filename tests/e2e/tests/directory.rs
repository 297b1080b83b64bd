//! Directory logins (I1) against a real OpenLDAP (scripts/test-ldap.sh): a person who exists
//! only in LDAP reaches a datasource through psql and signs in to the API, their group
//! mapped to a Postern role; a wrong directory password, a cleartext connection and a
//! person whose group was taken away are refused; no password is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use ldap3::{LdapConnAsync, Mod};
use postern::config::LdapConfig;
use postern_e2e::{pg, unique, Cli, Postern};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts the test LDAP server")
    })
}

/// The test directory, as its manager.
struct Directory {
    ldap: ldap3::Ldap,
    base: String,
    made: Vec<String>,
}

impl Directory {
    async fn open() -> Self {
        let (conn, mut ldap) = LdapConnAsync::new(&env("POSTERN_TEST_LDAP_URL"))
            .await
            .unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(
            &env("POSTERN_TEST_LDAP_ADMIN_DN"),
            &env("POSTERN_TEST_LDAP_ADMIN_PW"),
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        Directory {
            ldap,
            base: env("POSTERN_TEST_LDAP_BASE"),
            made: Vec::new(),
        }
    }

    async fn add_person(&mut self, uid: &str, password: &str) -> String {
        let dn = format!("uid={uid},ou=people,{}", self.base);
        let attrs = vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", [uid].into()),
            ("cn", [uid].into()),
            ("sn", ["Tester"].into()),
            ("userPassword", [password].into()),
        ];
        self.ldap.add(&dn, attrs).await.unwrap().success().unwrap();
        self.made.push(dn.clone());
        dn
    }

    async fn add_group(&mut self, cn: &str, member: &str) -> String {
        let dn = format!("cn={cn},ou=groups,{}", self.base);
        let attrs = vec![
            ("objectClass", ["groupOfNames"].into()),
            ("cn", [cn].into()),
            ("member", [member].into()),
        ];
        self.ldap.add(&dn, attrs).await.unwrap().success().unwrap();
        self.made.push(dn.clone());
        dn
    }

    async fn clean(mut self) {
        for dn in self.made.iter().rev() {
            let _ = self.ldap.delete(dn).await;
        }
        let _ = self.ldap.unbind().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_people_reach_datasources_by_group() {
    let mut dir = Directory::open().await;
    let uid = unique("dora");
    let group = unique("dbas");
    let password = "Directory-Pass-9341";
    let person = dir.add_person(&uid, password).await;
    let group_dn = dir.add_group(&group, &person).await;
    // A decoy member so the group survives losing Dora (groupOfNames needs one).
    let other = dir.add_person(&unique("other"), "Other-Pass-5521").await;
    dir.ldap
        .modify(&group_dn, vec![Mod::Add("member", [other.as_str()].into())])
        .await
        .unwrap()
        .success()
        .unwrap();

    let up = pg().upstream(None).await;
    let alias = unique("ldap");
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), env("POSTERN_TEST_LDAP_BIND_PW")).unwrap();
    let role = format!("{alias}-role");
    let ldap_cfg = ldap_config(
        env("POSTERN_TEST_LDAP_URL"),
        false,
        None,
        secret_file.path(),
        &group,
        &role,
    );
    let postern = Postern::start_with(|c| c.ldap = Some(ldap_cfg)).await;
    // The datasource, credential and role (granted here to a local keeper only).
    let keeper = unique("keeper");
    postern
        .grant(&up, &alias, &keeper, "keeper-pw-123456", "disable")
        .await;

    let psql = |user: &str, pw: &str, sslmode: &str| {
        let mut cmd = postern.psql(user, pw, &alias);
        cmd.env("PGSSLMODE", sslmode)
            .args(["-w", "-At", "-c", "select current_user"]);
        cmd
    };

    // Dora exists only in the directory; her group maps to the role.
    let out = psql(&uid, password, "require").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.role);
    let info = postern
        .handle
        .store
        .login_info(&uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.source, "ldap");
    assert!(info.scram.is_none(), "no password is stored");

    // A wrong directory password.
    let out = psql(&uid, "Wrong-Pass-0000", "require").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password authentication failed"), "{err}");

    // The password would cross the network in clear: TLS only.
    let out = psql(&uid, password, "disable").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only over TLS") && err.contains("sslmode=require"),
        "{err}"
    );

    // The API takes the same directory password.
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();
    let said = cli.ok(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", &uid,
        ],
        Some(&format!("{password}\n")),
    );
    assert!(said.contains("Signed in"), "{said}");
    let out = cli.run(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", &uid,
        ],
        Some("Wrong-Pass-0000\n"),
    );
    assert!(!out.status.success());

    // Out of the group in the directory: the role goes at the next login.
    dir.ldap
        .modify(
            &group_dn,
            vec![Mod::Delete("member", [person.as_str()].into())],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let out = psql(&uid, password, "require").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no role"), "{err}");

    // The audit trail: directory logins, and the refusal's real reason.
    let ok = postern.audit_of(&uid, "login_success").await;
    assert!(
        ok.iter()
            .any(|e| e.detail.as_ref().is_some_and(|d| d["auth"] == "ldap")),
        "{ok:?}"
    );
    let failed = postern.audit_of(&uid, "login_failure").await;
    let reasons: Vec<&str> = failed.iter().filter_map(|e| e.error.as_deref()).collect();
    assert!(reasons.contains(&"wrong directory password"), "{reasons:?}");

    postern.stop().await;
    up.drop_all().await;
    dir.clean().await;
}

fn ldap_config(
    url: String,
    starttls: bool,
    ca: Option<std::path::PathBuf>,
    secret: &std::path::Path,
    group: &str,
    role: &str,
) -> LdapConfig {
    let base = env("POSTERN_TEST_LDAP_BASE");
    let mut group_roles = BTreeMap::new();
    group_roles.insert(group.to_string(), vec![role.to_string()]);
    LdapConfig {
        url,
        starttls,
        ca,
        bind_dn: env("POSTERN_TEST_LDAP_BIND_DN"),
        bind_password_file: Some(secret.to_path_buf()),
        bind_password_env: None,
        base_dn: format!("ou=people,{base}"),
        user_filter: "(&(objectClass=inetOrgPerson)(uid={user}))".into(),
        group_base_dn: Some(format!("ou=groups,{base}")),
        group_filter: "(member={dn})".into(),
        group_name_attribute: "cn".into(),
        timeout: std::time::Duration::from_secs(5),
        group_roles,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_over_tls_and_a_directory_postern_cannot_trust() {
    let mut dir = Directory::open().await;
    let uid = unique("tess");
    let group = unique("tls-dbas");
    let password = "Directory-Tls-7720";
    let person = dir.add_person(&uid, password).await;
    dir.add_group(&group, &person).await;
    let up = pg().upstream(None).await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), env("POSTERN_TEST_LDAP_BIND_PW")).unwrap();
    let ca = std::path::PathBuf::from(env("POSTERN_TEST_LDAP_CA"));

    let cases = [
        (env("POSTERN_TEST_LDAPS_URL"), false, Some(ca.clone()), true),
        (env("POSTERN_TEST_LDAP_URL"), true, Some(ca.clone()), true),
        // A CA that did not sign the directory's certificate: fail closed.
        (
            env("POSTERN_TEST_LDAPS_URL"),
            false,
            Some(pg().ca.clone()),
            false,
        ),
    ];
    for (url, starttls, ca, works) in cases {
        let alias = unique("ldaps");
        let role = format!("{alias}-role");
        let cfg = ldap_config(url.clone(), starttls, ca, secret_file.path(), &group, &role);
        let postern = Postern::start_with(|c| c.ldap = Some(cfg)).await;
        postern
            .grant(
                &up,
                &alias,
                &unique("keeper"),
                "keeper-pw-123456",
                "disable",
            )
            .await;
        let out = postern
            .psql(&uid, password, &alias)
            .env("PGSSLMODE", "require")
            .args(["-w", "-At", "-c", "select current_user"])
            .output()
            .unwrap();
        if works {
            assert!(out.status.success(), "{url} starttls={starttls}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.role);
        } else {
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("could not reach its user directory"), "{err}");
        }
        postern.stop().await;
    }
    up.drop_all().await;
    dir.clean().await;
}
