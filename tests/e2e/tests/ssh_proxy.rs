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
    keygen_typed(dir, name, &["-t", "ed25519"])
}

/// [`keygen`] with ssh-keygen's type arguments (`-t rsa -b 3072`).
fn keygen_typed(dir: &Path, name: &str, kind: &[&str]) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q"])
        .args(kind)
        .args(["-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// Applies a resource document given as JSON.
async fn apply(postern: &Postern, doc: serde_json::Value) {
    postern
        .handle
        .store
        .apply(&serde_json::from_value(doc).expect("a valid document"))
        .await
        .expect("apply");
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
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl Person {
    async fn new(postern: &Postern, name: &str, roles: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen(dir.path(), "id");
        let doc = serde_json::json!({ "user": [{ "name": name, "roles": roles }] });
        apply(postern, doc).await;
        postern
            .handle
            .store
            .add_user_key(name, &public)
            .await
            .unwrap();
        Person { key, dir }
    }

    /// An OpenSSH client command (`ssh`, `scp` or `sftp`) aimed at Postern with this person's
    /// key only, no agent, no config, Postern's host key accepted on first use.
    fn tool(&self, postern: &Postern, tool: &str) -> Command {
        self.tool_agent(postern, tool, None)
    }

    /// [`Person::tool`], forwarding the agent at `agent` when given (then the agent is not
    /// disabled: OpenSSH forwards only an agent it may use).
    fn tool_agent(&self, postern: &Postern, tool: &str, agent: Option<&Path>) -> Command {
        let mut c = Command::new(tool);
        match agent {
            Some(sock) => {
                c.env("SSH_AUTH_SOCK", sock)
                    .args(["-o", "ForwardAgent=yes"]);
            }
            None => {
                c.env_remove("SSH_AUTH_SOCK")
                    .args(["-o", "IdentityAgent=none"]);
            }
        }
        let port_flag = if tool == "ssh" { "-p" } else { "-P" };
        c.args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
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
    apply(postern, doc).await;
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

    // ECDSA and RSA keys (signed with rsa-sha2-256/512) identify people too.
    for (name, kind) in [
        ("ecdsa-person", &["-t", "ecdsa", "-b", "256"][..]),
        ("rsa-person", &["-t", "rsa", "-b", "3072"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = keygen_typed(dir.path(), "id", kind);
        let doc = serde_json::json!({ "user": [{ "name": name, "roles": ["ops"] }] });
        apply(&postern, doc).await;
        postern
            .handle
            .store
            .add_user_key(name, &public)
            .await
            .unwrap();
        let p = Person { key, dir };
        let out = p.ssh(&postern, &login, &["echo", name]);
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(text(&out.stdout).trim(), name);
    }

    // The port's counters on /metrics (sessions end on the server a moment after the
    // client exits: polled).
    let ca = reqwest::Certificate::from_pem(postern.handle.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/metrics",
        postern.handle.api_addr.port()
    );
    let value = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http.get(&url).send().await.unwrap().text().await.unwrap();
        if value(&metrics, "postern_ssh_sessions_active") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(&metrics, "postern_ssh_sessions_active"),
        0,
        "{metrics}"
    );
    assert!(
        value(&metrics, "postern_ssh_connections_total") >= 3,
        "{metrics}"
    );
    assert!(
        value(&metrics, "postern_ssh_channels_total") >= 3,
        "{metrics}"
    );
    assert!(value(&metrics, "postern_ssh_bytes_total") > 0, "{metrics}");
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
    apply(&postern, doc).await;
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

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    hex_lower(&h.finalize())
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_and_sftp_move_files_intact() {
    let postern = Postern::start().await;
    let login = unique("files");
    provision(&postern, &login, "ops", serde_json::json!({})).await;
    let carol = Person::new(&postern, "carol", &["ops"]).await;
    let local = carol.dir.path().join("big.bin");
    {
        use rand::RngCore;
        let mut f = std::fs::File::create(&local).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut rng = rand::thread_rng();
        for _ in 0..50 {
            rng.fill_bytes(&mut buf);
            f.write_all(&buf).unwrap();
        }
    }
    let want = sha256_file(&local);
    let remote = format!("/tmp/{}.bin", unique("postern-scp"));

    // Upload with scp (SFTP protocol, OpenSSH's default), download with legacy scp (`scp -O`
    // runs `scp -f` on the target).
    let out = carol
        .tool(&postern, "scp")
        .args(["-q"])
        .arg(&local)
        .arg(format!("{login}@127.0.0.1:{remote}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "scp upload: {out:?}");
    assert_eq!(
        sha256_file(Path::new(&remote)),
        want,
        "the target holds the file intact"
    );
    let back = carol.dir.path().join("back.bin");
    let out = carol
        .tool(&postern, "scp")
        .args(["-q", "-O"])
        .arg(format!("{login}@127.0.0.1:{remote}"))
        .arg(&back)
        .output()
        .unwrap();
    assert!(out.status.success(), "scp -O download: {out:?}");
    assert_eq!(
        sha256_file(&back),
        want,
        "the 50 MiB file round-trips intact"
    );

    // sftp in batch mode: list, fetch, remove.
    let batch = carol.dir.path().join("batch");
    let again = carol.dir.path().join("again.bin");
    std::fs::write(
        &batch,
        format!(
            "ls -l {remote}\nget {remote} {}\nrm {remote}\n",
            again.display()
        ),
    )
    .unwrap();
    let out = carol
        .tool(&postern, "sftp")
        .arg("-b")
        .arg(&batch)
        .arg(format!("{login}@127.0.0.1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "sftp: {out:?}");
    assert!(
        text(&out.stdout).contains("52428800"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(sha256_file(&again), want);
    assert!(!Path::new(&remote).exists(), "sftp rm reached the target");

    // Each file operation is on record with its path and size.
    for (op, via) in [
        ("upload", "sftp"),
        ("download", "scp"),
        ("download", "sftp"),
    ] {
        postern
            .audit_expect(
                Postern::filter("carol", "ssh_file"),
                &format!("for the {via} {op}"),
                |e| {
                    e.detail.as_ref().is_some_and(|d| {
                        d["op"] == op
                            && d["via"] == via
                            && d["path"] == remote.as_str()
                            && d["bytes"] == 52_428_800u64
                            && d["ok"] == true
                    })
                },
            )
            .await;
    }
    postern
        .audit_expect(
            Postern::filter("carol", "ssh_file"),
            "for the sftp rm",
            |e| {
                e.detail.as_ref().is_some_and(|d| {
                    d["op"] == "remove" && d["path"] == remote.as_str() && d["ok"] == true
                })
            },
        )
        .await;
    // The transfers are on record: the sftp subsystem and the legacy scp command.
    postern
        .audit_expect(
            Postern::filter("carol", "ssh_channel"),
            "for the sftp subsystem",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == "start" && d["subsystem"] == "sftp")
            },
        )
        .await;
    postern
        .audit_expect(Postern::filter("carol", "ssh_channel"), "for scp -f", |e| {
            e.detail.as_ref().is_some_and(|d| {
                d["action"] == "end"
                    && d["command"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("scp ") && c.contains(" -f "))
                    && d["bytes_out"].as_u64().is_some_and(|n| n >= 50 << 20)
            })
        })
        .await;
    postern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_and_audited() {
    let postern = Postern::start().await;
    let login = unique("guarded");
    provision(&postern, &login, "ops", serde_json::json!({})).await;

    // A registered person without the grant.
    let dave = Person::new(&postern, "dave", &[]).await;
    let out = dave.ssh(&postern, &login, &["true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("no role of dave grants ssh login {login}")),
        "{err}"
    );
    let e = postern
        .audit_expect(
            Postern::filter("dave", "login_failure"),
            "for the missing grant",
            |e| e.reason.as_deref() == Some("no grant"),
        )
        .await;
    assert_eq!(e.datasource.as_deref(), Some(login.as_str()));

    // A login that does not exist.
    let out = dave.ssh(&postern, "nosuchlogin", &["true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("there is no ssh login \"nosuchlogin\""),
        "{}",
        text(&out.stderr)
    );

    // A key nobody registered.
    let stranger_dir = tempfile::tempdir().unwrap();
    let (stranger_key, stranger_pub) = keygen(stranger_dir.path(), "stranger");
    let fp = postern_vault_fingerprint(&stranger_pub);
    let mut c = dave.tool(&postern, "ssh");
    c.args(["-i"]).arg(&stranger_key);
    // Only the stranger's key: replace the person's identity.
    let mut args: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_os_string()).collect();
    let i = args.iter().position(|a| a == "-i").unwrap();
    args.remove(i + 1);
    args.remove(i);
    let out = Command::new("ssh")
        .args(&args)
        .arg(format!("{login}@127.0.0.1"))
        .arg("true")
        .env("SSH_ASKPASS_REQUIRE", "never")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("none of the keys offered is registered"),
        "{err}"
    );
    assert!(err.contains(&fp), "the message names the key: {err}");
    let events = postern
        .audit_until(
            postern_store::AuditFilter {
                kind: Some("login_failure".into()),
                ..Default::default()
            },
            |e| e.reason.as_deref() == Some("unknown key"),
        )
        .await;
    let e = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("unknown key"))
        .expect("an audit event for the unknown key");
    assert!(e.detail.as_ref().unwrap()["unknown_keys"]
        .to_string()
        .contains(&fp));

    // A one key, one person rule.
    let again = postern
        .handle
        .store
        .add_user_key("alice-not-here", &stranger_pub)
        .await;
    assert!(again.is_err());

    postern.stop().await;
}

fn postern_vault_fingerprint(public: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(public.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_target_host_key_is_refused() {
    let postern = Postern::start().await;
    let t = sshd();
    let login = unique("moved");
    // Pinned to another key than the target's.
    let other_dir = tempfile::tempdir().unwrap();
    let (_k, other_pub) = keygen(other_dir.path(), "not-the-target");
    let doc = serde_json::json!({
        "ssh-login": [{ "name": login, "host": "127.0.0.1", "port": t.port, "user": t.user,
                         "host_key": other_pub }],
        "role": [{ "name": "ops", "ssh": { "logins": [login] } }],
    });
    apply(&postern, doc).await;
    authorize(&postern, &login).await;
    let erin = Person::new(&postern, "erin", &["ops"]).await;
    let out = erin.ssh(&postern, &login, &["true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("the host key of ssh login {login}")),
        "{err}"
    );
    assert!(err.contains("has changed"), "{err}");
    assert!(
        err.contains(&postern_vault_fingerprint(&t.host_key)),
        "names the key seen: {err}"
    );
    postern
        .audit_expect(
            Postern::filter("erin", "login_failure"),
            "for the host key",
            |e| e.reason.as_deref() == Some("target host key changed"),
        )
        .await;
    // Forgetting the pin lets the next connection pin the real key.
    assert!(postern
        .handle
        .store
        .forget_ssh_host_key(&login)
        .await
        .unwrap());
    let out = erin.ssh(&postern, &login, &["echo", "ok"]);
    assert!(out.status.success(), "{out:?}");
    postern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_factor_is_asked_by_keyboard_interactive() {
    let postern = Postern::start_with(|c| c.auth.require_2fa = true).await;
    let login = unique("mfa");
    provision(&postern, &login, "ops", serde_json::json!({})).await;
    let frank = Person::new(&postern, "frank", &["ops"]).await;
    let secret: Vec<u8> = (0..20u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    postern
        .handle
        .store
        .mfa_begin("frank", &secret)
        .await
        .unwrap();
    postern
        .handle
        .store
        .mfa_confirm("frank", 0, &[])
        .await
        .unwrap();
    let code_at = |unix: u64| {
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, secret.clone())
            .generate(unix)
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };

    // A wrong code: refused, counted, audited.
    let wrong = format!(
        "{:06}",
        (code_at(now()).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    std::fs::write(frank.dir.path().join("code"), &wrong).unwrap();
    let out = frank.ssh(&postern, &login, &["true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let prompts = std::fs::read_to_string(frank.dir.path().join("prompts")).unwrap_or_default();
    assert!(
        prompts.contains("TOTP code for frank"),
        "the person was asked: {prompts:?}"
    );
    postern
        .audit_expect(
            Postern::filter("frank", "login_failure"),
            "for the wrong code",
            |e| e.reason.as_deref() == Some("wrong second-factor code"),
        )
        .await;

    // The right code: in.
    std::fs::write(frank.dir.path().join("code"), code_at(now())).unwrap();
    let out = frank.ssh(&postern, &login, &["echo", "second-factor-ok"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "second-factor-ok");
    let e = postern
        .audit_expect(
            Postern::filter("frank", "login_success"),
            "for the login",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["second_factor"] == "code")
            },
        )
        .await;
    assert_eq!(e.datasource.as_deref(), Some(login.as_str()));

    // Soon after, from the same address, the approval is cached: no prompt.
    std::fs::remove_file(frank.dir.path().join("code")).unwrap();
    let _ = std::fs::remove_file(frank.dir.path().join("prompts"));
    let out = frank.ssh(&postern, &login, &["echo", "cached"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !frank.dir.path().join("prompts").exists(),
        "no second prompt"
    );
    postern
        .audit_expect(
            Postern::filter("frank", "login_success"),
            "for the cached approval",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["second_factor"] == "cached approval")
            },
        )
        .await;

    // Scripts that cannot answer a prompt give the code with the login; from other
    // addresses (no cached approval there), in batch mode.
    let batch = |from: &str, name: String| {
        let mut c = frank.tool(&postern, "ssh");
        c.args(["-b", from, "-o", "BatchMode=yes"])
            .env("SSH_ASKPASS_REQUIRE", "never")
            .arg(format!("{name}@127.0.0.1"))
            .args(["echo", "scripted"]);
        c.output().unwrap()
    };
    let out = batch("127.0.0.3", format!("{login}:000000"));
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let next = code_at(now() + 30);
    let out = batch("127.0.0.2", format!("{login}:{next}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "scripted");
    let e = postern
        .audit_expect(
            Postern::filter("frank", "login_success"),
            "for the code in the login",
            |e| {
                e.client_addr
                    .as_deref()
                    .is_some_and(|a| a.starts_with("127.0.0.2:"))
            },
        )
        .await;
    assert_eq!(e.detail.as_ref().unwrap()["second_factor"], "code");
    assert_eq!(
        e.datasource.as_deref(),
        Some(login.as_str()),
        "the code is not part of the login"
    );
    postern.stop().await;
}

/// A TCP echo server on 127.0.0.1; its port.
async fn echo_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a round trip through 127.0.0.1:`port` echoes (after an optional SOCKS5 CONNECT to
/// 127.0.0.1:`socks_to`).
async fn echoes(port: u16, socks_to: Option<u16>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        if let Some(to) = socks_to {
            s.write_all(&[5, 1, 0]).await.ok()?;
            let mut hello = [0u8; 2];
            s.read_exact(&mut hello).await.ok()?;
            let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
            req.extend_from_slice(&to.to_be_bytes());
            s.write_all(&req).await.ok()?;
            let mut rep = [0u8; 10];
            s.read_exact(&mut rep).await.ok()?;
            if rep[1] != 0 {
                return Some(false);
            }
        }
        s.write_all(b"ping-through-postern").await.ok()?;
        let mut buf = [0u8; 20];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"ping-through-postern")
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Waits until something listens on 127.0.0.1:`port`.
async fn listening(port: u16) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_needs_a_grant() {
    let postern = Postern::start().await;
    let login = unique("tunnel");
    let t = sshd();
    let doc = serde_json::json!({
        "ssh-login": [{ "name": login, "host": "127.0.0.1", "port": t.port, "user": t.user,
                         "host_key": t.host_key }],
        "role": [
            { "name": "plain", "ssh": { "logins": [login] } },
            { "name": "tunnels", "ssh": { "logins": [login], "port_forwarding": true,
                                          "agent_forwarding": true } },
        ],
    });
    apply(&postern, doc).await;
    authorize(&postern, &login).await;
    let echo = echo_server().await;
    let gina = Person::new(&postern, "gina", &["plain"]).await;
    let hank = Person::new(&postern, "hank", &["tunnels"]).await;

    for (who, allowed) in [(&gina, false), (&hank, true)] {
        // ssh -L
        let lport = free_port();
        let child = who
            .tool(&postern, "ssh")
            .args(["-N", "-L", &format!("{lport}:127.0.0.1:{echo}")])
            .arg(format!("{login}@127.0.0.1"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Killed(child);
        assert!(listening(lport).await, "ssh -L listens locally");
        assert_eq!(echoes(lport, None).await, allowed, "ssh -L for {allowed}");
        // ssh -D
        let dport = free_port();
        let dchild = who
            .tool(&postern, "ssh")
            .args(["-N", "-D", &dport.to_string()])
            .arg(format!("{login}@127.0.0.1"))
            .spawn()
            .unwrap();
        let _dchild = Killed(dchild);
        assert!(listening(dport).await, "ssh -D listens locally");
        assert_eq!(
            echoes(dport, Some(echo)).await,
            allowed,
            "ssh -D for {allowed}"
        );
        let _ = child.0.kill();
        let out = child.0.wait_with_output_ref();
        if !allowed {
            assert!(
                out.contains("port forwarding is not granted"),
                "the client says why: {out}"
            );
        }
        // ssh -R (the target listens, the client connects the echo server)
        let rport = free_port();
        let mut rcmd = who.tool(&postern, "ssh");
        rcmd.args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &format!("127.0.0.1:{rport}:127.0.0.1:{echo}"),
        ])
        .arg(format!("{login}@127.0.0.1"))
        .stderr(Stdio::piped());
        if allowed {
            let _r = Killed(rcmd.spawn().unwrap());
            assert!(listening(rport).await, "the target listens for ssh -R");
            assert!(echoes(rport, None).await, "ssh -R carries traffic");
        } else {
            let out = tokio::task::spawn_blocking(move || rcmd.output().unwrap())
                .await
                .unwrap();
            assert_eq!(out.status.code(), Some(255), "{out:?}");
            assert!(
                text(&out.stderr).contains("remote port forwarding failed"),
                "{}",
                text(&out.stderr)
            );
        }
    }
    postern
        .audit_expect(
            Postern::filter("gina", "ssh_channel"),
            "for the refused -L",
            |e| {
                e.detail.as_ref().is_some_and(|d| {
                    d["action"] == "refused"
                        && d["channel"] == "direct-tcpip"
                        && d["to"] == format!("127.0.0.1:{echo}").as_str()
                })
            },
        )
        .await;
    postern
        .audit_expect(
            Postern::filter("gina", "ssh_channel"),
            "for the refused -R",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == "refused" && d["channel"] == "tcpip-forward")
            },
        )
        .await;
    postern
        .audit_expect(Postern::filter("hank", "ssh_channel"), "for the -L", |e| {
            e.detail
                .as_ref()
                .is_some_and(|d| d["action"] == "start" && d["channel"] == "direct-tcpip")
        })
        .await;

    // ssh -A: the target sees the person's agent only with the grant.
    let agent_dir = tempfile::tempdir().unwrap();
    let sock = agent_dir.path().join("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Killed(agent);
    for _ in 0..50 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (agent_key, _) = keygen(agent_dir.path(), "key-in-the-agent");
    let added = Command::new("ssh-add")
        .arg(&agent_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    for (who, allowed) in [(&gina, false), (&hank, true)] {
        let out = who
            .tool_agent(&postern, "ssh", Some(&sock))
            .arg(format!("{login}@127.0.0.1"))
            .arg("ssh-add -l")
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(
            stdout.contains("key-in-the-agent"),
            allowed,
            "ssh -A for {allowed}: {out:?}"
        );
        if !allowed {
            assert_ne!(out.status.code(), Some(0), "{out:?}");
        }
    }
    postern
        .audit_expect(
            Postern::filter("gina", "ssh_channel"),
            "for the refused -A",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == "refused" && d["channel"] == "agent")
            },
        )
        .await;
    postern.stop().await;
}

trait OutputOfKilled {
    fn wait_with_output_ref(&mut self) -> String;
}

impl OutputOfKilled for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sessions_end_when_access_ends() {
    let postern = Postern::start().await;
    let login = unique("live");
    provision(&postern, &login, "ops", serde_json::json!({})).await;
    let ivy = Person::new(&postern, "ivy", &["ops"]).await;

    // Revocation: the role no longer grants the login.
    let mut cmd = ivy.tool(&postern, "ssh");
    cmd.arg(format!("{login}@127.0.0.1"))
        .arg("sleep 30; echo finished")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let child = cmd.spawn().unwrap();
    postern
        .audit_expect(
            Postern::filter("ivy", "ssh_channel"),
            "for the command",
            |e| e.detail.as_ref().is_some_and(|d| d["action"] == "start"),
        )
        .await;
    let doc = serde_json::json!({ "role": [{ "name": "ops" }] });
    apply(&postern, doc).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut before the command ended"
    );
    assert!(!text(&out.stdout).contains("finished"), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("no role of ivy grants ssh login {login} any more")),
        "{err}"
    );
    postern
        .audit_expect(
            Postern::filter("ivy", "session_close"),
            "for the revocation",
            |e| {
                e.detail.as_ref().is_some_and(|d| {
                    d["ended_by"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("access revoked"))
                })
            },
        )
        .await;

    // Disabling the person ends their session the same way.
    let grant = serde_json::json!({ "role": [{ "name": "ops", "ssh": { "logins": [login] } }] });
    apply(&postern, grant).await;
    let mut cmd = ivy.tool(&postern, "ssh");
    cmd.arg(format!("{login}@127.0.0.1"))
        .arg("sleep 30; echo finished")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let mut opened = 0;
    for _ in 0..100 {
        opened = postern
            .handle
            .store
            .audit_search(&Postern::filter("ivy", "session_open"))
            .await
            .unwrap()
            .len();
        if opened >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened >= 2, "the second session opened");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let off =
        serde_json::json!({ "user": [{ "name": "ivy", "roles": ["ops"], "disabled": true }] });
    apply(&postern, off).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(!text(&out.stdout).contains("finished"), "{out:?}");
    assert!(
        text(&out.stderr).contains("user \"ivy\" is disabled"),
        "{}",
        text(&out.stderr)
    );
    let on =
        serde_json::json!({ "user": [{ "name": "ivy", "roles": ["ops"], "disabled": false }] });
    apply(&postern, on).await;

    // Idle timeout: a role that closes quiet sessions after 2 s.
    let doc = serde_json::json!({ "role": [{ "name": "ops",
        "ssh": { "logins": [login], "idle_timeout": "2s" } }] });
    apply(&postern, doc).await;
    let started = std::time::Instant::now();
    let out = ivy.ssh(&postern, &login, &["sleep 20; echo finished"]);
    assert!(started.elapsed() < Duration::from_secs(15), "cut when idle");
    assert!(!text(&out.stdout).contains("finished"));
    assert!(
        text(&out.stderr).contains("idle for 2 s"),
        "{}",
        text(&out.stderr)
    );
    postern.stop().await;
}

/// Drives `argv` in a pseudo-terminal the way a person would: waits for the shell's prompt,
/// types a command, resizes the terminal, types `exit`; prints everything the terminal
/// showed. (Python's pty module: the test needs a real terminal on the client side.)
const PTY_DRIVER: &str = r#"
import os, pty, select, signal, struct, sys, time, fcntl, termios
argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
seen = b""
def read_until(marker, timeout):
    global seen
    end = time.time() + timeout
    while marker not in seen and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            seen += chunk
    return marker in seen
read_until(b"$ ", 20)
os.write(fd, b"echo typed-$((6*7))-ok\r")
read_until(b"typed-42-ok", 20)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
os.kill(pid, signal.SIGWINCH)
time.sleep(0.5)
os.write(fd, b"stty size\r")
read_until(b"30 100", 20)
os.write(fd, b"exit\r")
read_until(b"\x00never", 5)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(seen)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_is_recorded_and_replays() {
    let postern = Postern::start().await;
    let login = unique("shell");
    provision(&postern, &login, "ops", serde_json::json!({})).await;
    let jane = Person::new(&postern, "jane", &["ops"]).await;

    let mut ssh = jane.tool(&postern, "ssh");
    ssh.arg(format!("{login}@127.0.0.1"));
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PTY_DRIVER).arg(ssh.get_program());
    cmd.args(ssh.get_args());
    for (k, v) in ssh.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("PS1", "$ ");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("typed-42-ok"),
        "the shell ran the typed command: {out:?}"
    );
    assert!(
        shown.contains("30 100"),
        "the resize reached the target: {shown}"
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The recording: listed, hashed in the audit trail, holding the output and the resize.
    let cli = postern_e2e::Cli::admin(&postern);
    let end = postern
        .audit_expect(
            Postern::filter("jane", "ssh_channel"),
            "for the shell's end",
            |e| {
                e.detail
                    .as_ref()
                    .is_some_and(|d| d["action"] == "end" && d["channel"] == "shell")
            },
        )
        .await;
    let rec = &end.detail.as_ref().unwrap()["recording"];
    let id = rec["id"].as_str().expect("a recording id").to_string();
    let listed = cli.ok(&["sessions", "ls", "--user", "jane", "--json"], None);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let row = &listed[0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["login"], login.as_str());
    assert_eq!(row["kind"], "shell");
    assert_eq!(row["sha256"], rec["sha256"]);
    let file = row["file"].as_str().unwrap();
    assert_eq!(
        sha256_file(Path::new(file)),
        rec["sha256"].as_str().unwrap()
    );
    let cast = std::fs::read_to_string(file).unwrap();
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert!(cast.contains("typed-42-ok"), "{cast}");
    assert!(
        cast.contains("\"r\",\"100x30\""),
        "the resize is recorded: {cast}"
    );

    // Replayed in the terminal.
    let played = cli.ok(&["sessions", "play", &id, "--speed", "50"], None);
    assert!(played.contains("typed-42-ok"), "{played}");
    assert!(played.contains("30 100"), "{played}");

    // An altered file is refused by playback.
    let mut tampered = cast.replace("typed-42-ok", "typed-41-ok");
    tampered.push('\n');
    std::fs::write(file, tampered).unwrap();
    let out = cli.run(&["sessions", "play", &id, "--no-wait"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("altered"),
        "{}",
        text(&out.stderr)
    );
    postern.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_register_their_keys_with_the_cli() {
    let postern = Postern::start().await;
    let admin = postern_e2e::Cli::admin(&postern);
    let t = sshd();
    let login = unique("cli");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("apply.yaml"),
        format!(
            "ssh-login:\n  - {{name: {login}, host: 127.0.0.1, port: {}, user: {}}}\n\
             role:\n  - {{name: ops, ssh: {{logins: [{login}]}}}}\n\
             user:\n  - {{name: kim, roles: [ops], password: kim-password-123}}\n  - {{name: lee, roles: [ops], password: lee-password-123}}\n",
            t.port, t.user
        ),
    )
    .unwrap();
    admin.ok(
        &[
            "apply",
            "-f",
            dir.path().join("apply.yaml").to_str().unwrap(),
        ],
        None,
    );

    // The login's generated public key, as ssh-keygen reads it, goes to the target.
    let public = admin.ok(&["sshlogin", "pubkey", &login], None);
    assert_eq!(public.lines().count(), 1, "{public}");
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    postern_vault_fingerprint(public.trim());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&t.authorized_keys)
        .unwrap();
    writeln!(f, "{}", public.trim()).unwrap();

    // kim registers her own key; it belongs to her alone.
    let (key, kim_pub) = keygen(dir.path(), "kim");
    let fp = postern_vault_fingerprint(&kim_pub);
    let kim = postern_e2e::Cli::signed_in(&postern, "kim", "kim-password-123");
    let out = kim.ok(
        &["key", "add", key.with_extension("pub").to_str().unwrap()],
        None,
    );
    assert!(out.contains(&fp), "{out}");
    let listed: serde_json::Value =
        serde_json::from_str(&kim.ok(&["key", "ls", "--json"], None)).unwrap();
    assert_eq!(listed[0]["fingerprint"], fp.as_str());
    assert_eq!(listed[0]["user"], "kim");
    let lee = postern_e2e::Cli::signed_in(&postern, "lee", "lee-password-123");
    let out = lee.run(&["key", "add", "-"], Some(&kim_pub));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("already belongs to another user"),
        "{}",
        text(&out.stderr)
    );
    let out = lee.run(&["key", "ls", "--user", "kim"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = lee.run(&["sshlogin", "pubkey", &login], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "only admins read login keys: {out:?}"
    );

    // With it, kim reaches the target through Postern (first use pins the host key).
    let kim_person = Person {
        key: key.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let out = kim_person.ssh(&postern, &login, &["echo", "registered-by-cli"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "registered-by-cli");
    let shown = admin.ok(&["get", "ssh-login", &login, "-o", "json"], None);
    assert!(shown.contains("first-use"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "never the secret: {shown}");

    // Removed: the key no longer opens anything.
    kim.ok(&["key", "rm", &fp], None);
    let out = kim_person.ssh(&postern, &login, &["true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    postern
        .audit_expect(
            Postern::filter("kim", "admin_change"),
            "for the key removal",
            |e| {
                e.detail.as_ref().is_some_and(|d| {
                    d["action"] == "delete_ssh_key" && d["fingerprint"] == fp.as_str()
                })
            },
        )
        .await;

    admin.ok(&["sshlogin", "forget-host-key", &login], None);
    let out = admin.run(&["sshlogin", "forget-host-key", "no-such-login"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    postern.stop().await;
}

#[allow(dead_code)]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
