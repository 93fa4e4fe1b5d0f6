//! Signing in as a GitHub App installation: a JWT signed with the App's private key
//! (RS256), traded for an installation token that lasts an hour. The token is kept and
//! renewed a few minutes before it expires, and at once when GitHub refuses it.
//!
//! octocrab has App support of its own, but it sends the token only to `api.github.com`
//! (not to GitHub Enterprise Server or a test server) and does not renew on a 401; this is
//! the small part of it pushwake needs.

use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::GithubApp;

/// A token this close to its expiry is renewed before it is used.
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// One App installation's credentials.
pub struct App {
    pub app_id: u64,
    pub installation_id: u64,
    key: EncodingKey,
    token: Kept,
    /// Held while a token is fetched, so that concurrent polls fetch one between them.
    pub(super) fetching: tokio::sync::Mutex<()>,
}

/// The installation token kept, and when (on tokio's clock) it expires.
#[derive(Default)]
struct Kept(Mutex<Option<(SecretString, Instant)>>);

impl Kept {
    fn get(&self) -> Option<SecretString> {
        match &*self.0.lock().expect("token poisoned") {
            Some((secret, expires)) if *expires > Instant::now() + RENEW_BEFORE => {
                Some(secret.clone())
            }
            _ => None,
        }
    }

    fn keep(&self, token: SecretString, expires_at: &str) {
        let left = chrono::DateTime::parse_from_rfc3339(expires_at)
            .map(|t| t.to_utc() - chrono::Utc::now())
            .ok()
            .and_then(|d| d.to_std().ok())
            .unwrap_or_default();
        *self.0.lock().expect("token poisoned") = Some((token, Instant::now() + left));
    }

    fn forget(&self) {
        *self.0.lock().expect("token poisoned") = None;
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

impl App {
    pub fn new(settings: &GithubApp) -> anyhow::Result<App> {
        let key = EncodingKey::from_rsa_pem(settings.key.expose_secret().as_bytes())
            .map_err(|e| anyhow::anyhow!("the GitHub App key is not an RSA key in PEM: {e}"))?;
        Ok(App {
            app_id: settings.app_id,
            installation_id: settings.installation_id,
            key,
            token: Kept::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The App's JWT: issued a minute ago, as GitHub advises against clock drift, and
    /// expiring in nine minutes (GitHub takes at most ten).
    pub fn jwt(&self) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| format!("cannot sign the GitHub App's JWT: {e}"))
    }

    /// The installation token kept, unless it expires within [`RENEW_BEFORE`].
    pub fn token(&self) -> Option<SecretString> {
        self.token.get()
    }

    /// Keeps `token`, which expires at `expires_at` (GitHub's RFC 3339 time).
    pub fn keep(&self, token: SecretString, expires_at: &str) {
        self.token.keep(token, expires_at);
    }

    /// Forgets the token, as when GitHub refused it.
    pub fn forget(&self) {
        self.token.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_minutes(m: i64) -> String {
        (chrono::Utc::now() + chrono::Duration::minutes(m)).to_rfc3339()
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_used_until_five_minutes_before_it_expires() {
        let kept = Kept::default();
        kept.keep(SecretString::from("ghs_a"), &in_minutes(60));
        assert!(kept.get().is_some());
        tokio::time::advance(Duration::from_secs(54 * 60)).await;
        assert!(kept.get().is_some(), "six minutes left");
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        assert!(kept.get().is_none(), "four minutes left: renewed first");
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_or_unreadable_expiry_is_no_token() {
        let kept = Kept::default();
        kept.keep(SecretString::from("ghs_a"), &in_minutes(60));
        kept.forget();
        assert!(kept.get().is_none());
        kept.keep(SecretString::from("ghs_b"), "soon");
        assert!(kept.get().is_none());
    }
}
