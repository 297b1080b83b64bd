//! Identity and second factor through the real proxy and the real CLI: enrolment at first
//! sign-in, psql logins held until `postern approve` with a TOTP code, the approval cache,
//! timeouts, the `user:code` form for scripts, lockouts, and live sessions cut when a user
//! is locked or disabled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::{pg, postern_bin, unique, Cli, Postern, Upstream};
use postern_store::AuditFilter;

/// An independent TOTP generator (RFC 6238, SHA-1, 6 digits, 30 s).
fn totp_at(secret: &[u8], unix: u64) -> String {
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret.to_vec()).generate(unix)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A CLI home signed in as `user` through `postern admin login`, enrolling the user's
/// TOTP factor on the way (the password-only sign-in asks for it); returns the secret.
fn sign_in_enrolling(postern: &Postern, user: &str, password: &str) -> (Cli, Vec<u8>) {
    let (cli, secret, _) = sign_in_enrolling_with_codes(postern, user, password);
    (cli, secret)
}

/// [`sign_in_enrolling`], also returning the recovery codes the enrolment printed.
fn sign_in_enrolling_with_codes(
    postern: &Postern,
    user: &str,
    password: &str,
) -> (Cli, Vec<u8>, Vec<String>) {
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();
    let mut child = Command::new(postern_bin())
        .args([
            "admin", "login", "--server", &server, "--ca", &ca, "--user", user,
        ])
        .env("POSTERN_HOME", cli.home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let secret = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "no secret shown: {seen}"
        );
        seen.push_str(&line);
        if let Some(s) = line.trim().strip_prefix("secret: ") {
            break data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap();
        }
    };
    assert!(seen.contains("otpauth://totp/"), "{seen}");
    assert!(
        seen.contains('█') || seen.contains('▀'),
        "a QR code is drawn: {seen}"
    );
    writeln!(stdin, "{}", totp_at(&secret, now_unix())).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{seen}{rest}{err}");
    assert!(rest.contains("Recovery codes"), "{rest}");
    assert!(rest.contains("Signed in"), "{rest}");
    let codes: Vec<String> = rest
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 11 && l.as_bytes()[5] == b'-')
        .map(String::from)
        .collect();
    assert_eq!(codes.len(), 10, "{rest}");
    (cli, secret, codes)
}

struct Fixture {
    postern: Postern,
    up: Upstream,
    alias: String,
}

async fn setup(require_2fa: bool, users: &[&str]) -> Fixture {
    let up = pg().upstream(None).await;
    let postern = Postern::start_with(|c| {
        c.auth.require_2fa = require_2fa;
        c.auth.approval_timeout = Duration::from_secs(6);
    })
    .await;
    let alias = unique("idp");
    for u in users {
        postern
            .grant(&up, &alias, u, &format!("{u}-pw-123456"), "disable")
            .await;
    }
    Fixture { postern, up, alias }
}

impl Fixture {
    fn psql(&self, user: &str, login_as: &str) -> Command {
        let mut cmd = self
            .postern
            .psql(login_as, &format!("{user}-pw-123456"), &self.alias);
        cmd.env("PGSSLMODE", "disable")
            .args(["-At", "-c", "select current_user"]);
        cmd
    }

    async fn done(self) {
        self.postern.stop().await;
        self.up.drop_all().await;
    }
}

/// Starts psql and returns it with the approval id its waiting login shows.
#[allow(clippy::zombie_processes)] // a failed assert ends the test, the child with it
fn psql_waiting(mut cmd: Command) -> (std::process::Child, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no approval notice: {seen}"
        );
        seen.push_str(&line);
        if let Some(at) = line.find("postern approve ") {
            let id: String = line[at + 16..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            // Keep draining stderr so psql never blocks on it.
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut sink);
            });
            return (child, id, seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_login_waits_for_approval() {
    let f = setup(true, &["alice", "carol"]).await;
    let (cli, secret) = sign_in_enrolling(&f.postern, "alice", "alice-pw-123456");
    let status = cli.ok(&["mfa", "status"], None);
    assert!(
        status.contains("TOTP enrolled; 10 recovery codes left"),
        "{status}"
    );

    // psql with the password: held, told what to do.
    let started = Instant::now();
    let (child, id, notice) = psql_waiting(f.psql("alice", "alice"));
    assert!(notice.contains("NOTICE"), "{notice}");
    // A wrong code is refused and the login keeps waiting.
    let out = cli.run(&["approve", &id, "--code", "000000"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong code"),
        "{out:?}"
    );
    // The next step's code (the enrolment used this one; codes never work twice).
    let code = totp_at(&secret, now_unix() + 30);
    let approved = cli.ok(&["approve", &id, "--code", &code], None);
    assert!(approved.contains("login approved"), "{approved}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), f.up.role);
    assert!(started.elapsed() < Duration::from_secs(6));

    // Cached for the next connection from the same address: no wait, no notice.
    let out = f.psql("alice", "alice").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("postern approve"));

    // Nobody approves: the login times out with the documented error.
    let (cli_c, _) = sign_in_enrolling(&f.postern, "carol", "carol-pw-123456");
    drop(cli_c);
    let (child, _id, _) = psql_waiting(f.psql("carol", "carol"));
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the timeout"
    );

    // The audit trail says how each login's second factor was met.
    let events = f
        .postern
        .audit(AuditFilter {
            kind: Some("login_success".into()),
            limit: Some(100),
            ..AuditFilter::default()
        })
        .await;
    let factors: Vec<String> = events
        .iter()
        .filter(|e| e.protocol == Some(postern_audit::Protocol::Postgres))
        .filter_map(|e| {
            e.detail.as_ref()?["second_factor"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(factors.contains(&"approved".to_string()), "{factors:?}");
    assert!(
        factors.contains(&"cached approval".to_string()),
        "{factors:?}"
    );
    let failures = f.postern.audit_of("carol", "login_failure").await;
    assert!(
        failures
            .iter()
            .any(|e| e.error.as_deref() == Some("approval timed out")),
        "{failures:?}"
    );
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_give_the_code_with_the_user_name() {
    let f = setup(true, &["bob"]).await;
    let (_cli, secret) = sign_in_enrolling(&f.postern, "bob", "bob-pw-123456");
    // The `user:code` form: no wait.
    let code = totp_at(&secret, now_unix() + 30);
    let out = f.psql("bob", &format!("bob:{code}")).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), f.up.role);
    // The same code again is refused (the cached approval does not apply to a login that
    // brings a code).
    let out = f.psql("bob", &format!("bob:{code}")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong, expired or already used"), "{err}");
    // The code never reaches the audit trail.
    let events = f
        .postern
        .audit(AuditFilter {
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await;
    for e in &events {
        let json = serde_json::to_string(e).unwrap();
        assert!(!json.contains(&code), "{json}");
    }
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_error_names_the_fix() {
    let f = setup(true, &["dora"]).await;
    let _ = sign_in_enrolling(&f.postern, "dora", "dora-pw-123456");
    let out = f.psql("dora", "dora").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postern approve"), "{err}");
    assert!(err.contains("not approved within 6 s"), "{err}");
    assert!(err.contains("dora:<TOTP code>"), "{err}");
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_factor_is_told_to_enrol() {
    let f = setup(true, &["erin"]).await;
    let out = f.psql("erin", "erin").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must enrol a second factor"), "{err}");
    assert!(err.contains("postern mfa enroll"), "{err}");
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_admin_enrols_at_first_login() {
    let postern = Postern::start_with(|c| c.auth.require_2fa = true).await;
    let pw = postern.handle.bootstrap_password.clone().unwrap();
    let (cli, secret) = sign_in_enrolling(&postern, "admin", &pw);
    let users = cli.ok(&["get", "users"], None);
    assert!(users.contains("admin"), "{users}");
    // Signing in again needs the password and a code.
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();
    let out = cli.run(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin", "--code",
            "000000",
        ],
        Some(&format!("{pw}\n")),
    );
    assert!(!out.status.success(), "{out:?}");
    let code = totp_at(&secret, now_unix() + 30);
    cli.ok(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin", "--code", &code,
        ],
        Some(&format!("{pw}\n")),
    );
    // An admin resets the factor: the next sign-in enrols again.
    cli.ok(&["mfa", "reset", "admin"], None);
    let again = sign_in_enrolling(&postern, "admin", &pw);
    drop(again);
    postern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_after_failures_from_one_address() {
    let f = setup(false, &["frank", "gina"]).await;
    for _ in 0..5 {
        let out = f
            .postern
            .psql("frank", "wrong-password", &f.alias)
            .env("PGSSLMODE", "disable")
            .args(["-c", "select 1"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
    }
    // Locked now, even with the right password.
    let out = f.psql("frank", "frank").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too many failed logins"), "{err}");
    assert!(err.contains("postern user unlock frank"), "{err}");
    // Another user from the same address is not affected.
    let out = f.psql("gina", "gina").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let lockouts = f
        .postern
        .audit(AuditFilter {
            kind: Some("lockout".into()),
            ..AuditFilter::default()
        })
        .await;
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(lockouts[0].user.as_deref(), Some("frank"));
    // An admin unlocks.
    let cli = Cli::admin(&f.postern);
    cli.ok(&["user", "unlock", "frank"], None);
    let out = f.psql("frank", "frank").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    f.done().await;
}

async fn wait_closed(c: &tokio_postgres::Client) -> Duration {
    let started = Instant::now();
    while !c.is_closed() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "session still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_or_disabling_a_user_ends_their_live_session() {
    let f = setup(false, &["hank"]).await;
    let cli = Cli::admin(&f.postern);
    let c = f
        .postern
        .connect("hank", "hank-pw-123456", &f.alias)
        .await
        .unwrap();
    c.simple_query("select 1").await.unwrap();
    // Locked while idle: the session ends within seconds without a statement.
    cli.ok(&["user", "lock", "hank"], None);
    let took = wait_closed(&c).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let out = f.psql("hank", "hank").output().unwrap();
    assert!(!out.status.success());
    cli.ok(&["user", "unlock", "hank"], None);

    let c = f
        .postern
        .connect("hank", "hank-pw-123456", &f.alias)
        .await
        .unwrap();
    c.simple_query("select 1").await.unwrap();
    let mut doc = serde_json::json!({"user": [{"name": "hank", "roles": [format!("{}-role", f.alias)], "disabled": true}]});
    let doc: postern_core::ApplyDocument = serde_json::from_value(doc.take()).unwrap();
    f.postern.handle.store.apply(&doc).await.unwrap();
    let took = wait_closed(&c).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let closes = f.postern.audit_of("hank", "session_close").await;
    assert!(
        closes
            .iter()
            .any(|e| e.error.as_deref().is_some_and(|m| m.contains("disabled"))),
        "{closes:?}"
    );
    f.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_abandoned_and_recovery_code_logins() {
    let f = setup(true, &["hana"]).await;
    let (cli, secret, codes) = sign_in_enrolling_with_codes(&f.postern, "hana", "hana-pw-123456");

    // Refused by the person with `postern approve --deny`: psql is told so.
    let (child, id, _) = psql_waiting(f.psql("hana", "hana"));
    let code = totp_at(&secret, now_unix() + 30);
    let said = cli.ok(&["approve", &id, "--deny", "--code", &code], None);
    assert!(said.contains("login refused"), "{said}");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    f.postern
        .audit_expect(
            Postern::filter("hana", "login_failure"),
            "of the denied approval",
            |e| {
                e.error
                    .as_deref()
                    .is_some_and(|r| r.starts_with("approval denied"))
            },
        )
        .await;

    // The client gives up while waiting: its pending approval goes at once, not at the
    // timeout.
    let (mut child, id, _) = psql_waiting(f.psql("hana", "hana"));
    let listed = cli.ok(&["approve"], None);
    assert!(listed.contains(&id), "{listed}");
    child.kill().unwrap();
    let _ = child.wait();
    let started = Instant::now();
    loop {
        let listed = cli.ok(&["approve"], None);
        if !listed.contains(&id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still pending: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    f.postern
        .audit_expect(
            Postern::filter("hana", "second_factor"),
            "of the client that left",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == "client left while waiting")
            },
        )
        .await;

    // A recovery code in place of the TOTP code: once.
    let out = f
        .psql("hana", &format!("hana:{}", codes[0]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = f
        .psql("hana", &format!("hana:{}", codes[0]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let status = cli.ok(&["mfa", "status"], None);
    assert!(status.contains("9 recovery codes left"), "{status}");
    f.done().await;
}
