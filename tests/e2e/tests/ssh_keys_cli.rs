//! `postern key add|ls|rm` and `postern sshlogin pubkey|forget-host-key` through the real
//! binary against a running server: output, exit codes, who may do what. Needs no SSH
//! target (ssh_proxy.rs covers keys registered here opening one); needs `ssh-keygen`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postern_e2e::{postern_bin, unique, Cli, Postern};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A key pair made by ssh-keygen in `dir`; the public line.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen is installed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// `ssh-keygen -l -f -` on `line`: its SHA-256 fingerprint, or a failure.
fn ssh_keygen_fingerprint(line: &str) -> Result<String, String> {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(line.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| text(&out.stdout))
}

/// Runs `postern ARGS` with HOME set to `home` and stdin empty (as under cron or CI).
fn run_with_home(cli: &Cli, home: &Path, args: &[&str]) -> Output {
    Command::new(postern_bin())
        .args(args)
        .env("POSTERN_HOME", cli.home.path())
        .env("HOME", home)
        .env_remove("POSTERN_SERVER")
        .env_remove("POSTERN_TOKEN")
        .env_remove("POSTERN_CA")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn refused(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_sshlogin_commands() {
    let postern = Postern::start().await;
    let admin = Cli::admin(&postern);
    let web = unique("keys");
    let db = unique("keys_pw");
    let (kim_name, lee_name) = (unique("kim"), unique("lee"));
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("apply.yaml");
    // `web` without a secret: Postern generates its ed25519 key. `db` signs in by password.
    std::fs::write(
        &doc,
        format!(
            "ssh-login:\n  - {{name: {web}, host: 127.0.0.1, user: deploy}}\n  \
             - {{name: {db}, host: 127.0.0.1, port: 2222, user: root, password: Target-Secret-4e1}}\n\
             role:\n  - {{name: ops, ssh: {{logins: [{web}, {db}], idle_timeout: 15m, max_session: 8h}}}}\n\
             user:\n  - {{name: {kim_name}, roles: [ops], password: kim-password-123}}\n  \
             - {{name: {lee_name}, roles: [ops], password: lee-password-123}}\n"
        ),
    )
    .unwrap();
    admin.ok(&["apply", "-f", doc.to_str().unwrap()], None);

    // pubkey prints exactly one authorized_keys line, which ssh-keygen reads.
    let out = admin.run(&["sshlogin", "pubkey", &web], None);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let public = text(&out.stdout);
    assert_eq!(public.lines().count(), 1, "{public}");
    assert!(public.ends_with('\n'), "{public:?}");
    let line = public.trim_end();
    assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
    assert!(line.ends_with(&format!(" postern:{web}")), "{line}");
    ssh_keygen_fingerprint(line).expect("ssh-keygen accepts the line");
    // The same line every time (the key is kept, not regenerated).
    assert_eq!(admin.ok(&["sshlogin", "pubkey", &web], None), public);
    let out = admin.run(&["sshlogin", "pubkey", &db], None);
    refused(&out, 1, "password");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    refused(
        &admin.run(&["sshlogin", "pubkey", "no-such-login"], None),
        1,
        "postern get ssh-logins",
    );

    // kim registers her key from a file; the fingerprint is ssh-keygen's.
    let kim = Cli::signed_in(&postern, &kim_name, "kim-password-123");
    let (key, kim_pub) = keygen(dir.path(), "kim");
    let fp = ssh_keygen_fingerprint(&kim_pub).unwrap();
    let out = kim.ok(
        &["key", "add", key.with_extension("pub").to_str().unwrap()],
        None,
    );
    assert!(out.contains(&fp) && out.contains(&kim_name), "{out}");

    // ls: a table with the agreed columns, and JSON.
    let table = kim.ok(&["key", "ls"], None);
    let mut rows = table.lines();
    let head: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        ["USER", "FINGERPRINT", "ALGORITHM", "COMMENT", "ADDED"]
    );
    let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..4], [kim_name.as_str(), &fp, "ssh-ed25519", "kim"]);
    assert!(row[4].ends_with('Z'), "{table}");
    assert_eq!(rows.next(), None, "{table}");
    let listed: serde_json::Value =
        serde_json::from_str(&kim.ok(&["key", "ls", "--json"], None)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["fingerprint"], fp.as_str());
    assert_eq!(listed[0]["user"], kim_name.as_str());

    // Adding it again is harmless; the same key for lee is a conflict (exit 1, the fix said).
    kim.ok(&["key", "add", "-"], Some(&kim_pub));
    let lee = Cli::signed_in(&postern, &lee_name, "lee-password-123");
    let out = lee.run(&["key", "add", "-"], Some(&format!("{kim_pub}\n")));
    refused(&out, 1, "already belongs to another user");
    assert!(text(&out.stderr).contains("ssh-keygen"), "{out:?}");

    // lee cannot read, add to or remove from kim's keys, nor list everyone's.
    let (_, lee_pub) = keygen(dir.path(), "lee");
    refused(
        &lee.run(&["key", "ls", "--user", &kim_name], None),
        1,
        "own",
    );
    refused(
        &lee.run(&["key", "add", "--user", &kim_name, "-"], Some(&lee_pub)),
        1,
        "own",
    );
    refused(
        &lee.run(&["key", "rm", &fp, "--user", &kim_name], None),
        1,
        "own",
    );
    refused(&lee.run(&["key", "ls", "--all"], None), 1, "admin");
    refused(&lee.run(&["sshlogin", "pubkey", &web], None), 1, "admin");
    refused(
        &lee.run(&["sshlogin", "forget-host-key", &web], None),
        1,
        "admin",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&kim.ok(&["key", "ls", "--json"], None))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bad input is a usage error (exit 2) before anything is sent; a private key never is.
    refused(&kim.run(&["key", "add", "-"], Some("")), 2, "no public key");
    refused(
        &kim.run(&["key", "add", key.to_str().unwrap()], None),
        2,
        "private key",
    );
    refused(
        &kim.run(&["key", "add", "/nonexistent/id.pub"], None),
        2,
        "cannot read",
    );
    refused(
        &kim.run(&["key", "add", "-"], Some("ssh-ed25519 garbage")),
        1,
        "",
    );
    refused(
        &kim.run(&["key", "ls", "--all", "--user", &kim_name], None),
        2,
        "cannot be used with",
    );

    // With no FILE and nothing piped, ~/.ssh/id_ed25519.pub is read.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    let (_, lee_default) = keygen(&home.path().join(".ssh"), "id_ed25519");
    let lee_fp = ssh_keygen_fingerprint(&lee_default).unwrap();
    let out = run_with_home(&lee, home.path(), &["key", "add"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains(&lee_fp), "{out:?}");
    let out = run_with_home(&lee, dir.path(), &["key", "add"]);
    refused(&out, 2, "id_ed25519.pub");

    // An admin lists everyone's keys and manages anyone's.
    let all = admin.ok(&["key", "ls", "--all"], None);
    assert!(all.contains(&fp) && all.contains(&lee_fp), "{all}");
    admin.ok(&["key", "rm", &lee_fp, "--user", &lee_name], None);
    assert!(!admin.ok(&["key", "ls", "--all"], None).contains(&lee_fp));

    // kim removes her key; again is "not found" (exit 1).
    let out = kim.ok(&["key", "rm", &fp], None);
    assert!(out.contains(&fp), "{out}");
    refused(&kim.run(&["key", "rm", &fp], None), 1, "postern key ls");
    assert_eq!(kim.ok(&["key", "ls", "--json"], None).trim(), "[]");

    // forget-host-key: audited; an unknown login fails.
    let out = admin.ok(&["sshlogin", "forget-host-key", &web], None);
    assert!(out.contains(&web), "{out}");
    refused(
        &admin.run(&["sshlogin", "forget-host-key", "no-such-login"], None),
        1,
        "no-such-login",
    );
    for (user, action, name) in [
        (kim_name.as_str(), "add_ssh_key", kim_name.as_str()),
        (kim_name.as_str(), "delete_ssh_key", kim_name.as_str()),
        ("admin", "delete_ssh_key", lee_name.as_str()),
        ("admin", "forget_host_key", web.as_str()),
    ] {
        postern
            .audit_expect(Postern::filter(user, "admin_change"), action, |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == action && d["name"] == name)
            })
            .await;
    }
    postern.stop().await;
}
