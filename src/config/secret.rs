//! Where a secret comes from: an environment variable or a file, never the config itself.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::Env;

/// Where to read one secret from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// A file, already resolved to an absolute path when it was relative.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. The error says what was missing, never the secret, nor the name
    /// of the variable or file: that is a value written in the config file, where the
    /// secret itself may have been written by mistake.
    pub fn read(&self, env: &Env) -> Result<SecretString, String> {
        match self {
            SecretSource::Env(var) => env
                .get(var)
                .map(|v| SecretString::from(v.trim().to_owned()))
                .ok_or_else(|| "the environment variable it names is not set".to_owned()),
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) if text.trim().is_empty() => Err("the file it names is empty".into()),
                Ok(text) => Ok(SecretString::from(text.trim().to_owned())),
                Err(e) => Err(format!("cannot read the file it names: {e}")),
            },
        }
    }

    /// The config key this source was set by, given the key's stem (`slack.token`).
    pub fn key(&self, stem: &str) -> String {
        match self {
            SecretSource::Env(_) => format!("{stem}_env"),
            SecretSource::File(_) => format!("{stem}_file"),
        }
    }
}

/// A relative secret file is looked up in `$CREDENTIALS_DIRECTORY` (systemd's
/// `LoadCredential=`), else beside the config file.
pub(super) fn resolve_file(config: &Path, file: &Path, env: &Env) -> PathBuf {
    if file.is_absolute() {
        return file.to_owned();
    }
    match env.get("CREDENTIALS_DIRECTORY") {
        Some(dir) => Path::new(dir).join(file),
        None => config.parent().unwrap_or_else(|| Path::new(".")).join(file),
    }
}
