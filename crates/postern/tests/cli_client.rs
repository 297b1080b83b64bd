//! The `postern` admin commands against an in-process server (no PostgreSQL needed):
//! exit codes, the profile, and each command's happy path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use postern::config::Config;

struct Cli {
    home: tempfile::TempDir,
}

impl Cli {
    fn run_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
        cmd.args(args)
            .env("POSTERN_HOME", self.home.path())
            .env_remove("POSTERN_SERVER")
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_CA")
            .env_remove("POSTERN_DATA_DIR")
            .current_dir(self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_env(args, stdin, &[])
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "postern {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn code(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let out = self.run(args, stdin);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_against_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    cfg.api.listen = "127.0.0.1:0".into();
    // The second factor has its own tests (tests/e2e identity); these are about the CLI.
    cfg.auth.require_2fa = false;
    cfg.postgres.enabled = false;
    cfg.mysql.enabled = false;
    let handle = postern::server::start(cfg).await.unwrap();
    let admin_pw = handle.bootstrap_password.clone().unwrap();
    let server = format!("https://127.0.0.1:{}", handle.api_addr.port());
    let ca = handle.ca_path.display().to_string();
    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };

    // Not logged in: 4, with the fix.
    let (code, err) = cli.code(&["get", "users", "--server", &server], "");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("postern admin login --server"), "{err}");
    // Nobody listening: 3.
    let (code, err) = cli.code(
        &[
            "get",
            "users",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "pst_x",
        ],
        "",
    );
    assert_eq!(code, 3, "{err}");
    // Certificate not trusted (no --ca, public roots only): 3, suggesting --ca.
    let (code, err) = cli.code(
        &["get", "users", "--server", &server, "--token", "pst_x"],
        "",
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--ca"), "{err}");
    // Usage: 2.
    let (code, _) = cli.code(&["get", "tables"], "");
    assert_eq!(code, 2);

    // Wrong password: 1, generic message.
    let login = [
        "admin", "login", "--server", &server, "--ca", &ca, "--user", "admin",
    ];
    let (code, err) = cli.code(&login, "not-the-password\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid user name or password"), "{err}");

    let out = cli.ok(&login, &format!("{admin_pw}\n"));
    assert!(out.contains("Signed in"), "{out}");
    let profile = cli.home.path().join("profile.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(std::fs::read_to_string(&profile).unwrap().contains("pst_"));

    // From here on the profile supplies server, CA and token.
    let who = cli.ok(&["get", "users"], "");
    assert!(who.starts_with("NAME") && who.contains("admin"), "{who}");

    let file = cli.home.path().join("r.toml");
    std::fs::write(
        &file,
        "[[datasource]]\nname = \"shop\"\nhost = \"db\"\nport = 5432\ndatabase = \"shop\"\n\
         [[credential]]\nname = \"shop-rw\"\ndatasource = \"shop\"\nusername = \"app\"\npassword = \"${CLI_SECRET}\"\n",
    )
    .unwrap();
    let out = cli.run_env(
        &["apply", "-f", file.to_str().unwrap()],
        "",
        &[("CLI_SECRET", "upstream-secret-991")],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("KIND"), "{report}");
    assert!(report.contains("credential  shop-rw  created"), "{report}");
    // An unset variable stops the apply before anything is sent.
    let (code, err) = cli.code(&["apply", "-f", file.to_str().unwrap()], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CLI_SECRET"), "{err}");

    // Users: add (password from stdin), refuse a second add, passwd, sign in as them.
    cli.ok(
        &["user", "add", "bob", "--password-stdin"],
        "bob-password-1\n",
    );
    let (code, err) = cli.code(&["user", "add", "bob", "--no-password"], "");
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    cli.ok(
        &["user", "passwd", "bob", "--password-stdin"],
        "bob-password-2\n",
    );
    let bob = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    bob.ok(
        &[
            "admin", "login", "--server", &server, "--ca", &ca, "--user", "bob",
        ],
        "bob-password-2\n",
    );
    // Bob is no admin: 1 (forbidden); changing his own password needs the current one.
    let (code, err) = bob.code(&["get", "users"], "");
    assert_eq!(code, 1, "{err}");
    bob.ok(
        &["user", "passwd", "--password-stdin"],
        "bob-password-2\nbob-password-3\n",
    );

    // get in every format; delete.
    let json = cli.ok(&["get", "credential", "shop-rw", "-o", "json"], "");
    assert!(json.contains("\"has_password\": true") && !json.contains("upstream-secret-991"));
    let yaml = cli.ok(&["get", "datasources", "-o", "yaml"], "");
    assert!(yaml.contains("name: shop"), "{yaml}");
    cli.ok(&["delete", "credential", "shop-rw"], "");
    let (code, _) = cli.code(&["get", "credential", "shop-rw"], "");
    assert_eq!(code, 1);

    // Audit.
    let table = cli.ok(
        &["audit", "search", "--since", "1h", "--kind", "admin_change"],
        "",
    );
    assert!(table.contains("delete credential shop-rw"), "{table}");
    let json = cli.ok(&["audit", "search", "--user", "bob", "--json"], "");
    assert!(json.contains("login_success"), "{json}");
    assert!(!json.contains("bob-password"));
    let verify = cli.ok(&["audit", "verify"], "");
    assert!(verify.contains("audit chain OK"), "{verify}");

    // Logout revokes the token: the next call is "not logged in" (4).
    cli.ok(&["admin", "logout"], "");
    let (code, _) = cli.code(&["get", "users"], "");
    assert_eq!(code, 4);
    assert!(!std::fs::read_to_string(&profile).unwrap().contains("pst_"));

    handle.shutdown().await;
    assert!(Path::new(&ca).exists());
}
