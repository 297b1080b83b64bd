//! The second factor and client certificates on the MySQL port (I2, I3 through the shared
//! login flow): a TOTP code with the user name, the approval it leaves for the address, a
//! wrong code, and the certificate of `postern login` opening the real `mariadb` client with
//! no password at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use postern_e2e::{my, mysql_cli, postern_bin, Postern};

const PW: &str = "Alice-Secret-77";

fn totp_now(secret: &[u8]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret.to_vec()).generate(now)
}

#[tokio::test(flavor = "multi_thread")]
async fn second_factor_and_certificates_on_the_mysql_port() {
    let up = my().upstream();
    up.root_sql("CREATE TABLE t (v INT); INSERT INTO t VALUES (7);");
    let p = Postern::start_with(|c| c.auth.require_2fa = true).await;
    let modes = serde_json::json!({ "modes": { "mfa": "passthrough" } });
    p.grant_mysql(&up, "mfa", "alice", PW, modes).await;
    let store = &p.handle.store;
    let secret = b"mysql-second-factor-secret".to_vec();
    store.mfa_begin("alice", &secret).await.unwrap();
    store.mfa_confirm("alice", 1, &[]).await.unwrap();

    // A wrong code: refused in the protocol, saying what was wrong.
    let out = p
        .mysql("alice:000000", PW, "mfa")
        .args(["-N", "-e", "SELECT v FROM t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("second-factor code"),
        "{err}"
    );

    // The code with the name (the scripts' form).
    let code = totp_now(&secret);
    let out = p
        .mysql(&format!("alice:{code}"), PW, "mfa")
        .args(["-N", "-e", "SELECT v FROM t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    // The same code again is refused (single use)…
    let out = p
        .mysql(&format!("alice:{code}"), PW, "mfa")
        .args(["-N", "-e", "SELECT v FROM t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already used"),
        "{err}"
    );
    // …but the approval the first one gave this address lets the next login in without one.
    let out = p
        .mysql("alice", PW, "mfa")
        .args(["-N", "-e", "SELECT v + 1 FROM t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8");
    let logins = p.audit_of("alice", "login_success").await;
    let factors: Vec<String> = logins
        .iter()
        .filter_map(|e| {
            e.detail
                .as_ref()?
                .get("second_factor")?
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(factors.contains(&"code".to_string()), "{factors:?}");
    assert!(
        factors.contains(&"cached approval".to_string()),
        "{factors:?}"
    );

    // A certificate from `postern login`: the mariadb client connects with it and no password.
    let home = tempfile::tempdir().unwrap();
    let mut login = Command::new(postern_bin());
    let code = loop {
        // A fresh code: the one above was used.
        let c = totp_now(&secret);
        if c != code {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    login
        .args(["login", "--server"])
        .arg(format!("https://127.0.0.1:{}", p.handle.api_addr.port()))
        .arg("--ca")
        .arg(&p.handle.ca_path)
        .args(["--user", "alice", "--code", &code])
        .env("HOME", home.path())
        .env_remove("POSTERN_HOME")
        .env_remove("POSTERN_SERVER")
        .env_remove("POSTERN_TOKEN")
        .env_remove("POSTERN_CA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{PW}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let certs = home.path().join(".postern/certs");
    let cert_login = |user: &str| {
        let mut c = mysql_cli();
        c.args([
            "-h",
            "127.0.0.1",
            "-P",
            &p.mysql_port().to_string(),
            "-u",
            user,
        ])
        .arg(format!("--ssl-cert={}", certs.join("client.crt").display()))
        .arg(format!("--ssl-key={}", certs.join("client.key").display()))
        .arg(format!("--ssl-ca={}", p.handle.ca_path.display()))
        .args(["-N", "-e", "SELECT v * 6 FROM t", "mfa"]);
        c.output().unwrap()
    };
    let out = cert_login("alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Alice's certificate does not open another account.
    let out = cert_login("bob");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("1045"), "{err}");
    let ok = p
        .audit_expect(
            Postern::filter("alice", "login_success"),
            "with the certificate",
            |e| {
                e.detail
                    .as_ref()
                    .and_then(|d| d.get("auth"))
                    .and_then(|a| a.as_str())
                    == Some("certificate")
            },
        )
        .await;
    assert!(ok.detail.unwrap().get("certificate").is_some());
    p.stop().await;
    up.drop_all();
}
