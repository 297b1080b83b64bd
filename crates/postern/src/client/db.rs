//! `postern db ls|login|connect|env`: reaching datasources with the certificate of
//! `postern login`, through the clients people already use (psql reads a service file or
//! environment variables; no password is involved).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use super::api::Api;
use super::certs::{Identity, IdentityFiles};
use super::conn::ConnArgs;
use super::profile;
use super::table::{self, Output};
use super::{ClientError, CmdResult};

/// `postern db …`
#[derive(clap::Subcommand, Debug)]
pub enum DbCommand {
    /// List the datasources your roles reach.
    Ls(LsArgs),
    /// Write connection settings for ALIAS so the plain client connects with your
    /// certificate: a psql service (`psql service=ALIAS`) in ~/.pg_service.conf (or
    /// $PGSERVICEFILE).
    Login(LoginArgs),
    /// Start the database client (psql) connected to ALIAS; arguments after `--` go to it.
    Connect(ConnectArgs),
    /// Print the environment variables that connect a client to ALIAS
    /// (`eval "$(postern db env shop)"`).
    Env(AliasArgs),
}

/// `postern db ls`
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Output,
    #[command(flatten)]
    conn: ConnArgs,
}

/// A datasource alias.
#[derive(clap::Args, Debug)]
pub struct AliasArgs {
    /// Datasource alias (see `postern db ls`).
    alias: String,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern db login`
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    target: AliasArgs,
    /// Name of the service section to write [default: the alias]
    #[arg(long)]
    service: Option<String>,
    /// Replace a section of that name even if Postern did not write it.
    #[arg(long)]
    force: bool,
}

/// `postern db connect`
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    target: AliasArgs,
    /// Arguments for the client (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Deserialize)]
struct Mine {
    datasources: Vec<MyDatasource>,
    #[serde(default)]
    listeners: Listeners,
}

#[derive(Deserialize)]
struct MyDatasource {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    database: String,
}

#[derive(Deserialize, Default)]
struct Listeners {
    postgres: Option<u16>,
}

/// Runs `postern db …`.
pub async fn run(cmd: DbCommand) -> CmdResult {
    match cmd {
        DbCommand::Ls(a) => list(a).await,
        DbCommand::Login(a) => login(a).await,
        DbCommand::Connect(a) => connect(a).await,
        DbCommand::Env(a) => env(a).await,
    }
}

/// The caller's datasources, as the server answered and parsed.
async fn mine(conn: &ConnArgs) -> Result<(Api, serde_json::Value, Mine), ClientError> {
    let api = Api::new(conn.resolve(profile::load()?.as_ref())?)?;
    let v = api
        .call(reqwest::Method::GET, "/api/v1/me/datasources", &[], None)
        .await?;
    let m = serde_json::from_value(v.clone())
        .map_err(|e| ClientError::Failed(format!("unexpected answer for your datasources: {e}")))?;
    Ok((api, v, m))
}

async fn list(a: LsArgs) -> CmdResult {
    let (_, raw, m) = mine(&a.conn).await?;
    if a.output != Output::Table {
        table::print_structured(&raw, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = m
        .datasources
        .iter()
        .map(|d| {
            let how = match (d.kind.as_str(), m.listeners.postgres) {
                ("postgres", Some(_)) => format!("postern db connect {}", d.name),
                _ => "(no Postern port for this type)".to_string(),
            };
            vec![d.name.clone(), d.kind.clone(), d.database.clone(), how]
        })
        .collect();
    if rows.is_empty() {
        println!("No datasource is granted to you; ask an admin for a role.");
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        table::render(&["NAME", "TYPE", "DATABASE", "CONNECT"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything a client needs to reach one datasource through Postern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgTarget {
    host: String,
    port: u16,
    alias: String,
    user: String,
    sslmode: &'static str,
    /// `None`: the system's roots (`sslrootcert=system`).
    root: Option<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
}

impl PgTarget {
    /// libpq settings, in order.
    fn settings(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("host", self.host.clone()),
            ("port", self.port.to_string()),
            ("dbname", self.alias.clone()),
            ("user", self.user.clone()),
            ("sslmode", self.sslmode.to_string()),
            (
                "sslrootcert",
                self.root
                    .as_deref()
                    .map(path)
                    .unwrap_or_else(|| "system".into()),
            ),
            ("sslcert", path(&self.cert)),
            ("sslkey", path(&self.key)),
        ]
    }

    /// As libpq environment variables.
    fn env(&self) -> Vec<(String, String)> {
        self.settings()
            .into_iter()
            .map(|(k, v)| {
                let var = match k {
                    "dbname" => "PGDATABASE".to_string(),
                    other => format!("PG{}", other.to_ascii_uppercase()),
                };
                (var, v)
            })
            .collect()
    }
}

async fn target(a: &AliasArgs) -> Result<PgTarget, ClientError> {
    let files = IdentityFiles::locate()?;
    let id: Identity = files.current()?;
    let (api, _, m) = mine(&a.conn).await?;
    let Some(ds) = m.datasources.iter().find(|d| d.name == a.alias) else {
        return Err(ClientError::Failed(format!(
            "no role of yours reaches datasource {}; `postern db ls` lists the ones you may use",
            a.alias
        )));
    };
    if ds.kind != "postgres" {
        return Err(ClientError::Failed(format!(
            "datasource {} is a {} database; this Postern has no {} port yet",
            ds.name, ds.kind, ds.kind
        )));
    }
    let Some(port) = m.listeners.postgres else {
        return Err(ClientError::Failed(
            "this Postern's PostgreSQL port is disabled (postgres.enabled = false)".into(),
        ));
    };
    let url = reqwest::Url::parse(&api.conn().server)
        .map_err(|e| ClientError::Usage(format!("bad server URL {}: {e}", api.conn().server)))?;
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| ClientError::Usage(format!("no host in {}", api.conn().server)))?;
    let root = files.server_ca();
    Ok(PgTarget {
        host,
        port,
        alias: ds.name.clone(),
        user: id.user,
        sslmode: "verify-full",
        root: root.is_file().then_some(root),
        cert: files.cert(),
        key: files.key(),
    })
}

/// Marks the service sections `postern db login` wrote (and may rewrite).
const MARK: &str = "# managed by `postern db login`";

/// `text` (a pg_service.conf) with section `name` set to `settings`: a section Postern
/// wrote before is replaced; someone else's is replaced only with `force`.
fn upsert_service(
    text: &str,
    name: &str,
    settings: &[(&str, String)],
    force: bool,
) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("[{name}]");
    let start = lines.iter().position(|l| l.trim() == header);
    let mut section = vec![MARK.to_string(), header.clone()];
    section.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + section.len());
    match start {
        None => {
            out.extend(lines.iter().map(|l| l.to_string()));
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.extend(section);
        }
        Some(i) => {
            let ours = i > 0 && lines[i - 1].trim() == MARK;
            if !ours && !force {
                return Err(format!(
                    "a service [{name}] that Postern did not write exists; pass --service with another name, or --force to replace it"
                ));
            }
            let before = if ours { i - 1 } else { i };
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .map(|p| {
                    // Keep the next section's marker with it.
                    let next = i + 1 + p;
                    if next > 0 && lines[next - 1].trim() == MARK {
                        next - 1
                    } else {
                        next
                    }
                })
                .unwrap_or(lines.len());
            out.extend(lines[..before].iter().map(|l| l.to_string()));
            out.extend(section);
            if end < lines.len() {
                out.push(String::new());
                out.extend(
                    lines[end..]
                        .iter()
                        .skip_while(|l| l.trim().is_empty())
                        .map(|l| l.to_string()),
                );
            }
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

/// Where libpq looks for services: $PGSERVICEFILE, else ~/.pg_service.conf.
fn service_file() -> Result<PathBuf, ClientError> {
    if let Some(p) = std::env::var_os("PGSERVICEFILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".pg_service.conf")),
        None => Err(ClientError::Usage(
            "cannot find the service file: set PGSERVICEFILE (or HOME)".into(),
        )),
    }
}

async fn login(a: LoginArgs) -> CmdResult {
    let t = target(&a.target).await?;
    let name = a.service.clone().unwrap_or_else(|| t.alias.clone());
    if name.is_empty() || name.contains(['[', ']', '\n', '=']) {
        return Err(ClientError::Usage(format!(
            "{name:?} cannot be a service name; pass --service NAME"
        )));
    }
    let path = service_file()?;
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ClientError::Failed(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let text = upsert_service(&old, &name, &t.settings(), a.force).map_err(ClientError::Failed)?;
    std::fs::write(&path, text)
        .map_err(|e| ClientError::Failed(format!("cannot write {}: {e}", path.display())))?;
    println!(
        "Wrote service [{name}] to {}: connect with `psql service={name}` (no password; your certificate is used).",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `s` quoted for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn env(a: AliasArgs) -> CmdResult {
    let t = target(&a).await?;
    for (k, v) in t.env() {
        println!("export {k}={}", shell_quote(&v));
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(a: ConnectArgs) -> CmdResult {
    let t = target(&a.target).await?;
    let mut cmd = std::process::Command::new("psql");
    cmd.args(&a.args)
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    for (k, v) in t.env() {
        cmd.env(k, v);
    }
    let not_found = |e: std::io::Error| {
        ClientError::Failed(format!(
            "cannot start psql ({e}); install the PostgreSQL client, or use `postern db env {}` with another client",
            t.alias
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process: psql owns the terminal and its signals from here.
        Err(not_found(cmd.exec()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(not_found)?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Vec<(&'static str, String)> {
        vec![("host", "h".into()), ("port", "7432".into())]
    }

    #[test]
    fn service_sections_are_added_replaced_and_others_kept() {
        let s = upsert_service("", "shop", &settings(), false).unwrap();
        assert_eq!(s, format!("{MARK}\n[shop]\nhost=h\nport=7432\n"));

        let mine = "[mine]\nhost=x\n";
        let s2 = upsert_service(mine, "shop", &settings(), false).unwrap();
        assert!(s2.starts_with("[mine]\nhost=x\n\n# managed"), "{s2}");

        // Rewriting our own section keeps the others as they were.
        let other = vec![("host", "h2".into())];
        let s3 = upsert_service(&s2, "shop", &other, false).unwrap();
        assert_eq!(s3, format!("[mine]\nhost=x\n\n{MARK}\n[shop]\nhost=h2\n"));
        let s4 = upsert_service(
            &format!("{s3}\n[after]\nport=1\n"),
            "shop",
            &settings(),
            false,
        )
        .unwrap();
        assert_eq!(
            s4,
            format!("[mine]\nhost=x\n\n{MARK}\n[shop]\nhost=h\nport=7432\n\n[after]\nport=1\n")
        );

        // Someone else's section of that name: refused unless forced.
        let e = upsert_service(mine, "mine", &settings(), false).unwrap_err();
        assert!(e.contains("--service"), "{e}");
        let forced = upsert_service(mine, "mine", &settings(), true).unwrap();
        assert_eq!(forced, format!("{MARK}\n[mine]\nhost=h\nport=7432\n"));
    }

    #[test]
    fn env_names_and_quoting() {
        let t = PgTarget {
            host: "db.example".into(),
            port: 7432,
            alias: "shop".into(),
            user: "o'neil".into(),
            sslmode: "verify-full",
            root: None,
            cert: "/c".into(),
            key: "/k".into(),
        };
        let env = t.env();
        assert!(env.contains(&("PGDATABASE".into(), "shop".into())));
        assert!(env.contains(&("PGSSLROOTCERT".into(), "system".into())));
        assert!(env.contains(&("PGSSLKEY".into(), "/k".into())));
        assert_eq!(shell_quote("o'neil"), r"'o'\''neil'");
    }
}
