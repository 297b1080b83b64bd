//! Short-lived client certificates (I3) through the real CLI and plain psql: `postern login`
//! with password and TOTP, `postern db ls|login|env|connect`, psql connecting with the
//! certificate and no password; expired, foreign, revoked and other users' certificates
//! refused with a message naming `postern login`; live sessions ended when their
//! certificate expires or is revoked; `postern logout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::{pg, postern_bin, unique, Cli, Postern, Upstream};
use postern_store::AuditFilter;

fn totp_at(secret: &[u8], unix: u64) -> String {
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret.to_vec()).generate(unix)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A person's machine: its own HOME (so ~/.postern and ~/.pg_service.conf are its own).
struct Desk {
    home: tempfile::TempDir,
    server: String,
    ca: String,
}

/// libpq variables that must not leak in from the test runner's environment.
const PG_VARS: &[&str] = &[
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLROOTCERT",
    "PGPASSFILE",
];

impl Desk {
    fn new(postern: &Postern) -> Self {
        Desk {
            home: tempfile::tempdir().unwrap(),
            server: format!("https://127.0.0.1:{}", postern.handle.api_addr.port()),
            ca: postern.handle.ca_path.display().to_string(),
        }
    }

    fn clean(&self, cmd: &mut Command) {
        cmd.env("HOME", self.home.path())
            .env_remove("POSTERN_HOME")
            .env_remove("POSTERN_SERVER")
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_CA");
        for v in PG_VARS {
            cmd.env_remove(v);
        }
    }

    /// `postern ARGS` as this person, `stdin` fed in.
    fn postern(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(postern_bin());
        cmd.args(args);
        self.clean(&mut cmd);
        // `postern db connect` runs psql from PATH.
        let path = format!(
            "{}:{}",
            pg().bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.postern(args, stdin);
        assert!(out.status.success(), "postern {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `postern login` as `user`.
    fn login(&self, user: &str, password: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "login",
            "--server",
            &self.server,
            "--ca",
            &self.ca,
            "--user",
            user,
        ];
        args.extend_from_slice(extra);
        self.ok(&args, &format!("{password}\n"))
    }

    /// Plain psql with this person's HOME and no password anywhere.
    fn psql(&self, conninfo: &str, sql: &str) -> Command {
        let mut cmd = pg().tool("psql");
        self.clean(&mut cmd);
        cmd.args(["-X", "-w", "-At", "-d", conninfo, "-c", sql]);
        cmd
    }

    fn certs(&self) -> PathBuf {
        self.home.path().join(".postern/certs")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn setup(require_2fa: bool) -> (Postern, Upstream, String) {
    let up = pg().upstream(None).await;
    let postern = Postern::start_with(|c| c.auth.require_2fa = require_2fa).await;
    let alias = unique("crt");
    for u in ["alice", "bob"] {
        postern
            .grant(&up, &alias, u, &format!("{u}-pw-123456"), "disable")
            .await;
    }
    (postern, up, alias)
}

/// The serial `postern login` saved in identity.toml.
fn serial_of(desk: &Desk) -> String {
    let text = std::fs::read_to_string(desk.certs().join("identity.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("serial = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("serial in identity.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_lets_plain_psql_in_without_a_password() {
    let (postern, up, alias) = setup(true).await;
    let store = &postern.handle.store;
    // Alice has a TOTP factor (enrolment itself is tested in identity.rs).
    let secret = b"certificate-test-secret".to_vec();
    store.mfa_begin("alice", &secret).await.unwrap();
    store.mfa_confirm("alice", 1, &[]).await.unwrap();

    let desk = Desk::new(&postern);
    let code = totp_at(&secret, now_unix());
    let said = desk.login("alice", "alice-pw-123456", &["--code", &code]);
    assert!(
        said.contains("certificate") && said.contains("valid until"),
        "{said}"
    );
    let key = desk.certs().join("client.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is private");
    }
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY"));

    let ls = desk.ok(&["db", "ls"], "");
    assert!(ls.contains(&alias) && ls.contains("postgres"), "{ls}");

    // `db login` writes a psql service; plain psql then needs nothing else.
    let said = desk.ok(&["db", "login", &alias], "");
    assert!(said.contains(&format!("psql service={alias}")), "{said}");
    let service = std::fs::read_to_string(desk.home.path().join(".pg_service.conf")).unwrap();
    assert!(service.contains("sslmode=verify-full"), "{service}");
    assert!(!service.contains("password"), "{service}");
    let started = Instant::now();
    let out = desk
        .psql(&format!("service={alias}"), "select current_user")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.role);
    // No approval was waited for: the certificate is the second factor.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!stderr(&out).contains("postern approve"), "{out:?}");

    // `db env` prints what other libpq clients need.
    let env = desk.ok(&["db", "env", &alias], "");
    let mut psql = desk.psql("", "select 40 + 2");
    for line in env.lines() {
        let (k, v) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap();
        psql.env(k, v.trim_matches('\''));
    }
    let out = psql.output().unwrap();
    assert!(out.status.success(), "{env}\n{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // `db connect` starts psql itself.
    let out = desk.postern(
        &["db", "connect", &alias, "--", "-At", "-c", "select 'hi'"],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");

    // Alice's certificate does not open Bob's account.
    let out = desk
        .psql(&format!("service={alias} user=bob"), "select 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("certificate is for user \"alice\""),
        "{out:?}"
    );

    // The audit trail says how she got in.
    let events = postern
        .audit_until(Postern::filter("alice", "login_success"), |e| {
            e.protocol == Some(postern_audit::Protocol::Postgres)
        })
        .await;
    let serial = serial_of(&desk);
    let pg_login = events
        .iter()
        .find(|e| e.protocol == Some(postern_audit::Protocol::Postgres))
        .unwrap();
    let detail = pg_login.detail.as_ref().unwrap();
    assert_eq!(detail["auth"], "certificate");
    assert_eq!(detail["second_factor"], "certificate");
    assert_eq!(detail["certificate"], serial.as_str());
    let issued = postern
        .audit(AuditFilter {
            kind: Some("certificate".into()),
            ..AuditFilter::default()
        })
        .await;
    assert!(
        issued
            .iter()
            .any(|e| e.detail.as_ref().unwrap()["serial"] == serial.as_str()),
        "{issued:?}"
    );

    // Logout revokes and removes it; the service no longer connects.
    let said = desk.ok(&["logout"], "");
    assert!(said.contains("Revoked certificate"), "{said}");
    assert!(!key.exists());
    let rec = store.cert(&serial).await.unwrap().unwrap();
    assert!(rec.revoked_at.is_some());
    let out = desk
        .psql(&format!("service={alias}"), "select 1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let out = desk.postern(&["db", "env", &alias], "");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(stderr(&out).contains("postern login"), "{out:?}");

    postern.stop().await;
    up.drop_all().await;
}

/// A CA and a client certificate for `user` that this Postern never saw.
fn foreign_identity(dir: &Path, user: &str) -> (PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Another CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::default();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, user);
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let (c, k) = (dir.join("foreign.crt"), dir.join("foreign.key"));
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_foreign_and_revoked_certificates_are_refused() {
    let (postern, up, alias) = setup(false).await;
    let desk = Desk::new(&postern);
    let admin = Cli::admin(&postern);

    // A 3-second certificate: a session open when it expires is ended, and the next
    // connection is refused with what to do.
    desk.login("alice", "alice-pw-123456", &["--ttl", "3s"]);
    desk.ok(&["db", "login", &alias], "");
    let started = Instant::now();
    let out = desk
        .psql(&format!("service={alias}"), "select pg_sleep(20)")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "ended early");
    assert!(stderr(&out).contains("certificate expired"), "{out:?}");
    let out = desk
        .psql(&format!("service={alias}"), "select 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("expired") && err.contains("postern login"),
        "{err}"
    );
    let out = desk.postern(&["db", "connect", &alias], "");
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // A certificate from another CA, for the same user name.
    let (crt, key) = foreign_identity(desk.home.path(), "alice");
    let conninfo = format!(
        "service={alias} sslcert={} sslkey={}",
        crt.display(),
        key.display()
    );
    let out = desk.psql(&conninfo, "select 1").output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not issued by this Postern"), "{err}");

    // Over the limit the admin set: refused, with the limit named.
    let out = desk.postern(
        &[
            "login",
            "--server",
            &desk.server,
            "--ca",
            &desk.ca,
            "--user",
            "alice",
            "--ttl",
            "2d",
        ],
        "alice-pw-123456\n",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("auth.cert_max_ttl"), "{out:?}");

    // A fresh certificate works until an admin revokes it; its open session ends too.
    desk.login("alice", "alice-pw-123456", &[]);
    let serial = serial_of(&desk);
    let listed = admin.ok(&["cert", "ls", "--user", "alice"], None);
    assert!(listed.contains(&serial), "{listed}");
    let opened = Postern::filter("alice", "session_open");
    let before = postern.audit(opened.clone()).await.len();
    let mut long = desk.psql(&format!("service={alias}"), "select pg_sleep(20)");
    let long = long
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the session is open (a statement is audited only once it completes).
    let mut waited = 0;
    while postern.audit(opened.clone()).await.len() == before {
        assert!(waited < 100, "the session never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let revoked_at = Instant::now();
    let said = admin.ok(&["cert", "revoke", &serial], None);
    assert!(said.contains("Revoked 1 certificate"), "{said}");
    let out = long.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(revoked_at.elapsed() < Duration::from_secs(8));
    assert!(stderr(&out).contains("revoked"), "{out:?}");
    let out = desk
        .psql(&format!("service={alias}"), "select 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("was revoked") && err.contains("postern login"),
        "{err}"
    );

    // An admin lock (as a factor reset) revokes the user's certificates too: after the
    // unlock, the old certificate stays dead.
    desk.login("alice", "alice-pw-123456", &[]);
    let out = desk
        .psql(&format!("service={alias}"), "select 1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    admin.ok(&["user", "lock", "alice"], None);
    admin.ok(&["user", "unlock", "alice"], None);
    let out = desk
        .psql(&format!("service={alias}"), "select 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("was revoked"), "{out:?}");

    // Every refusal is in the audit trail.
    let failures = postern.audit_of("alice", "login_failure").await;
    let reasons: Vec<&str> = failures.iter().filter_map(|e| e.error.as_deref()).collect();
    for want in [
        "client certificate expired",
        "client certificate from another CA",
        "certificate revoked by admin",
    ] {
        assert!(reasons.contains(&want), "{want} in {reasons:?}");
    }
    postern.stop().await;
    up.drop_all().await;
}
