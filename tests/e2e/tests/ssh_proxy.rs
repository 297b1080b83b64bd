//! The SSH front door through real OpenSSH clients (ssh, scp, sftp) against a real sshd
//! (scripts/test-sshd.sh): sign-in by registered key (+ TOTP by keyboard-interactive),
//! grants, the stored secret upstream, host-key pinning, exec/scp/sftp, forwarding rights,
//! revocation of live sessions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use postern_e2e::{unique, Postern};

/// The test sshd of scripts/test-sshd.sh.
struct Sshd {
    port: u16,
    user: String,
    host_key: String,
    authorized_keys: PathBuf,
    password: String,
}

fn sshd() -> Sshd {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run scripts/test-sshd.sh start and source target/test-sshd.env (scripts/test.sh does)")
        })
    };
    Sshd {
        port: var("POSTERN_TEST_SSHD_PORT").parse().expect("port"),
        user: var("POSTERN_TEST_SSHD_USER"),
        host_key: var("POSTERN_TEST_SSHD_HOST_KEY"),
        authorized_keys: PathBuf::from(var("POSTERN_TEST_SSHD_AUTHORIZED_KEYS")),
        password: std::env::var("POSTERN_TEST_SSHD_PASSWORD").unwrap_or_default(),
    }
}

/// A person's key pair made by ssh-keygen, in `dir`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// Lets the target accept the public key Postern holds for `login`.
async fn authorize(postern: &Postern, login: &str) {
    let v = postern
        .handle
        .store
        .get(postern_core::Kind::SshLogin, login)
        .await
        .unwrap()
        .expect("login exists");
    let public = v["public_key"]
        .as_str()
        .expect("a generated key")
        .to_string();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&sshd().authorized_keys)
        .unwrap();
    writeln!(f, "{public}").unwrap();
}

/// One person with a registered key, and the files their ssh client uses.
struct Person {
    name: String,
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl Person {
    async fn new(postern: &Postern, name: &str, roles: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen(dir.path(), "id");
        let doc = serde_json::json!({ "user": [{ "name": name, "roles": roles }] });
        postern
            .handle
            .store
            .apply(&serde_json::from_value(doc).unwrap())
            .await
            .unwrap();
        postern
            .handle
            .store
            .add_user_key(name, &public)
            .await
            .unwrap();
        Person {
            name: name.to_string(),
            key,
            dir,
        }
    }

    /// An OpenSSH client command (`ssh`, `scp` or `sftp`) aimed at Postern with this person's
    /// key only, no agent, no config, Postern's host key accepted on first use.
    fn tool(&self, postern: &Postern, tool: &str) -> Command {
        let mut c = Command::new(tool);
        let port_flag = if tool == "ssh" { "-p" } else { "-P" };
        c.args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "PreferredAuthentications=publickey,keyboard-interactive",
                "-o",
                "NumberOfPasswordPrompts=1",
                "-o",
                "ConnectTimeout=20",
                "-o",
            ])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .args([port_flag, &postern.ssh_port().to_string()])
            .env("SSH_ASKPASS", self.askpass())
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null());
        c
    }

    /// The askpass program: answers a prompt with the contents of `code` (the TOTP code
    /// the test put there), or fails when there is none.
    fn askpass(&self) -> PathBuf {
        let p = self.dir.path().join("askpass.sh");
        if !p.exists() {
            let code = self.dir.path().join("code");
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho \"$1\" >> '{}'\ncat '{}' 2>/dev/null || exit 1\n",
                    self.dir.path().join("prompts").display(),
                    code.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }

    fn ssh(&self, postern: &Postern, login: &str, args: &[&str]) -> Output {
        let mut c = self.tool(postern, "ssh");
        c.arg(format!("{login}@127.0.0.1")).args(args);
        c.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Postern whose SSH login `login` (generated key, target's host key pinned by config)
/// is granted by role `role` with extra role fields `ssh_extra`.
async fn provision(postern: &Postern, login: &str, role: &str, ssh_extra: serde_json::Value) {
    let t = sshd();
    let mut ssh = serde_json::json!({ "logins": [login] });
    if let (Some(m), Some(e)) = (ssh.as_object_mut(), ssh_extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    let doc = serde_json::json!({
        "ssh-login": [{ "name": login, "host": "127.0.0.1", "port": t.port, "user": t.user,
                         "host_key": t.host_key }],
        "role": [{ "name": role, "ssh": ssh }],
    });
    postern
        .handle
        .store
        .apply(&serde_json::from_value(doc).unwrap())
        .await
        .unwrap();
    authorize(postern, login).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reaches_the_target_with_the_stored_key() {
    let postern = Postern::start().await;
    let login = unique("web");
    provision(&postern, &login, "ops", serde_json::json!({})).await;
    let alice = Person::new(&postern, "alice", &["ops"]).await;

    let out = alice.ssh(&postern, &login, &["id -un; uname -s; exit 3"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(stdout.contains(&sshd().user), "{stdout}");
    assert!(stdout.contains("Linux"), "{stdout}");

    let e = postern
        .audit_expect(
            Postern::filter("alice", "ssh_channel"),
            "for the command's end",
            |e| {
                e.detail.as_ref().is_some_and(|d| {
                    d["action"] == "end"
                        && d["exit_status"] == 3
                        && d["command"] == "id -un; uname -s; exit 3"
                })
            },
        )
        .await;
    assert_eq!(e.datasource.as_deref(), Some(login.as_str()));
    assert_eq!(e.db_user.as_deref(), Some(sshd().user.as_str()));
    postern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_logins_work_too() {
    let t = sshd();
    assert!(
        !t.password.is_empty(),
        "the test sshd runs as root in CI and sets a password for {}",
        t.user
    );
    let postern = Postern::start().await;
    let login = unique("pw");
    let doc = serde_json::json!({
        "ssh-login": [{ "name": login, "host": "127.0.0.1", "port": t.port, "user": t.user,
                         "password": t.password }],
        "role": [{ "name": "ops", "ssh": { "logins": [login] } }],
    });
    postern
        .handle
        .store
        .apply(&serde_json::from_value(doc).unwrap())
        .await
        .unwrap();
    let bob = Person::new(&postern, "bob", &["ops"]).await;
    let out = bob.ssh(&postern, &login, &["echo", "through-password"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "through-password");
    // No host key was configured: the first connection pinned the target's.
    let v = postern
        .handle
        .store
        .get(postern_core::Kind::SshLogin, &login)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["host_key"], t.host_key.as_str());
    assert_eq!(v["host_key_pinned"], "first-use");
    postern.stop().await;
}

#[allow(dead_code)]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
