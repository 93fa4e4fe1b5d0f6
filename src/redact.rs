//! Keeping secrets out of messages that quote a peer.
//!
//! Secrets are held as `secrecy::SecretString` and never formatted, but an error body or a
//! transport error can still quote a URL or header it was sent. Every text a client takes
//! from a peer goes through [`Redactor::clean`] before it reaches a log or Slack.

use secrecy::{ExposeSecret, SecretString};

/// What stands in for a secret in messages.
pub const MASK: &str = "[redacted]";

/// The secrets one client knows, to mask wherever they appear.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<SecretString>,
}

impl Redactor {
    /// Masks `secret`, and for a URL also its path, which is what a peer usually quotes.
    pub fn add(&mut self, secret: &SecretString) {
        let text = secret.expose_secret();
        if text.len() < 4 {
            return;
        }
        self.secrets.push(secret.clone());
        if let Some(rest) = text.split_once("://").map(|(_, rest)| rest)
            && let Some((_, path)) = rest.split_once('/')
            && path.len() >= 4
        {
            self.secrets.push(SecretString::from(format!("/{path}")));
        }
    }

    /// `text` with every known secret replaced by [`MASK`].
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            if out.contains(secret) {
                out = out.replace(secret, MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_wherever_it_is_quoted() {
        let mut r = Redactor::default();
        r.add(&SecretString::from("xoxb-1111-secret"));
        assert_eq!(
            r.clean("invalid_auth for xoxb-1111-secret (xoxb-1111-secret)"),
            "invalid_auth for [redacted] ([redacted])"
        );
    }

    #[test]
    fn a_webhook_is_masked_by_its_path_too() {
        let mut r = Redactor::default();
        r.add(&SecretString::from(
            "https://hooks.slack.com/services/T0/B0/XXXX",
        ));
        assert_eq!(
            r.clean("POST /services/T0/B0/XXXX: 404"),
            "POST [redacted]: 404"
        );
    }

    #[test]
    fn a_secret_too_short_to_find_safely_is_left_alone() {
        let mut r = Redactor::default();
        r.add(&SecretString::from("abc"));
        assert_eq!(r.clean("abcdef"), "abcdef");
    }
}
