//! Where the client connects and with which key: flags and environment
//! first, else the login saved by `scriptbox login` in the user's config
//! folder (`$SCRIPTBOX_CONFIG_DIR`, else `$XDG_CONFIG_HOME/scriptbox`, else
//! `~/.config/scriptbox`), in `login.toml`, readable by its owner only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ClientError, ClientResult};

/// A server's admin URL and a tenant's API key.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub api_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url)
            .field("api_key", &"[hidden]")
            .finish()
    }
}

/// The folder the login is saved in.
pub fn config_dir() -> ClientResult<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("SCRIPTBOX_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("scriptbox"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("scriptbox")),
        None => Err(ClientError::Other(
            "cannot tell where to save the login: set HOME or SCRIPTBOX_CONFIG_DIR".into(),
        )),
    }
}

fn login_file() -> ClientResult<PathBuf> {
    Ok(config_dir()?.join("login.toml"))
}

/// The credentials to use: each of `url` and `key` (from flags or the
/// environment) when given, else the saved login's.
pub fn resolve(url: Option<String>, key: Option<String>) -> ClientResult<Credentials> {
    if let (Some(url), Some(api_key)) = (&url, &key) {
        return Ok(Credentials {
            url: url.clone(),
            api_key: api_key.clone(),
        });
    }
    let saved = load()?;
    match (url, key, saved) {
        (url, key, Some(saved)) => Ok(Credentials {
            url: url.unwrap_or(saved.url),
            api_key: key.unwrap_or(saved.api_key),
        }),
        _ => Err(ClientError::NotLoggedIn),
    }
}

/// The saved login, if any.
pub fn load() -> ClientResult<Option<Credentials>> {
    let file = login_file()?;
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::Other(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        ClientError::Other(format!(
            "{} is not a saved login ({e}); run `scriptbox login URL` again",
            file.display()
        ))
    })
}

/// Saves `credentials` (mode 0600, replacing any earlier login); the file.
pub fn save(credentials: &Credentials) -> ClientResult<PathBuf> {
    let file = login_file()?;
    let failed = |e: std::io::Error| {
        ClientError::Other(format!("cannot save the login to {}: {e}", file.display()))
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let text = toml::to_string(credentials).map_err(|e| ClientError::Other(e.to_string()))?;
    write_private(&file, text.as_bytes()).map_err(failed)?;
    Ok(file)
}

/// Writes `bytes` to `file` through a new file readable by its owner only,
/// renamed over the old one: the key is never in a file others can read.
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = file.with_extension("toml.new");
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&temporary)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)
}
