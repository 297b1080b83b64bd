//! Support for end-to-end tests: the throwaway PostgreSQL cluster started by
//! `scripts/test-pg.sh`, and a Postern server started in-process on port 0.
//!
//! Tests create their own databases and roles with unique names and drop them at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use postern::config::Config;
use postern::server::ServerHandle;
use postern_audit::AuditEvent;
use postern_core::ApplyDocument;
use postern_store::AuditFilter;

/// The upstream PostgreSQL cluster of the test run.
#[derive(Debug, Clone)]
pub struct TestPg {
    /// TCP host.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Unix socket directory (superuser access with trust).
    pub socket_dir: String,
    /// Superuser name.
    pub superuser: String,
    /// CA certificate of the cluster's server certificate.
    pub ca: PathBuf,
    /// Directory of psql, pgbench…
    pub bin: PathBuf,
    /// The server's log file (statements of roles set to log them land here).
    pub log: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts the test PostgreSQL cluster")
    })
}

/// The cluster described by the `POSTERN_TEST_PG_*` variables.
pub fn pg() -> TestPg {
    TestPg {
        host: env("POSTERN_TEST_PG_HOST"),
        port: env("POSTERN_TEST_PG_PORT").parse().expect("port"),
        socket_dir: env("POSTERN_TEST_PG_SOCKET_DIR"),
        superuser: env("POSTERN_TEST_PG_SUPERUSER"),
        ca: PathBuf::from(env("POSTERN_TEST_PG_CA")),
        bin: PathBuf::from(env("POSTERN_TEST_PG_BIN")),
        log: PathBuf::from(env("POSTERN_TEST_PG_LOG")),
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across test processes and runs: `<prefix>_<pid>_<n>_<random>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u16>()
    )
}

/// A database and a login role made for one test.
pub struct Upstream {
    /// Database name.
    pub db: String,
    /// Role name.
    pub role: String,
    /// Role password.
    pub password: String,
    pg: TestPg,
}

impl TestPg {
    /// A superuser connection over the Unix socket.
    pub async fn superuser(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host(&self.socket_dir)
            .port(self.port)
            .user(&self.superuser)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("superuser connection to the test cluster");
        tokio::spawn(conn);
        client
    }

    /// Creates a database owned by a new login role (optionally member of `group`, e.g.
    /// `pt_md5_users` or `pt_tls_users`).
    pub async fn upstream(&self, group: Option<&str>) -> Upstream {
        let db = unique("ptdb");
        let role = unique("ptrole");
        let password = format!("pw-{}", unique("x"));
        let su = self.superuser("postgres").await;
        // md5 members need an md5 verifier: set the encryption for this statement only.
        if group == Some("pt_md5_users") {
            su.batch_execute("SET password_encryption = 'md5'")
                .await
                .unwrap();
        }
        su.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            .await
            .unwrap();
        if let Some(g) = group {
            su.batch_execute(&format!("GRANT {g} TO {role}"))
                .await
                .unwrap();
        }
        su.batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))
            .await
            .unwrap();
        Upstream {
            db,
            role,
            password,
            pg: self.clone(),
        }
    }

    /// `psql`, `pgbench`… from the cluster's bin directory (or PATH).
    pub fn tool(&self, name: &str) -> Command {
        let p = self.bin.join(name);
        if p.exists() {
            Command::new(p)
        } else {
            Command::new(name)
        }
    }
}

impl Upstream {
    /// A superuser connection to this database.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        self.pg.superuser(&self.db).await
    }

    /// Drops the database and role.
    pub async fn drop_all(self) {
        let su = self.pg.superuser("postgres").await;
        let _ = su
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .await;
        let _ = su
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", self.role))
            .await;
    }
}

/// A Postern server running in this test process.
pub struct Postern {
    /// The server.
    pub handle: ServerHandle,
    /// Its data directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Postern {
    /// Starts Postern on 127.0.0.1 port 0 with a fresh data directory; `tweak` may adjust
    /// the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        cfg.api.listen = "127.0.0.1:0".into();
        cfg.postgres.listen = "127.0.0.1:0".into();
        cfg.mysql.listen = "127.0.0.1:0".into();
        cfg.ssh.listen = "127.0.0.1:0".into();
        cfg.ssh.shutdown_grace = Duration::from_secs(2);
        cfg.mysql.login_failure_delay = Duration::from_millis(50);
        cfg.mysql.shutdown_grace = Duration::from_secs(2);
        cfg.postgres.login_failure_delay = Duration::from_millis(50);
        cfg.postgres.shutdown_grace = Duration::from_secs(2);
        // Tests that exercise the second factor turn it back on.
        cfg.auth.require_2fa = false;
        // Every test connects from 127.0.0.1, many with wrong passwords on purpose: only the
        // per user-and-address lockout applies unless a test asks for more.
        cfg.auth.max_failures_per_address = 100_000;
        cfg.auth.max_failures_per_user = 100_000;
        tweak(&mut cfg);
        let handle = postern::server::start(cfg).await.expect("postern starts");
        Self { handle, dir }
    }

    /// Starts Postern with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The SSH port.
    pub fn ssh_port(&self) -> u16 {
        self.handle.ssh_addr.expect("ssh enabled").port()
    }

    /// The PostgreSQL port.
    pub fn pg_port(&self) -> u16 {
        self.handle.pg_addr.expect("postgres enabled").port()
    }

    /// Applies a YAML resource document straight to the store.
    pub async fn apply_yaml(&self, yaml: &str) {
        let doc: ApplyDocument = serde_yaml::from_str(yaml).expect("valid apply document");
        self.handle.store.apply(&doc).await.expect("apply");
    }

    /// Provisions `user` (with `password`) reaching datasource `alias` on `up` as its role,
    /// in PASSTHROUGH mode (these tests are about the protocol, not statement checks).
    pub async fn grant(&self, up: &Upstream, alias: &str, user: &str, password: &str, tls: &str) {
        let role = serde_json::json!({ "modes": { alias: "passthrough" } });
        self.grant_role(up, alias, user, password, tls, role).await
    }

    /// Like [`Postern::grant`], with the role's statement policy given as JSON
    /// (`{"modes": {...}, "privileges": [...]}`).
    pub async fn grant_role(
        &self,
        up: &Upstream,
        alias: &str,
        user: &str,
        password: &str,
        tls: &str,
        policy: serde_json::Value,
    ) {
        let pg = pg();
        let ca = std::fs::read_to_string(&pg.ca).unwrap_or_default();
        let datasource = serde_json::json!({"name": alias, "type": "postgres", "host": pg.host,
            "port": pg.port, "database": up.db, "tls": tls, "tls_ca": ca});
        self.provision(datasource, &up.role, &up.password, user, password, policy)
            .await;
    }

    /// Applies `datasource`, a credential for it (`db_user`, `db_password`), a role carrying
    /// it with `policy` merged in, and `user` in that role; then sets the user's password.
    async fn provision(
        &self,
        datasource: serde_json::Value,
        db_user: &str,
        db_password: &str,
        user: &str,
        password: &str,
        policy: serde_json::Value,
    ) {
        let alias = datasource["name"]
            .as_str()
            .expect("datasource name")
            .to_string();
        let mut role = serde_json::json!({"name": format!("{alias}-role"), "credentials": [format!("{alias}-cred")]});
        if let (Some(r), Some(p)) = (role.as_object_mut(), policy.as_object()) {
            for (k, v) in p {
                r.insert(k.clone(), v.clone());
            }
        }
        let doc = serde_json::json!({
            "datasource": [datasource],
            "credential": [{"name": format!("{alias}-cred"), "datasource": alias,
                            "username": db_user, "password": db_password}],
            "role": [role],
            "user": [{"name": user, "roles": [format!("{alias}-role")]}],
        });
        let doc: ApplyDocument = serde_json::from_value(doc).unwrap();
        self.handle.store.apply(&doc).await.expect("apply");
        self.handle
            .store
            .set_password(user, password)
            .await
            .expect("set password");
    }

    /// `psql` reaching datasource `alias` through this Postern as `user` (no psqlrc); the
    /// caller adds the TLS mode and the command's own arguments.
    pub fn psql(&self, user: &str, password: &str, alias: &str) -> Command {
        let mut cmd = pg().tool("psql");
        cmd.args(["-X", "-h", "127.0.0.1", "-p"])
            .arg(self.pg_port().to_string())
            .args(["-U", user, "-d", alias])
            .env("PGPASSWORD", password);
        cmd
    }

    /// A tokio-postgres connection through Postern.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        alias: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg_port())
            .user(user)
            .password(password)
            .dbname(alias)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Audit events matching `f`, once the writer has caught up: polled until two reads
    /// 200 ms apart agree (sessions hand events over asynchronously, and a loaded machine
    /// may take a while).
    pub async fn audit(&self, f: AuditFilter) -> Vec<AuditEvent> {
        let mut last: Option<Vec<AuditEvent>> = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self
                .handle
                .store
                .audit_search(&f)
                .await
                .expect("audit search");
            if last.as_ref().is_some_and(|l| l.len() == now.len()) {
                return now;
            }
            last = Some(now);
        }
        last.unwrap_or_default()
    }

    /// Audit events matching `f` once one of them satisfies `want` (polled for up to 10 s;
    /// then whatever is there, for the caller's assertion to report).
    pub async fn audit_until(
        &self,
        f: AuditFilter,
        want: impl Fn(&AuditEvent) -> bool,
    ) -> Vec<AuditEvent> {
        let started = std::time::Instant::now();
        loop {
            let now = self
                .handle
                .store
                .audit_search(&f)
                .await
                .expect("audit search");
            if now.iter().any(&want) || started.elapsed() > Duration::from_secs(10) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first audit event matching `f` that satisfies `want`, waiting for it as
    /// [`Postern::audit_until`] does; panics naming `what` (and what was there) when none
    /// comes.
    pub async fn audit_expect(
        &self,
        f: AuditFilter,
        what: &str,
        want: impl Fn(&AuditEvent) -> bool,
    ) -> AuditEvent {
        let events = self.audit_until(f, &want).await;
        match events.iter().find(|e| want(e)) {
            Some(e) => e.clone(),
            None => panic!("no audit event {what} among {events:?}"),
        }
    }

    /// The audit events of `user` of `kind` (e.g. `login_failure`), newest first.
    pub async fn audit_of(&self, user: &str, kind: &str) -> Vec<AuditEvent> {
        self.audit(AuditFilter {
            user: Some(user.into()),
            kind: Some(kind.into()),
            ..AuditFilter::default()
        })
        .await
    }

    /// A filter on `user` and `kind`, for [`Postern::audit_until`] and friends.
    pub fn filter(user: &str, kind: &str) -> AuditFilter {
        AuditFilter {
            user: Some(user.into()),
            kind: Some(kind.into()),
            ..AuditFilter::default()
        }
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// The `postern` binary built next to this test (scripts/test.sh builds the workspace first).
pub fn postern_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("postern");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p postern`, which scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The `postern` CLI with its own home directory (saved login), for admin commands.
pub struct Cli {
    /// Its POSTERN_HOME.
    pub home: tempfile::TempDir,
}

impl Cli {
    /// Runs `postern ARGS` with `stdin`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut child = std::process::Command::new(postern_bin())
            .args(args)
            .env("POSTERN_HOME", self.home.path())
            .env_remove("POSTERN_SERVER")
            .env_remove("POSTERN_TOKEN")
            .env_remove("POSTERN_CA")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            std::io::Write::write_all(&mut input, s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs `postern ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
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
}

impl Cli {
    /// A CLI logged in to `postern` as its bootstrap admin.
    pub fn admin(postern: &Postern) -> Cli {
        let pw = postern
            .handle
            .bootstrap_password
            .clone()
            .expect("bootstrap password");
        Cli::signed_in(postern, "admin", &pw)
    }

    /// A CLI logged in to `postern` as `user` (who has `password`), with a home of its own.
    pub fn signed_in(postern: &Postern, user: &str, password: &str) -> Cli {
        let cli = Cli {
            home: tempfile::tempdir().expect("temp dir"),
        };
        let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
        let ca = postern.handle.ca_path.display().to_string();
        cli.ok(
            &[
                "admin", "login", "--server", &server, "--ca", &ca, "--user", user,
            ],
            Some(&format!("{password}\n")),
        );
        cli
    }
}

/// The upstream MariaDB server of the test run (`scripts/test-mariadb.sh`).
#[derive(Debug, Clone)]
pub struct TestMy {
    /// TCP host.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Unix socket (root without a password).
    pub socket: String,
}

/// The server described by the `POSTERN_TEST_MARIADB_*` variables.
pub fn my() -> TestMy {
    TestMy {
        host: env("POSTERN_TEST_MARIADB_HOST"),
        port: env("POSTERN_TEST_MARIADB_PORT").parse().expect("port"),
        socket: env("POSTERN_TEST_MARIADB_SOCKET"),
    }
}

/// The `mariadb` (or `mysql`) command-line client, without option files.
pub fn mysql_cli() -> Command {
    let bin = ["mariadb", "mysql"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("the mariadb client is installed (scripts/ensure-deps.sh)");
    let mut c = Command::new(bin);
    c.arg("--no-defaults");
    c
}

/// A database and a user made on the test MariaDB server for one test.
pub struct MyUpstream {
    /// Database name.
    pub db: String,
    /// User name (at 127.0.0.1).
    pub user: String,
    /// Its password.
    pub password: String,
    my: TestMy,
}

impl TestMy {
    /// Runs SQL as root over the socket; panics with the server's message on failure.
    pub fn root_sql(&self, sql: &str) -> String {
        let out = mysql_cli()
            .args(["-S", &self.socket, "-u", "root", "-N", "-B", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a database and a user with every privilege on it (`mysql_native_password`).
    pub fn upstream(&self) -> MyUpstream {
        let db = unique("ptmy");
        let user = unique("ptu");
        let user = user[..user.len().min(32)].to_string();
        let password = format!("pw-{}", unique("x"));
        self.root_sql(&format!(
            "CREATE DATABASE `{db}`; CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'127.0.0.1';"
        ));
        MyUpstream {
            db,
            user,
            password,
            my: self.clone(),
        }
    }
}

impl MyUpstream {
    /// Runs SQL as root in this database.
    pub fn root_sql(&self, sql: &str) -> String {
        self.my.root_sql(&format!("USE `{}`; {sql}", self.db))
    }

    /// Drops the database and the user.
    pub fn drop_all(self) {
        let _ = mysql_cli()
            .args(["-S", &self.my.socket, "-u", "root", "-e"])
            .arg(format!(
                "DROP DATABASE IF EXISTS `{}`; DROP USER IF EXISTS '{}'@'127.0.0.1';",
                self.db, self.user
            ))
            .output();
    }
}

impl Postern {
    /// The MySQL port.
    pub fn mysql_port(&self) -> u16 {
        self.handle.mysql_addr.expect("mysql enabled").port()
    }

    /// Provisions `user` (with `password`) reaching MySQL datasource `alias` on `up`, with
    /// the role's statement policy given as JSON (`{"modes": {...}}`).
    pub async fn grant_mysql(
        &self,
        up: &MyUpstream,
        alias: &str,
        user: &str,
        password: &str,
        policy: serde_json::Value,
    ) {
        self.grant_mysql_on(up, alias, user, password, policy, serde_json::json!({}))
            .await;
    }

    /// [`Postern::grant_mysql`] with more keys for the datasource (a firewall, say).
    pub async fn grant_mysql_on(
        &self,
        up: &MyUpstream,
        alias: &str,
        user: &str,
        password: &str,
        policy: serde_json::Value,
        datasource_extra: serde_json::Value,
    ) {
        let my = my();
        let mut datasource = serde_json::json!({"name": alias, "type": "mysql", "host": my.host,
            "port": my.port, "database": up.db, "tls": "disable"});
        if let (Some(d), Some(x)) = (datasource.as_object_mut(), datasource_extra.as_object()) {
            for (k, v) in x {
                d.insert(k.clone(), v.clone());
            }
        }
        self.provision(datasource, &up.user, &up.password, user, password, policy)
            .await;
    }

    /// The `mariadb` client reaching datasource `alias` through this Postern as `user`.
    pub fn mysql(&self, user: &str, password: &str, alias: &str) -> Command {
        let mut c = mysql_cli();
        c.args(["-h", "127.0.0.1", "-P"])
            .arg(self.mysql_port().to_string())
            .args(["-u", user])
            .arg(format!("-p{password}"))
            .arg(alias);
        c
    }
}
