//! Tenants' secrets: names, the node's key, sealing values at rest, and
//! masking them out of what a run leaves behind.
//!
//! A value is sealed with XChaCha20-Poly1305 under the node's 32-byte key,
//! with a random 24-byte nonce of its own and the tenant and name as
//! associated data, so a sealed value copied to another tenant or name does
//! not open. The key comes from `[secrets] key` (base64), else from a key
//! file, created with mode 0600 on first start (by default beside the
//! SQLite database). The database keeps a check value sealed with the key
//! on first use; a node started with another key refuses to start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::model::TenantId;
use crate::store::{Db, Sealed, SecretEntry, StoreError};

/// The largest secret value, bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest name.
pub const MAX_NAME_LEN: usize = 128;
/// Values shorter than this are not masked: masking every "1" or "on" in a
/// run's output would hide more than it protects.
pub const MIN_MASKED_LEN: usize = 4;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const CHECK_PLAINTEXT: &[u8] = b"scriptbox secrets key check";
const CHECK_AAD: &[u8] = b"scriptbox\0key-check";

/// `[secrets]`: where the key that seals tenants' secrets comes from.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// The key itself: 32 bytes in base64 (`openssl rand -base64 32`).
    /// Takes precedence over `key_file`. `SCRIPTBOX_SECRETS_KEY` sets it.
    pub key: Option<String>,
    /// A file holding the key in base64, created with mode 0600 when
    /// missing. Default: beside the SQLite database (`<database
    /// file>.secrets-key`); a PostgreSQL deployment has no default, and
    /// every node must be given the same key.
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl SecretsConfig {
    /// The key this node uses, read or created as configured, or `None`
    /// when the deployment gives none (PostgreSQL without `key` or
    /// `key_file`: secrets are then unavailable).
    pub fn load_key(&self, database_url: &str) -> Result<Option<SecretKey>> {
        if let Some(text) = &self.key {
            return SecretKey::from_base64(text)
                .context("secrets.key (SCRIPTBOX_SECRETS_KEY)")
                .map(Some);
        }
        let file = match &self.key_file {
            Some(file) => file.clone(),
            None => match key_file_beside(database_url) {
                Some(file) => file,
                None if database_url.starts_with("sqlite:") => {
                    // An in-memory database keeps nothing; neither does its key.
                    return Ok(Some(SecretKey::generate()?));
                }
                None => return Ok(None),
            },
        };
        SecretKey::from_file(&file).map(Some)
    }

    /// The key file beside the SQLite database that this configuration
    /// uses, if it uses one (no `key`, no `key_file`, a database file).
    pub fn default_key_file(&self, database_url: &str) -> Option<PathBuf> {
        if self.key.is_some() || self.key_file.is_some() {
            return None;
        }
        key_file_beside(database_url)
    }
}

/// `<database file>.secrets-key`, for a SQLite database in a file.
pub fn key_file_beside(database_url: &str) -> Option<PathBuf> {
    let mut name = sqlite_file(database_url)?.into_os_string();
    name.push(".secrets-key");
    Some(PathBuf::from(name))
}

/// The path of a SQLite database file named by `url`, if it is one.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// The node's key for sealing secrets.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
        Ok(Self(key))
    }

    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| anyhow::anyhow!("the key is not base64"))?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "the key must be {KEY_LEN} bytes, got {} (make one with `openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Reads the key from `path`, creating the file (mode 0600) with a new
    /// key when it does not exist.
    pub fn from_file(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text)
                .with_context(|| format!("secrets key file {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                write_private(path, &format!("{}\n", key.to_base64()))
                    .with_context(|| format!("creating secrets key file {}", path.display()))?;
                tracing::info!(
                    path = %path.display(),
                    "created the secrets key file; back it up with the database"
                );
                Ok(key)
            }
            Err(error) => {
                Err(error).with_context(|| format!("reading secrets key file {}", path.display()))
            }
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `plaintext` with a fresh nonce; `(nonce, ciphertext)`.
    fn seal_raw(&self, plaintext: &[u8], aad: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok((nonce.to_vec(), sealed))
    }

    fn open_raw(&self, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }

    /// Seals a tenant's secret.
    pub fn seal(&self, tenant_id: &str, name: &str, value: &str) -> Result<Sealed> {
        let (nonce, ciphertext) = self.seal_raw(value.as_bytes(), &aad(tenant_id, name))?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Opens a tenant's secret; `None` when it was sealed with another key,
    /// for another tenant or name, or altered.
    pub fn open(&self, tenant_id: &str, name: &str, sealed: &Sealed) -> Option<String> {
        let plain = self.open_raw(&sealed.nonce, &sealed.ciphertext, &aad(tenant_id, name))?;
        String::from_utf8(plain).ok()
    }

    /// A check value to store with the data this key seals.
    pub fn check_value(&self) -> Result<Sealed> {
        let (nonce, ciphertext) = self.seal_raw(CHECK_PLAINTEXT, CHECK_AAD)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Whether `check` was made by this key.
    pub fn matches(&self, check: &Sealed) -> bool {
        self.open_raw(&check.nonce, &check.ciphertext, CHECK_AAD)
            .is_some_and(|plain| plain == CHECK_PLAINTEXT)
    }
}

/// Why a secrets request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The node has no key (PostgreSQL without `[secrets] key`).
    #[error(
        "secrets are not available on this node: give every node the same key with \
         [secrets] key or SCRIPTBOX_SECRETS_KEY (32 bytes, base64)"
    )]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant's secrets: set, listed, deleted and opened for runs.
#[derive(Clone)]
pub struct Secrets {
    db: Db,
    key: Option<std::sync::Arc<SecretKey>>,
}

impl Secrets {
    /// Loads the key as configured and checks it against the database's
    /// check value (storing one on first use): a node with another key
    /// than the one the secrets were sealed with does not start.
    pub async fn open(db: Db, config: &SecretsConfig, database_url: &str) -> Result<Self> {
        let key = config.load_key(database_url)?;
        if let Some(key) = &key {
            let stored = db.key_check_value(&key.check_value()?).await?;
            if !key.matches(&stored) {
                anyhow::bail!(
                    "the secrets key does not match the one this database's secrets were \
                     sealed with: start with that key ([secrets] key, SCRIPTBOX_SECRETS_KEY, \
                     or the key file, by default beside the SQLite database)"
                );
            }
        } else {
            tracing::info!(
                "no secrets key configured ([secrets] key): secrets are unavailable on this node"
            );
        }
        Ok(Self {
            db,
            key: key.map(std::sync::Arc::new),
        })
    }

    fn key(&self) -> Result<&SecretKey, SecretError> {
        self.key.as_deref().ok_or(SecretError::Unavailable)
    }

    /// Sets (or replaces) a tenant's secret.
    pub async fn put(&self, tenant: &TenantId, name: &str, value: &str) -> Result<(), SecretError> {
        validate_name(name).map_err(StoreError::Invalid)?;
        validate_value(value).map_err(StoreError::Invalid)?;
        let sealed = self
            .key()?
            .seal(tenant.as_str(), name, value)
            .map_err(StoreError::Other)?;
        Ok(self.db.put_secret(tenant, name, &sealed).await?)
    }

    /// A tenant's secrets: names and update times, never values.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SecretEntry>, SecretError> {
        Ok(self.db.list_secrets(tenant).await?)
    }

    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), SecretError> {
        Ok(self.db.delete_secret(tenant, name).await?)
    }

    /// Which of `names` the tenant has not set.
    pub async fn missing(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<Vec<String>, SecretError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.key()?;
        let set = self.db.sealed_secrets(tenant, names).await?;
        Ok(names
            .iter()
            .filter(|name| !set.iter().any(|(n, _)| n == *name))
            .cloned()
            .collect())
    }

    /// The values of the tenant's secrets `names`, opened, for a run; an
    /// error names the first that is not set or does not open.
    pub async fn values(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<Vec<(String, String)>, String> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key().map_err(|e| e.to_string())?;
        let sealed = self
            .db
            .sealed_secrets(tenant, names)
            .await
            .map_err(|e| format!("reading the script's secrets: {e}"))?;
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let Some((_, found)) = sealed.iter().find(|(n, _)| n == name) else {
                return Err(format!(
                    "secret {name} is declared by the script but not set (PUT /api/secrets/{name})"
                ));
            };
            let value = key
                .open(tenant.as_str(), name, found)
                .ok_or_else(|| format!("secret {name} could not be opened with this node's key"))?;
            values.push((name.clone(), value));
        }
        Ok(values)
    }
}

/// The associated data binding a sealed value to its tenant and name.
fn aad(tenant_id: &str, name: &str) -> Vec<u8> {
    format!("scriptbox\0secret\0{tenant_id}\0{name}").into_bytes()
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Checks a secret or variable name: `[A-Z_][A-Z0-9_]*`, at most
/// [`MAX_NAME_LEN`] characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some('A'..='Z' | '_'))
        && chars.all(|c| matches!(c, 'A'..='Z' | '0'..='9' | '_'))
        && name.len() <= MAX_NAME_LEN;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use capital letters, digits and '_', \
             not starting with a digit, at most {MAX_NAME_LEN} characters (e.g. STRIPE_KEY)"
        ))
    }
}

/// Checks a value: at most [`MAX_VALUE_BYTES`].
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value is {} bytes; a secret may hold at most {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    Ok(())
}

/// The declared secrets' values of one run, to mask out of what it leaves.
#[derive(Debug, Default, Clone)]
pub struct Masks {
    /// (text to find, replacement), longest first so that a secret holding
    /// another is masked whole.
    patterns: Vec<(String, String)>,
}

impl Masks {
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut patterns = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_MASKED_LEN {
                continue;
            }
            let replacement = format!("[secret {name}]");
            // As written in JSON text (the output, logs' arguments), too.
            let quoted = serde_json::to_string(value).unwrap_or_default();
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != value {
                patterns.push((escaped.to_owned(), replacement.clone()));
            }
            patterns.push((value.to_owned(), replacement));
        }
        patterns.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        Self { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every declared secret's value replaced by `[secret NAME]`.
    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (value, replacement) in &self.patterns {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), replacement);
            }
        }
        text
    }
}

/// A script's run-time environment: its vars and declared secrets, by name.
pub type Env = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_tenant_name_and_key() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal("t1", "STRIPE_KEY", "sk_live_123").unwrap();
        assert_eq!(
            key.open("t1", "STRIPE_KEY", &sealed).as_deref(),
            Some("sk_live_123")
        );
        assert_eq!(key.open("t2", "STRIPE_KEY", &sealed), None);
        assert_eq!(key.open("t1", "OTHER", &sealed), None);
        let other = SecretKey::generate().unwrap();
        assert_eq!(other.open("t1", "STRIPE_KEY", &sealed), None);
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(key.open("t1", "STRIPE_KEY", &altered), None);
        // Each value has its own nonce.
        let again = key.seal("t1", "STRIPE_KEY", "sk_live_123").unwrap();
        assert_ne!(again.nonce, sealed.nonce);
        assert!(key.matches(&key.check_value().unwrap()));
        assert!(!other.matches(&key.check_value().unwrap()));
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = SecretKey::generate().unwrap();
        assert!(SecretKey::from_base64(&key.to_base64()).is_ok());
        let short = SecretKey::from_base64(&BASE64.encode([0u8; 16])).unwrap_err();
        assert!(
            format!("{short:#}").contains("32 bytes, got 16"),
            "{short:#}"
        );
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("scriptbox-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("db.sqlite.secrets-key");
        let first = SecretKey::from_file(&path).unwrap();
        let second = SecretKey::from_file(&path).unwrap();
        assert_eq!(first.0, second.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(SecretKey::from_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_key_file_sits_beside_the_sqlite_file() {
        assert_eq!(
            sqlite_file("sqlite://data/scriptbox.db?mode=rwc"),
            Some(PathBuf::from("data/scriptbox.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:scriptbox.db"),
            Some(PathBuf::from("scriptbox.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
        let config = SecretsConfig::default();
        assert!(config.load_key("postgres://h/db").unwrap().is_none());
        assert!(config.load_key("sqlite::memory:").unwrap().is_some());
    }

    #[test]
    fn names_are_upper_snake_case() {
        for good in ["STRIPE_KEY", "_X", "A1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "stripe", "A-B", "A B", &"A".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_replace_values_raw_and_json_escaped_longest_first() {
        let masks = Masks::new([("TOKEN", "abcd\"ef"), ("INNER", "abcd"), ("SHORT", "on")]);
        assert_eq!(masks.apply("x abcd\"ef y"), "x [secret TOKEN] y");
        assert_eq!(
            masks.apply(r#"{"t":"abcd\"ef"}"#),
            r#"{"t":"[secret TOKEN]"}"#
        );
        assert_eq!(masks.apply("abcd on"), "[secret INNER] on");
        assert!(Masks::new([("SHORT", "on")]).is_empty());
    }
}
