//! Which server to call, which CA to trust and which token to send.

use std::path::{Path, PathBuf};

use super::profile::Profile;
use super::ClientError;

/// The API URL used when nothing else names one.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:7443";

/// Connection options, accepted by every client command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Postern API URL [default: the signed-in profile's, else https://127.0.0.1:7443]
    #[arg(long, global = true, env = "POSTERN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate [default: the profile's,
    /// else $POSTERN_DATA_DIR/ca.crt or ./postern-data/ca.crt when present, else the public
    /// web roots]
    #[arg(long, global = true, env = "POSTERN_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// API token [default: the signed-in profile's]
    #[arg(
        long,
        global = true,
        env = "POSTERN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Resolved connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Conn {
    /// API base URL, without a trailing slash.
    pub server: String,
    /// CA file to trust (public web roots when `None`).
    pub ca: Option<PathBuf>,
    /// Bearer token, when signed in.
    pub token: Option<String>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("server", &self.server)
            .field("ca", &self.ca)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Normalises a server URL: `https://` added when no scheme is given, trailing `/` removed;
/// plain `http://` refused (the API speaks only HTTPS).
pub fn normalize_server(s: &str) -> Result<String, ClientError> {
    let s = s.trim().trim_end_matches('/');
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("https://{s}")
    };
    if !url.starts_with("https://") || url.len() <= "https://".len() {
        return Err(ClientError::Usage(format!(
            "server {s:?} is not an https:// URL; Postern's API speaks only HTTPS, e.g. --server https://HOST:7443"
        )));
    }
    Ok(url)
}

/// The CA file Postern writes next to its data, when it is there.
fn default_ca() -> Option<PathBuf> {
    let data_dir = std::env::var_os("POSTERN_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("postern-data"));
    let ca = data_dir.join("ca.crt");
    ca.is_file().then(|| absolute(&ca))
}

/// `p` made absolute against the current directory (so a saved profile works anywhere).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl ConnArgs {
    /// Resolves the settings: flags and variables first, then the profile. The profile's
    /// token and CA are used only for the server the profile signed in to, so a token is
    /// never sent to another server.
    pub fn resolve(&self, profile: Option<&Profile>) -> Result<Conn, ClientError> {
        let server = match (&self.server, profile) {
            (Some(s), _) => normalize_server(s)?,
            (None, Some(p)) => normalize_server(&p.server)?,
            (None, None) => DEFAULT_SERVER.to_string(),
        };
        let same = profile.filter(|p| normalize_server(&p.server).ok().as_ref() == Some(&server));
        let ca = self
            .ca
            .clone()
            .or_else(|| same.and_then(|p| p.ca.clone()))
            .or_else(default_ca);
        let token = self
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| same.and_then(|p| p.token.clone()));
        Ok(Conn { server, ca, token })
    }
}

impl Conn {
    /// The error for "there is no token".
    pub fn not_logged_in(&self) -> ClientError {
        ClientError::NotLoggedIn(format!(
            "not logged in: run `postern admin login --server {}`",
            self.server
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("pg.example:7443/").unwrap(),
            "https://pg.example:7443"
        );
        assert_eq!(
            normalize_server("https://h:1").unwrap(),
            "https://h:1".to_string()
        );
        assert!(matches!(
            normalize_server("http://h:7443"),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn flags_beat_profile_and_profile_token_stays_with_its_server() {
        let p = Profile {
            server: "https://a:7443".into(),
            ca: Some("/a/ca.crt".into()),
            user: Some("admin".into()),
            token: Some("pst_a".into()),
        };
        let c = ConnArgs::default().resolve(Some(&p)).unwrap();
        assert_eq!(c.server, "https://a:7443");
        assert_eq!(c.token.as_deref(), Some("pst_a"));
        assert_eq!(c.ca.as_deref(), Some(Path::new("/a/ca.crt")));

        let args = ConnArgs {
            server: Some("https://b:7443".into()),
            ..Default::default()
        };
        let c = args.resolve(Some(&p)).unwrap();
        assert_eq!(c.server, "https://b:7443");
        assert_eq!(c.token, None);
        assert_ne!(c.ca.as_deref(), Some(Path::new("/a/ca.crt")));

        let args = ConnArgs {
            token: Some("pst_flag".into()),
            ca: Some("/flag/ca.crt".into()),
            ..Default::default()
        };
        let c = args.resolve(Some(&p)).unwrap();
        assert_eq!(c.token.as_deref(), Some("pst_flag"));
        assert_eq!(c.ca.as_deref(), Some(Path::new("/flag/ca.crt")));
        assert!(!format!("{c:?}").contains("pst_flag"));

        let c = ConnArgs::default().resolve(None).unwrap();
        assert_eq!(c.server, DEFAULT_SERVER);
        assert_eq!(c.token, None);
    }
}
