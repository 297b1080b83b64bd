//! The `postern server` binary: first start, configuration errors, restart, the master key
//! from the environment, and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn postern_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("postern");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p postern` first",
        bin.display()
    );
    bin
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[mysql]\nlisten = \"127.0.0.1:0\"\n[ssh]\nlisten = \"127.0.0.1:0\"\n[postgres]\nlisten = \"127.0.0.1:0\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    cfg
}

/// Starts the server and reads its stdout until it says it listens; returns the lines.
fn start(cfg: &Path, env: &[(&str, &str)]) -> (Child, Vec<String>) {
    let mut cmd = Command::new(postern_bin());
    cmd.args(["server", "--config"]).arg(cfg);
    cmd.env_remove("POSTERN_ENCRYPTION_KEY")
        .env_remove("POSTERN_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let reader = BufReader::new(stdout);
    for line in reader.lines() {
        let line = line.unwrap();
        let done = line.starts_with("PostgreSQL listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "exit status after SIGTERM: {s:?}");
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_config_is_refused_with_the_dotted_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "listn = \"oops\"\n");
    let out = Command::new(postern_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres") && err.contains("listn"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing created for a bad config"
    );
}

#[test]
fn first_start_restart_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (child, lines) = start(&cfg, &[]);
    let text = lines.join("\n");
    let pw_line = lines
        .iter()
        .find(|l| l.starts_with("bootstrap admin password: "))
        .unwrap_or_else(|| panic!("no bootstrap password in {text}"));
    assert!(pw_line.len() > "bootstrap admin password: ".len() + 16);
    let data = dir.path().join("data");
    for f in [
        "master.key",
        "ca.crt",
        "ca.key.sealed",
        "server.crt",
        "server.key.sealed",
        "postern.db",
    ] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    terminate(child);
    // The audit trail recorded the start; the JSON-lines file is flushed on shutdown.
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"kind\":\"server_start\""));

    // Second start: same CA, no new bootstrap password.
    let ca_before = std::fs::read_to_string(data.join("ca.crt")).unwrap();
    let (child, lines) = start(&cfg, &[]);
    assert!(
        !lines.iter().any(|l| l.contains("bootstrap admin password")),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("ca.crt")).unwrap(),
        ca_before
    );
    terminate(child);
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    assert_eq!(audit.matches("server_start").count(), 2);
}

#[test]
fn master_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    // 32 bytes of 0x07, base64.
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let (child, lines) = start(&cfg, &[("POSTERN_ENCRYPTION_KEY", key)]);
    assert!(lines
        .iter()
        .any(|l| l.starts_with("bootstrap admin password")));
    assert!(
        !dir.path().join("data/master.key").exists(),
        "no key file when the key comes from the environment"
    );
    terminate(child);
    // Without the key, the sealed CA key cannot be opened: the server refuses to start.
    let out = Command::new(postern_bin())
        .args(["server", "--config"])
        .arg(&cfg)
        .env_remove("POSTERN_ENCRYPTION_KEY")
        .env_remove("POSTERN_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key is missing"), "{err}");
    assert!(
        !dir.path().join("data/master.key").exists(),
        "no new key minted over sealed secrets"
    );
}
