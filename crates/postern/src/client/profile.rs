//! The saved sign-in: `profile.toml` in `$POSTERN_HOME`, else `~/.postern`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ClientError;

/// What `postern admin login` remembers.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// API URL signed in to.
    pub server: String,
    /// CA certificate trusted for that server (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// User signed in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// API token (absent after `postern admin logout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("server", &self.server)
            .field("ca", &self.ca)
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The profile directory: `$POSTERN_HOME`, else `$HOME/.postern`.
pub fn dir() -> Result<PathBuf, ClientError> {
    if let Some(d) = std::env::var_os("POSTERN_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".postern")),
        None => Err(ClientError::Usage(
            "cannot find the profile directory: set POSTERN_HOME (or HOME)".into(),
        )),
    }
}

/// The profile file path.
pub fn path() -> Result<PathBuf, ClientError> {
    Ok(dir()?.join("profile.toml"))
}

/// Loads the profile; `None` when there is none yet.
pub fn load() -> Result<Option<Profile>, ClientError> {
    load_from(&path()?)
}

/// Loads a profile file; `None` when it does not exist.
pub fn load_from(path: &Path) -> Result<Option<Profile>, ClientError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::Failed(format!(
                "cannot read the profile {}: {e}",
                path.display()
            )))
        }
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        ClientError::Failed(format!(
            "the profile {} is unreadable ({e}); delete it and run `postern admin login` again",
            path.display()
        ))
    })
}

/// Saves the profile (directory 0700, file 0600: it holds a token).
pub fn save(p: &Profile) -> Result<PathBuf, ClientError> {
    let path = path()?;
    save_to(&path, p)?;
    Ok(path)
}

/// Writes `p` to `path` atomically, readable by its owner only.
pub fn save_to(path: &Path, p: &Profile) -> Result<(), ClientError> {
    let text = toml::to_string(p)
        .map_err(|e| ClientError::Failed(format!("cannot encode the profile: {e}")))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    write_file(path, text.as_bytes(), 0o600)
}

/// Creates `dir` (and its parents) when missing, mode 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| {
        ClientError::Failed(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    })
}

/// Writes `data` to `path` through a temporary file renamed over it (readers never see a
/// half-written file), created with `mode` on Unix and synced before the rename.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    let fail =
        |e: std::io::Error| ClientError::Failed(format!("cannot write {}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(&tmp).map_err(fail)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_private_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/profile.toml");
        assert_eq!(load_from(&path).unwrap(), None);
        let p = Profile {
            server: "https://pg.example:7443".into(),
            ca: Some("/etc/postern/ca.crt".into()),
            user: Some("admin".into()),
            token: Some("pst_secret".into()),
        };
        save_to(&path, &p).unwrap();
        assert_eq!(load_from(&path).unwrap(), Some(p.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(!format!("{p:?}").contains("pst_secret"));
        std::fs::write(&path, "nonsense = [").unwrap();
        assert!(matches!(load_from(&path), Err(ClientError::Failed(_))));
    }
}
